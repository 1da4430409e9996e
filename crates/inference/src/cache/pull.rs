//! `pull`: fetch a model (URL or local path) into `partial/`, hashing as it streams,
//! check the hash and the GGUF header, and only then rename it into `blobs/`.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::Utc;
use sha2::{Digest, Sha256};

use super::manifest::{FORMAT, Manifest};
use super::{Cache, ModelName, fsio, http};
use crate::gguf::{self, Summary};

/// Progress of a long transfer or hash; the command line draws it as a bar.
pub trait Progress {
    /// A transfer starts: what it is, its total size if known, and bytes already done.
    fn begin(&self, what: &str, total: Option<u64>, done: u64);
    fn advance(&self, bytes: u64);
    fn end(&self);
}

/// Progress nobody watches.
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&self, _what: &str, _total: Option<u64>, _done: u64) {}
    fn advance(&self, _bytes: u64) {}
    fn end(&self) {}
}

/// What to pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    /// An `http://` or `https://` URL, or a local path.
    pub source: String,
    /// The expected sha256 (lowercase hex, see [`parse_sha256`]); `None` accepts any
    /// content and reports the hash so it can be pinned.
    pub sha256: Option<String>,
    /// The name to register; `None` derives it from the source's file name.
    pub name: Option<ModelName>,
}

/// What a pull did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PullOutcome {
    /// The name it was registered under.
    pub name: ModelName,
    /// The computed sha256 (lowercase hex).
    pub sha256: String,
    /// Bytes in the blob.
    pub size: u64,
    /// The blob in the cache.
    pub path: PathBuf,
    /// The URL or path it came from.
    pub source: String,
    /// What the GGUF header says.
    pub summary: Summary,
    /// Whether the hash was checked against a pinned one.
    pub pinned: bool,
    /// Bytes kept from an interrupted download (0 when it started from scratch).
    pub resumed_from: u64,
    /// The blob the name pointed at before, when the pull changed it.
    pub replaced: Option<String>,
}

/// Accept a sha256 as 64 hex digits, with or without a `sha256:` prefix.
pub fn parse_sha256(text: &str) -> Result<String> {
    let hex = text.trim();
    let hex = hex.strip_prefix("sha256:").unwrap_or(hex);
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("invalid sha256 {text:?}: expected 64 hexadecimal digits");
    }
    Ok(hex.to_ascii_lowercase())
}

/// Where a source comes from.
enum Origin<'a> {
    Url(&'a str),
    Path(&'a Path),
}

fn origin(source: &str) -> Result<Origin<'_>> {
    let lower = source.get(..8).unwrap_or(source).to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        return Ok(Origin::Url(source));
    }
    if let Some((scheme, _)) = source.split_once("://") {
        bail!(
            "cannot pull {source:?}: the {scheme}:// scheme is not supported (use https://, http:// or a local path)"
        );
    }
    Ok(Origin::Path(Path::new(source)))
}

