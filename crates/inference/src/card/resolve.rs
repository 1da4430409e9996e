//! A Card's models against the model cache: is each cache name there, and at the digest
//! the Card pins? Read-only: only the names' manifests and the blobs' presence are read
//! (a full check of a blob is `sovereign model verify`'s, and the daemon's when it loads).

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use super::{Card, CardError};
use crate::cache::{BlobState, Cache, Entry, MODELS_DIR};

/// What the cache holds for one of a Card's model names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Cached {
    /// There, with its file, at the pinned digest (or, where the Card pins none, at this
    /// one).
    Present { sha256: String },
    /// No such name in the cache.
    Absent,
    /// The name is there, pointing at another file.
    OtherDigest { sha256: String },
    /// The name is there but its file is gone.
    Missing,
    /// The name is there but its file failed a check and was quarantined.
    Quarantined,
}

impl Cached {
    pub fn is_present(&self) -> bool {
        matches!(self, Cached::Present { .. })
    }
}

/// The Card's models in the cache.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resolution {
    /// The cache that was looked in.
    pub cache_dir: PathBuf,
    /// The base model.
    pub base: Cached,
    /// Each adapter in the Card's order; `None` for one given by `source`, which is not
    /// looked up.
    pub adapters: Vec<Option<Cached>>,
    /// One error for each model that is not there at its digest, placed in the Card and
    /// saying what to run.
    pub errors: Vec<CardError>,
}

/// Look the Card's base model and its adapters given by `model` up in the cache under
/// `root` (`/` or `--root`). A cache that does not exist yet is empty; nothing is created.
pub fn resolve(card: &Card, root: &Path) -> Result<Resolution> {
    let cache_dir = root.join(MODELS_DIR);
    let entries = if cache_dir.is_dir() {
        Cache::open(root)?.list()?
    } else {
        Vec::new()
    };
    let pull_hint = |name: &str, sha256: Option<&str>| {
        let pin = sha256.map(|s| format!(" --sha256 {s}")).unwrap_or_default();
        let relocated = if root == Path::new("/") {
            String::new()
        } else {
            format!(" --root {}", root.display())
        };
        format!("sovereign model pull URL_OR_PATH --name {name}{pin}{relocated}")
    };
    let mut errors = Vec::new();
    let mut look = |pointer: &str, name: &str, pinned: Option<&str>| -> Cached {
        let state = lookup(&entries, name, pinned);
        let what = super::locate::key_path(&format!("{pointer}/model"));
        let message = match &state {
            Cached::Present { .. } => return state,
            Cached::Absent => format!(
                "{what} {name:?} is not in the model cache ({}); pull it: {}",
                cache_dir.display(),
                pull_hint(name, pinned)
            ),
            Cached::OtherDigest { sha256 } => {
                let pin = pinned.unwrap_or_default();
                let message = format!(
                    "{} pins {pin}, but the cached {name:?} is {sha256}; pull the pinned file \
                     ({}), or pin the cached one if it is the one meant",
                    super::locate::key_path(&format!("{pointer}/sha256")),
                    pull_hint(name, pinned)
                );
                errors.push(card.error_at(&format!("{pointer}/sha256"), message));
                return state;
            }
            Cached::Missing => format!(
                "{what} {name:?} is in the cache but its file is missing; pull it again: {}",
                pull_hint(name, pinned)
            ),
            Cached::Quarantined => format!(
                "{what} {name:?} is in the cache but its file was quarantined as corrupt; pull \
                 it again: {}",
                pull_hint(name, pinned)
            ),
        };
        errors.push(card.error_at(&format!("{pointer}/model"), message));
        state
    };
    let base = &card.spec.base;
    let base_state = look("/base", &base.model, Some(&base.sha256));
    let adapters = card
        .spec
        .adapters
        .iter()
        .enumerate()
        .map(|(i, a)| {
            a.model
                .as_deref()
                .map(|name| look(&format!("/adapters/{i}"), name, a.sha256.as_deref()))
        })
        .collect();
    Ok(Resolution {
        cache_dir,
        base: base_state,
        adapters,
        errors,
    })
}

fn lookup(entries: &[Entry], name: &str, pinned: Option<&str>) -> Cached {
    let Some(entry) = entries.iter().find(|e| e.manifest.name == name) else {
        return Cached::Absent;
    };
    let sha256 = entry.manifest.sha256.to_ascii_lowercase();
    if pinned.is_some_and(|p| p != sha256) {
        return Cached::OtherDigest { sha256 };
    }
    match entry.state {
        BlobState::Present => Cached::Present { sha256 },
        BlobState::Missing => Cached::Missing,
        BlobState::Quarantined(_) => Cached::Quarantined,
    }
}
