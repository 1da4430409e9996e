//! Files sovereign generates from the profile for a service (a unit file, a daemon's
//! options file): observed, diffed and written like managed files, with the same rules
//! of ownership. A generated file that was edited by hand, or that sovereign did not
//! write, is kept unless `--allow-destroy`.

use std::io::ErrorKind;

use anyhow::Context;
use sha2::{Digest, Sha256};
use similar::TextDiff;

use crate::host::fs::{self, Root};
use crate::plan::{Action, Address, Change, FieldChange};

/// Content kept for a diff only up to this size.
const DIFF_LIMIT: usize = 1 << 20;

/// What is at a generated file's path now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Have {
    Missing,
    Present {
        sha256: String,
        /// The content, for the diff (absent when large or not text).
        content: Option<Vec<u8>>,
        size: u64,
    },
}

impl Have {
    /// A digest of the stable observed state, for saved plans.
    pub fn digest(&self) -> String {
        match self {
            Have::Missing => "missing".into(),
            Have::Present { sha256, .. } => format!("file sha256={sha256}"),
        }
    }

    pub fn sha256(&self) -> Option<&str> {
        match self {
            Have::Missing => None,
            Have::Present { sha256, .. } => Some(sha256),
        }
    }
}

/// sha256 (hex) of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Read the file at `logical` under the root.
pub fn observe(root: &Root, logical: &str) -> anyhow::Result<Have> {
    let real = root.resolve(logical)?;
    match std::fs::read(&real) {
        Ok(bytes) => Ok(Have::Present {
            sha256: sha256(&bytes),
            size: bytes.len() as u64,
            content: (bytes.len() <= DIFF_LIMIT).then_some(bytes),
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Have::Missing),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", real.display())),
    }
}

fn describe(sha: &str, size: u64) -> String {
    format!("sha256:{} ({size} bytes)", &sha[..12.min(sha.len())])
}

fn unified(path: &str, old: &[u8], new: &[u8]) -> Option<String> {
    let old = std::str::from_utf8(old).ok()?;
    let new = std::str::from_utf8(new).ok()?;
    Some(
        TextDiff::from_lines(old, new)
            .unified_diff()
            .context_radius(3)
            .header(&format!("{path} (now)"), &format!("{path} (profile)"))
            .to_string(),
    )
}

/// What sovereign knows of a generated file: whether it owns it and what it last wrote.
#[derive(Debug, Clone, Copy)]
pub struct Ownership<'a> {
    pub owned: bool,
    /// sha256 of what sovereign last wrote.
    pub applied: Option<&'a str>,
}

/// The change that takes the file at `path` from `have` to `want` (`None`: the profile
/// no longer wants it), if any.
pub fn diff(
    address: Address,
    path: &str,
    want: Option<&[u8]>,
    have: &Have,
    own: Ownership<'_>,
    allow_destroy: bool,
) -> Option<Change> {
    let edited = match have {
        Have::Missing => false,
        Have::Present { sha256, .. } => own.applied != Some(sha256.as_str()),
    };
    let why_kept = if own.owned {
        "it was edited by hand since the last apply"
    } else {
        "it was not written by sovereign"
    };
    match (want, have) {
        (Some(want), Have::Missing) => Some(
            Change::new(address, Action::Create)
                .field(FieldChange::new(
                    "content",
                    None,
                    Some(describe(&sha256(want), want.len() as u64)),
                ))
                .with_diff(unified(path, b"", want)),
        ),
        (
            Some(want),
            Have::Present {
                sha256: now,
                content,
                size,
            },
        ) => {
            let after = sha256(want);
            if *now == after {
                return (!own.owned).then(|| {
                    Change::new(address, Action::Adopt)
                        .reason("the same content is already there; sovereign takes it over")
                });
            }
            let field = FieldChange::new(
                "content",
                Some(describe(now, *size)),
                Some(describe(&after, want.len() as u64)),
            );
            let text = content.as_deref().and_then(|old| unified(path, old, want));
            if !edited {
                return Some(
                    Change::new(address, Action::Update)
                        .field(field)
                        .with_diff(text),
                );
            }
            if allow_destroy {
                let mut c = Change::new(address, Action::Update)
                    .field(field)
                    .with_diff(text)
                    .reason(format!("{why_kept}; --allow-destroy overwrites it"));
                c.flags.destructive = true;
                return Some(c);
            }
            Some(
                Change::new(address, Action::Keep)
                    .field(field)
                    .reason(format!("{why_kept}; pass --allow-destroy to overwrite it")),
            )
        }
        (None, Have::Missing) => own.owned.then(|| {
            Change::new(address, Action::Delete).reason("already gone; sovereign forgets it")
        }),
        (
            None,
            Have::Present {
                sha256: now, size, ..
            },
        ) => {
            if !own.owned {
                return None;
            }
            let field = FieldChange::new("content", Some(describe(now, *size)), None);
            if !edited {
                return Some(Change::new(address, Action::Delete).field(field));
            }
            if allow_destroy {
                let mut c = Change::new(address, Action::Delete)
                    .field(field)
                    .reason(format!("{why_kept}; --allow-destroy removes it"));
                c.flags.destructive = true;
                return Some(c);
            }
            Some(
                Change::new(address, Action::Keep)
                    .field(field)
                    .reason(format!("{why_kept}; pass --allow-destroy to remove it")),
            )
        }
    }
}

