//! sovereign's own state under `<root>/var/lib/sovereign/`: the ledger of what it owns,
//! the journals, the generations, the lock and each domain's folder (backups).
//!
//! Layout (version [`LEDGER_VERSION`]):
//!
//! ```text
//! var/lib/sovereign/
//!   state.json            the ledger: { "version": 1, "domains": { "files": { key: entry } } }
//!   lock                  flock'ed by a running apply; holds its pid and start time
//!   journal/<N>.jsonl     append-only journal of generation N's apply (fsynced per record)
//!   generations/<N>.json  generation N: resolved profile, plan, outcome, timestamps
//!   domains/<name>/       a domain's own storage (files: backups/)
//! ```

// sovereign's own folder: the ledger, journals, generations and the lock are written
// here directly (durably, see `write_atomic`), the one place besides the host layer.
#![allow(clippy::disallowed_methods)]

pub mod confirm;
pub mod generations;
pub mod journal;
pub mod lock;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::host::fs::{Root, write_atomic};

/// The ledger format this build writes and reads.
pub const LEDGER_VERSION: u32 = 1;

/// Where sovereign keeps its state, relative to the root.
pub const STATE_DIR: &str = "/var/lib/sovereign";

/// The paths of the state folder.
#[derive(Debug, Clone)]
pub struct StateDir {
    /// `<root>/var/lib/sovereign`.
    pub path: PathBuf,
}

/// What sovereign owns, per domain: ledger key -> entry (each domain's own JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    /// [`LEDGER_VERSION`] of this file.
    pub version: u32,
    /// Domain name -> its entries.
    pub domains: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
}

impl Ledger {
    /// Apply one ledger record from a journal.
    pub fn apply_record(&mut self, domain: &str, key: &str, entry: Option<serde_json::Value>) {
        let section = self.domains.entry(domain.to_string()).or_default();
        match entry {
            Some(v) => {
                section.insert(key.to_string(), v);
            }
            None => {
                section.remove(key);
            }
        }
        if section.is_empty() {
            self.domains.remove(domain);
        }
    }
}

impl StateDir {
    pub fn new(root: &Root) -> StateDir {
        StateDir {
            path: root.join(STATE_DIR),
        }
    }

    pub fn ledger_path(&self) -> PathBuf {
        self.path.join("state.json")
    }
    pub fn lock_path(&self) -> PathBuf {
        self.path.join("lock")
    }
    pub fn journal_dir(&self) -> PathBuf {
        self.path.join("journal")
    }
    pub fn generations_dir(&self) -> PathBuf {
        self.path.join("generations")
    }
    pub fn domain_dir(&self, name: &str) -> PathBuf {
        self.path.join("domains").join(name)
    }

    /// Create the state folders (apply only; plan never writes).
    pub fn create(&self) -> anyhow::Result<()> {
        for dir in [
            self.path.clone(),
            self.journal_dir(),
            self.generations_dir(),
            self.path.join("domains"),
        ] {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create the state folder {}", dir.display()))?;
        }
        Ok(())
    }

    /// The ledger snapshot; empty when sovereign never applied under this root.
    pub fn load_ledger(&self) -> anyhow::Result<Ledger> {
        let path = self.ledger_path();
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Ledger {
                    version: LEDGER_VERSION,
                    domains: BTreeMap::new(),
                });
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let ledger: Ledger = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a sovereign ledger", path.display()))?;
        if ledger.version != LEDGER_VERSION {
            bail!(
                "{} has ledger version {}, this sovereign reads version {LEDGER_VERSION}; use the sovereign that wrote it",
                path.display(),
                ledger.version
            );
        }
        Ok(ledger)
    }

    /// Write the ledger atomically (temporary file, fsync, rename, fsync folder).
    pub fn save_ledger(&self, ledger: &Ledger) -> anyhow::Result<()> {
        write_json(&self.ledger_path(), ledger)
    }
}

/// Write `value` as pretty JSON, atomically and durably, readable by the owner only.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_vec_pretty(value)?;
    write_atomic(path, &text, 0o600, None)?;
    Ok(())
}
