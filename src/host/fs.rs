//! Files under the root: symlink-safe path resolution and durable writes.
//!
//! [`Root`] maps a profile's absolute path (`/etc/motd`) to the real path under `--root`,
//! refusing any path that escapes the root through `..` or a symlink. The write helpers
//! are the only code that changes files, modes or owners outside sovereign's state; each
//! is durable when it returns (data and directory entry fsynced) and names its path in
//! every error.

// The one module allowed the writes the rest of the crate is fenced off (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Symlinks followed while resolving one path before giving up (as the kernel's ELOOP).
const MAX_SYMLINK_HOPS: usize = 40;

/// The directory managed paths are relocated under (`--root`, or `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    /// The root's real path (canonical when it exists).
    path: PathBuf,
}

/// Why a path cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("{logical}: not an absolute path; managed paths start with '/'")]
    NotAbsolute { logical: String },
    #[error(
        "{logical}: refused: it escapes the root {root} ({why}); point the symlink inside the root or manage the target path instead"
    )]
    Escapes {
        logical: String,
        root: String,
        why: String,
    },
    #[error("{logical}: too many levels of symbolic links")]
    Loop { logical: String },
    #[error("{logical}: cannot inspect {at}: {source}")]
    Io {
        logical: String,
        at: String,
        source: io::Error,
    },
}

impl Root {
    /// The root at `path`; it need not exist yet (apply creates what it needs).
    pub fn new(path: &Path) -> io::Result<Root> {
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()?.join(path)
        };
        let path = fs::canonicalize(&abs).unwrap_or(abs);
        Ok(Root { path })
    }

    /// The real machine's `/`.
    pub fn system() -> Root {
        Root { path: "/".into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path under the root without following anything: for sovereign's own state
    /// (`/var/lib/sovereign`), which it creates itself.
    pub fn join(&self, logical: &str) -> PathBuf {
        self.path.join(logical.trim_start_matches('/'))
    }

    /// Resolve `logical` (absolute, as the profile writes it) to the real path under the
    /// root, following symlinks only while they stay inside the root. Missing components
    /// are fine: the result is where the file would be created.
    pub fn resolve(&self, logical: &str) -> Result<PathBuf, PathError> {
        let rel = logical
            .strip_prefix('/')
            .ok_or_else(|| PathError::NotAbsolute {
                logical: logical.to_string(),
            })?;
        let comps: VecDeque<OsString> = Path::new(rel)
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_os_string()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .collect();
        self.walk(logical, self.path.clone(), comps)
    }

    /// Resolve `logical` whose parent is already resolved to `parent` (a cache hit).
    pub fn resolve_in(&self, logical: &str, parent: &Path) -> Result<PathBuf, PathError> {
        let name = Path::new(logical)
            .file_name()
            .map(|n| n.to_os_string())
            .ok_or_else(|| PathError::NotAbsolute {
                logical: logical.to_string(),
            })?;
        self.walk(logical, parent.to_path_buf(), VecDeque::from([name]))
    }

    fn walk(
        &self,
        logical: &str,
        mut cur: PathBuf,
        mut comps: VecDeque<OsString>,
    ) -> Result<PathBuf, PathError> {
        let escapes = |why: String| PathError::Escapes {
            logical: logical.to_string(),
            root: self.path.display().to_string(),
            why,
        };
        let mut hops = 0;
        let mut missing = false;
        while let Some(name) = comps.pop_front() {
            if name == ".." {
                if cur == self.path {
                    return Err(escapes("'..' above the root".into()));
                }
                cur.pop();
                continue;
            }
            let next = cur.join(&name);
            if missing {
                cur = next;
                continue;
            }
            match fs::symlink_metadata(&next) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(PathError::Loop {
                            logical: logical.to_string(),
                        });
                    }
                    let target = fs::read_link(&next).map_err(|source| PathError::Io {
                        logical: logical.to_string(),
                        at: next.display().to_string(),
                        source,
                    })?;
                    let mut front: Vec<OsString> = Vec::new();
                    if target.is_absolute() {
                        let inside = target.strip_prefix(&self.path).map_err(|_| {
                            escapes(format!(
                                "{} is a symlink to {}",
                                next.display(),
                                target.display()
                            ))
                        })?;
                        cur = self.path.clone();
                        front.extend(components(inside));
                    } else {
                        front.extend(components(&target));
                    }
                    for c in front.into_iter().rev() {
                        comps.push_front(c);
                    }
                }
                Ok(_) => cur = next,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    missing = true;
                    cur = next;
                }
                Err(source) => {
                    return Err(PathError::Io {
                        logical: logical.to_string(),
                        at: next.display().to_string(),
                        source,
                    });
                }
            }
        }
        Ok(cur)
    }
}

fn components(p: &Path) -> Vec<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

fn with_path(e: io::Error, doing: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("cannot {doing} {}: {e}", path.display()))
}

/// Owner and group ids to set on a written file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership {
    pub uid: u32,
    pub gid: u32,
}

/// Write `content` to `path` atomically: a temporary file in the same folder, exact
/// `mode` (umask does not apply to fchmod), owner, fsync, rename over, fsync the folder.
pub fn write_atomic(
    path: &Path,
    content: &[u8],
    mode: u32,
    owner: Option<Ownership>,
) -> io::Result<()> {
    let dir = folder_of(path)
        .ok_or_else(|| io::Error::other(format!("{} has no parent folder", path.display())))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.sovereign-{}", unique_suffix()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| with_path(e, "create", &tmp))?;
        file.write_all(content)
            .map_err(|e| with_path(e, "write", &tmp))?;
        if let Some(o) = owner {
            std::os::unix::fs::fchown(&file, Some(o.uid), Some(o.gid))
                .map_err(|e| with_path(e, "change the owner of", &tmp))?;
        }
        // After chown: chown clears set-id bits.
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| with_path(e, "set the mode of", &tmp))?;
        file.sync_all().map_err(|e| with_path(e, "fsync", &tmp))?;
        fs::rename(&tmp, path).map_err(|e| with_path(e, "rename into place", path))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        // The temporary file is ours alone; a failed write leaves nothing behind.
        if let Err(e) = fs::remove_file(&tmp) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!("cannot remove {}: {e}", tmp.display());
            }
        }
    }
    result
}

