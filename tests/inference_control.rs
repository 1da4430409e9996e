//! The control CLI against a real `sovereign serve` on the model cache: load, ps, unload,
//! idempotent load, TTL expiry, LRU eviction with `--max-loaded 1`, the memory guard's
//! refusal under a small budget, the API key from a file or systemd's credential folder,
//! and per-model defaults from `--models FILE`.
#![allow(clippy::disallowed_methods)]
// Needs llama.cpp: built only with the `engine` feature (the default).
#![cfg(feature = "engine")]

mod inference_support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use inference_support::{Served, call, free_port, sovereign, tiny};
use serde_json::{Value, json};
use sovereign_inference::cache::{Cache, ModelName, NoProgress, PullRequest};

/// A model cache holding the tiny model under each name.
fn cache_with(root: &Path, names: &[&str]) {
    let cache = Cache::open(root).unwrap();
    for name in names {
        cache
            .pull(
                &PullRequest {
                    source: tiny().to_str().unwrap().to_string(),
                    sha256: None,
                    name: Some(ModelName::parse(name).unwrap()),
                },
                &NoProgress,
            )
            .unwrap();
    }
}

/// A daemon serving a cache; killed when the test ends, passed or not.
struct Daemon {
    served: Served,
    port: u16,
    /// The key the CLI sends (through SOVEREIGN_API_KEY).
    key: Option<String>,
}

impl Daemon {
    /// Start `serve` on a fresh cache holding `names`, with `args`; `env` for the daemon.
    fn start(names: &[&str], args: &[&str], env: &[(&str, &Path)]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        cache_with(&root, names);
        let port = free_port();
        let mut cmd = sovereign();
        cmd.env("RUST_LOG", "sovereign=info")
            .arg("--root")
            .arg(&root)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--slots", "1", "--context", "256", "--threads", "2"])
            .args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Daemon {
            served: Served::start(cmd, port, dir, None),
            port,
            key: None,
        }
    }

    fn with_key(mut self, key: &str) -> Self {
        self.key = Some(key.to_string());
        self
    }

