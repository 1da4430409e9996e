//! Which ZFS answers on this machine (OpenZFS 2.x or zfs-fuse) and what it can do.
//!
//! The two dialects differ in commands (`zfs version`, `zfs set a=b c=d`), properties
//! (no lz4/zstd, recordsize at most 128K on zfs-fuse) and features (no zvols on
//! zfs-fuse). Everything that depends on the difference asks a [`Dialect`].

use serde::Serialize;

use crate::host::{Cmd, Host};

/// The ZFS implementation that answers the `zfs` and `zpool` commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "dialect", rename_all = "kebab-case")]
pub enum Dialect {
    /// OpenZFS (ZFS on Linux) 2.x and later, with feature flags.
    Openzfs {
        /// The userland version, e.g. "2.1.11".
        version: String,
    },
    /// Debian's zfs-fuse: a userspace daemon speaking a legacy pool version.
    ZfsFuse {
        /// The highest pool version it runs (23 on Debian 12).
        pool_version: u32,
    },
}

/// Why no ZFS answers; the message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NoZfs(pub String);

impl Dialect {
    /// A short name for messages: "OpenZFS 2.1.11", "zfs-fuse (pool version 23)".
    pub fn describe(&self) -> String {
        match self {
            Dialect::Openzfs { version } => format!("OpenZFS {version}"),
            Dialect::ZfsFuse { pool_version } => format!("zfs-fuse (pool version {pool_version})"),
        }
    }

    /// Whether volumes (zvols) can be created.
    pub fn has_zvols(&self) -> bool {
        matches!(self, Dialect::Openzfs { .. })
    }

    /// Whether `zfs set` takes several `name=value` pairs at once.
    pub fn sets_many_at_once(&self) -> bool {
        matches!(self, Dialect::Openzfs { .. })
    }

    /// The largest recordsize the dialect accepts, in bytes.
    pub fn max_recordsize(&self) -> u64 {
        match self {
            Dialect::ZfsFuse { .. } => 128 << 10,
            // OpenZFS before 2.2 caps zfs_max_recordsize at 1M by default.
            Dialect::Openzfs { version } if version_below(version, 2, 2) => 1 << 20,
            Dialect::Openzfs { .. } => 16 << 20,
        }
    }

    /// The accepted range of `ashift`.
    pub fn ashift_range(&self) -> std::ops::RangeInclusive<u8> {
        match self {
            Dialect::ZfsFuse { .. } => 9..=13,
            Dialect::Openzfs { .. } => 9..=16,
        }
    }

    /// Whether `value` is a compression setting this dialect knows.
    pub fn accepts_compression(&self, value: &str) -> bool {
        let legacy = matches!(value, "on" | "off" | "lzjb" | "gzip" | "zle")
            || value
                .strip_prefix("gzip-")
                .is_some_and(|n| matches!(n, "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "9"));
        match self {
            Dialect::ZfsFuse { .. } => legacy,
            Dialect::Openzfs { .. } => {
                legacy
                    || matches!(value, "lz4" | "zstd" | "zstd-fast")
                    || value
                        .strip_prefix("zstd-fast-")
                        .and_then(|n| n.parse::<u32>().ok())
                        .is_some_and(|n| {
                            (1..=10).contains(&n)
                                || [20, 30, 40, 50, 60, 70, 80, 90, 100, 500, 1000].contains(&n)
                        })
                    || value
                        .strip_prefix("zstd-")
                        .and_then(|n| n.parse::<u32>().ok())
                        .is_some_and(|n| (1..=19).contains(&n))
            }
        }
    }

    /// The compression values to suggest in an error message.
    pub fn compression_choices(&self) -> &'static str {
        match self {
            Dialect::ZfsFuse { .. } => "on, off, lzjb, gzip, gzip-1 to gzip-9, zle",
            Dialect::Openzfs { .. } => {
                "on, off, lz4, lzjb, gzip, gzip-1 to gzip-9, zle, zstd, zstd-1 to zstd-19, zstd-fast-N"
            }
        }
    }
}

fn version_below(version: &str, major: u32, minor: u32) -> bool {
    let mut parts = version
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (ma, mi) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (ma, mi) < (major, minor)
}

/// Ask the machine which ZFS answers: one `zpool upgrade -v` on zfs-fuse, and a
/// `zfs version` after it on OpenZFS.
pub fn detect(host: &dyn Host) -> Result<Dialect, NoZfs> {
    if !host.has_program("zfs") || !host.has_program("zpool") {
        return Err(NoZfs(
            "no `zfs`/`zpool` commands on PATH: install zfs-fuse or OpenZFS (`cargo xtask setup` installs zfs-fuse)".into(),
        ));
    }
    let run = |argv: &[&str]| {
        host.run(&Cmd::new(argv).timeout(std::time::Duration::from_secs(30)))
            .map_err(|e| NoZfs(format!("cannot run `{}`: {e}", argv.join(" "))))
    };
    // `zpool upgrade -v` answers on both dialects: zfs-fuse names its pool version,
    // OpenZFS says it supports feature flags and then `zfs version` names its release.
    let upgrade = run(&["zpool", "upgrade", "-v"])?;
    let text = format!("{}{}", upgrade.stdout_str(), upgrade.stderr_str());
    if let Some(v) = parse_pool_version(&text) {
        return Ok(Dialect::ZfsFuse { pool_version: v });
    }
    if text.contains("feature flags") {
        let version = run(&["zfs", "version"])?;
        return parse_zfs_version(&version.stdout_str()).ok_or_else(|| {
            NoZfs(format!(
                "`zfs version` printed something unexpected: {:?}",
                version.stdout_str().trim()
            ))
        });
    }
    if text.contains("zfs-fuse daemon") || text.contains("failed to initialize ZFS library") {
        return Err(NoZfs(
            "ZFS does not answer: the zfs-fuse daemon is not running (start it with `zfs-fuse -p /run/zfs-fuse.pid --no-kstat-mount`, or run `cargo xtask setup`)".into(),
        ));
    }
    Err(NoZfs(format!(
        "ZFS does not answer: `zpool upgrade -v` said {:?}",
        text.trim()
    )))
}

/// `zfs version` prints `zfs-2.1.11-1` (and `zfs-kmod-...` when the module is loaded).
pub fn parse_zfs_version(text: &str) -> Option<Dialect> {
    let first = text.lines().next()?.trim();
    let rest = first.strip_prefix("zfs-")?;
    let version: String = rest
        .split('-')
        .next()
        .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))?
        .to_string();
    Some(Dialect::Openzfs { version })
}

