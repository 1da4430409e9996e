//! Task Cards: the bad-card corpus (each tests/cards/bad/NAME.json states the errors it
//! must produce, all at once and in file order, in NAME.expect beside it), the good cards,
//! `sovereign schema --card`, and `sovereign card show` against a real model cache.
#![allow(clippy::disallowed_methods)]

mod cache_support;
mod corpus_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cache_support::{sha256_hex, tiny_gguf, write};
use serde_json::{Value, json};
use sovereign::inference::cache::{Cache, ModelName, NoProgress, PullRequest};
use sovereign::inference::card;

const BAD: &str = "tests/cards/bad";
const GOOD: &str = "tests/cards/good";

fn sovereign(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sovereign"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_corpus_covers_every_rule_of_the_format() {
    let names: Vec<String> = corpus_support::files(BAD, "json")
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for needed in [
        "unknown_keys",
        "out_of_range",
        "wrong_types",
        "missing_base",
        "base_incomplete",
        "response_both",
        "response_empty",
        "schema_keyword",
        "schema_dangling_ref",
        "grammar_token",
        "grammar_lark_json",
        "adapters",
        "too_many_adapters",
        "stop_strings",
        "too_many_stops",
        "syntax_trailing_comma",
        "syntax_comment",
        "duplicate_keys",
        "integer_fraction",
        "template_broken",
        "names",
        "not_an_object",
    ] {
        assert!(names.iter().any(|n| n == needed), "no bad card {needed}");
    }
}