    fn log_text(&self) -> String {
        self.served.log_text()
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Run the CLI against this daemon (found through SOVEREIGN_SERVER).
    fn cli(&self, args: &[&str]) -> Output {
        let mut c = sovereign();
        c.env("SOVEREIGN_SERVER", self.url()).args(args);
        if let Some(k) = &self.key {
            c.env("SOVEREIGN_API_KEY", k);
        }
        c.output().unwrap()
    }

    /// The CLI's JSON answer; the command must succeed.
    fn cli_json(&self, args: &[&str]) -> Value {
        let out = self.cli(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// The loaded models' names, from `model ps --json`.
    fn loaded(&self) -> Vec<String> {
        self.cli_json(&["model", "ps", "--json"])["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// One request with the daemon's key; returns (status, body).
    fn http(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
        call(self.port, method, path, self.key.as_deref(), body)
    }

    fn complete(&self, model: &str) -> (u16, String) {
        let body = json!({"model": model, "prompt": "hello", "max_tokens": 4, "temperature": 0});
        self.http("POST", "/v1/completions", Some(&body))
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn load_ps_unload_and_idempotent_load() {
    let d = Daemon::start(&["tiny"], &[], &[]);
    assert!(d.loaded().is_empty());

    let out = d.cli(&["model", "load", "tiny", "--context", "512", "--ttl", "1h"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("tiny loaded"), "{}", stderr(&out));
    let ps = d.cli_json(&["model", "ps", "--json"]);
    let m = &ps["models"][0];
    assert_eq!(m["name"], "tiny");
    assert_eq!(m["state"], "ready");
    assert_eq!(m["context"], 512);
    assert_eq!(m["busy_slots"], 0);
    assert!(
        m["memory"]["total_bytes"].as_u64().unwrap()
            > m["memory"]["weights_bytes"].as_u64().unwrap()
    );
    let left = m["ttl_left_seconds"].as_f64().unwrap();
    assert!(left > 0.0 && left <= 3600.0, "{m}");
    assert!(m["idle_seconds"].as_f64().unwrap() >= 0.0);
    // The loaded model answers.
    let (status, body) = d.complete("tiny");
    assert_eq!(status, 200, "{body}");

    // Loading again with the same options is success and keeps the engine and its TTL.
    let again = d.cli_json(&["model", "load", "tiny", "--context", "512", "--json"]);
    assert_eq!(again["already_loaded"], true, "{again}");
    let ps = d.cli_json(&["model", "ps", "--json"]);
    assert_eq!(ps["models"][0]["loaded_at"], m["loaded_at"]);
    assert_eq!(ps["models"][0]["ttl_seconds"], 3600.0);
    // Other options for a loaded model: refused, naming both, nothing changed (`--ctx`,
    // the old spelling of `--context`, still works).
    let out = d.cli(&["model", "load", "tiny", "--ctx", "1024"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("512") && err.contains("1024") && err.contains("unload"),
        "{err}"
    );
    assert_eq!(d.loaded(), ["tiny"]);

    let human = d.cli(&["model", "ps"]);
    let table = String::from_utf8_lossy(&human.stdout);
    assert!(
        table.starts_with("NAME") && table.contains("tiny"),
        "{table}"
    );

    let out = d.cli(&["model", "unload", "tiny"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(d.loaded().is_empty());
    let out = d.cli(&["model", "unload", "tiny"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not loaded"), "{}", stderr(&out));
    // An unloaded model loads again on its next request.
    assert_eq!(d.complete("tiny").0, 200);
    assert_eq!(d.loaded(), ["tiny"]);
    let all = d.cli_json(&["model", "unload", "--all", "--json"]);
    assert_eq!(all["unloaded"], json!(["tiny"]));
    // Unknown names are the daemon's to resolve.
    let out = d.cli(&["model", "load", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nosuch"), "{}", stderr(&out));

    let status = d.cli_json(&["server", "status", "--json"]);
    assert_eq!(status["models"]["loaded"], 0);
    assert_eq!(status["models"]["cached"], 1);
    assert_eq!(status["defaults"]["context"], 256);
}

#[test]
fn a_model_idle_past_its_ttl_is_unloaded() {
    let d = Daemon::start(&["tiny"], &[], &[]);
    let out = d.cli(&["model", "load", "tiny", "--ttl", "1s"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !d.loaded().is_empty() {
        assert!(Instant::now() < deadline, "still loaded: {}", d.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        d.log_text().contains("idle past its TTL"),
        "{}",
        d.log_text()
    );
    // It comes back on demand, with the daemon's default (no TTL).
    assert_eq!(d.complete("tiny").0, 200);
    let ps = d.cli_json(&["model", "ps", "--json"]);
    assert_eq!(ps["models"][0]["ttl_seconds"], Value::Null);
}

#[test]
fn max_loaded_one_unloads_the_least_recently_used() {
    let d = Daemon::start(&["tiny", "other"], &["--max-loaded", "1"], &[]);
    let out = d.cli(&["model", "load", "tiny"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let loaded = d.cli_json(&["model", "load", "other", "--json"]);
    assert_eq!(loaded["evicted"], json!(["tiny"]), "{loaded}");
    assert_eq!(d.loaded(), ["other"]);
    // A request for the unloaded one loads it, and the other goes.
    assert_eq!(d.complete("tiny").0, 200);
    assert_eq!(d.loaded(), ["tiny"]);
    let status = d.cli_json(&["server", "status", "--json"]);
    assert_eq!(status["models"]["max_loaded"], 1);
}

#[test]
fn the_memory_guard_refuses_a_model_bigger_than_the_budget() {
    let d = Daemon::start(&["tiny"], &["--memory-limit", "1M"], &[]);
    let estimate = d.cli_json(&["model", "load", "tiny", "--estimate-only", "--json"]);
    assert_eq!(estimate["fits"], false, "{estimate}");
    let needed = &estimate["needed"];
    let parts = ["weights_bytes", "kv_cache_bytes", "compute_bytes"]
        .iter()
        .map(|k| needed[k].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(needed["total_bytes"].as_u64().unwrap(), parts);
    assert!(parts > 1 << 20);
    assert_eq!(estimate["available"]["devices"][0]["bytes"], 1 << 20);
    assert!(d.loaded().is_empty(), "an estimate loads nothing");

    let out = d.cli(&["model", "load", "tiny"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for part in [
        "does not fit",
        "weights",
        "KV cache",
        "compute buffers",
        "1.0 MiB",
    ] {
        assert!(err.contains(part), "{part} missing: {err}");
    }
    let refused = d.cli(&["model", "load", "tiny", "--json"]);
    let body: Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert_eq!(body["error"]["code"], "insufficient_memory", "{body}");
    assert_eq!(body["error"]["details"]["needed"], *needed);
    // A request for it is refused the same way rather than loading it.
    let (status, body) = d.complete("tiny");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("does not fit"), "{body}");
    assert!(d.loaded().is_empty());

    let out = d.cli(&["model", "load", "tiny", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(d.loaded(), ["tiny"]);
}

#[test]
fn without_a_daemon_the_cli_says_how_to_start_one() {
    let out = sovereign()
        .args([
            "model",
            "ps",
            "--server",
            &format!("http://127.0.0.1:{}", free_port()),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("no daemon answers at") && err.contains("sovereign serve"),
        "{err}"
    );
    let out = sovereign()
        .args(["server", "status", "--server", "ftp://x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--server"), "{}", stderr(&out));
}

#[test]
fn the_key_comes_from_a_file_or_systemds_credential_folder() {
    use std::os::unix::fs::PermissionsExt;
    let creds = tempfile::tempdir().unwrap();
    let key_file = creds.path().join("api-key");
    std::fs::write(&key_file, "cred-key\n").unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let d = Daemon::start(&["tiny"], &[], &[("CREDENTIALS_DIRECTORY", creds.path())]);
    // No key: refused, and told how to give one.
    let out = d.cli(&["model", "ps"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--api-key-file"), "{}", stderr(&out));
    // The key from a file.
    let out = sovereign()
        .env("SOVEREIGN_SERVER", d.url())
        .args(["model", "ps", "--json", "--api-key-file"])
        .arg(&key_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The key from the environment; a wrong one is refused without being shown.
    let d = d.with_key("cred-key");
    assert_eq!(d.cli(&["server", "status"]).status.code(), Some(0));
    let d = d.with_key("wrong-key");
    let out = d.cli(&["server", "status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("refused the API key"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("wrong-key"));
    assert!(!d.log_text().contains("cred-key"));
}

#[test]
fn models_file_sets_per_model_defaults_and_preloads() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("models.toml");
    std::fs::write(
        &file,
        "[models.tiny]\nctx = 512\ngpu_layers = 0\nttl = \"1h\"\npreload = true\n",
    )
    .unwrap();
    let d = Daemon::start(&["tiny"], &["--models", file.to_str().unwrap()], &[]);
    let ps = d.cli_json(&["model", "ps", "--json"]);
    let m = &ps["models"][0];
    assert_eq!(m["name"], "tiny", "{ps}");
    assert_eq!(m["context"], 512, "the old spelling `ctx` is read");
    assert_eq!(m["gpu_layers"], 0);
    assert_eq!(m["ttl_seconds"], 3600.0);

    std::fs::write(&file, "[models.tiny]\ncontext = 512\nctxt = 1\n").unwrap();
    let out = sovereign()
        .args(["serve", "--listen", "127.0.0.1:0", "--models"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}:3", file.display())) && err.contains("ctxt"),
        "{err}"
    );
}

#[test]
fn ps_shows_busy_slots_and_unload_lets_the_request_in_flight_finish() {
    let d = Daemon::start(&["tiny"], &[], &[]);
    let out = d.cli(&["model", "load", "tiny", "--context", "1024"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let body = inference_support::endless_completion(json!({"max_tokens": 600, "stream": true}))
        .to_string();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut first = [0u8; 64];
    let n = s.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    let ps = d.cli_json(&["model", "ps", "--json"]);
    assert_eq!(ps["models"][0]["busy_slots"], 1, "{ps}");
    assert_eq!(ps["models"][0]["idle_seconds"], 0.0, "{ps}");

    assert_eq!(d.cli(&["model", "unload", "tiny"]).status.code(), Some(0));
    assert!(d.loaded().is_empty());
    let mut rest = String::new();
    let _ = s.read_to_string(&mut rest);
    assert!(rest.contains("\"finish_reason\":\"length\""), "{rest}");
    assert!(rest.contains("[DONE]"), "{rest}");
}

#[test]
fn model_ls_shows_the_estimate_at_a_context() {
    let dir = tempfile::tempdir().unwrap();
    cache_with(dir.path(), &["tiny"]);
    let ls = |extra: &[&str]| -> Value {
        let out = sovereign()
            .arg("--root")
            .arg(dir.path())
            .args(["model", "ls", "--json"])
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let own = ls(&[]);
    let row = &own[0];
    // Without --context: the context the model was trained for, one slot.
    assert_eq!(row["estimate"]["context"], row["context_length"], "{row}");
    assert_eq!(row["estimate"]["slots"], 1);
    assert_eq!(row["fits"], true);
    let small = ls(&["--context", "512", "--slots", "2"]);
    let e = &small[0]["estimate"];
    assert_eq!(
        (e["context"].as_u64(), e["slots"].as_u64()),
        (Some(512), Some(2))
    );
    assert_eq!(e["weights_bytes"], row["estimate"]["weights_bytes"]);
    assert!(e["kv_cache_bytes"].as_u64() < row["estimate"]["kv_cache_bytes"].as_u64());
    let out = sovereign()
        .arg("--root")
        .arg(dir.path())
        .args(["model", "ls"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    let head: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(head[head.len() - 2..], ["MEMORY", "FITS"], "{table}");
}

#[test]
fn a_daemon_with_fixed_models_lists_them_and_keeps_them() {
    let port = free_port();
    let mut cmd = sovereign();
    cmd.args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--slots",
        "1",
    ])
    .args(["--context", "256", "--threads", "2", "--model"])
    .arg(format!("tiny={}", tiny().display()));
    let d = Daemon {
        served: Served::start(cmd, port, tempfile::tempdir().unwrap(), None),
        port,
        key: None,
    };
    let status = d.cli_json(&["server", "status", "--json"]);
    assert_eq!(status["fixed_models"], json!(["tiny"]), "{status}");
    let ps = d.cli_json(&["model", "ps", "--json"]);
    assert_eq!(ps["models"][0]["fixed"], true, "{ps}");
    assert_eq!(d.cli(&["model", "load", "tiny"]).status.code(), Some(0));
    let out = d.cli(&["model", "unload", "tiny"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("model cache"), "{}", stderr(&out));
    assert_eq!(d.complete("tiny").0, 200);
}
