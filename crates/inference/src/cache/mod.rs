//! The verified model cache: content-addressed GGUF blobs under
//! `<root>/var/lib/sovereign/models`, names pointing at them, and checks that keep a
//! corrupted or hostile file from ever being served.
//!
//! Layout:
//!
//! ```text
//! models/
//!   .lock                      held while the store changes
//!   blobs/sha256-<hex>         finished, verified, read-only files
//!   manifests/<name>.json      a name -> blob, source, header summary, last verification
//!   partial/<key>.part, .json  downloads in progress (resumable), apart from blobs
//!   quarantine/sha256-<hex>.<unix time>   blobs that failed a re-hash, never served
//! ```
//!
//! **Architecture Invariant:** a blob enters `blobs/` only by a rename after its sha256
//! matched and its GGUF header passed [`crate::gguf`]; nothing writes a blob
//! in place afterwards.
//!
//! Loading ([`Cache::resolve`]) checks each time, before a model is handed to the engine:
//! the manifest, the blob's size, its modification time against the one recorded at the
//! last full hash, and the GGUF header again (a few milliseconds). It does not re-hash
//! the whole blob unless the size or time changed: a full sha256 of a 20 GB model takes
//! 10-20 s and a server would pay that on every load. Silent corruption that keeps size
//! and time (bit rot) is what `sovereign model verify` is for (run it from a timer; on
//! ZFS the pool's own checksums catch it as well). [`Check::Full`] re-hashes anyway.

// The cache is a folder of sovereign's state directory, written only by the daemon and
// `model pull`/`rm` through this module: it is allowed the writes the crate fences off.
#![allow(clippy::disallowed_methods)]

mod fsio;
mod http;
mod manifest;
mod name;
mod pull;

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::Utc;

pub use manifest::Manifest;
pub use name::{MAX_NAME_LEN, ModelName, NameError};
pub use pull::{NoProgress, Progress, PullOutcome, PullRequest, parse_sha256};

use crate::gguf::{self, Summary};

/// The cache's place under the system root.
pub const MODELS_DIR: &str = "var/lib/sovereign/models";

/// The model cache.
#[derive(Debug, Clone)]
pub struct Cache {
    /// `<root>/var/lib/sovereign/models`.
    dir: PathBuf,
}

/// How thoroughly [`Cache::resolve`] checks a blob before handing it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Size, modification time and GGUF header; a full re-hash only if size or time changed.
    Quick,
    /// A full sha256 of the blob.
    Full,
}

/// A cached model that passed its checks: safe to hand to the engine.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VerifiedModel {
    /// The name it was asked for.
    pub name: ModelName,
    /// The blob to load.
    pub path: PathBuf,
    /// Its sha256 (lowercase hex), as pinned or computed at pull time.
    pub sha256: String,
    /// Its size in bytes, checked against the file just now.
    pub size: u64,
    /// What the GGUF header says: architecture, parameters, quantization, context.
    pub summary: Summary,
    /// Whether this resolve hashed the whole file.
    pub rehashed: bool,
}

/// Why a model cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    InvalidName(#[from] NameError),
    #[error("no model named {name:?} in the cache {}{}", dir.display(), available_hint(available))]
    NotFound {
        name: String,
        dir: PathBuf,
        /// Names that are there, for the message.
        available: Vec<String>,
    },
    #[error("model {name:?} was quarantined as corrupt ({}); pull it again", path.display())]
    Quarantined { name: String, path: PathBuf },
    #[error("model {name:?}: its blob {} is missing; pull it again", path.display())]
    Missing { name: String, path: PathBuf },
    #[error("model {name:?} is corrupt ({reason}); moved to {}; pull it again", quarantined_to.display())]
    Corrupt {
        name: String,
        reason: String,
        quarantined_to: PathBuf,
    },
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

fn available_hint(names: &[String]) -> String {
    if names.is_empty() {
        "; it is empty (add one with `sovereign model pull`)".into()
    } else {
        format!("; cached: {}", names.join(", "))
    }
}

