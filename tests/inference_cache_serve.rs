//! `sovereign serve` with no `--model` serves the model cache under `--root`: a cached model
//! answers by name once loaded on its first request, an unknown name is 404, and a blob
//! corrupted after caching is refused with 503 without reaching llama.cpp.
#![allow(clippy::disallowed_methods)]
// Needs llama.cpp: built only with the `engine` feature (the default).
#![cfg(feature = "engine")]

mod inference_support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use inference_support::{call, free_port, gguf, model_file, tiny};
use serde_json::{Value, json};
use sovereign_inference::cache::{Cache, ModelName, NoProgress, PullRequest};

/// One request without a key; returns (status, body).
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    call(port, method, path, None, body)
}

/// Kills the server when the test ends, passed or not.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sovereign --root ROOT serve` on `port`, one slot, serving the cache under the root.
fn serve_cmd(root: &std::path::Path, port: u16) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sovereign"));
    c.env_remove("SOVEREIGN_API_KEY")
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "sovereign=info")
        .arg("--root")
        .arg(root)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--slots", "1", "--context", "1024", "--threads", "2"]);
    c
}

/// Start `cmd` with its stderr in `log` and wait until `/health` on `port` answers.
fn spawn_healthy(mut cmd: Command, port: u16, log: &std::path::Path) -> Server {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while http(port, "GET", "/health", None).0 != 200 {
        assert!(Instant::now() < deadline, "the daemon never became healthy");
        assert!(
            server.0.try_wait().unwrap().is_none(),
            "the daemon exited early: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

fn pull(cache: &Cache, source: &std::path::Path, name: &str) -> String {
    cache
        .pull(
            &PullRequest {
                source: source.to_str().unwrap().to_string(),
                sha256: None,
                name: Some(ModelName::parse(name).unwrap()),
            },
            &NoProgress,
        )
        .unwrap()
        .sha256
}

#[test]
fn serve_without_model_answers_for_cached_models_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let cache = Cache::open(&root).unwrap();
    pull(&cache, &tiny(), "tiny");
    // A different model (another seed), so its blob is its own.
    let other = model_file("tiny-43.gguf", gguf::ModelSpec::tiny(43));
    let broken_sha = pull(&cache, &other, "broken");
    // Corrupt it after caching: one byte flipped and one appended.
    let blob = cache.blob_path(&broken_sha);
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    bytes.push(0);
    std::fs::write(&blob, &bytes).unwrap();

    let port = free_port();
    let log = tmp.path().join("serve.log");
    let server = spawn_healthy(serve_cmd(&root, port), port, &log);

    let (status, body) = http(port, "GET", "/v1/models", None);
    assert_eq!(status, 200, "{body}");
    let ids: Vec<String> = serde_json::from_str::<Value>(&body).unwrap()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["broken", "tiny"]);

    let chat = |model: &str| {
        http(
            port,
            "POST",
            "/v1/chat/completions",
            Some(
                &json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 200, "temperature": 0}),
            ),
        )
    };
    let (status, body) = chat("tiny");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["model"], "tiny");
    assert_eq!(v["choices"][0]["message"]["content"], gguf::PATH_TEXT);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(http(port, "GET", "/health", None).0, 200);

    let (status, body) = chat("nope");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("nope"), "{body}");
    let (status, body) = chat("../etc");
    assert_eq!(status, 400, "{body}");

    let (status, body) = chat("broken");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("broken"), "{body}");
    // Asked again: still refused (now as quarantined), and the good model still answers.
    let (status, body) = chat("broken");
    assert_eq!(status, 503, "{body}");
    assert_eq!(chat("tiny").0, 200);

    drop(server);
    let log = std::fs::read_to_string(&log).unwrap();
    let starts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("starting the engine"))
        .collect();
    // The good model's engine started once; the corrupt one's never did.
    assert_eq!(starts.len(), 1, "{log}");
    assert!(starts[0].contains("tiny"), "{log}");
}

#[test]
fn preload_loads_at_start_and_refuses_a_model_not_in_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let cache = Cache::open(&root).unwrap();
    pull(&cache, &tiny(), "tiny");
    let serve = |preload: &str, port: u16| {
        let mut c = serve_cmd(&root, port);
        c.args(["--preload", preload]);
        c
    };
    // A name that is not cached stops the daemon before it listens.
    let out = serve("absent", free_port()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--preload absent"), "{err}");

    let port = free_port();
    let log = tmp.path().join("serve.log");
    let _server = spawn_healthy(serve("tiny", port), port, &log);
    // Loaded before any request asked for it.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains("starting the engine") && l.contains("tiny")),
        "{text}"
    );
    let (status, body) = http(
        port,
        "POST",
        "/v1/completions",
        Some(&json!({"model": "tiny", "prompt": "hello", "max_tokens": 4, "temperature": 0})),
    );
    assert_eq!(status, 200, "{body}");
}

/// Undoes a read-only bind mount when the test ends, passed or not.
struct ReadOnlyMount(std::path::PathBuf);

impl ReadOnlyMount {
    fn new(dir: &std::path::Path) -> ReadOnlyMount {
        let run = |args: &[&str]| {
            let status = Command::new("mount")
                .args(args)
                .arg(dir)
                .arg(dir)
                .status()
                .unwrap();
            assert!(status.success(), "mount {args:?} failed (needs root)");
        };
        run(&["--bind"]);
        let guard = ReadOnlyMount(dir.to_path_buf());
        run(&["-o", "remount,ro,bind"]);
        guard
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The systemd unit makes the model store read-only for the daemon: a model whose blob must
/// be hashed again (its mtime moved) still loads, its record simply stays as it was.
#[test]
fn serve_answers_from_a_read_only_store() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let cache = Cache::open(&root).unwrap();
    let sha = pull(&cache, &tiny(), "tiny");
    let blob = cache.blob_path(&sha);
    let file = std::fs::File::options().write(true).open(&blob).unwrap();
    file.set_modified(std::time::SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
    drop(file);
    let _ro = ReadOnlyMount::new(cache.dir());
    assert!(
        std::fs::write(cache.dir().join("probe"), b"x").is_err(),
        "the store should be read-only now"
    );

    let port = free_port();
    let log = tmp.path().join("serve.log");
    let server = spawn_healthy(serve_cmd(&root, port), port, &log);
    let (status, body) = http(
        port,
        "POST",
        "/v1/chat/completions",
        Some(
            &json!({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 200, "temperature": 0}),
        ),
    );
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], gguf::PATH_TEXT);
    drop(server);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("cannot record it"), "{log}");
}
