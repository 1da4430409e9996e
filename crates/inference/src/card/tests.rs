//! The Card loader end to end on literal texts: what loads, and every error with its place.

use std::path::Path;

use serde_json::json;

use super::*;

const SHA: &str = "3f2a000000000000000000000000000000000000000000000000000000000001";

fn card(text: &str) -> Result<Card, CardErrors> {
    parse(Path::new("c.json"), text)
}

/// Every error as `LINE:COL message`.
fn errors(text: &str) -> Vec<String> {
    let e = card(text).expect_err("the card is invalid");
    e.errors
        .iter()
        .map(|e| format!("{} {}", e.at.expect("placed"), e.message))
        .collect()
}

#[test]
fn a_full_card_loads_with_its_constraint() {
    let text = json!({
        "base": {"model": "qwen2.5:7b", "sha256": SHA.to_uppercase()},
        "description": "SQL for Postgres",
        "system": "You write SQL.",
        "sampling": {"temperature": 0.2, "top_k": 40, "seed": -3, "stop": [";"], "max_tokens": 256},
        "sampling_locked": true,
        "response": {"grammar": "root ::= \"SELECT\" [ a-z]*"},
        "adapters": [
            {"model": "sql-lora", "scale": 0.5},
            {"source": "/srv/lora.gguf", "sha256": SHA}
        ],
        "template": "{% for m in messages %}{{ m['content'] }}{% endfor %}",
        "context": 8192
    })
    .to_string();
    let c = card(&text).unwrap();
    assert_eq!(c.spec.base.sha256, SHA, "digests are kept in lowercase");
    assert_eq!(c.constraint.as_ref().map(GrammarSpec::label), Some("gbnf"));
    assert_eq!(c.spec.adapters[1].scale, ADAPTER_SCALE_DEFAULT);
    assert_eq!(
        c.place("/base/model"),
        Some(Pos {
            line: 1,
            column: 18
        })
    );
    let sampling = c.sampling();
    let get = |k: &str| sampling.iter().find(|s| s.key == k).unwrap().clone();
    assert_eq!(
        (get("temperature").value, get("temperature").from_card),
        (json!(0.2), true)
    );
    assert_eq!(
        (get("top_p").value, get("top_p").from_card),
        (json!(1.0), false)
    );
    assert_eq!(get("repeat_penalty").value, json!(1.0));
    assert_eq!(get("seed").value, json!(-3));
    assert_eq!(get("max_tokens").value, json!(256));
}

#[test]
fn only_base_is_required() {
    let c = card(&json!({"base": {"model": "m", "sha256": SHA}}).to_string()).unwrap();
    assert_eq!(c.constraint, None);
    assert!(!c.spec.sampling_locked);
    assert!(c.sampling().iter().all(|s| !s.from_card));
    assert_eq!(
        errors("{}"),
        [
            "1:1 the card needs the key \"base\": the model the Card runs on: a name in the model cache, pinned by its sha256"
        ]
    );
}

#[test]
fn every_error_is_reported_at_once_in_file_order() {
    let text = r#"{
  "base": {"model": "m", "sha256": "abc"},
  "sampling": {"temprature": 0.5, "top_p": 3, "top_k": "forty"},
  "colour": "blue"
}"#;
    assert_eq!(
        errors(text),
        [
            "2:36 base.sha256 must be a sha256: 64 hexadecimal digits, got \"abc\"",
            "3:16 unknown key \"temprature\" in sampling (did you mean \"temperature\"?); the keys allowed here are temperature, top_p, top_k, min_p, repeat_penalty, presence_penalty, frequency_penalty, seed, stop, max_tokens",
            "3:44 sampling.top_p must be between 0 and 1, got 3",
            "3:56 sampling.top_k must be an integer, got a string (\"forty\")",
            "4:3 unknown key \"colour\" at the top level; the keys allowed here are base, description, system, sampling, sampling_locked, response, adapters, template, context",
        ]
    );
}

#[test]
fn syntax_errors_are_placed() {
    assert_eq!(
        errors("{\n  \"base\": {\"model\": \"m\",}\n}"),
        ["2:25 invalid JSON: trailing comma"]
    );
    assert_eq!(errors(""), ["1:1 invalid JSON: EOF while parsing a value"]);
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    assert!(errors(&deep)[0].contains("nested more than 128 levels"));
}

