//! Re-verification of the cache: `model verify` finds a flipped byte and quarantines the
//! file, `resolve` refuses what changed, and `model rm` keeps shared blobs.

#![allow(clippy::disallowed_methods)]

mod cache_support;

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use cache_support::{files_in, sha256_hex, tiny_gguf, write};
use sovereign_inference::cache::{
    BlobState, Cache, Check, ModelName, NoProgress, PullRequest, ResolveError, VerifyStatus,
};

fn pull(cache: &Cache, src: &Path, name: &str) -> sovereign_inference::cache::PullOutcome {
    let request = PullRequest {
        source: src.to_str().unwrap().to_owned(),
        sha256: None,
        name: Some(ModelName::parse(name).unwrap()),
    };
    cache.pull(&request, &NoProgress).unwrap()
}

/// Flip one byte of a (read-only) blob in place; optionally put its mtime back, as
/// silent bit rot would.
fn flip_byte(path: &Path, at: u64, keep_mtime: bool) {
    let meta = std::fs::metadata(path).unwrap();
    let mtime = meta.modified().unwrap();
    let mut perms = meta.permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(path, perms).unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at as usize] ^= 0x01;
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&bytes[at as usize..at as usize + 1]).unwrap();
    if keep_mtime {
        f.set_modified(mtime).unwrap();
    }
}

fn sovereign(root: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sovereign"))
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn verify_finds_a_flipped_byte_and_quarantines_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = tiny_gguf();
    let src = write(tmp.path(), "m.gguf", &bytes);
    let root = tmp.path().join("root");
    let cache = Cache::open(&root).unwrap();
    let good = pull(&cache, &src, "good");
    let bad = {
        let mut b = bytes.clone();
        let n = b.len();
        b[n - 1] ^= 0x55; // different tensor data, still a valid file
        let src = write(tmp.path(), "bad.gguf", &b);
        pull(&cache, &src, "bad")
    };
    flip_byte(&bad.path, bad.size - 10, true);

    let out = sovereign(&root, &["model", "verify", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_name = |n: &str| {
        results
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(by_name("good")["status"], "ok");
    let corrupt = by_name("bad");
    assert_eq!(corrupt["status"], "corrupt");
    assert_eq!(corrupt["sha256"], bad.sha256.as_str());
    assert_ne!(corrupt["actual_sha256"], bad.sha256.as_str());
    let moved = Path::new(corrupt["quarantined_to"].as_str().unwrap()).to_owned();
    assert!(moved.starts_with(cache.dir().join("quarantine")));
    assert!(moved.is_file());
    assert!(
        !bad.path.exists(),
        "the corrupt blob is no longer in blobs/"
    );

    // No longer served, and said so.
    match cache.resolve("bad", Check::Quick) {
        Err(ResolveError::Quarantined { path, .. }) => assert_eq!(path, moved),
        other => panic!("expected Quarantined, got {other:?}"),
    }
    assert!(cache.resolve("good", Check::Quick).is_ok());
    let states: Vec<BlobState> = cache.list().unwrap().into_iter().map(|e| e.state).collect();
    assert_eq!(states, [BlobState::Quarantined(moved), BlobState::Present]);

    // A second verify reports it again and still fails; the good one alone passes.
    let again = cache.verify(None, &NoProgress).unwrap();
    assert_eq!(
        again.iter().find(|r| r.name == "bad").unwrap().status,
        VerifyStatus::Quarantined
    );
    let only_good = sovereign(&root, &["model", "verify", "good"]);
    assert_eq!(only_good.status.code(), Some(0));
    assert_eq!(good.sha256, sha256_hex(&bytes));

    // Pulling it again restores it.
    let src = write(tmp.path(), "bad2.gguf", &{
        let mut b = bytes.clone();
        let n = b.len();
        b[n - 1] ^= 0x55;
        b
    });
    pull(&cache, &src, "bad");
    assert!(cache.resolve("bad", Check::Quick).is_ok());
}

#[test]
fn resolve_rehashes_a_blob_whose_time_changed_and_quarantines_it() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(tmp.path()).unwrap();
    let src = write(tmp.path(), "m.gguf", &tiny_gguf());
    let pulled = pull(&cache, &src, "m");
    flip_byte(&pulled.path, pulled.size - 1, false);
    match cache.resolve("m", Check::Quick) {
        Err(ResolveError::Corrupt {
            reason,
            quarantined_to,
            ..
        }) => {
            assert!(
                reason.contains(&format!("expected {}", pulled.sha256)),
                "{reason}"
            );
            assert!(quarantined_to.is_file());
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(!pulled.path.exists());
}

#[test]
fn a_quick_resolve_trusts_an_unchanged_time_and_a_full_one_does_not() {
    // The documented trade-off: bit rot that keeps size and time passes a quick check
    // (its cost is a stat and a header parse) and is found by a full one or `verify`.
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(tmp.path()).unwrap();
    let src = write(tmp.path(), "m.gguf", &tiny_gguf());
    let pulled = pull(&cache, &src, "m");
    flip_byte(&pulled.path, pulled.size - 1, true);
    let quick = cache.resolve("m", Check::Quick).unwrap();
    assert!(!quick.rehashed);
    assert!(matches!(
        cache.resolve("m", Check::Full),
        Err(ResolveError::Corrupt { .. })
    ));
}

#[test]
fn a_blob_of_the_wrong_size_is_never_served() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(tmp.path()).unwrap();
    let src = write(tmp.path(), "m.gguf", &tiny_gguf());
    let pulled = pull(&cache, &src, "m");
    let mut perms = std::fs::metadata(&pulled.path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&pulled.path, perms).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&pulled.path)
        .unwrap();
    f.set_len(pulled.size - 4).unwrap();
    match cache.resolve("m", Check::Quick) {
        Err(ResolveError::Corrupt { reason, .. }) => assert!(reason.contains("bytes"), "{reason}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn rm_keeps_a_blob_another_name_uses_and_refuses_without_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let cache = Cache::open(&root).unwrap();
    let src = write(tmp.path(), "m.gguf", &tiny_gguf());
    let a = pull(&cache, &src, "a");
    pull(&cache, &src, "b");
    assert_eq!(files_in(&cache.dir().join("blobs")).len(), 1);

    let refused = sovereign(&root, &["model", "rm", "a"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--yes"), "{stderr}");
    assert!(a.path.exists());

    let out = sovereign(&root, &["model", "rm", "a", "--yes", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["blob_removed"], false);
    assert!(a.path.exists(), "b still points at the blob");

    let out = sovereign(&root, &["model", "rm", "b", "--yes"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!a.path.exists());
    assert!(files_in(&cache.dir().join("manifests")).is_empty());

    let missing = sovereign(&root, &["model", "rm", "b", "--yes"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no model named"));
}

#[test]
fn resolve_names_what_is_cached_when_a_name_is_unknown() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(tmp.path()).unwrap();
    let src = write(tmp.path(), "m.gguf", &tiny_gguf());
    pull(&cache, &src, "present");
    let err = cache.resolve("absent", Check::Quick).unwrap_err();
    assert!(matches!(err, ResolveError::NotFound { .. }));
    assert!(err.to_string().contains("cached: present"), "{err}");
}