/// Every bad card reports exactly its expected errors, all of them, sorted by place.
#[test]
fn every_bad_card_reports_exactly_its_errors() {
    let mut failures = Vec::new();
    for path in corpus_support::files(BAD, "json") {
        let expected = corpus_support::sidecar_expectations(&path);
        assert!(!expected.is_empty(), "{} expects nothing", path.display());
        let errors = match card::load(&path) {
            Ok(_) => {
                failures.push(format!("{}: loaded without errors", path.display()));
                continue;
            }
            Err(e) => e.errors,
        };
        for e in &errors {
            assert_eq!(e.file, path, "errors name the file as given");
        }
        let got: Vec<(u32, u32, String)> = errors
            .iter()
            .map(|e| {
                let at = e.at.expect("every corpus error has a place");
                (at.line, at.column, e.message.clone())
            })
            .collect();
        failures.extend(corpus_support::differs(&path, &expected, &got));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_good_card_loads_and_fits_the_printed_schema() {
    let root = tempfile::tempdir().unwrap();
    let out = sovereign(root.path(), &["schema", "--card"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let schema: Value = serde_json::from_slice(&out.stdout).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the card schema compiles");
    let good = corpus_support::files(GOOD, "json");
    assert!(good.len() >= 3);
    for path in good {
        card::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let value: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
    }
}

#[test]
fn the_card_schema_is_draft_2020_12_and_describes_every_key() {
    let root = tempfile::tempdir().unwrap();
    let out = sovereign(root.path(), &["schema", "--card"]);
    let schema: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["title"], "sovereign card");
    let missing = sovereign::profile::schema::undescribed_keys(&schema);
    assert!(
        missing.is_empty(),
        "keys without a description: {missing:?}"
    );
    // The ranges are the daemon's own.
    let sampling = &schema["$defs"]["Sampling"]["properties"];
    let t = &sovereign::inference::validate::TEMPERATURE;
    assert_eq!(
        sampling["temperature"]["minimum"],
        json!(f64::from(*t.start()))
    );
    assert_eq!(
        sampling["temperature"]["maximum"],
        json!(f64::from(*t.end()))
    );
    assert_eq!(
        sampling["max_tokens"]["maximum"],
        json!(sovereign::inference::validate::MAX_TOKENS.end())
    );
}

#[test]
fn card_commands_have_examples_in_their_help() {
    let root = tempfile::tempdir().unwrap();
    let out = sovereign(root.path(), &["card", "show", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("Examples:\n  sovereign card show "));
    let out = sovereign(root.path(), &["schema", "--help"]);
    assert!(text(&out.stdout).contains("sovereign schema --card"));
}

/// A cache under `root` holding the tiny model as `name`; its sha256.
fn cache_with_tiny(root: &Path, name: &str) -> String {
    let bytes = tiny_gguf();
    let src = write(root, "tiny.gguf", &bytes);
    let cache = Cache::open(&root.join("root")).unwrap();
    cache
        .pull(
            &PullRequest {
                source: src.to_str().unwrap().to_owned(),
                sha256: None,
                name: Some(ModelName::parse(name).unwrap()),
            },
            &NoProgress,
        )
        .unwrap();
    sha256_hex(&bytes)
}

fn write_card(dir: &Path, name: &str, card: &Value) -> PathBuf {
    let text = serde_json::to_string_pretty(card).unwrap();
    write(dir, name, text.as_bytes())
}

#[test]
fn show_prints_a_cached_card_with_its_effective_sampling() {
    let tmp = tempfile::tempdir().unwrap();
    let sha = cache_with_tiny(tmp.path(), "tiny");
    let path = write_card(
        tmp.path(),
        "tiny.json",
        &json!({
            "description": "yes or no",
            "base": {"model": "tiny", "sha256": sha},
            "sampling": {"temperature": 0.25, "stop": ["\n"]},
            "sampling_locked": true,
            "response": {"grammar": "root ::= \"yes\" | \"no\""},
            "adapters": [{"model": "tiny", "scale": 0.5}],
        }),
    );
    let root = tmp.path().join("root");
    let file = path.to_str().unwrap();
    let out = sovereign(&root, &["card", "show", file]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("base: tiny sha256 {sha} (in the cache)")),
        "{stdout}"
    );
    assert!(stdout.contains("1. model tiny, sha256"), "{stdout}");
    assert!(stdout.contains("scale 0.5 (in the cache)"), "{stdout}");
    assert!(
        stdout.contains("locked: requests may not override it"),
        "{stdout}"
    );
    let row = |key: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no {key} row in {stdout}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(row("temperature"), ["temperature", "0.25", "card"]);
    assert_eq!(row("top_p"), ["top_p", "1.0", "default"]);
    assert_eq!(row("repeat_penalty"), ["repeat_penalty", "1.0", "default"]);
    assert!(
        stdout.contains("every answer follows this grammar (gbnf)"),
        "{stdout}"
    );
    assert!(stdout.contains("root ::= \"yes\" | \"no\""), "{stdout}");

    let out = sovereign(&root, &["card", "show", file, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["valid"], true);
    assert_eq!(json["errors"], json!([]));
    let c = &json["card"];
    assert_eq!(
        c["base"]["cache"],
        json!({"state": "present", "sha256": sha})
    );
    assert_eq!(c["adapters"][0]["cache"]["state"], "present");
    assert_eq!(
        c["sampling"]["temperature"],
        json!({"value": 0.25, "from": "card"})
    );
    assert_eq!(
        c["sampling"]["top_k"],
        json!({"value": 0, "from": "default"})
    );
    assert_eq!(
        c["sampling"]["seed"],
        json!({"value": null, "from": "default"})
    );
    assert_eq!(
        c["sampling"]["stop"],
        json!({"value": ["\n"], "from": "card"})
    );
    assert_eq!(c["sampling_locked"], true);
    assert_eq!(
        c["response"],
        json!({"grammar": "root ::= \"yes\" | \"no\""})
    );
}

#[test]
fn show_fails_naming_the_place_when_the_base_is_not_cached_or_differs() {
    let tmp = tempfile::tempdir().unwrap();
    let sha = cache_with_tiny(tmp.path(), "tiny");
    let other = "ab".repeat(32);
    let text_of = format!(
        "{{\n  \"base\": {{\n    \"model\": \"tiny\",\n    \"sha256\": \"{other}\"\n  }},\n  \"adapters\": [{{\"model\": \"absent-lora\"}}]\n}}\n"
    );
    let path = write(tmp.path(), "differs.json", text_of.as_bytes());
    let root = tmp.path().join("root");
    let file = path.to_str().unwrap();
    let out = sovereign(&root, &["card", "show", file]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    // The Card is still shown, with what the cache holds.
    assert!(text(&out.stdout).contains(&format!("the cache holds another file ({sha})")));
    assert!(
        stderr.contains(&format!(
            "{file}:4:15: base.sha256 pins {other}, but the cached \"tiny\" is {sha}"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{file}:6:26: adapters[0].model \"absent-lora\" is not in the model cache"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("sovereign model pull URL_OR_PATH --name absent-lora"),
        "{stderr}"
    );

    let out = sovereign(&root, &["card", "show", file, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["valid"], true);
    assert_eq!(json["card"]["base"]["cache"]["state"], "other_digest");
    let places: Vec<(u64, u64)> = json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["line"].as_u64().unwrap(), e["column"].as_u64().unwrap()))
        .collect();
    assert_eq!(places, [(4, 15), (6, 26)]);

    // A cache that does not exist is empty, and nothing is created to find that out.
    let bare = tmp.path().join("bare");
    let out = sovereign(&bare, &["card", "show", GOOD_MINIMAL]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("base.model \"tiny\" is not in the model cache"));
    assert!(!bare.exists());
}

const GOOD_MINIMAL: &str = "tests/cards/good/minimal.json";

#[test]
fn show_reports_every_error_of_an_invalid_card_as_file_line_column() {
    let root = tempfile::tempdir().unwrap();
    let file = "tests/cards/bad/out_of_range.json";
    let out = sovereign(root.path(), &["card", "show", file]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("{file} is not a valid card: 10 errors")),
        "{stderr}"
    );
    for want in [
        format!("{file}:4:20: sampling.temperature must be between 0 and 2, got 3"),
        format!("{file}:14:14: context must be between 64 and 1048576, got 32"),
    ] {
        assert!(stderr.contains(&want), "{want} in {stderr}");
    }

    let out = sovereign(root.path(), &["card", "show", file, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["valid"], false);
    assert!(json.get("card").is_none());
    assert_eq!(json["errors"].as_array().unwrap().len(), 10);
    assert_eq!(
        json["errors"][0],
        json!({
            "file": file,
            "line": 4,
            "column": 20,
            "pointer": "/sampling/temperature",
            "message": "sampling.temperature must be between 0 and 2, got 3",
        })
    );
}

#[test]
fn a_card_too_large_or_not_utf8_is_refused_before_parsing() {
    let tmp = tempfile::tempdir().unwrap();
    let big = write(
        tmp.path(),
        "big.json",
        &vec![b' '; card::MAX_CARD_BYTES as usize + 1],
    );
    let out = sovereign(tmp.path(), &["card", "show", big.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the card is larger than 1048576 bytes (1 MiB)"),
        "{}",
        text(&out.stderr)
    );
    let latin1 = write(
        tmp.path(),
        "latin1.json",
        b"{\n  \"system\": \"caf\xe9\"\n}",
    );
    let e = card::load(&latin1).unwrap_err();
    assert_eq!(
        e.errors[0].at,
        Some(card::Pos {
            line: 2,
            column: 17
        })
    );
    assert!(e.errors[0].message.contains("not UTF-8"));
}
