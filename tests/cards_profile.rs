//! `[inference.cards.NAME]` end to end: the real binary against a temporary root. A Card
//! added is a change of its own, a file the daemon reads and a `--card` flag in the unit;
//! a Card changed is planned key path by key path; a Card dropped goes. This machine's
//! PID 1 is not systemd (and `--root` keeps units away from a running systemd anyway), so
//! the service steps are planned and marked not applicable.
#![allow(clippy::disallowed_methods)]

mod engine_support;

use engine_support::Env;
use sha2::Digest;
use sovereign_gguf::write::{GgufBuilder, LlamaShape};

const CARD_FILE: &str = "/etc/sovereign/inference/cards/sql.json";
const UNIT_FILE: &str = "/etc/systemd/system/sovereign-inference.service";
const FLAG: &str = " --card sql=/etc/sovereign/inference/cards/sql.json";

/// A tiny generated model at `logical` under the root; returns its sha256.
fn model_at(env: &Env, logical: &str) -> String {
    let bytes = GgufBuilder::llama(LlamaShape::tiny()).to_bytes();
    let path = env.at(logical);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    hex::encode(sha2::Sha256::digest(&bytes))
}

/// A Card on the model `tiny` (pinned at `sha`), written next to the profiles.
fn card(env: &Env, sha: &str, system: &str, temperature: &str) -> String {
    let text = format!(
        "{{\n  \"base\": {{ \"model\": \"tiny\", \"sha256\": \"{sha}\" }},\n  \"system\": \"{system}\",\n  \"sampling\": {{ \"temperature\": {temperature}, \"stop\": [\";\"] }}\n}}\n"
    );
    let dir = env.dir.path().join("profiles/cards");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("sql.json"), &text).unwrap();
    text
}

fn profile(sha: &str, with_card: bool) -> String {
    let card = if with_card {
        "\n[inference.cards.sql]\nfile = \"cards/sql.json\"\n"
    } else {
        ""
    };
    format!(
        "[inference]\nlisten = \"127.0.0.1:18081\"\n\n[inference.models.tiny]\nsource = \"/srv/models/tiny.gguf\"\nsha256 = \"{sha}\"\n{card}"
    )
}

fn plan_json(env: &Env, p: &std::path::Path) -> serde_json::Value {
    let r = env.run(&["plan", "--json", p.to_str().unwrap()]);
    r.ok();
    serde_json::from_str(&r.stdout).unwrap()
}

fn change<'a>(plan: &'a serde_json::Value, address: &str) -> Option<&'a serde_json::Value> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == address)
}

fn assert_lines(text: &str, lines: &[&str]) {
    for line in lines {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
}

#[test]
fn a_card_is_added_changed_key_by_key_and_removed() {
    let env = Env::new();
    let sha = model_at(&env, "/srv/models/tiny.gguf");
    let first = card(&env, &sha, "Answer with one PostgreSQL query only.", "0.2");
    let p = env.profile("p.toml", &profile(&sha, true));

    // Added: its own change, its file, and the unit's flag.
    let plan = env.plan(&p);
    plan.ok();
    assert_lines(
        &plan.stderr,
        &[
            "+ inference.card:sql",
            "base.model: (none) -> \"tiny\"",
            "sampling.temperature: (none) -> 0.2",
            &format!("+ files.file:{CARD_FILE}"),
            "+ inference.model:tiny",
            FLAG,
        ],
    );
    let json = plan_json(&env, &p);
    let added = change(&json, "inference.card:sql").expect("the card's change");
    assert_eq!(added["action"], "create");
    assert!(
        added["depends_on"]
            .as_array()
            .unwrap()
            .contains(&format!("files.file:{CARD_FILE}").into()),
        "{added:#}"
    );

    env.apply(&p).ok();
    assert_eq!(env.read(CARD_FILE), first);
    let unit = env.read(UNIT_FILE);
    let exec = unit.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    assert!(exec.ends_with(FLAG), "{exec}");
    env.assert_no_changes(&p);

    // Changed: one field per changed key path, in the text and in the JSON; the file is
    // written again.
    let second = card(&env, &sha, "Answer with one SQLite query only.", "0.4");
    let plan = env.plan(&p);
    plan.ok();
    assert_lines(
        &plan.stderr,
        &[
            "~ inference.card:sql",
            "        sampling.temperature: 0.2 -> 0.4",
            "        system: \"Answer with one PostgreSQL query only.\" -> \"Answer with one SQLite query only.\"",
            &format!("~ files.file:{CARD_FILE}"),
        ],
    );
    assert!(!plan.stderr.contains("base.model"), "{}", plan.stderr);
    let json = plan_json(&env, &p);
    let changed = change(&json, "inference.card:sql").expect("the card's change");
    assert_eq!(changed["action"], "update");
    assert_eq!(
        changed["fields"],
        serde_json::json!([
            {"name": "sampling.temperature", "before": "0.2", "after": "0.4"},
            {"name": "system", "before": "\"Answer with one PostgreSQL query only.\"", "after": "\"Answer with one SQLite query only.\""},
        ]),
        "{changed:#}"
    );
    // The daemon waits for its Card (the restart it triggers is the services domain's,
    // never applicable under --root).
    let service = change(&json, "services.service:sovereign-inference").unwrap();
    assert!(
        service["depends_on"]
            .as_array()
            .unwrap()
            .contains(&format!("files.file:{CARD_FILE}").into()),
        "{service:#}"
    );
    env.apply(&p).ok();
    assert_eq!(env.read(CARD_FILE), second);
    env.assert_no_changes(&p);

    // Removed: the change, the file and the flag go; the model stays.
    let p = env.profile("p.toml", &profile(&sha, false));
    let plan = env.plan(&p);
    plan.ok();
    assert_lines(
        &plan.stderr,
        &["- inference.card:sql", &format!("- files.file:{CARD_FILE}")],
    );
    assert!(
        !plan.stderr.contains("inference.model:tiny"),
        "{}",
        plan.stderr
    );
    env.apply(&p).ok();
    assert!(!env.at(CARD_FILE).exists());
    assert!(!env.read(UNIT_FILE).contains("--card"));
    env.assert_no_changes(&p);
}

/// The Card is read where the profile is, once: a plan saved and applied later, or on
/// another host, writes the Card that was checked.
#[test]
fn a_saved_plan_is_stale_when_its_card_changes() {
    let env = Env::new();
    let sha = model_at(&env, "/srv/models/tiny.gguf");
    card(&env, &sha, "Answer with one query.", "0.2");
    let p = env.profile("p.toml", &profile(&sha, true));
    let saved = env.dir.path().join("plan.json");
    env.run(&["plan", "-o", saved.to_str().unwrap(), p.to_str().unwrap()])
        .ok();
    card(&env, &sha, "Answer with one query.", "0.3");
    let r = env.run(&["apply", "--yes", saved.to_str().unwrap()]);
    assert_ne!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("stale"), "{}", r.stderr);
    assert!(!env.at(CARD_FILE).exists());
}
