//! A name's manifest: a small JSON file that points a model name at a blob and records
//! where it came from, what its header says and when its hash was last checked.

use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use super::fsio;
use crate::gguf::Summary;

/// Version of the manifest format, so a later one can be told apart.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// Manifest format version ([`FORMAT`]).
    pub format: u32,
    /// The model name (also the file name, `<name>.json`).
    pub name: String,
    /// Lowercase hex sha256 of the blob: `blobs/sha256-<sha256>`.
    pub sha256: String,
    /// Blob size in bytes, checked before every load.
    pub size: u64,
    /// The URL or path it was pulled from.
    pub source: String,
    pub pulled_at: DateTime<Utc>,
    /// When the blob's full hash was last checked (pull or `model verify`).
    pub verified_at: DateTime<Utc>,
    /// The blob's modification time (ns) at that check: a different one means the
    /// blob was written since, and it is re-hashed before it is loaded.
    pub verified_mtime_ns: u64,
    /// From the GGUF header, for `model ls`.
    pub summary: Summary,
}

impl Manifest {
    pub fn read(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read manifest {}", path.display()))?;
        let m: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("manifest {} is not valid", path.display()))?;
        anyhow::ensure!(
            m.format == FORMAT,
            "manifest {} has format {}; this sovereign reads format {FORMAT}",
            path.display(),
            m.format
        );
        anyhow::ensure!(
            m.sha256.len() == 64 && m.sha256.bytes().all(|b| b.is_ascii_hexdigit()),
            "manifest {} has an invalid sha256 {:?}",
            path.display(),
            m.sha256
        );
        Ok(m)
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self).context("cannot encode manifest")?;
        text.push('\n');
        fsio::write_atomic(path, text.as_bytes())
    }
}