/// A name in the cache and the state of its blob.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Entry {
    /// What was recorded at pull time.
    pub manifest: Manifest,
    /// Whether its blob can be served.
    pub state: BlobState,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "state", content = "path")]
pub enum BlobState {
    /// In `blobs/`, servable after the load-time checks.
    Present,
    /// Gone, not quarantined either: removed by hand.
    Missing,
    /// Moved to the quarantine after a failed check (the newest copy there).
    Quarantined(PathBuf),
}

/// What `remove` did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Removed {
    /// The name that was removed.
    pub name: ModelName,
    /// The blob it pointed at.
    pub sha256: String,
    /// False when another name still points at the blob.
    pub blob_removed: bool,
}

/// One name's outcome in `verify`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verified {
    /// The model name.
    pub name: String,
    /// The recorded sha256.
    pub sha256: String,
    /// What the re-hash found.
    pub status: VerifyStatus,
    /// The hash found, when it differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual_sha256: Option<String>,
    /// Where a corrupt blob was moved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantined_to: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyStatus {
    /// The hash matches.
    Ok,
    /// The hash differs: the blob was quarantined just now.
    Corrupt,
    /// The blob is gone.
    Missing,
    /// The blob was quarantined by an earlier check.
    Quarantined,
}

impl VerifyStatus {
    /// Whether this outcome makes `verify` fail.
    pub fn is_failure(self) -> bool {
        self != VerifyStatus::Ok
    }
}

impl Cache {
    /// The cache under a system root (`/` or `--root`); creates its directories.
    pub fn open(root: &Path) -> Result<Cache> {
        Cache::open_dir(root.join(MODELS_DIR))
    }

    /// The cache in `dir` itself; creates its directories.
    pub fn open_dir(dir: PathBuf) -> Result<Cache> {
        let cache = Cache { dir };
        for sub in ["blobs", "manifests", "partial", "quarantine"] {
            fsio::create_dir(&cache.dir.join(sub))?;
        }
        Ok(cache)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.dir.join("blobs").join(format!("sha256-{sha256}"))
    }

    fn manifest_path(&self, name: &ModelName) -> PathBuf {
        self.dir.join("manifests").join(format!("{name}.json"))
    }

    fn partial_dir(&self) -> PathBuf {
        self.dir.join("partial")
    }

    /// Hold the store's lock: one process changes blobs and manifests at a time.
    fn lock(&self) -> Result<File> {
        let path = self.dir.join(".lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        fs4::FileExt::lock(&file).with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(file)
    }

    /// Every manifest, sorted by name.
    pub fn manifests(&self) -> Result<Vec<Manifest>> {
        let dir = self.dir.join("manifests");
        let mut out = Vec::new();
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
        {
            let path = entry
                .with_context(|| format!("cannot list {}", dir.display()))?
                .path();
            let is_manifest = path.extension().is_some_and(|e| e == "json")
                && path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.starts_with('.'));
            if is_manifest {
                out.push(Manifest::read(&path)?);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The cached models and the state of their blobs.
    pub fn list(&self) -> Result<Vec<Entry>> {
        self.manifests()?
            .into_iter()
            .map(|manifest| {
                let state = self.blob_state(&manifest.sha256)?;
                Ok(Entry { manifest, state })
            })
            .collect()
    }

    fn blob_state(&self, sha256: &str) -> Result<BlobState> {
        if self.blob_path(sha256).is_file() {
            return Ok(BlobState::Present);
        }
        Ok(match self.quarantined(sha256)? {
            Some(path) => BlobState::Quarantined(path),
            None => BlobState::Missing,
        })
    }

    /// The newest quarantined copy of a blob, if any.
    fn quarantined(&self, sha256: &str) -> Result<Option<PathBuf>> {
        let dir = self.dir.join("quarantine");
        let prefix = format!("sha256-{sha256}.");
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot list {}", dir.display()))?
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(&prefix))
            })
            .map(|e| e.path())
            .collect();
        found.sort();
        Ok(found.pop())
    }