/// Remove the temporary files `write_atomic` leaves in `dir` when its process is killed
/// mid-write (`.NAME.sovereign-...`), for the file `name` or, with `None`, for every file.
/// Only called while holding the apply lock, so no live writer owns one. Returns what it
/// removed.
pub fn remove_stale_temps(dir: &Path, name: Option<&str>) -> io::Result<Vec<PathBuf>> {
    let prefix = name.map(|n| format!(".{n}.sovereign-"));
    let mut removed = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(with_path(e, "list", dir)),
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let text = file_name.to_string_lossy();
        let ours = match &prefix {
            Some(p) => text.starts_with(p.as_str()),
            None => text.starts_with('.') && text.contains(".sovereign-"),
        };
        if ours && entry.file_type().is_ok_and(|t| t.is_file()) {
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| with_path(e, "remove", &path))?;
            removed.push(path);
        }
    }
    Ok(removed)
}

/// The folder `path` is in: `.` for a bare file name (whose `parent()` is empty).
fn folder_of(path: &Path) -> Option<&Path> {
    match path.parent() {
        Some(d) if d.as_os_str().is_empty() => Some(Path::new(".")),
        other => other,
    }
}

/// A temporary-file suffix no other writer has: the pid alone repeats after a crash in a
/// PID namespace (the next run gets the same pid and finds the leftover), so the time and
/// a per-process counter go with it.
fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}-{nanos:x}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Create `dir` and the folders above it that are missing (for sovereign's own state:
/// folders under a managed root are created one by one and recorded, see the files
/// domain).
pub fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir)
        .map_err(|e| anyhow::Error::new(e).context(format!("cannot create {}", dir.display())))
}

/// sha256 (hex) of the file at `logical` under the root; `None` when there is none.
pub fn sha256_of(root: &Root, logical: &str) -> anyhow::Result<Option<String>> {
    use sha2::{Digest, Sha256};
    let real = root.resolve(logical)?;
    match std::fs::read(&real) {
        Ok(bytes) => Ok(Some(hex::encode(Sha256::digest(&bytes)))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot read {}", real.display()))),
    }
}

/// fsync a folder so the entries created or removed in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| with_path(e, "fsync the folder", dir))
}

/// Remove a file and make the removal durable.
pub fn remove_file(path: &Path) -> io::Result<()> {
    fs::remove_file(path).map_err(|e| with_path(e, "remove", path))?;
    match folder_of(path) {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// Create one folder with exact `mode`.
pub fn create_dir(path: &Path, mode: u32) -> io::Result<()> {
    fs::create_dir(path).map_err(|e| with_path(e, "create the folder", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| with_path(e, "set the mode of", path))?;
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// Remove a folder if it is empty; `Ok(false)` when it holds something (or is gone).
pub fn remove_dir_if_empty(path: &Path) -> io::Result<bool> {
    match fs::remove_dir(path) {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                sync_dir(dir)?;
            }
            Ok(true)
        }
        Err(e)
            if e.kind() == io::ErrorKind::DirectoryNotEmpty
                || e.kind() == io::ErrorKind::NotFound =>
        {
            Ok(false)
        }
        Err(e) => Err(with_path(e, "remove the folder", path)),
    }
}

/// Make `path` a sparse file of `size` bytes, or grow it to `size`; never shrink it (the
/// end of a disk image is data). Readable and writable by its owner only.
pub fn sparse_file(path: &Path, size: u64) -> io::Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    if file.metadata()?.len() < size {
        file.set_len(size)?;
    }
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        (dir, root)
    }

    #[test]
    fn plain_and_missing_paths_resolve_under_the_root() {
        let (_d, root) = root();
        fs::create_dir(root.path().join("etc")).unwrap();
        assert_eq!(
            root.resolve("/etc/motd").unwrap(),
            root.path().join("etc/motd")
        );
        assert_eq!(
            root.resolve("/new/dir/file").unwrap(),
            root.path().join("new/dir/file")
        );
    }

    #[test]
    fn symlinks_inside_the_root_are_followed() {
        let (_d, root) = root();
        fs::create_dir(root.path().join("real")).unwrap();
        symlink("real", root.path().join("link")).unwrap();
        symlink(root.path().join("real"), root.path().join("abs")).unwrap();
        assert_eq!(root.resolve("/link/f").unwrap(), root.path().join("real/f"));
        assert_eq!(root.resolve("/abs/f").unwrap(), root.path().join("real/f"));
    }

    #[test]
    fn symlinks_and_dotdot_that_leave_the_root_are_refused() {
        let (_d, root) = root();
        symlink("/etc", root.path().join("etc")).unwrap();
        symlink("../..", root.path().join("up")).unwrap();
        for p in ["/etc/passwd", "/up/x", "/../x"] {
            let err = root.resolve(p).unwrap_err().to_string();
            assert!(err.contains("escapes the root"), "{p}: {err}");
        }
    }

    #[test]
    fn atomic_write_sets_the_exact_mode_and_replaces_content() {
        let (_d, root) = root();
        let p = root.path().join("f");
        write_atomic(&p, b"one", 0o640, None).unwrap();
        write_atomic(&p, b"two", 0o4755, None).unwrap();
        let meta = fs::metadata(&p).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o4755);
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 1);
    }
}
