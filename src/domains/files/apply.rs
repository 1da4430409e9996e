//! Applying one files change. Every step records its intent in the ledger before it
//! touches the disk, so a process killed at any point leaves a ledger the next plan
//! converges from (an in-flight write is recorded with `applied_sha256: None`).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use super::diff::{EDITS_DIR, edit_path};
use super::{Backup, Desired, Entry, FileOp, OwnedFile, dir_key, file_key};
use crate::domain::{ApplyContext, LedgerTx};
use crate::host::fs::{self, Ownership};
use crate::plan::{Action, Change};

/// Folders sovereign creates get this mode.
const DIR_MODE: u32 = 0o755;

pub fn apply(
    cx: &ApplyContext<'_>,
    desired: &Desired,
    change: &Change,
    ledger: &mut LedgerTx<'_, Entry>,
) -> anyhow::Result<()> {
    let path = change.address.name.as_str();
    // Resolve again at apply time: a symlink planted since the plan is refused here too.
    let real = cx.root.resolve(path)?;
    match (change.op::<FileOp>()?, change.action) {
        (
            FileOp::Write {
                uid,
                gid,
                save_edit,
            },
            Action::Create | Action::Update | Action::Adopt,
        ) => {
            let (uid, gid) = (*uid, *gid);
            let want = desired
                .get(path)
                .with_context(|| format!("{path} is not in the desired state"))?;
            let mut own = match ledger.get(&file_key(path)) {
                Some(Entry::File(f)) => f.clone(),
                _ => OwnedFile {
                    applied_sha256: None,
                    backup: None,
                    sensitive: want.sensitive,
                    remove_after: Vec::new(),
                },
            };
            if change.action == Action::Adopt && own.backup.is_none() {
                own.backup = Some(back_up(cx, path, &real)?);
            }
            if let Some(name) = save_edit {
                keep_edit(cx, path, &real, name)?;
            }
            create_parents(cx, &real, ledger)?;
            own.applied_sha256 = None;
            own.sensitive = want.sensitive;
            own.remove_after = want.remove_after.clone();
            ledger.record(&file_key(path), Entry::File(own.clone()))?;
            fs::write_atomic(
                &real,
                &want.content,
                want.mode,
                Some(Ownership { uid, gid }),
            )?;
            own.applied_sha256 = Some(want.sha256.clone());
            ledger.record_result(&file_key(path), Entry::File(own))?;
        }
        (FileOp::Remove, Action::Delete) => {
            let own = match ledger.get(&file_key(path)) {
                Some(Entry::File(f)) => f.clone(),
                _ => bail!("{path} is not in sovereign's ledger; nothing to remove"),
            };
            match &own.backup {
                Some(b) => {
                    // Mark the write in flight: if killed now, the next plan restores again
                    // instead of taking the restored original for a hand edit.
                    let mut flux = own.clone();
                    flux.applied_sha256 = None;
                    ledger.record(&file_key(path), Entry::File(flux))?;
                    let stored = backups_dir(cx).join(&b.file);
                    let content = std::fs::read(&stored)
                        .with_context(|| format!("cannot read the backup {}", stored.display()))?;
                    create_parents(cx, &real, ledger)?;
                    fs::write_atomic(
                        &real,
                        &content,
                        b.mode,
                        Some(Ownership {
                            uid: b.uid,
                            gid: b.gid,
                        }),
                    )?;
                    ledger.forget(&file_key(path))?;
                    fs::remove_file(&stored)?;
                }
                None => {
                    if std::fs::symlink_metadata(&real).is_ok() {
                        fs::remove_file(&real)?;
                    }
                    ledger.forget(&file_key(path))?;
                }
            }
            remove_empty_dirs(cx, desired, ledger)?;
        }
        (_, action) => {
            bail!(
                "the files domain has no {} step for this change",
                action.word()
            )
        }
    }
    Ok(())
}

fn backups_dir(cx: &ApplyContext<'_>) -> PathBuf {
    cx.state_dir.join("backups")
}

/// Keep the hand-edited file at `real` in the domain's `edits/` folder before the profile's
/// content replaces it, and say where.
fn keep_edit(cx: &ApplyContext<'_>, path: &str, real: &Path, name: &str) -> anyhow::Result<()> {
    let content = std::fs::read(real)
        .with_context(|| format!("cannot read {} to keep its hand edit", real.display()))?;
    let dir = cx.state_dir.join(EDITS_DIR);
    fs::ensure_dir(&dir).context("cannot create the folder for hand edits")?;
    // Owner-only: the edit may hold what the profile marks sensitive.
    fs::write_atomic(&dir.join(name), &content, 0o600, None)?;
    cx.notes.add(format!(
        "{path} was edited by hand; the edit is kept as {} (the profile's content replaced it)",
        edit_path(name)
    ));
    Ok(())
}

/// Copy the file at `real` into the state, keeping its mode and owner in the ledger.
fn back_up(cx: &ApplyContext<'_>, path: &str, real: &Path) -> anyhow::Result<Backup> {
    let content = std::fs::read(real)
        .with_context(|| format!("cannot read {} to back it up", real.display()))?;
    let meta = std::fs::metadata(real)?;
    let dir = backups_dir(cx);
    fs::ensure_dir(&dir).context("cannot create the backup folder")?;
    let name = hex::encode(Sha256::digest(path.as_bytes()));
    fs::write_atomic(&dir.join(&name), &content, 0o600, None)?;
    Ok(Backup {
        file: name,
        sha256: hex::encode(Sha256::digest(&content)),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
    })
}

/// Create the missing folders above `real`, recording each in the ledger first.
fn create_parents(
    cx: &ApplyContext<'_>,
    real: &Path,
    ledger: &mut LedgerTx<'_, Entry>,
) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    let mut dir = real.parent();
    while let Some(d) = dir {
        if d.exists() || !d.starts_with(cx.root.path()) {
            break;
        }
        missing.push(d.to_path_buf());
        dir = d.parent();
    }
    for d in missing.into_iter().rev() {
        let logical = logical(cx, &d);
        ledger.record(&dir_key(&logical), Entry::Dir)?;
        fs::create_dir(&d, DIR_MODE)?;
    }
    Ok(())
}

/// The path as the profile would write it: the real path minus the root.
fn logical(cx: &ApplyContext<'_>, real: &Path) -> String {
    let rel = real.strip_prefix(cx.root.path()).unwrap_or(real);
    format!("/{}", rel.display())
}

/// Remove folders sovereign created that are now empty and hold no desired file.
fn remove_empty_dirs(
    cx: &ApplyContext<'_>,
    desired: &Desired,
    ledger: &mut LedgerTx<'_, Entry>,
) -> anyhow::Result<()> {
    let mut dirs: Vec<String> = ledger
        .entries()
        .keys()
        .filter_map(|k| k.strip_prefix("dir:").map(str::to_string))
        .collect();
    // Deepest first, so a parent empties once its children are gone.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.len()));
    for dir in dirs {
        let prefix = format!("{dir}/");
        if desired.keys().any(|p| p.starts_with(&prefix)) {
            continue;
        }
        let real = cx.root.join(&dir);
        // Gone already, or removed now: either way sovereign no longer owns it.
        if !real.exists() || fs::remove_dir_if_empty(&real)? {
            ledger.forget(&dir_key(&dir))?;
        }
    }
    Ok(())
}