    fn read_manifest(&self, name: &ModelName) -> Result<Option<Manifest>> {
        let path = self.manifest_path(name);
        if !path.exists() {
            return Ok(None);
        }
        Manifest::read(&path).map(Some)
    }

    /// Find a model by name and check it before it is loaded (see the module docs for
    /// what [`Check::Quick`] covers). A blob that fails is quarantined.
    ///
    /// Blocking file I/O (a stat and a header parse; a full hash when the blob changed):
    /// call it from `spawn_blocking` in async code.
    pub fn resolve(&self, name: &str, check: Check) -> Result<VerifiedModel, ResolveError> {
        let name = ModelName::parse(name)?;
        let Some(manifest) = self.read_manifest(&name)? else {
            return Err(ResolveError::NotFound {
                name: name.to_string(),
                dir: self.dir.clone(),
                available: self.manifests()?.into_iter().map(|m| m.name).collect(),
            });
        };
        let path = self.blob_path(&manifest.sha256);
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(match self.quarantined(&manifest.sha256)? {
                    Some(q) => ResolveError::Quarantined {
                        name: name.to_string(),
                        path: q,
                    },
                    None => ResolveError::Missing {
                        name: name.to_string(),
                        path,
                    },
                });
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("cannot stat {}", path.display()))
                    .into());
            }
        };
        let corrupt = |reason: String| -> ResolveError {
            match self.quarantine(&manifest.sha256) {
                Ok(to) => ResolveError::Corrupt {
                    name: name.to_string(),
                    reason,
                    quarantined_to: to,
                },
                Err(e) => e
                    .context(format!("model {name:?} is corrupt ({reason})"))
                    .into(),
            }
        };
        if meta.len() != manifest.size {
            return Err(corrupt(format!(
                "its blob is {} bytes, the manifest says {}",
                meta.len(),
                manifest.size
            )));
        }
        let rehash = check == Check::Full || fsio::mtime_ns(&meta) != manifest.verified_mtime_ns;
        if rehash {
            let actual = fsio::hash_file(&path, &mut |_| {})?;
            if actual != manifest.sha256 {
                return Err(corrupt(format!(
                    "sha256 is {actual}, expected {}",
                    manifest.sha256
                )));
            }
            // The daemon may see the store read-only (its systemd unit makes it so): the blob
            // is good, only the record is missing, so the next load hashes again.
            if let Err(e) = self.record_verified(&manifest.sha256) {
                tracing::warn!("model {name}: hash matched but cannot record it: {e:#}");
            }
        }
        if let Err(e) = gguf::parse_file(&path) {
            return Err(corrupt(format!("its GGUF header no longer validates: {e}")));
        }
        Ok(VerifiedModel {
            name,
            path,
            sha256: manifest.sha256,
            size: manifest.size,
            summary: manifest.summary,
            rehashed: rehash,
        })
    }

    /// After a full hash matched: record the time and the blob's mtime in every
    /// manifest that points at it.
    fn record_verified(&self, sha256: &str) -> Result<()> {
        let _lock = self.lock()?;
        let meta = std::fs::metadata(self.blob_path(sha256))
            .with_context(|| format!("cannot stat {}", self.blob_path(sha256).display()))?;
        let now = Utc::now();
        for mut m in self.manifests()? {
            if m.sha256 == sha256 {
                m.verified_at = now;
                m.verified_mtime_ns = fsio::mtime_ns(&meta);
                let name = ModelName::parse(&m.name)?;
                m.write(&self.manifest_path(&name))?;
            }
        }
        Ok(())
    }

    /// Move a blob aside so that it is never served again; returns where it went.
    fn quarantine(&self, sha256: &str) -> Result<PathBuf> {
        let _lock = self.lock()?;
        let from = self.blob_path(sha256);
        let to = self.dir.join("quarantine").join(format!(
            "sha256-{sha256}.{}",
            Utc::now().format("%Y%m%dT%H%M%S%.9fZ")
        ));
        std::fs::rename(&from, &to)
            .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))?;
        fsio::sync_dir(&self.dir.join("blobs"))?;
        tracing::warn!(
            "quarantined corrupt blob {} as {}",
            from.display(),
            to.display()
        );
        Ok(to)
    }

    /// Remove a name; its blob goes too unless another name points at it.
    pub fn remove(&self, name: &ModelName) -> Result<Removed> {
        let _lock = self.lock()?;
        let Some(manifest) = self.read_manifest(name)? else {
            anyhow::bail!(
                "no model named {:?} in the cache {}",
                name.as_str(),
                self.dir.display()
            );
        };
        let path = self.manifest_path(name);
        std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        fsio::sync_dir(&self.dir.join("manifests"))?;
        let blob_removed = self.collect_blob(&manifest.sha256)?;
        Ok(Removed {
            name: name.clone(),
            sha256: manifest.sha256,
            blob_removed,
        })
    }

    /// Delete a blob no manifest points at; the caller holds the lock.
    fn collect_blob(&self, sha256: &str) -> Result<bool> {
        if self.manifests()?.iter().any(|m| m.sha256 == sha256) {
            return Ok(false);
        }
        let blob = self.blob_path(sha256);
        fsio::remove_if_present(&blob)?;
        fsio::sync_dir(&self.dir.join("blobs"))?;
        Ok(true)
    }

    /// Re-hash the blobs of `only` (or of every name); quarantine the corrupt ones.
    pub fn verify(
        &self,
        only: Option<&ModelName>,
        progress: &dyn Progress,
    ) -> Result<Vec<Verified>> {
        let manifests: Vec<Manifest> = match only {
            Some(name) => match self.read_manifest(name)? {
                Some(m) => vec![m],
                None => anyhow::bail!(
                    "no model named {:?} in the cache {}",
                    name.as_str(),
                    self.dir.display()
                ),
            },
            None => self.manifests()?,
        };
        let mut out = Vec::new();
        // Several names may share a blob: hash each blob once.
        let mut seen: Vec<(String, VerifyStatus, Option<String>, Option<PathBuf>)> = Vec::new();
        for m in manifests {
            let known = seen.iter().find(|s| s.0 == m.sha256).cloned();
            let (status, actual, to) = match known {
                Some((_, status, actual, to)) => (status, actual, to),
                None => {
                    let r = self.verify_blob(&m, progress)?;
                    seen.push((m.sha256.clone(), r.0, r.1.clone(), r.2.clone()));
                    r
                }
            };
            out.push(Verified {
                name: m.name,
                sha256: m.sha256,
                status,
                actual_sha256: actual,
                quarantined_to: to,
            });
        }
        Ok(out)
    }

    fn verify_blob(
        &self,
        m: &Manifest,
        progress: &dyn Progress,
    ) -> Result<(VerifyStatus, Option<String>, Option<PathBuf>)> {
        let path = self.blob_path(&m.sha256);
        if !path.is_file() {
            return Ok(match self.quarantined(&m.sha256)? {
                Some(q) => (VerifyStatus::Quarantined, None, Some(q)),
                None => (VerifyStatus::Missing, None, None),
            });
        }
        progress.begin(&format!("verifying {}", m.name), Some(m.size), 0);
        let actual = fsio::hash_file(&path, &mut |n| progress.advance(n));
        progress.end();
        let actual = actual?;
        if actual == m.sha256 {
            self.record_verified(&m.sha256)?;
            Ok((VerifyStatus::Ok, None, None))
        } else {
            let to = self.quarantine(&m.sha256)?;
            Ok((VerifyStatus::Corrupt, Some(actual), Some(to)))
        }
    }
}
