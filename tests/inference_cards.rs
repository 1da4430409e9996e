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

/// `sovereign --root ROOT serve --card ...` must refuse to start; its stderr.
fn refused_start(root: &Path, cards: &[(&str, &Path)]) -> String {
    let mut cmd = sovereign();
    cmd.arg("--root")
        .arg(root)
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())]);
    for (name, file) in cards {
        cmd.arg("--card").arg(format!("{name}={}", file.display()));
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "the daemon started");
    String::from_utf8_lossy(&out.stderr).to_string()
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
    let err = refused_start(&w.root, &[("stale", &stale)]);
    assert!(
        err.contains(&format!("{}:", stale.display())) && err.contains(&w.sha),
        "{err}"
    );
    // A bad Card file: every error, with its place.
    let bad = w.cards.join("bad.json");
    std::fs::write(&bad, "{\"base\": {\"model\": \"base\"},\n \"tempo\": 1}").unwrap();
    let err = refused_start(&w.root, &[("bad", &bad)]);
    assert!(err.contains(&format!("{}:2:", bad.display())), "{err}");
    assert!(err.contains("sha256"), "{err}");
    // A Card may not hide a cached model of the same name.
    let hiding = card_file(&w.cards, "base", &w.sha, json!({"system": "x"}));
    let err = refused_start(&w.root, &[("base", &hiding)]);
    assert!(
        err.contains("--card base: the model cache has a model of that name"),
        "{err}"
    );
}

/// A generated adapter for the tiny shape (`seed` varies its values), pulled into the cache
/// under `root` as `name`; its sha256.
fn cached_adapter(root: &Path, name: &str, seed: u64) -> String {
    let spec = inference_support::gguf::ModelSpec::tiny(7);
    cached_adapter_for(
        root,
        name,
        &spec,
        &sovereign_gguf::lora::LoraSpec::tiny(seed),
    )
}

/// An adapter `lora` for models shaped as `model`, pulled into the cache as `name`.
fn cached_adapter_for(
    root: &Path,
    name: &str,
    model: &inference_support::gguf::ModelSpec,
    lora: &sovereign_gguf::lora::LoraSpec,
) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{name}.gguf"));
    sovereign_gguf::lora::write_adapter(model, lora, std::fs::File::create(&file).unwrap())
        .unwrap();
    Cache::open(root)
        .unwrap()
        .pull(
            &PullRequest {
                source: file.to_str().unwrap().to_string(),
                sha256: None,
                name: Some(ModelName::parse(name).unwrap()),
            },
            &NoProgress,
        )
        .unwrap()
        .sha256
}

fn greedy(model: &str, content: &str) -> Value {
    json!({"model": model, "temperature": 0, "max_tokens": 12,
           "messages": [{"role": "user", "content": content}]})
}

#[test]
fn an_adapter_changes_the_answer_at_scale_1_and_not_at_scale_0() {
    let w = world();
    cached_adapter(&w.root, "lora-a", 1);
    let on = card_file(
        &w.cards,
        "on",
        &w.sha,
        json!({"adapters": [{"model": "lora-a", "scale": 1.0}]}),
    );
    let off = card_file(
        &w.cards,
        "off",
        &w.sha,
        json!({"adapters": [{"model": "lora-a", "scale": 0.0}]}),
    );
    let d = serve(
        &w.root,
        &[("on", &on), ("off", &off)],
        tempfile::tempdir().unwrap(),
    );
    let base = chat(&d, greedy("base", "green stone"));
    assert_ne!(chat(&d, greedy("on", "green stone")), base);
    assert_eq!(chat(&d, greedy("off", "green stone")), base);
}

