//! `model pull` into the cache: from a local file and from a local HTTP server, with an
//! interrupted transfer that resumes, a wrong hash refused, a hostile file rejected, and
//! nothing left behind by a refusal.

#![allow(clippy::disallowed_methods)]

mod cache_support;

use cache_support::{Server, files_in, sha256_hex, tiny_gguf, write};
use sovereign_inference::cache::{Cache, Check, ModelName, NoProgress, PullRequest, ResolveError};

fn request(source: &str, sha256: Option<&str>, name: Option<&str>) -> PullRequest {
    PullRequest {
        source: source.to_owned(),
        sha256: sha256.map(str::to_owned),
        name: name.map(|n| ModelName::parse(n).expect("valid test name")),
    }
}

fn assert_nothing_left(cache: &Cache) {
    for sub in ["blobs", "manifests", "partial"] {
        assert_eq!(
            files_in(&cache.dir().join(sub)),
            Vec::<String>::new(),
            "{sub}/ is not empty"
        );
    }
}

#[test]
fn pull_from_a_local_file_stores_a_verified_read_only_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = tiny_gguf();
    let src = write(tmp.path(), "tiny-chat.gguf", &bytes);
    let cache = Cache::open(&tmp.path().join("root")).unwrap();
    assert!(cache.dir().ends_with("var/lib/sovereign/models"));

    let pulled = cache
        .pull(&request(src.to_str().unwrap(), None, None), &NoProgress)
        .unwrap();
    assert_eq!(pulled.name.as_str(), "tiny-chat");
    assert_eq!(pulled.sha256, sha256_hex(&bytes));
    assert_eq!(pulled.size, bytes.len() as u64);
    assert!(!pulled.pinned);
    assert_eq!(std::fs::read(&pulled.path).unwrap(), bytes);
    assert!(
        std::fs::metadata(&pulled.path)
            .unwrap()
            .permissions()
            .readonly()
    );
    assert_eq!(pulled.summary.architecture.as_deref(), Some("llama"));
    assert_eq!(pulled.summary.context_length, Some(2048));
    assert_eq!(pulled.summary.quantization.as_deref(), Some("F16"));
    assert_eq!(files_in(&cache.dir().join("partial")), Vec::<String>::new());

    let model = cache.resolve("tiny-chat", Check::Quick).unwrap();
    assert_eq!(model.path, pulled.path);
    assert!(
        !model.rehashed,
        "an untouched blob is not re-hashed on a quick check"
    );
    assert!(cache.resolve("tiny-chat", Check::Full).unwrap().rehashed);
}

#[test]
fn a_pinned_hash_that_matches_is_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = tiny_gguf();
    let src = write(tmp.path(), "m.gguf", &bytes);
    let cache = Cache::open(tmp.path()).unwrap();
    let pin = format!("sha256:{}", sha256_hex(&bytes).to_uppercase());
    let pulled = cache
        .pull(
            &request(src.to_str().unwrap(), Some(&pin), Some("pinned")),
            &NoProgress,
        )
        .unwrap();
    assert!(pulled.pinned);
    assert_eq!(pulled.name.as_str(), "pinned");
}

#[test]
fn a_wrong_hash_is_refused_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = tiny_gguf();
    let src = write(tmp.path(), "m.gguf", &bytes);
    let cache = Cache::open(tmp.path()).unwrap();
    let wrong = "ab".repeat(32);
    let err = cache
        .pull(
            &request(src.to_str().unwrap(), Some(&wrong), None),
            &NoProgress,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("expected {wrong}")), "{err}");
    assert!(
        err.contains(&format!("got {}", sha256_hex(&bytes))),
        "{err}"
    );
    assert!(err.contains("deleted"), "{err}");
    assert_nothing_left(&cache);

    // Over HTTP as well.
    let server = Server::start();
    let url = server.put("/m.gguf", bytes, "v1");
    let err = cache
        .pull(&request(&url, Some(&wrong), None), &NoProgress)
        .unwrap_err();
    assert!(
        err.to_string().contains(&format!("expected {wrong}")),
        "{err}"
    );
    assert_nothing_left(&cache);
}

