//! Carrying out one storage op through the host layer: `zpool`/`zfs` argv, exit statuses
//! checked, stderr in every error.
//!
//! libzetta's zpool engine spawns its own processes (outside the host layer), cannot pass
//! `-O` root properties or `ashift`, and ignores `zpool destroy`'s exit status; so the
//! commands are built here and libzetta renders only the vdev arguments.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::host::{Cmd, CmdOutput, Host};

use super::dialect::Dialect;
use super::diff::{Kind, Op, PropChange};
use super::props::OWNER_PROPERTY;
use super::topology;

/// How long one zfs/zpool command may take.
const TIMEOUT: Duration = Duration::from_secs(300);
/// Attempts at a destroy that fails with "dataset is busy" (zfs-fuse unmounts lazily).
const BUSY_RETRIES: u32 = 10;

/// What one op needs besides itself.
pub struct Exec<'a> {
    /// The side-effect boundary.
    pub host: &'a dyn Host,
    /// The running ZFS (zfs-fuse sets one property per command).
    pub dialect: &'a Dialect,
    /// The ownership marker's value.
    pub owner: &'a str,
    /// The generation this apply records: names the pre-apply snapshot.
    pub generation: u64,
}

/// The pre-apply snapshot's name (after the `@`).
pub fn pre_snapshot_name(generation: u64) -> String {
    format!("sovereign-pre-{generation}")
}

impl Exec<'_> {
    fn run(&self, argv: Vec<String>) -> Result<CmdOutput> {
        let cmd = Cmd::new(argv).timeout(TIMEOUT);
        self.host
            .run(&cmd)
            .with_context(|| format!("cannot run `{}`", cmd.display()))
    }

    fn must(&self, argv: Vec<String>) -> Result<()> {
        let shown = argv.join(" ");
        let out = self.run(argv)?;
        if !out.success() {
            bail!("`{shown}` failed: {}", out.stderr_str().trim());
        }
        Ok(())
    }

    /// Carry out `op`.
    pub fn apply(&self, op: &Op) -> Result<()> {
        match op {
            Op::CreatePool {
                name,
                layout,
                ashift,
                properties,
                filesystem,
                force,
            } => {
                let mut argv = vec!["zpool".to_string(), "create".into()];
                if *force {
                    argv.push("-f".into());
                }
                if let Some(a) = ashift {
                    argv.extend(["-o".into(), format!("ashift={a}")]);
                }
                for (k, v) in properties {
                    argv.extend(["-o".into(), format!("{k}={v}")]);
                }
                for (k, v) in filesystem {
                    argv.extend(["-O".into(), format!("{k}={v}")]);
                }
                argv.extend(["-O".into(), format!("{OWNER_PROPERTY}={}", self.owner)]);
                argv.push(name.clone());
                argv.extend(
                    topology::create_args(layout)
                        .into_iter()
                        .map(|a| a.to_string_lossy().into_owned()),
                );
                self.must(argv)
            }
            Op::CreateDataset { name, properties } => {
                let mut argv = vec!["zfs".to_string(), "create".into()];
                push_props(&mut argv, properties, self.owner);
                argv.push(name.clone());
                self.must(argv)
            }
            Op::CreateZvol {
                name,
                size,
                volblocksize,
                properties,
            } => {
                let mut argv = vec![
                    "zfs".to_string(),
                    "create".into(),
                    "-V".into(),
                    size.to_string(),
                ];
                if let Some(b) = volblocksize {
                    argv.extend(["-b".into(), b.to_string()]);
                }
                push_props(&mut argv, properties, self.owner);
                argv.push(name.clone());
                self.must(argv)
            }
            Op::Update {
                name,
                set,
                pool_set,
                kind,
            } => self.converge(*kind, name, set, pool_set, false),
            Op::Adopt {
                name,
                set,
                pool_set,
                kind,
            } => self.converge(*kind, name, set, pool_set, true),
            Op::Keep { .. } => Ok(()),
            Op::Destroy {
                kind,
                name,
                subtree,
            } => self.destroy(*kind, name, subtree),
        }
    }

    /// Snapshot first, then set what differs (and the marker when adopting).
    fn converge(
        &self,
        kind: Kind,
        name: &str,
        set: &[PropChange],
        pool_set: &[PropChange],
        adopt: bool,
    ) -> Result<()> {
        if !set.is_empty() || adopt {
            self.pre_snapshot(name)?;
        }
        let mut pairs: Vec<String> = set
            .iter()
            .map(|p| format!("{}={}", p.name, p.after))
            .collect();
        if adopt {
            pairs.push(format!("{OWNER_PROPERTY}={}", self.owner));
        }
        if self.dialect.sets_many_at_once() && !pairs.is_empty() {
            let mut argv = vec!["zfs".to_string(), "set".into()];
            argv.extend(pairs);
            argv.push(name.to_string());
            self.must(argv)?;
        } else {
            for pair in pairs {
                self.must(vec!["zfs".into(), "set".into(), pair, name.to_string()])?;
            }
        }
        if kind == Kind::Pool {
            for p in pool_set {
                self.must(vec![
                    "zpool".into(),
                    "set".into(),
                    format!("{}={}", p.name, p.after),
                    name.to_string(),
                ])?;
            }
        }
        Ok(())
    }

    /// `NAME@sovereign-pre-<generation>`; already there (a re-run) is fine.
    fn pre_snapshot(&self, name: &str) -> Result<()> {
        let snap = format!("{name}@{}", pre_snapshot_name(self.generation));
        let out = self.run(vec!["zfs".into(), "snapshot".into(), snap.clone()])?;
        if out.success() || out.stderr_str().contains("already exists") {
            return Ok(());
        }
        bail!(
            "cannot take the pre-apply snapshot {snap}: {}",
            out.stderr_str().trim()
        )
    }

    /// Unmount deepest first, then destroy; zfs-fuse answers "dataset is busy" while a
    /// mount lingers, so a busy destroy is retried a bounded number of times.
    fn destroy(&self, kind: Kind, name: &str, subtree: &[String]) -> Result<()> {
        if kind != Kind::Pool {
            for fs in subtree.iter().filter(|n| !n.contains('@')) {
                // Not mounted, or a volume: nothing to do; a real failure shows in destroy.
                let _unmount_is_best_effort =
                    self.run(vec!["zfs".into(), "unmount".into(), fs.clone()])?;
            }
        }
        let argv: Vec<String> = match kind {
            Kind::Pool => vec!["zpool".into(), "destroy".into(), name.into()],
            _ => vec!["zfs".into(), "destroy".into(), "-r".into(), name.into()],
        };
        let mut last = String::new();
        for attempt in 0..BUSY_RETRIES {
            let out = self.run(argv.clone())?;
            if out.success() {
                return Ok(());
            }
            last = out.stderr_str().trim().to_string();
            if !last.contains("busy") {
                break;
            }
            std::thread::sleep(Duration::from_millis(100 * u64::from(attempt + 1)));
        }
        bail!("`{}` failed: {last}", argv.join(" "))
    }
}

fn push_props(argv: &mut Vec<String>, properties: &BTreeMap<String, String>, owner: &str) {
    for (k, v) in properties {
        argv.extend(["-o".into(), format!("{k}={v}")]);
    }
    argv.extend(["-o".into(), format!("{OWNER_PROPERTY}={owner}")]);
}