#[test]
fn cards_with_different_adapters_stream_together_with_a_plain_request_as_each_alone() {
    let w = world();
    cached_adapter(&w.root, "lora-a", 1);
    cached_adapter(&w.root, "lora-b", 2);
    let a = card_file(
        &w.cards,
        "a",
        &w.sha,
        json!({"adapters": [{"model": "lora-a"}]}),
    );
    // Two adapters at once: served merged into one.
    let ab = card_file(
        &w.cards,
        "ab",
        &w.sha,
        json!({"adapters": [{"model": "lora-a", "scale": 0.5}, {"model": "lora-b", "scale": 0.7}]}),
    );
    let d = serve(
        &w.root,
        &[("a", &a), ("ab", &ab)],
        tempfile::tempdir().unwrap(),
    );
    let asks = [
        ("a", "the river"),
        ("ab", "the river"),
        ("base", "the river"),
    ];
    let alone: Vec<String> = asks.iter().map(|(m, q)| chat(&d, greedy(m, q))).collect();
    assert_ne!(alone[0], alone[2]);
    assert_ne!(alone[1], alone[0]);
    for _ in 0..2 {
        let together: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = asks
                .iter()
                .map(|(m, q)| {
                    let d = &d;
                    s.spawn(move || chat(d, greedy(m, q)))
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(together, alone);
    }
    // The sets took turns between decode steps, and each Card's requests are counted.
    let (_, metrics) = call(d.port, "GET", "/metrics", None, None);
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(
        value("sovereign_adapter_switches_total") >= 2.0,
        "{metrics}"
    );
    assert_eq!(value("sovereign_card_requests_total{card=\"ab\"}"), 3.0);
    // model ps shows the Cards and the adapter sets of the base.
    let (_, ps) = call(d.port, "GET", "/v1/sovereign/models", None, None);
    let ps: Value = serde_json::from_str(&ps).unwrap();
    let base = ps["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "base")
        .expect("the base in model ps");
    assert_eq!(base["cards"], json!(["a", "ab"]));
    assert_eq!(base["adapter_sets"], json!(["a", "ab"]));
}

#[test]
fn serve_refuses_an_adapter_of_another_shape_or_digest_with_the_reason() {
    let w = world();
    // An adapter shaped for the bench model does not fit the tiny base.
    cached_adapter_for(
        &w.root,
        "big",
        &inference_support::gguf::ModelSpec::bench(1),
        &sovereign_gguf::lora::LoraSpec {
            rank: 2,
            ..sovereign_gguf::lora::LoraSpec::tiny(1)
        },
    );
    cached_adapter(&w.root, "lora-a", 1);
    let big = card_file(
        &w.cards,
        "bigcard",
        &w.sha,
        json!({"adapters": [{"model": "big"}]}),
    );
    let pinned = card_file(
        &w.cards,
        "pinned",
        &w.sha,
        json!({"adapters": [{"model": "lora-a", "sha256": "1".repeat(64)}]}),
    );
    let err = refused_start(&w.root, &[("bigcard", &big), ("pinned", &pinned)]);
    assert!(
        err.contains(&format!("{}:", big.display())) && err.contains("does not fit the base"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{}:", pinned.display())) && err.contains(&"1".repeat(64)),
        "{err}"
    );
}

#[test]
fn card_ls_show_and_test_talk_to_the_daemon() {
    let w = world();
    let schema = json!({"type": "object", "properties": {"ok": {"type": "boolean"}},
                        "required": ["ok"], "additionalProperties": false});
    let yes = card_file(
        &w.cards,
        "yes",
        &w.sha,
        json!({"description": "answers ok", "sampling": {"temperature": 0, "max_tokens": 40},
               "response": {"json_schema": schema}}),
    );
    let plain = card_file(&w.cards, "plain", &w.sha, json!({"system": "hello"}));
    let d = serve(
        &w.root,
        &[("yes", &yes), ("plain", &plain)],
        tempfile::tempdir().unwrap(),
    );
    let server = format!("http://127.0.0.1:{}", d.port);
    let run = |args: &[&str]| {
        let out = sovereign()
            .arg("--root")
            .arg(&w.root)
            .args(args)
            .args(["--server", &server])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, stdout, stderr) = run(&["card", "ls"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("yes") && stdout.contains("json_schema") && stdout.contains("answers ok"),
        "{stdout}"
    );
    assert!(stdout.contains("plain"), "{stdout}");
    let (code, stdout, stderr) = run(&["card", "test", "yes", "--prompt", "is it on?", "--json"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["check"]["ok"], true, "{v}");
    assert!(v["answer"].as_str().unwrap().starts_with('{'), "{v}");
    // By name: the file the daemon read, shown as `card show FILE` shows it.
    let (code, stdout, stderr) = run(&["card", "show", "yes"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("answers ok") || stdout.contains("base"),
        "{stdout}"
    );
    let (code, _, stderr) = run(&["card", "test", "nope", "--prompt", "x"]);
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("nope") && stderr.contains("yes"),
        "{stderr}"
    );
}