/// Write `content` at `logical` under the root (folders created as needed), durably.
pub fn write(root: &Root, logical: &str, content: &[u8], mode: u32) -> anyhow::Result<()> {
    let real = root.resolve(logical)?;
    if let Some(dir) = real.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the folder {}", dir.display()))?;
    }
    fs::write_atomic(&real, content, mode, None)?;
    Ok(())
}

/// Remove the file at `logical` under the root, if it is there.
pub fn remove(root: &Root, logical: &str) -> anyhow::Result<()> {
    let real = root.resolve(logical)?;
    match fs::remove_file(&real) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> Address {
        Address::new("services", "unit", "x")
    }

    fn present(content: &[u8]) -> Have {
        Have::Present {
            sha256: sha256(content),
            content: Some(content.to_vec()),
            size: content.len() as u64,
        }
    }

    const MINE: Ownership<'static> = Ownership {
        owned: true,
        applied: None,
    };

    #[test]
    fn a_missing_file_is_created_with_a_diff() {
        let c = diff(addr(), "/x", Some(b"a\n"), &Have::Missing, MINE, false).unwrap();
        assert_eq!(c.action, Action::Create);
        assert!(c.diff.unwrap().contains("+a"));
    }

    #[test]
    fn a_file_edited_by_hand_is_kept_unless_allow_destroy() {
        let applied = sha256(b"a\n");
        let own = Ownership {
            owned: true,
            applied: Some(&applied),
        };
        let have = present(b"edited\n");
        let kept = diff(addr(), "/x", Some(b"b\n"), &have, own, false).unwrap();
        assert_eq!(kept.action, Action::Keep);
        let forced = diff(addr(), "/x", Some(b"b\n"), &have, own, true).unwrap();
        assert_eq!(forced.action, Action::Update);
        assert!(forced.flags.destructive);
        let untouched = diff(addr(), "/x", Some(b"b\n"), &present(b"a\n"), own, false).unwrap();
        assert_eq!(untouched.action, Action::Update);
        assert!(!untouched.flags.destructive);
    }

    #[test]
    fn same_content_is_no_change_once_owned() {
        let applied = sha256(b"a\n");
        let own = Ownership {
            owned: true,
            applied: Some(&applied),
        };
        assert!(diff(addr(), "/x", Some(b"a\n"), &present(b"a\n"), own, false).is_none());
        let adopt = diff(
            addr(),
            "/x",
            Some(b"a\n"),
            &present(b"a\n"),
            Ownership {
                owned: false,
                applied: None,
            },
            false,
        )
        .unwrap();
        assert_eq!(adopt.action, Action::Adopt);
    }

    #[test]
    fn a_dropped_file_is_deleted_only_when_sovereign_wrote_it() {
        let applied = sha256(b"a\n");
        let own = Ownership {
            owned: true,
            applied: Some(&applied),
        };
        let c = diff(addr(), "/x", None, &present(b"a\n"), own, false).unwrap();
        assert_eq!(c.action, Action::Delete);
        let stranger = Ownership {
            owned: false,
            applied: None,
        };
        assert!(diff(addr(), "/x", None, &present(b"a\n"), stranger, false).is_none());
    }
}
