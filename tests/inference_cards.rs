//! Cards served as models by a real `sovereign serve --card NAME=FILE` over a model cache:
//! a request naming a Card runs on the Card's cached base with the Card's system prompt,
//! sampling, response constraint, template and context, and answers exactly as the base
//! answers the request the Card makes of it (greedy, on a model whose answers depend on
//! every earlier token).
#![allow(clippy::disallowed_methods)]
// Needs llama.cpp: built only with the `engine` feature (the default).
#![cfg(feature = "engine")]

mod inference_support;

use std::path::{Path, PathBuf};

use inference_support::{Served, call, free_port, sovereign, tiny_random};
use serde_json::{Value, json};
use sovereign_inference::cache::{Cache, ModelName, NoProgress, PullRequest};

/// A cache under a temp root holding the random tiny model as "base"; its sha256.
fn cache_with_base(root: &Path) -> String {
    Cache::open(root)
        .unwrap()
        .pull(
            &PullRequest {
                source: tiny_random().to_str().unwrap().to_string(),
                sha256: None,
                name: Some(ModelName::parse("base").unwrap()),
            },
            &NoProgress,
        )
        .unwrap()
        .sha256
}

/// Write `card` (with `base` pinned at `sha`) as `dir/NAME.json`.
fn card_file(dir: &Path, name: &str, sha: &str, mut card: Value) -> PathBuf {
    card["base"] = json!({"model": "base", "sha256": sha});
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&card).unwrap()).unwrap();
    path
}

/// `sovereign --root ROOT serve` serving the cache and `cards`.
fn serve(root: &Path, cards: &[(&str, &Path)], dir: tempfile::TempDir) -> Served {
    let port = free_port();
    let mut cmd = sovereign();
    cmd.arg("--root")
        .arg(root)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--slots", "2", "--context", "1024", "--threads", "2"]);
    for (name, file) in cards {
        cmd.arg("--card").arg(format!("{name}={}", file.display()));
    }
    Served::start(cmd, port, dir, None)
}

fn post(d: &Served, path: &str, body: &Value) -> (u16, Value) {
    let (status, text) = call(d.port, "POST", path, None, Some(body));
    let v = serde_json::from_str(&text).unwrap_or_else(|_| json!({"raw": text}));
    (status, v)
}

fn chat(d: &Served, body: Value) -> String {
    let (status, v) = post(d, "/v1/chat/completions", &body);
    assert_eq!(status, 200, "{v}");
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    cards: PathBuf,
    sha: String,
}

fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let cards = tmp.path().join("cards");
    std::fs::create_dir_all(&cards).unwrap();
    let sha = cache_with_base(&root);
    World {
        _tmp: tmp,
        root,
        cards,
        sha,
    }
}

#[test]
fn a_card_answers_as_its_base_answers_the_request_the_card_makes() {
    let w = world();
    let system = "you are the quiet river; answer in stone and light";
    let sql = card_file(
        &w.cards,
        "sql",
        &w.sha,
        json!({"description": "river talk", "system": system,
               "sampling": {"temperature": 0, "max_tokens": 9, "repeat_penalty": 1.1}}),
    );
    let d = serve(&w.root, &[("sql", &sql)], tempfile::tempdir().unwrap());
    let user = json!([{"role": "user", "content": "what does the machine hold?"}]);
    let via_card = chat(&d, json!({"model": "sql", "messages": user}));
    let by_hand = chat(
        &d,
        json!({"model": "base", "temperature": 0, "max_tokens": 9, "repeat_penalty": 1.1,
               "messages": [{"role": "system", "content": system}, user[0]]}),
    );
    assert_eq!(via_card, by_hand);
    // Without the Card's system prompt the base answers otherwise: the prompt mattered.
    let bare = chat(
        &d,
        json!({"model": "base", "temperature": 0, "max_tokens": 9, "repeat_penalty": 1.1, "messages": user}),
    );
    assert_ne!(via_card, bare);
    // The response names the Card; the budget is the Card's unless the request sets one.
    let (_, v) = post(
        &d,
        "/v1/chat/completions",
        &json!({"model": "sql", "messages": user}),
    );
    assert_eq!(v["model"], "sql");
    assert_eq!(v["usage"]["completion_tokens"], 9);
    let (_, v) = post(
        &d,
        "/v1/chat/completions",
        &json!({"model": "sql", "messages": user, "max_tokens": 3}),
    );
    assert_eq!(v["usage"]["completion_tokens"], 3);
    // /v1/models lists the Card with its base.
    let (status, text) = call(d.port, "GET", "/v1/models", None, None);
    assert_eq!(status, 200);
    let models: Value = serde_json::from_str(&text).unwrap();
    let card = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "sql")
        .expect("the Card in /v1/models");
    assert_eq!(card["metadata"]["kind"], "card");
    assert_eq!(card["metadata"]["base"]["model"], "base");
    assert_eq!(card["metadata"]["base"]["sha256"], json!(w.sha));
}

