//! File plumbing for the cache: atomic writes (temp, fsync, rename, fsync the directory),
//! hashing while copying, and errors that name the path.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// Chunk size for copying and hashing: large enough that syscalls do not dominate.
pub const CHUNK: usize = 1 << 20;

/// Write `bytes` to `path` atomically: readers see the old file or the new one. The file
/// is readable by everyone (0644), like the blobs: the daemon reads the cache as a user of
/// its own (the unit's `DynamicUser=yes`), not as the root that pulled into it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", tmp.path().display()))?;
    tmp.persist(path)
        .with_context(|| format!("cannot rename a temporary file to {}", path.display()))?;
    sync_dir(dir)
}

/// Make a rename or removal in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync directory {}", dir.display()))
}

pub fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// Remove a file if it exists.
pub fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

/// Lowercase hex of a finished hash.
pub fn hex_digest(hasher: Sha256) -> String {
    hex::encode(hasher.finalize())
}

/// Feed everything `reader` yields to `hasher` (and `sink`, if given), reporting progress.
pub fn pump(
    reader: &mut dyn Read,
    hasher: &mut Sha256,
    mut sink: Option<&mut dyn Write>,
    on_chunk: &mut dyn FnMut(u64),
) -> std::io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = buf.get(..n).unwrap_or(&buf);
        hasher.update(chunk);
        if let Some(w) = sink.as_mut() {
            w.write_all(chunk)?;
        }
        total += n as u64;
        on_chunk(n as u64);
    }
}

/// The sha256 of a whole file, as lowercase hex.
pub fn hash_file(path: &Path, on_chunk: &mut dyn FnMut(u64)) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    pump(&mut file, &mut hasher, None, on_chunk)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hex_digest(hasher))
}

/// Modification time in nanoseconds since the epoch: the cache's cheap change detector.
pub fn mtime_ns(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Make a finished blob read-only: stray writes fail instead of corrupting it.
pub fn make_read_only(path: &Path) -> Result<()> {
    let mut perms = std::fs::metadata(path)
        .with_context(|| format!("cannot stat {}", path.display()))?
        .permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(path, perms)
        .with_context(|| format!("cannot make {} read-only", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn an_atomic_write_is_readable_by_the_daemons_own_user() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        write_atomic(&path, b"{}").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o044, 0o044, "group and others read it: {mode:o}");
        assert_eq!(mode & 0o022, 0, "only its owner writes it: {mode:o}");
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
    }
}
