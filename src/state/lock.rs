//! The apply lock: an flock on `<state>/lock`, released by the kernel when the holder
//! exits or dies, so a crashed apply never leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};

use anyhow::{Context, bail};
use fs4::{FileExt, TryLockError};

use super::StateDir;

/// A held lock; dropping it releases the flock.
#[derive(Debug)]
pub struct Lock {
    /// The locked file; the flock lives as long as this handle.
    _file: File,
}

/// Take the lock at once or fail naming the holder's pid and start time.
pub fn acquire(state: &StateDir) -> anyhow::Result<Lock> {
    let path = state.lock_path();
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    match FileExt::try_lock(&file) {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            file.read_to_string(&mut holder).ok();
            let holder = holder.trim().replace('\n', ", ");
            bail!(
                "another sovereign apply holds the lock {} ({}); wait for it to finish",
                path.display(),
                if holder.is_empty() {
                    "holder unknown".to_string()
                } else {
                    holder
                }
            );
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    file.set_len(0)
        .and_then(|_| file.seek(SeekFrom::Start(0)))
        .and_then(|_| writeln!(file, "pid {}\nstarted {started}", std::process::id()))
        .and_then(|_| file.sync_data())
        .with_context(|| format!("cannot write the lock file {}", path.display()))?;
    Ok(Lock { _file: file })
}

/// The pid of an apply running now: the lock file names a live process other than this
/// one. Read-only: taking the lock, even shared and for an instant, could make a starting
/// apply fail.
pub fn running_apply(state: &StateDir) -> Option<u32> {
    let text = std::fs::read_to_string(state.lock_path()).ok()?;
    let pid: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("pid "))?
        .trim()
        .parse()
        .ok()?;
    if pid == std::process::id() || pid == 0 {
        return None;
    }
    // Signal 0 checks that the process exists without touching it; EPERM means it exists
    // under another user.
    // SAFETY: kill with signal 0 sends nothing.
    let alive = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    alive.then_some(pid)
}
