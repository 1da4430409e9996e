//! `sovereign validate`, `show` and `schema` as a user runs them: exit statuses, human
//! output on stderr, machine output on stdout, snapshots with the checkout's path redacted.
#![allow(clippy::disallowed_methods)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Run the binary with colour off, naming profiles by absolute path (as a user might),
/// so the snapshots prove the redaction.
fn sovereign(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sovereign"))
        .arg("--color")
        .arg("never")
        .args(args)
        .env_remove("NO_COLOR")
        .output()
        .expect("run sovereign")
}

fn profile(rel: &str) -> String {
    root().join(rel).display().to_string()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

macro_rules! redacted {
    ($($body:tt)*) => {{
        let pattern = regex_escape(&root().display().to_string());
        insta::with_settings!({filters => vec![(pattern.as_str(), "[ROOT]")]}, {
            $($body)*
        })
    }};
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' || c == '_' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

#[test]
fn validate_accepts_a_good_profile_with_a_summary_on_stderr() {
    let out = sovereign(&["validate", &profile("tests/profiles/good/workstation.toml")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("workstation.toml is valid: 4 files loaded; 1 managed file, 1 check, 1 pool, 1 dataset, 1 zvol, 1 snapshot policy, 1 model"), "{stderr}");
}

#[test]
fn validate_json_reports_validity_and_files() {
    let out = sovereign(&[
        "validate",
        "--json",
        &profile("tests/profiles/good/workstation.toml"),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["valid"], true);
    assert_eq!(json["files"].as_array().unwrap().len(), 4);
    assert_eq!(json["errors"], serde_json::json!([]));
}

#[test]
fn validate_reports_every_error_with_place_source_and_hint_and_exits_1() {
    let out = sovereign(&["validate", &profile("tests/profiles/bad/many_errors.toml")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("profile: 8 errors"), "{stderr}");
    for needle in [
        "bad/many_errors.toml:14:1]",
        "nmae = \"forge-01\"",
        "unknown key \"nmae\" in host (did you mean \"name\"?)",
        "help: keys allowed here: name, expect",
        "bad/parts/many_errors_part.toml:3:1]",
        "inference.slots: expected an integer from 1 to 256, found string \"four\"",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in\n{stderr}");
    }
    assert!(!stderr.contains("\x1b["), "--color never prints no escapes");
    // File order: the named file's errors top to bottom, then the import's.
    let first = stderr.find("host.nmae").unwrap();
    let middle = stderr.find("inference.listen").unwrap();
    let last = stderr.find("checks[0].retires").unwrap();
    assert!(first < middle && middle < last);
}

#[test]
fn validate_json_lists_errors_with_file_line_column_key_path_message_hint() {
    let out = sovereign(&[
        "validate",
        "--json",
        &profile("tests/profiles/bad/import_conflict.toml"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    redacted! {
        insta::assert_json_snapshot!("validate_json_conflict", json);
    }
}

#[test]
fn validate_names_an_unreadable_profile() {
    let out = sovereign(&["validate", "tests/profiles/no-such-profile.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot read profile tests/profiles/no-such-profile.toml"),
        "{stderr}"
    );
}

#[test]
fn show_prints_the_merged_profile_with_origins() {
    let out = sovereign(&["show", &profile("tests/profiles/good/workstation.toml")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    redacted! {
        insta::assert_snapshot!("show_text", text(&out.stdout));
    }
}

#[test]
fn show_json_has_the_profile_and_an_origins_map() {
    let out = sovereign(&[
        "show",
        "--json",
        &profile("tests/profiles/good/workstation.toml"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["profile"]["storage"]["pools"]["tank"]["ashift"], 13);
    assert_eq!(json["origins"]["storage.pools.tank.ashift"]["line"], 10);
    redacted! {
        insta::assert_json_snapshot!("show_json", json);
    }
}

#[test]
fn show_refuses_an_invalid_profile() {
    let out = sovereign(&["show", &profile("tests/profiles/bad/dangling_pool.toml")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(text(&out.stderr).contains("which is not declared in storage.pools"));
}

#[test]
fn schema_is_draft_2020_12_json() {
    let out = sovereign(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(json["title"], "sovereign profile");
    assert!(json["$defs"]["Pool"]["properties"]["vdevs"]["description"].is_string());
}

#[test]
fn every_profile_command_has_examples_in_its_help() {
    for command in ["validate", "show", "schema"] {
        let out = sovereign(&[command, "--help"]);
        assert_eq!(out.status.code(), Some(0));
        let help = text(&out.stdout);
        assert!(
            help.contains("Examples:\n  sovereign "),
            "{command} --help:\n{help}"
        );
    }
}

/// Values written by habit (a bare mode, a float count) get a hint that says what to write.
#[test]
fn habits_get_a_hint_saying_what_to_write() {
    let dir = tempfile::tempdir().unwrap();
    for (body, hint) in [
        (
            "[files.\"/etc/a\"]\ncontent = \"x\"\nmode = 0600\n",
            "a mode is a quoted octal string, e.g. mode = \"0600\"",
        ),
        (
            "[files.\"/etc/a\"]\ncontent = \"x\"\nmode = 644\n",
            "quote it so it stays octal, e.g. mode = \"0644\"",
        ),
        (
            "[storage.pools.tank]\nvdevs = [\"/x.img\"]\nashift = 12.0\n",
            "write 12, without the decimal point",
        ),
    ] {
        let p = dir.path().join("p.toml");
        std::fs::write(&p, body).unwrap();
        let out = sovereign(&["validate", p.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out.stderr);
        assert!(err.contains(hint), "{body}: {err}");
    }
}

/// A key pasted where the key file's path goes is never repeated: not in the message, not
/// in the quoted source line, not in `--json`, whether or not it contains a '/'.
#[test]
fn a_pasted_key_is_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    for key in ["sk-AbC123secretXyz", "sk-live/AbC123secretXyz+9=="] {
        let p = dir.path().join("p.toml");
        std::fs::write(&p, format!("[inference]\napi_key_file = \"{key}\"\n")).unwrap();
        for json in [false, true] {
            let mut args = vec!["validate", p.to_str().unwrap()];
            if json {
                args.push("--json");
            }
            let out = sovereign(&args);
            assert_eq!(out.status.code(), Some(1));
            let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
            assert!(all.contains("api_key_file"), "{all}");
            assert!(!all.contains("AbC123secret"), "the key leaked: {all}");
        }
    }
}
