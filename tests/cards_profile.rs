//! `[inference.cards.NAME]` end to end: the real binary against a temporary root. A Card
//! added is a change of its own, a file the daemon reads and a `--card` flag in the unit;
//! a Card changed is planned key path by key path; a Card dropped goes. An adapter the
//! Card gives by `source` is pulled into the model cache as a model of its own and named so
//! in the Card the daemon reads, which serves it. This machine's PID 1 is not systemd (and
//! `--root` keeps units away from a running systemd anyway), so the service steps are
//! planned and marked not applicable.
#![allow(clippy::disallowed_methods)]

mod engine_support;
#[cfg(feature = "engine")]
mod inference_support;

use engine_support::Env;
use sha2::Digest;

const CARD_FILE: &str = "/etc/sovereign/inference/cards/sql.json";
const UNIT_FILE: &str = "/etc/systemd/system/sovereign-inference.service";
const FLAG: &str = " --card sql=/etc/sovereign/inference/cards/sql.json";

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
    let sha = env.tiny_model_at("/srv/models/tiny.gguf");
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
    let sha = env.tiny_model_at("/srv/models/tiny.gguf");
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

const STYLE_FILE: &str = "/etc/sovereign/inference/cards/style.json";
const ADAPTER: &str = "card-style-adapter-0";

/// Write `bytes` at `logical` under the root; their sha256.
fn file_at(env: &Env, logical: &str, bytes: &[u8]) -> String {
    let path = env.at(logical);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The names `model ls --json` lists in the cache under the root, with their sha256.
fn cached(env: &Env) -> Vec<(String, String)> {
    let r = env.run(&["model", "ls", "--json"]);
    r.ok();
    let rows: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                m["sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_card_adapter_given_by_source_is_pulled_served_and_dropped_with_the_card() {
    use sovereign_gguf::{lora, model};
    let env = Env::new();
    let spec = model::ModelSpec::tiny(42);
    let mut base = Vec::new();
    model::write_model(&spec, &mut base).unwrap();
    let sha = file_at(&env, "/srv/models/tiny.gguf", &base);
    let mut adapter = Vec::new();
    lora::write_adapter(&spec, &lora::LoraSpec::tiny(1), &mut adapter).unwrap();
    let adapter_sha = file_at(&env, "/srv/loras/style.gguf", &adapter);
    // `scale` before `source`: the Card the daemon reads keeps the user's key order.
    let text = format!(
        "{{\n  \"description\": \"Talks in style\",\n  \"base\": {{ \"model\": \"tiny\", \"sha256\": \"{sha}\" }},\n  \"adapters\": [\n    {{ \"scale\": 1, \"source\": \"/srv/loras/style.gguf\", \"sha256\": \"{adapter_sha}\" }}\n  ]\n}}\n"
    );
    let dir = env.dir.path().join("profiles/cards");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("style.json"), &text).unwrap();
    let with_card = |card: bool| {
        let card = if card {
            "\n[inference.cards.style]\nfile = \"cards/style.json\"\n"
        } else {
            ""
        };
        format!(
            "[inference]\nlisten = \"127.0.0.1:18082\"\n\n[inference.models.tiny]\nsource = \"/srv/models/tiny.gguf\"\nsha256 = \"{sha}\"\n{card}"
        )
    };
    let p = env.profile("p.toml", &with_card(true));
    env.run(&["validate", p.to_str().unwrap()]).ok();

    // Planned as a model of its own, pinned by the Card; the Card's diff is the user's.
    let plan = env.plan(&p);
    plan.ok();
    assert_lines(
        &plan.stderr,
        &[
            &format!("+ inference.model:{ADAPTER}"),
            "+ inference.model:tiny",
            "+ inference.card:style",
            "adapters[0].source: (none) -> \"/srv/loras/style.gguf\"",
            &format!("+ files.file:{STYLE_FILE}"),
        ],
    );
    let json = plan_json(&env, &p);
    let pull = change(&json, &format!("inference.model:{ADAPTER}")).expect("the pull");
    assert_eq!(pull["action"], "create");
    assert!(
        pull["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "sha256" && f["after"] == adapter_sha.as_str()),
        "{pull:#}"
    );
    assert!(
        pull["reason"]
            .as_str()
            .unwrap()
            .contains("adapters[0] of [inference.cards.style]"),
        "{pull:#}"
    );

    // Applied: in the cache under its derived name, verified; named so in the daemon's Card.
    env.apply(&p).ok();
    let cache = cached(&env);
    assert!(
        cache.contains(&(ADAPTER.to_string(), adapter_sha.clone())),
        "{cache:?}"
    );
    let written: serde_json::Value = serde_json::from_str(&env.read(STYLE_FILE)).unwrap();
    let keys: Vec<&String> = written.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["description", "base", "adapters"]);
    let adapter_keys: Vec<&String> = written["adapters"][0].as_object().unwrap().keys().collect();
    assert_eq!(adapter_keys, ["scale", "model", "sha256"]);
    assert_eq!(
        written["adapters"][0],
        serde_json::json!({"scale": 1, "model": ADAPTER, "sha256": adapter_sha})
    );
    assert_eq!(written["base"]["sha256"], sha.as_str());
    env.assert_no_changes(&p);

    // The daemon serves the Card with the adapter applied.
    #[cfg(feature = "engine")]
    served::answers_otherwise_than_its_base(&env);

    // Dropped with the Card: sovereign pulled it, so it leaves the cache.
    let p = env.profile("p.toml", &with_card(false));
    let plan = env.plan(&p);
    plan.ok();
    assert_lines(
        &plan.stderr,
        &[
            &format!("- inference.model:{ADAPTER}"),
            "- inference.card:style",
        ],
    );
    env.apply(&p).ok();
    let cache = cached(&env);
    assert!(cache.iter().all(|(name, _)| name != ADAPTER), "{cache:?}");
    assert!(cache.iter().any(|(name, _)| name == "tiny"), "{cache:?}");
    env.assert_no_changes(&p);
}

#[cfg(feature = "engine")]
mod served {
    use super::inference_support::{Served, call, free_port, sovereign};
    use super::{Env, STYLE_FILE};

    fn chat(d: &Served, model: &str) -> String {
        let body = serde_json::json!({"model": model, "temperature": 0, "max_tokens": 12,
            "messages": [{"role": "user", "content": "green stone"}]});
        let (status, text) = call(d.port, "POST", "/v1/chat/completions", None, Some(&body));
        assert_eq!(status, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// `serve --card style=...` over the cache apply filled, with the Card file apply wrote:
    /// a greedy answer through the Card is not the base's (the adapter was applied).
    pub fn answers_otherwise_than_its_base(env: &Env) {
        let port = free_port();
        let mut cmd = sovereign();
        cmd.arg("--root")
            .arg(env.root())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--slots", "2", "--context", "1024", "--threads", "2"])
            .arg("--card")
            .arg(format!("style={}", env.at(STYLE_FILE).display()));
        let d = Served::start(cmd, port, tempfile::tempdir().unwrap(), None);
        let through_card = chat(&d, "style");
        assert_ne!(through_card, chat(&d, "tiny"), "{}", d.log_text());
    }
}