impl Cache {
    /// Pull a model into the cache and register it under its name.
    ///
    /// Blocking; an HTTP source runs its own single-threaded runtime, so call this from
    /// a plain thread, not from inside an async runtime.
    pub fn pull(&self, request: &PullRequest, progress: &dyn Progress) -> Result<PullOutcome> {
        let name = match &request.name {
            Some(n) => n.clone(),
            None => ModelName::from_source(&request.source)
                .map_err(|e| anyhow::anyhow!("{e}\n(hint: choose a name with --name NAME)"))?,
        };
        let expected = request.sha256.as_deref().map(parse_sha256).transpose()?;
        let origin = origin(&request.source)?;
        let key = match origin {
            Origin::Url(url) => url.to_owned(),
            Origin::Path(p) => std::path::absolute(p)
                .unwrap_or_else(|_| p.to_owned())
                .display()
                .to_string(),
        };
        let key = &fsio::hex_digest(Sha256::new_with_prefix(key.as_bytes()))[..24];
        let part_path = self.partial_dir().join(format!("{key}.part"));
        let meta_path = self.partial_dir().join(format!("{key}.json"));
        let mut part = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&part_path)
            .with_context(|| format!("cannot open {}", part_path.display()))?;
        match fs4::FileExt::try_lock(&part) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => {
                bail!("another pull of {} is in progress", request.source)
            }
            Err(fs4::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", part_path.display()));
            }
        }

        let fetched = match origin {
            Origin::Url(url) => http::fetch(url, &mut part, &meta_path, name.as_str(), progress)
                .inspect_err(|_| {
                    // Nothing arrived: nothing to resume, so leave nothing behind.
                    if part.metadata().is_ok_and(|m| m.len() == 0) {
                        discard(&part_path, &meta_path);
                    }
                })?,
            Origin::Path(path) => copy_local(path, &mut part, name.as_str(), progress)
                .inspect_err(|_| discard(&part_path, &meta_path))?,
        };

        let rejected = |why: String| -> anyhow::Error {
            discard(&part_path, &meta_path);
            anyhow::anyhow!("{why}; the downloaded file was deleted")
        };
        if let Some(expected) = &expected {
            if *expected != fetched.sha256 {
                return Err(rejected(format!(
                    "sha256 mismatch for {}: expected {expected}, got {}",
                    request.source, fetched.sha256
                )));
            }
        }
        part.seek(SeekFrom::Start(0))
            .with_context(|| format!("cannot read {}", part_path.display()))?;
        let header = gguf::parse(
            std::io::BufReader::with_capacity(1 << 16, &part),
            fetched.size,
        )
        .map_err(|e| rejected(format!("{} is not a valid GGUF model: {e}", request.source)))?;
        let summary = Summary::of(&header);
        part.sync_all()
            .with_context(|| format!("cannot sync {}", part_path.display()))?;
        drop(part);

        let replaced = self.register(
            &name,
            &request.source,
            &fetched,
            &part_path,
            summary.clone(),
        )?;
        fsio::remove_if_present(&meta_path)?;
        Ok(PullOutcome {
            path: self.blob_path(&fetched.sha256),
            name,
            sha256: fetched.sha256,
            size: fetched.size,
            source: request.source.clone(),
            summary,
            pinned: expected.is_some(),
            resumed_from: fetched.resumed_from,
            replaced,
        })
    }

    /// Move a checked partial file into `blobs/` and point `name` at it.
    fn register(
        &self,
        name: &ModelName,
        source: &str,
        fetched: &Fetched,
        part_path: &Path,
        summary: Summary,
    ) -> Result<Option<String>> {
        let _lock = self.lock()?;
        let blob = self.blob_path(&fetched.sha256);
        fsio::make_read_only(part_path)?;
        // The fresh copy replaces an existing blob of the same hash: it was just checked.
        std::fs::rename(part_path, &blob).with_context(|| {
            format!("cannot move {} to {}", part_path.display(), blob.display())
        })?;
        fsio::sync_dir(&self.dir.join("blobs"))?;
        fsio::sync_dir(&self.partial_dir())?;
        let meta =
            std::fs::metadata(&blob).with_context(|| format!("cannot stat {}", blob.display()))?;
        let now = Utc::now();
        let previous = self.read_manifest(name)?;
        let manifest = Manifest {
            format: FORMAT,
            name: name.to_string(),
            sha256: fetched.sha256.clone(),
            size: fetched.size,
            source: source.to_owned(),
            pulled_at: now,
            verified_at: now,
            verified_mtime_ns: fsio::mtime_ns(&meta),
            summary,
        };
        manifest.write(&self.manifest_path(name))?;
        for mut other in self.manifests()? {
            if other.sha256 == fetched.sha256 && other.name != name.as_str() {
                other.verified_at = now;
                other.verified_mtime_ns = manifest.verified_mtime_ns;
                other.write(&self.manifest_path(&ModelName::parse(&other.name)?))?;
            }
        }
        let replaced = previous
            .map(|p| p.sha256)
            .filter(|old| *old != fetched.sha256);
        if let Some(old) = &replaced {
            self.collect_blob(old)?;
        }
        Ok(replaced)
    }
}

/// A fetched file in `partial/`.
pub(super) struct Fetched {
    pub sha256: String,
    pub size: u64,
    /// Bytes reused from an earlier, interrupted transfer.
    pub resumed_from: u64,
}

/// Delete a rejected partial download and its resume record. Failing to delete is
/// reported but does not hide the rejection it follows.
fn discard(part: &Path, meta: &Path) {
    for path in [part, meta] {
        if let Err(e) = fsio::remove_if_present(path) {
            tracing::warn!("{e:#}");
        }
    }
}

fn copy_local(
    source: &Path,
    part: &mut File,
    what: &str,
    progress: &dyn Progress,
) -> Result<Fetched> {
    let mut input =
        File::open(source).with_context(|| format!("cannot open {}", source.display()))?;
    let meta = input
        .metadata()
        .with_context(|| format!("cannot stat {}", source.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", source.display());
    }
    part.set_len(0)
        .and_then(|()| part.seek(SeekFrom::Start(0)).map(|_| ()))
        .context("cannot reset the partial file")?;
    let mut hasher = Sha256::new();
    progress.begin(what, Some(meta.len()), 0);
    let mut out = BufWriter::with_capacity(fsio::CHUNK, &*part);
    let copied = fsio::pump(&mut input, &mut hasher, Some(&mut out), &mut |n| {
        progress.advance(n)
    })
    .and_then(|n| out.flush().map(|()| n));
    progress.end();
    let size = copied.with_context(|| format!("cannot copy {}", source.display()))?;
    Ok(Fetched {
        sha256: fsio::hex_digest(hasher),
        size,
        resumed_from: 0,
    })
}
