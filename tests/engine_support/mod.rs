//! Helpers shared by the engine and files integration tests: a temporary root, profiles
//! written to disk, and the real `sovereign` binary run against them.
#![allow(clippy::disallowed_methods, dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary workspace: `profiles/` for profiles and `root/` as `--root`.
pub struct Env {
    /// Removed when the test ends.
    pub dir: tempfile::TempDir,
}

/// What a run of the binary left.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.code,
            Some(0),
            "stderr:\n{}\nstdout:\n{}",
            self.stderr,
            self.stdout
        );
        self
    }
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("root")).unwrap();
        std::fs::create_dir_all(dir.path().join("profiles")).unwrap();
        Env { dir }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A path under the root, as the profile names it.
    pub fn at(&self, logical: &str) -> PathBuf {
        self.root().join(logical.trim_start_matches('/'))
    }

    /// A tiny generated model at `logical` under the root; returns its sha256.
    pub fn tiny_model_at(&self, logical: &str) -> String {
        use sha2::Digest;
        use sovereign_gguf::write::{GgufBuilder, LlamaShape};
        let bytes = GgufBuilder::llama(LlamaShape::tiny()).to_bytes();
        let path = self.at(logical);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        hex::encode(sha2::Sha256::digest(&bytes))
    }

    /// Write a profile file and return its path.
    pub fn profile(&self, name: &str, toml: &str) -> PathBuf {
        let p = self.dir.path().join("profiles").join(name);
        std::fs::write(&p, toml).unwrap();
        p
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sovereign"));
        cmd.arg("--root")
            .arg(self.root())
            .arg("--color")
            .arg("never")
            .args(args)
            .env_remove("SOVEREIGN_TEST_STOP_AFTER_STEP")
            .env_remove("SOVEREIGN_TEST_FAIL_STEP")
            .env_remove("SOVEREIGN_ROOT")
            .stdin(std::process::Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        to_run(self.cmd(args).output().unwrap())
    }

    pub fn plan(&self, profile: &Path) -> Run {
        self.run(&["plan", profile.to_str().unwrap()])
    }

    pub fn apply(&self, profile: &Path) -> Run {
        self.run(&["apply", "--yes", profile.to_str().unwrap()])
    }

    /// Assert that a plan of `profile` has no pending changes (the idempotence check that
    /// follows every apply).
    pub fn assert_no_changes(&self, profile: &Path) {
        let r = self.run(&["plan", "--detailed-exitcode", profile.to_str().unwrap()]);
        assert_eq!(r.code, Some(0), "expected no changes:\n{}", r.stderr);
        assert!(r.stderr.contains("No changes"), "{}", r.stderr);
    }

    pub fn read(&self, logical: &str) -> String {
        std::fs::read_to_string(self.at(logical)).unwrap()
    }

    pub fn generations(&self) -> serde_json::Value {
        let r = self.run(&["generations", "--json"]);
        r.ok();
        serde_json::from_str(&r.stdout).unwrap()
    }
}

pub fn to_run(o: Output) -> Run {
    Run {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// A profile of managed files from `(path, content)` pairs.
pub fn files_profile(files: &[(&str, &str)]) -> String {
    files
        .iter()
        .map(|(p, c)| format!("[files.{p:?}]\ncontent = {c:?}\n"))
        .collect::<Vec<_>>()
        .join("\n")
}