#[test]
fn a_hostile_file_is_rejected_before_it_is_registered() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = tiny_gguf();
    // The tensor count, made absurd.
    bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    let src = write(tmp.path(), "evil.gguf", &bytes);
    let cache = Cache::open(tmp.path()).unwrap();
    let err = cache
        .pull(&request(src.to_str().unwrap(), None, None), &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a valid GGUF model"), "{err}");
    assert!(
        err.contains("tensor count is 18446744073709551615"),
        "{err}"
    );
    assert_nothing_left(&cache);
}

#[test]
fn pull_over_http_from_a_local_server() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = tiny_gguf();
    let server = Server::start();
    let url = server.put("/models/coder.gguf?download=1", bytes.clone(), "v1");
    let cache = Cache::open(tmp.path()).unwrap();
    let pulled = cache.pull(&request(&url, None, None), &NoProgress).unwrap();
    assert_eq!(pulled.name.as_str(), "coder");
    assert_eq!(pulled.sha256, sha256_hex(&bytes));
    assert_eq!(pulled.resumed_from, 0);
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].headers.contains_key("range"));
    assert_eq!(files_in(&cache.dir().join("partial")), Vec::<String>::new());
}

#[test]
fn an_interrupted_download_resumes_with_a_range_request() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = tiny_gguf();
    let len = bytes.len() as u64;
    let cut = len / 3;
    let server = Server::start();
    let url = server.put("/big.gguf", bytes.clone(), "etag-1");
    let cache = Cache::open(tmp.path()).unwrap();
    let pin = sha256_hex(&bytes);

    server.cut_next_after(cut);
    let err = cache
        .pull(&request(&url, Some(&pin), None), &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("interrupted after {cut} bytes")),
        "{err}"
    );
    assert!(
        err.contains("run the same command again to resume"),
        "{err}"
    );
    let partial = files_in(&cache.dir().join("partial"));
    assert_eq!(
        partial.len(),
        2,
        "the partial file and its resume record stay: {partial:?}"
    );
    assert!(files_in(&cache.dir().join("blobs")).is_empty());

    let pulled = cache
        .pull(&request(&url, Some(&pin), None), &NoProgress)
        .unwrap();
    assert_eq!(pulled.resumed_from, cut);
    assert_eq!(pulled.sha256, pin);
    assert_eq!(std::fs::read(&pulled.path).unwrap(), bytes);

    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body_sent, cut);
    let second = &seen[1];
    assert_eq!(
        second.headers.get("range").map(String::as_str),
        Some(format!("bytes={cut}-").as_str())
    );
    assert_eq!(
        second.headers.get("if-range").map(String::as_str),
        Some("\"etag-1\"")
    );
    assert_eq!(second.status, 206);
    assert_eq!(second.body_sent, len - cut, "only the rest was sent");
    assert_eq!(files_in(&cache.dir().join("partial")), Vec::<String>::new());
}

#[test]
fn a_file_changed_on_the_server_starts_over_instead_of_splicing() {
    let tmp = tempfile::tempdir().unwrap();
    let old = tiny_gguf();
    let server = Server::start();
    let url = server.put("/m.gguf", old.clone(), "old");
    let cache = Cache::open(tmp.path()).unwrap();
    server.cut_next_after(100);
    assert!(cache.pull(&request(&url, None, None), &NoProgress).is_err());

    // The server now has another file under the same URL (a new ETag).
    let mut new = old.clone();
    let last = new.len() - 1;
    new[last] ^= 0xFF;
    server.put("/m.gguf", new.clone(), "new");
    let pulled = cache.pull(&request(&url, None, None), &NoProgress).unwrap();
    assert_eq!(pulled.resumed_from, 0);
    assert_eq!(pulled.sha256, sha256_hex(&new));
    let seen = server.seen();
    assert_eq!(
        seen[1].headers.get("if-range").map(String::as_str),
        Some("\"old\"")
    );
    assert_eq!(seen[1].status, 200);
}

