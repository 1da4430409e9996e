//! The files domain: `[files."/abs/path"]` entries, and the files other domains request
//! (unit files, the daemon's options file), become managed files under the root: one
//! lifecycle for every file sovereign writes.
//!
//! Ownership rules, kept in the ledger (`file:<path>` and `dir:<path>` entries):
//! - a file that existed before sovereign managed it is adopted: backed up into the state
//!   first, put back when the profile drops it;
//! - a file sovereign created is removed when the profile drops it; folders it created are
//!   recorded and removed once empty;
//! - a managed file whose content was edited by hand since the last apply is listed as
//!   kept (neither overwritten nor removed) unless `--allow-destroy`.

mod apply;
mod desired;
mod diff;
mod observe;
pub mod rules;
pub mod section;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::{ApplyContext, DiffOptions, Domain, LedgerTx, Owned, PlanContext};
use crate::host::fs::Root;
use crate::plan::{Address, Change};

pub use desired::DesiredFile;
pub use diff::FileOp;
pub use diff::diff;
pub use observe::{Ids, ObservedFile};

/// The files domain.
#[derive(Debug, Default, Clone, Copy)]
pub struct Files;

/// Desired files keyed by their path as the profile writes it.
pub type Desired = BTreeMap<String, DesiredFile>;
/// What the machine has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Observed files keyed like the desired ones (desired and owned paths).
    pub files: BTreeMap<String, ObservedFile>,
    /// The users and groups the files name or carry, resolved.
    pub ids: Ids,
}

/// One ledger entry of the files domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// A file sovereign manages (key `file:<path>`).
    File(OwnedFile),
    /// A folder sovereign created (key `dir:<path>`), removed once empty and unneeded.
    Dir,
}

/// What sovereign knows about a file it manages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedFile {
    /// sha256 of the content sovereign last wrote; `None` while a write is in flight (an
    /// interrupted apply leaves it so), which means "not edited by hand".
    pub applied_sha256: Option<String>,
    /// The file that was there before sovereign took it over, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<Backup>,
    /// The profile marked it sensitive: its content never shows, even when it is dropped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
    /// Changes that must run before it is removed (another domain's file: the service
    /// reading it is stopped first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_after: Vec<Address>,
}

/// A backed-up original, stored under the domain's state folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backup {
    /// File name inside `<state>/domains/files/backups/`.
    pub file: String,
    pub sha256: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The ledger key of a managed file.
pub fn file_key(path: &str) -> String {
    format!("file:{path}")
}

/// The ledger key of a folder sovereign created.
pub fn dir_key(path: &str) -> String {
    format!("dir:{path}")
}

/// The address of a managed file.
pub fn address(path: &str) -> Address {
    Address::new("files", "file", path)
}

impl Domain for Files {
    type Desired = Desired;
    type Observed = Observed;
    type Entry = Entry;

    const NAME: &'static str = "files";
    const SECTIONS: &'static [&'static str] = &["files"];

    fn desired(&self, cx: &PlanContext<'_>) -> anyhow::Result<Desired> {
        desired::desired(cx.profile, cx.facts, &cx.requests.files)
    }

    fn planned(&self, desired: &Desired) -> BTreeMap<Address, String> {
        desired
            .iter()
            .map(|(path, f)| (address(path), f.sha256.clone()))
            .collect()
    }

    fn observe(
        &self,
        cx: &PlanContext<'_>,
        desired: &Desired,
        owned: &Owned<Entry>,
    ) -> anyhow::Result<Observed> {
        observe::observe(cx.root, desired, owned)
    }

    fn digests(&self, observed: &Observed) -> BTreeMap<Address, String> {
        observed
            .files
            .iter()
            .map(|(path, o)| (address(path), o.digest()))
            .collect()
    }

    fn diff(
        &self,
        desired: &Desired,
        observed: &Observed,
        owned: &Owned<Entry>,
        options: &DiffOptions,
    ) -> anyhow::Result<Vec<Change>> {
        diff::diff(desired, observed, owned, options)
    }

    fn apply(
        &self,
        cx: &ApplyContext<'_>,
        desired: &Desired,
        change: &Change,
        ledger: &mut LedgerTx<'_, Entry>,
    ) -> anyhow::Result<()> {
        apply::apply(cx, desired, change, ledger)
    }

    /// A write killed mid-way leaves its temporary file beside the file: remove it.
    fn recover(&self, root: &Root, address: &Address) -> anyhow::Result<Vec<String>> {
        let real = root.resolve(&address.name)?;
        let (Some(dir), Some(name)) = (real.parent(), real.file_name()) else {
            return Ok(Vec::new());
        };
        let removed = crate::host::fs::remove_stale_temps(dir, Some(&name.to_string_lossy()))?;
        Ok(removed
            .iter()
            .map(|p| {
                format!(
                    "removed {}, left by the interrupted write of {}",
                    p.display(),
                    address.name
                )
            })
            .collect())
    }
}
