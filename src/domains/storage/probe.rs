//! Is a device or file free to become a vdev? sovereign's own check: zfs-fuse happily
//! creates a pool over an ext4 image, so the domain probes with `blkid -p` (low-level: it
//! reads signatures and partition tables, not a cache) and the mount table.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::host::{Cmd, Host};

/// What a device holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceUse {
    /// Nothing recognisable: free to use.
    Free,
    /// The path does not exist.
    Missing,
    /// In use; the reason says how ("holds an ext4 filesystem").
    InUse(String),
}

/// Probe one device or file.
pub fn probe(host: &dyn Host, path: &Path) -> Result<DeviceUse> {
    if !path.exists() {
        return Ok(DeviceUse::Missing);
    }
    if let Some(at) = mounted_at(path) {
        return Ok(DeviceUse::InUse(format!("is mounted at {}", at.display())));
    }
    let cmd = Cmd::new([
        "blkid".as_ref(),
        "-p".as_ref(),
        "-o".as_ref(),
        "export".as_ref(),
        path.as_os_str(),
    ])
    .timeout(Duration::from_secs(30));
    let out = host
        .run(&cmd)
        .with_context(|| format!("cannot probe {} (is util-linux installed?)", path.display()))?;
    match out.code {
        Some(0) => Ok(classify(&out.stdout_str())),
        // 2: no signature found.
        Some(2) => Ok(DeviceUse::Free),
        _ => bail!("`{}` failed: {}", cmd.display(), out.stderr_str().trim()),
    }
}

/// Read `blkid -o export` output.
pub fn classify(export: &str) -> DeviceUse {
    let get = |key: &str| {
        export
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    };
    if let Some(t) = get("TYPE") {
        if t == "zfs_member" {
            let pool = get("LABEL").unwrap_or("an unknown pool");
            return DeviceUse::InUse(format!("is a member of ZFS pool {pool}"));
        }
        return DeviceUse::InUse(format!("holds a signature of type {t}"));
    }
    if let Some(pt) = get("PTTYPE") {
        return DeviceUse::InUse(format!("holds a partition table ({pt})"));
    }
    DeviceUse::Free
}

/// Where the device is mounted, from the mount table (a read, not a process).
fn mounted_at(path: &Path) -> Option<PathBuf> {
    let real = std::fs::canonicalize(path).ok()?;
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    table.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let source = right.split_whitespace().nth(1)?;
        let target = left.split_whitespace().nth(4)?;
        (Path::new(source) == real).then(|| PathBuf::from(target))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_name_what_the_device_holds() {
        assert_eq!(
            classify("DEVNAME=e.img\nTYPE=ext4\nUSAGE=filesystem\n"),
            DeviceUse::InUse("holds a signature of type ext4".into())
        );
        assert_eq!(
            classify("DEVNAME=m1\nLABEL=zt3\nTYPE=zfs_member\n"),
            DeviceUse::InUse("is a member of ZFS pool zt3".into())
        );
        assert_eq!(
            classify("DEVNAME=/dev/sda\nPTTYPE=gpt\n"),
            DeviceUse::InUse("holds a partition table (gpt)".into())
        );
        assert_eq!(classify(""), DeviceUse::Free);
    }
}