#[test]
fn a_missing_file_on_the_server_is_an_error_naming_the_status() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start();
    let cache = Cache::open(tmp.path()).unwrap();
    let url = format!("{}/nope.gguf", server.base);
    let err = cache
        .pull(&request(&url, None, None), &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("404"), "{err}");
    assert_nothing_left(&cache);
}

#[test]
fn path_traversal_names_are_rejected() {
    for bad in [
        "../evil",
        "..",
        "a/b",
        "/etc/passwd",
        ".hidden",
        "a\\b",
        "x..y",
    ] {
        let err = ModelName::parse(bad).unwrap_err().to_string();
        assert!(err.contains("invalid model name"), "{bad}: {err}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(tmp.path()).unwrap();
    assert!(matches!(
        cache.resolve("../../../etc/passwd", Check::Quick),
        Err(ResolveError::InvalidName(_))
    ));
    // A source whose file name is not a valid name needs --name.
    let src = write(tmp.path(), "..gguf", &tiny_gguf());
    let err = cache
        .pull(&request(src.to_str().unwrap(), None, None), &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--name"), "{err}");

    // Through the command line.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sovereign"))
        .arg("--root")
        .arg(tmp.path())
        .args([
            "model",
            "pull",
            src.to_str().unwrap(),
            "--name",
            "../../etc/evil",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid model name"), "{stderr}");
    assert!(stderr.contains("path separator"), "{stderr}");
    assert_nothing_left(&cache);
}

#[test]
fn the_command_prints_the_hash_to_pin_and_json() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = tiny_gguf();
    let src = write(tmp.path(), "tiny.gguf", &bytes);
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sovereign"))
            .arg("--root")
            .arg(tmp.path())
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["model", "pull", src.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("sha256 = \"{}\"", sha256_hex(&bytes))),
        "{stderr}"
    );

    let out = run(&[
        "model",
        "pull",
        src.to_str().unwrap(),
        "--name",
        "again",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["name"], "again");
    assert_eq!(json["sha256"], sha256_hex(&bytes));
    assert_eq!(json["summary"]["architecture"], "llama");

    let out = run(&["model", "ls", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["again", "tiny"]);
    assert_eq!(rows[0]["parameter_count"], rows[1]["parameter_count"]);
    assert_eq!(rows[0]["context_length"], 2048);
    assert_eq!(rows[0]["quantization"], "F16");
    assert_eq!(rows[0]["state"], "present");

    let out = run(&["model", "ls"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("tiny") && table.contains("llama"), "{table}");
}

#[test]
fn an_unreachable_https_source_fails_cleanly() {
    // Builds the TLS client (rustls with the ring provider and the system's roots)
    // and fails at the connection, leaving nothing behind.
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(tmp.path()).unwrap();
    let err = cache
        .pull(
            &request("https://127.0.0.1:1/m.gguf", None, None),
            &NoProgress,
        )
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("cannot download https://127.0.0.1:1/m.gguf"),
        "{err:#}"
    );
    assert_nothing_left(&cache);
    let err = cache
        .pull(
            &request("ftp://example.org/m.gguf", None, None),
            &NoProgress,
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("ftp:// scheme is not supported"),
        "{err}"
    );
}

#[test]
fn a_second_pull_of_the_same_source_is_refused_while_one_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let src = write(tmp.path(), "m.gguf", &tiny_gguf());
    let cache = Cache::open(tmp.path()).unwrap();
    // Another pull holds the lock on this source's partial file.
    let key = &sha256_hex(
        std::path::absolute(&src)
            .unwrap()
            .to_str()
            .unwrap()
            .as_bytes(),
    )[..24];
    let part = cache.dir().join("partial").join(format!("{key}.part"));
    let held = std::fs::File::create(&part).unwrap();
    fs4::FileExt::lock(&held).unwrap();
    let err = cache
        .pull(&request(src.to_str().unwrap(), None, None), &NoProgress)
        .unwrap_err();
    assert!(err.to_string().contains("another pull of"), "{err}");
    fs4::FileExt::unlock(&held).unwrap();
    drop(held);
    cache
        .pull(&request(src.to_str().unwrap(), None, None), &NoProgress)
        .unwrap();
}
