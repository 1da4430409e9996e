//! Observing managed files: one pass over the desired and owned paths, one read per file,
//! parent folders resolved once each.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use super::{Desired, Entry, Observed, Owned};
use crate::host::fs::Root;
use crate::host::users;

/// Users and groups as this machine resolves them: the names the desired files give, the
/// user sovereign runs as, and the names of the ids the observed files carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ids {
    /// The user and group sovereign runs as (a file without `owner`/`group` gets them).
    pub me: (u32, u32),
    /// Name -> uid of each `owner` named; a name missing here has no user.
    pub users: BTreeMap<String, u32>,
    /// Name -> gid of each `group` named.
    pub groups: BTreeMap<String, u32>,
    /// uid -> name, for display (an id without a name shows as the number).
    pub user_names: BTreeMap<u32, String>,
    /// gid -> name.
    pub group_names: BTreeMap<u32, String>,
}

impl Ids {
    pub fn user_name(&self, uid: u32) -> String {
        self.user_names
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string())
    }

    pub fn group_name(&self, gid: u32) -> String {
        self.group_names
            .get(&gid)
            .cloned()
            .unwrap_or_else(|| gid.to_string())
    }
}

/// Resolve the names `desired` gives and the ids `files` carry, each once: an NSS lookup
/// per file would dominate planning thousands of files.
fn ids(desired: &Desired, files: &BTreeMap<String, ObservedFile>) -> Ids {
    let me = users::current();
    let mut out = Ids {
        me,
        ..Ids::default()
    };
    let mut uids: BTreeSet<u32> = BTreeSet::from([me.0]);
    let mut gids: BTreeSet<u32> = BTreeSet::from([me.1]);
    for f in desired.values() {
        if let Some(name) = &f.owner {
            if !out.users.contains_key(name) {
                if let Some(u) = users::uid_of(name) {
                    out.users.insert(name.clone(), u);
                }
            }
        }
        if let Some(name) = &f.group {
            if !out.groups.contains_key(name) {
                if let Some(g) = users::gid_of(name) {
                    out.groups.insert(name.clone(), g);
                }
            }
        }
    }
    for f in files.values() {
        if let ObservedFile::File(state) = f {
            uids.insert(state.uid);
            gids.insert(state.gid);
        }
    }
    for uid in uids {
        if let Some(name) = users::user_name(uid) {
            out.user_names.insert(uid, name);
        }
    }
    for gid in gids {
        if let Some(name) = users::group_name(gid) {
            out.group_names.insert(gid, name);
        }
    }
    out
}

/// Content kept for a diff only up to this size; larger files show their digests only.
const DIFF_LIMIT: u64 = 1 << 20;

/// What is at a managed path now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObservedFile {
    /// Nothing is there.
    Missing,
    /// A regular file.
    File(FileState),
}

/// A regular file's observed state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    pub sha256: String,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// The content, kept only when it differs from the desired one (for the diff).
    pub content: Option<Vec<u8>>,
}

impl ObservedFile {
    /// A digest of the stable observed state (no timestamps).
    pub fn digest(&self) -> String {
        match self {
            ObservedFile::Missing => "missing".into(),
            ObservedFile::File(f) => format!(
                "file sha256={} mode={:04o} uid={} gid={}",
                f.sha256, f.mode, f.uid, f.gid
            ),
        }
    }
}

/// Observe every desired path and every path the ledger owns.
pub fn observe(root: &Root, desired: &Desired, owned: &Owned<Entry>) -> anyhow::Result<Observed> {
    let mut paths: BTreeSet<&str> = desired.keys().map(String::as_str).collect();
    for (key, entry) in owned {
        if let (Some(path), Entry::File(_)) = (key.strip_prefix("file:"), entry) {
            paths.insert(path);
        }
    }
    let mut parents: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut files = BTreeMap::new();
    for path in paths {
        let real = resolve_cached(root, path, &mut parents)?;
        let keep_if_differs = desired.get(path).map(|d| d.sha256.as_str());
        let state = observe_one(&real, keep_if_differs)
            .with_context(|| format!("files.\"{path}\": cannot observe {}", real.display()))?;
        files.insert(path.to_string(), state);
    }
    Ok(Observed {
        ids: ids(desired, &files),
        files,
    })
}

/// Resolve `path` under the root, resolving each parent folder once.
pub fn resolve_cached(
    root: &Root,
    path: &str,
    parents: &mut BTreeMap<String, PathBuf>,
) -> anyhow::Result<PathBuf> {
    let parent = Path::new(path)
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into());
    let real_parent = match parents.get(&parent) {
        Some(p) => p.clone(),
        None => {
            let p = root.resolve(&parent)?;
            parents.insert(parent, p.clone());
            p
        }
    };
    Ok(root.resolve_in(path, &real_parent)?)
}

fn observe_one(real: &Path, keep_if_differs: Option<&str>) -> anyhow::Result<ObservedFile> {
    let meta = match std::fs::symlink_metadata(real) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ObservedFile::Missing),
        // A parent that is a file: nothing can be there, and apply will say why it fails.
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Ok(ObservedFile::Missing),
        Err(e) => return Err(e.into()),
    };
    if !meta.file_type().is_file() {
        bail!(
            "it is a {} and sovereign manages regular files only; move it away or drop the entry",
            kind(&meta)
        );
    }
    let mut file = std::fs::File::open(real)?;
    let mut content = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut content)?;
    let sha256 = hex::encode(Sha256::digest(&content));
    let differs = keep_if_differs != Some(sha256.as_str());
    Ok(ObservedFile::File(FileState {
        size: content.len() as u64,
        sha256,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        content: (differs && meta.len() <= DIFF_LIMIT).then_some(content),
    }))
}

fn kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "folder"
    } else if t.is_symlink() {
        "symbolic link"
    } else {
        "special file"
    }
}