#[test]
fn a_locked_card_refuses_overrides_by_name_and_its_response_binds_every_answer() {
    let w = world();
    let schema = json!({"type": "object", "properties": {"ok": {"type": "boolean"}},
                        "required": ["ok"], "additionalProperties": false});
    let locked = card_file(
        &w.cards,
        "locked",
        &w.sha,
        json!({"sampling": {"temperature": 0.7, "seed": 5, "max_tokens": 40}, "sampling_locked": true,
               "response": {"json_schema": schema}}),
    );
    let d = serve(
        &w.root,
        &[("locked", &locked)],
        tempfile::tempdir().unwrap(),
    );
    let user = json!([{"role": "user", "content": "is the light on?"}]);
    let (status, v) = post(
        &d,
        "/v1/chat/completions",
        &json!({"model": "locked", "messages": user, "temperature": 1, "top_k": 3}),
    );
    assert_eq!(status, 400, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("temperature") && message.contains("top_k"),
        "{message}"
    );
    for q in ["is the light on?", "and the river?", "stone?"] {
        let answer = chat(
            &d,
            json!({"model": "locked", "messages": [{"role": "user", "content": q}]}),
        );
        let parsed: Value = serde_json::from_str(&answer)
            .unwrap_or_else(|e| panic!("{answer:?} is not the Card's JSON: {e}"));
        assert!(parsed["ok"].is_boolean(), "{parsed}");
        assert_eq!(parsed.as_object().unwrap().len(), 1, "{parsed}");
    }
    // Another constraint in the request is refused; the very same one is accepted.
    let other =
        json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string"}}});
    let (status, v) = post(
        &d,
        "/v1/chat/completions",
        &json!({"model": "locked", "messages": user, "response_format": other}),
    );
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "response_format");
    let same = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": schema}});
    let (status, v) = post(
        &d,
        "/v1/chat/completions",
        &json!({"model": "locked", "messages": user, "response_format": same}),
    );
    assert_eq!(status, 200, "{v}");
}

#[test]
fn a_cards_template_and_context_replace_the_models() {
    let w = world();
    let template = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}ANSWER:";
    let framed = card_file(
        &w.cards,
        "framed",
        &w.sha,
        json!({"system": "be brief", "template": template, "context": 128,
               "sampling": {"temperature": 0, "max_tokens": 8}}),
    );
    let d = serve(
        &w.root,
        &[("framed", &framed)],
        tempfile::tempdir().unwrap(),
    );
    let via_card = chat(
        &d,
        json!({"model": "framed", "messages": [{"role": "user", "content": "green stone"}]}),
    );
    let (status, v) = post(
        &d,
        "/v1/completions",
        &json!({"model": "base", "temperature": 0, "max_tokens": 8,
                "prompt": "[system] be brief\n[user] green stone\nANSWER:"}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(via_card, v["choices"][0]["text"].as_str().unwrap());
    // The Card's context bounds prompt and answer, below the slot's 1024.
    let long = "stone ".repeat(200);
    let (status, v) = post(
        &d,
        "/v1/chat/completions",
        &json!({"model": "framed", "messages": [{"role": "user", "content": long}]}),
    );
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("128"),
        "{v}"
    );
}

#[test]
fn serve_refuses_a_card_whose_base_is_not_cached_naming_the_place() {
    let w = world();
    let wrong = "0".repeat(64);
    let stale = card_file(&w.cards, "stale", &wrong, json!({"system": "x"}));
    let port = free_port();
    let out = sovereign()
        .arg("--root")
        .arg(&w.root)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--card")
        .arg(format!("stale={}", stale.display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:", stale.display())) && err.contains(&w.sha),
        "{err}"
    );
    // A bad Card file: every error, with its place.
    let bad = w.cards.join("bad.json");
    std::fs::write(&bad, "{\"base\": {\"model\": \"base\"},\n \"tempo\": 1}").unwrap();
    let out = sovereign()
        .arg("--root")
        .arg(&w.root)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--card")
        .arg(format!("bad={}", bad.display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:2:", bad.display())), "{err}");
    assert!(err.contains("sha256"), "{err}");
}