/// zfs-fuse: "This system is currently running ZFS pool version 23."
pub fn parse_pool_version(text: &str) -> Option<u32> {
    let tail = text.split("running ZFS pool version ").nth(1)?;
    tail.trim_end_matches(|c: char| !c.is_ascii_digit())
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The `zfs` key of `sovereign detect --json`: the dialect and what it can do, or why no
/// ZFS answers.
pub fn dialect_facts(host: &dyn Host) -> serde_json::Value {
    match detect(host) {
        Ok(d) => {
            let mut v = serde_json::to_value(&d).expect("a dialect serializes");
            let obj = v.as_object_mut().expect("a tagged enum is an object");
            obj.insert("available".into(), true.into());
            obj.insert("describe".into(), d.describe().into());
            obj.insert("zvols".into(), d.has_zvols().into());
            obj.insert("max_recordsize".into(), d.max_recordsize().into());
            obj.insert("compression".into(), d.compression_choices().into());
            v
        }
        Err(e) => serde_json::json!({ "available": false, "reason": e.0 }),
    }
}

/// One line for `sovereign detect`'s human output.
pub fn dialect_line(host: &dyn Host) -> String {
    match detect(host) {
        Ok(d) => format!(
            "ZFS: {}{}",
            d.describe(),
            if d.has_zvols() { "" } else { "; no zvols" }
        ),
        Err(e) => format!("ZFS: not available ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openzfs_version_is_read_from_zfs_version() {
        assert_eq!(
            parse_zfs_version("zfs-2.1.11-1\nzfs-kmod-2.1.11-1\n"),
            Some(Dialect::Openzfs {
                version: "2.1.11".into()
            })
        );
        assert_eq!(parse_zfs_version("unrecognized command 'version'"), None);
    }

    #[test]
    fn zfs_fuse_pool_version_is_read_from_zpool_upgrade() {
        let text = "This system is currently running ZFS pool version 23.\n\nThe following versions are supported:\n";
        assert_eq!(parse_pool_version(text), Some(23));
        assert_eq!(
            parse_pool_version("This system supports ZFS pool feature flags."),
            None
        );
    }

    #[test]
    fn dialects_differ_in_what_they_accept() {
        let fuse = Dialect::ZfsFuse { pool_version: 23 };
        let open = Dialect::Openzfs {
            version: "2.1.11".into(),
        };
        assert!(!fuse.accepts_compression("lz4"));
        assert!(!fuse.accepts_compression("zstd"));
        assert!(fuse.accepts_compression("gzip-9"));
        assert!(open.accepts_compression("lz4"));
        assert!(open.accepts_compression("zstd-19"));
        assert!(!open.accepts_compression("zstd-20"));
        assert_eq!(fuse.max_recordsize(), 128 << 10);
        assert_eq!(open.max_recordsize(), 1 << 20);
        assert_eq!(
            Dialect::Openzfs {
                version: "2.2.2".into()
            }
            .max_recordsize(),
            16 << 20
        );
        assert!(!fuse.has_zvols() && open.has_zvols());
    }
}
