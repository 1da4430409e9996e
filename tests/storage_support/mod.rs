//! Shared harness of the storage tests: real zfs-fuse (or OpenZFS) pools on file vdevs
//! under a temporary root, driven through the storage domain as the engine drives it.

#![allow(dead_code)] // each test file uses a different part of the harness
#![allow(clippy::disallowed_methods)] // runs the sovereign binary, as a user would

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use sovereign::domain::{
    AnyDomain, ApplyContext, DiffOptions, DomainPlan, LedgerSink, PlanContext, erase,
};
use sovereign::hardware::Facts;
use sovereign::host::fs::Root;
use sovereign::host::{Cmd, Host, RealHost};
use sovereign::plan::Change;
use sovereign::plan::resolve::Resolved;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A pool name no other test (or test run) uses.
pub fn unique_pool(tag: &str) -> String {
    format!(
        "sovt{}x{}{tag}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Run a command on the real machine and return stdout; panics naming it when it fails.
pub fn sh(argv: &[&str]) -> String {
    let out = RealHost.run(&Cmd::new(argv)).expect("command starts");
    assert!(
        out.success(),
        "`{}` failed: {}",
        argv.join(" "),
        out.stderr_str()
    );
    out.stdout_str()
}

/// A property of a dataset as `zfs get -H -p` reports it.
pub fn zget(dataset: &str, prop: &str) -> String {
    sh(&["zfs", "get", "-H", "-p", "-o", "value", prop, dataset])
        .trim()
        .to_string()
}

/// Whether a dataset or snapshot exists.
pub fn exists(name: &str) -> bool {
    RealHost
        .run(&Cmd::new(["zfs", "get", "-H", "-o", "value", "type", name]))
        .unwrap()
        .success()
}

/// A ledger sink that keeps nothing: the harness reads the ledger back from the plan.
struct NoJournal;

impl LedgerSink for NoJournal {
    fn write(
        &mut self,
        _key: &str,
        _entry: Option<serde_json::Value>,
        _durable: bool,
    ) -> anyhow::Result<()> {
        Ok(())
    }
}

/// One test's world: a temporary root (state, file vdevs, mountpoints) and the pools it
/// made, destroyed on drop even when the test fails.
pub struct World {
    /// The temporary root; `--root` of every plan.
    pub dir: tempfile::TempDir,
    /// Pools to destroy on drop.
    pub pools: Vec<String>,
    /// The storage section of the ledger, carried between applies.
    pub owned: Option<serde_json::Value>,
    /// The generation the next apply records.
    pub generation: u64,
    domain: Box<dyn AnyDomain>,
}

impl World {
    pub fn new() -> World {
        let answer = RealHost
            .run(&Cmd::new(["zpool", "list", "-H"]))
            .expect("zpool runs");
        assert!(
            answer.success(),
            "ZFS does not answer ({}): run `cargo xtask setup`, which starts the zfs-fuse daemon",
            answer.stderr_str().trim()
        );
        World {
            dir: tempfile::tempdir().unwrap(),
            pools: Vec::new(),
            owned: None,
            generation: 1,
            domain: erase(sovereign::domains::storage::Storage),
        }
    }

    pub fn root(&self) -> Root {
        Root::new(self.dir.path()).unwrap()
    }

    /// A path under the root, as a test's profile names it (`/tank.img`).
    pub fn path(&self, logical: &str) -> PathBuf {
        self.root().join(logical)
    }

    /// A sparse file vdev of `mib` MiB at `logical` (relative to the root).
    pub fn file_vdev(&self, logical: &str, mib: u64) -> PathBuf {
        let p = self.path(logical);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(mib << 20).unwrap();
        p
    }

    /// Register a pool for cleanup.
    pub fn pool(&mut self, tag: &str) -> String {
        let name = unique_pool(tag);
        self.pools.push(name.clone());
        name
    }

    /// Write a profile into the world and resolve it.
    pub fn profile(&self, toml_text: &str) -> Resolved {
        let path = self.dir.path().join("profile.toml");
        std::fs::write(&path, toml_text).unwrap();
        let valid = sovereign::profile::load(&path).expect("the test profile loads");
        Resolved::from_valid(&valid).unwrap()
    }

    /// Plan the storage domain.
    pub fn plan(&self, profile: &Resolved, allow_destroy: bool) -> anyhow::Result<DomainPlan> {
        let facts = Facts::default();
        let root = self.root();
        let (requests, planned) = (Default::default(), Default::default());
        let cx = PlanContext {
            profile,
            facts: &facts,
            root: &root,
            host: &RealHost,
            exe: std::path::Path::new("/usr/bin/sovereign"),
            requests: &requests,
            planned: &planned,
        };
        self.domain
            .plan(&cx, self.owned.as_ref(), DiffOptions { allow_destroy })
    }

    fn state_dir(&self) -> PathBuf {
        self.path("/var/lib/sovereign")
    }

    /// Apply every pending change as the engine does: a generation record first, then the
    /// changes in order. Returns the changes applied.
    pub fn apply(
        &mut self,
        profile: &Resolved,
        allow_destroy: bool,
    ) -> anyhow::Result<Vec<Change>> {
        let mut plan = self.plan(profile, allow_destroy)?;
        let domain_dir = self.state_dir().join("domains/storage");
        let root = self.root();
        let notes = sovereign::domain::Notes::default();
        let cx = ApplyContext {
            root: &root,
            host: &RealHost,
            state_dir: &domain_dir,
            generation: self.generation,
            notes: &notes,
        };
        let pending: Vec<Change> = plan
            .changes
            .iter()
            .filter(|c| c.is_pending())
            .cloned()
            .collect();
        for change in &pending {
            self.domain.apply(&cx, &mut plan, change, &mut NoJournal)?;
        }
        self.owned = Some(self.domain.owned_json(&plan)?);
        self.generation += 1;
        Ok(pending)
    }

    /// Health of what `profile` declares.
    pub fn health(&self, profile: &Resolved) -> Vec<sovereign::domain::HealthResult> {
        let plan = self.plan(profile, false).unwrap();
        let domain_dir = self.state_dir().join("domains/storage");
        let root = self.root();
        let notes = sovereign::domain::Notes::default();
        let cx = ApplyContext {
            root: &root,
            host: &RealHost,
            state_dir: &domain_dir,
            generation: self.generation,
            notes: &notes,
        };
        self.domain.health(&cx, &plan)
    }

    /// Plan again and assert nothing is pending (idempotence).
    pub fn assert_converged(&self, profile: &Resolved) {
        let plan = self.plan(profile, false).unwrap();
        let pending: Vec<&Change> = plan.changes.iter().filter(|c| c.is_pending()).collect();
        assert!(
            pending.is_empty(),
            "a plan after apply still has changes: {pending:#?}"
        );
    }

    pub fn root_path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for pool in &self.pools {
            // Destroy whatever the test left, even after a failed assertion; a pool that
            // was never created answers "no such pool", which is fine.
            for _attempt in 0..5 {
                let out = RealHost.run(&Cmd::new(["zpool", "destroy", "-f", pool.as_str()]));
                match out {
                    Ok(o) if o.success() || o.stderr_str().contains("no such pool") => break,
                    _ => std::thread::sleep(std::time::Duration::from_millis(200)),
                }
            }
        }
    }
}

/// What one run of the `sovereign` binary left.
#[derive(Debug)]
pub struct BinRun {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl World {
    /// Run the real binary with `--root` set to this world's root.
    pub fn bin(&self, args: &[&str]) -> BinRun {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sovereign"))
            .arg("--root")
            .arg(self.dir.path())
            .args(["--color", "never"])
            .args(args)
            .env_remove("SOVEREIGN_ROOT")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("the sovereign binary runs");
        BinRun {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Write a profile file for the binary and return its path.
    pub fn profile_file(&self, name: &str, toml_text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, toml_text).unwrap();
        p
    }
}