#[test]
fn the_response_is_checked_as_a_request_is() {
    let base = json!({"model": "m", "sha256": SHA});
    let text = json!({"base": base, "response": {"json_schema": {"type": "object", "properties": {"a": {"type": "array", "uniqueItems": true}}}}}).to_string();
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    // At the refused keyword itself.
    let col = text.find("\"uniqueItems\"").unwrap() + 1;
    assert!(
        e[0].starts_with(&format!(
            "1:{col} response.json_schema: the schema keyword \"uniqueItems\""
        )),
        "{e:?}"
    );

    let text = json!({"base": base, "response": {"grammar": "root ::= <[12]>"}}).to_string();
    let e = errors(&text);
    assert!(e[0].contains("response.grammar (GBNF)"), "{e:?}");

    let text = json!({"base": base, "response": {"grammar": "x", "json_schema": {}}}).to_string();
    let e = errors(&text);
    assert!(
        e.iter()
            .any(|e| e.contains("response gives more than one of \"json_schema\" or \"grammar\"")),
        "{e:?}"
    );
    let text = json!({"base": base, "response": {}}).to_string();
    assert!(errors(&text)[0].contains("response needs one of \"json_schema\" or \"grammar\""));
}

#[test]
fn adapters_need_one_origin_and_a_pinned_source() {
    let base = json!({"model": "m", "sha256": SHA});
    let text = json!({"base": base, "adapters": [
        {"source": "https://example.org/a.gguf"},
        {"model": "a", "source": "/x.gguf", "sha256": SHA},
        {"source": "rel/a.gguf", "sha256": SHA, "scale": 5},
    ]})
    .to_string();
    let e = errors(&text);
    assert_eq!(e.len(), 4, "{e:?}");
    assert!(
        e[0].contains("adapters[0] gives a source, so it needs \"sha256\" too"),
        "{e:?}"
    );
    assert!(
        e[1].contains("adapters[1] gives more than one of \"model\" or \"source\""),
        "{e:?}"
    );
    assert!(
        e[2].contains("adapters[2].source: \"rel/a.gguf\" is neither a URL nor an absolute path"),
        "{e:?}"
    );
    assert!(
        e[3].contains("adapters[2].scale must be between 0 and 4, got 5"),
        "{e:?}"
    );
    let many: Vec<_> = (0..9).map(|_| json!({"model": "a"})).collect();
    let e = errors(&json!({"base": base, "adapters": many}).to_string());
    assert!(
        e[0].contains("adapters holds 9 entries; at most 8"),
        "{e:?}"
    );
}

#[test]
fn duplicates_fractions_and_names_are_refused() {
    let text = format!(
        "{{\"base\": {{\"model\": \"../etc\", \"sha256\": \"{SHA}\"}}, \"context\": 4096.0, \"context\": 8192, \"sampling\": {{\"stop\": [\"{}\"]}}}}",
        "x".repeat(300)
    );
    let e = errors(&text);
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        e[0].contains("base.model: invalid model name \"../etc\""),
        "{e:?}"
    );
    assert!(
        e[1].contains("the key \"context\" is written twice in the card (first at 1:"),
        "{e:?}"
    );
    assert!(
        e[2].contains("sampling.stop[0] is 300 bytes; a stop string is 1 to 256 bytes"),
        "{e:?}"
    );
    let e = errors(&json!({"base": {"model": "m", "sha256": SHA}, "context": 4096.0}).to_string());
    assert!(
        e[0].contains("context must be an integer from 64 to 1048576, written without a fraction"),
        "{e:?}"
    );
    let e = errors(&json!({"base": {"model": "m", "sha256": SHA}, "context": 10}).to_string());
    assert!(
        e[0].contains("context must be between 64 and 1048576, got 10"),
        "{e:?}"
    );
}

#[test]
fn the_file_is_bounded_and_must_be_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.json");
    let mut f = tempfile::NamedTempFile::new_in(dir.path()).unwrap();
    std::io::Write::write_all(&mut f, &vec![b' '; MAX_CARD_BYTES as usize + 1]).unwrap();
    f.persist(&big).unwrap();
    let e = load(&big).unwrap_err();
    assert!(e.to_string().contains("larger than 1048576 bytes"), "{e}");
    assert_eq!(e.errors[0].at, None);

    let bad = dir.path().join("bad.json");
    let mut f = tempfile::NamedTempFile::new_in(dir.path()).unwrap();
    std::io::Write::write_all(&mut f, b"{\n  \"a\xff\": 1}").unwrap();
    f.persist(&bad).unwrap();
    let e = load(&bad).unwrap_err();
    assert_eq!(e.errors[0].at, Some(Pos { line: 2, column: 5 }));

    let e = load(&dir.path().join("absent.json")).unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "{}: cannot read the card",
            dir.path().join("absent.json").display()
        )),
        "{e}"
    );
}

#[test]
fn the_template_must_render() {
    let text =
        json!({"base": {"model": "m", "sha256": SHA}, "template": "{{ raise_exception('no') }}"})
            .to_string();
    let e = errors(&text);
    assert!(e[0].contains("template: chat template failed"), "{e:?}");
}
