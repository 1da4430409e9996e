//! The files diff: pure, from desired, observed (with the users and groups it resolved)
//! and owned to changes, each carrying the [`FileOp`] apply runs.

use anyhow::bail;
use similar::TextDiff;

use super::observe::{FileState, Ids};
use super::{Desired, DesiredFile, Entry, Observed, ObservedFile, Owned, address, file_key};
use crate::domain::DiffOptions;
use crate::plan::{Action, Change, FieldChange};

/// What apply does for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOp {
    /// Write the desired content with this mode and owner (backing up what is there first
    /// when the change adopts it).
    Write {
        uid: u32,
        gid: u32,
        /// The file was edited by hand since the last apply: save the edit under this name
        /// in the domain's `edits/` folder before writing.
        save_edit: Option<String>,
    },
    /// Put the backed-up original back, or remove the file sovereign created.
    Remove,
}

/// Who a desired file belongs to, resolved: ids to write, names to show.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owner {
    uid: u32,
    gid: u32,
    user: String,
    group: String,
}

fn owner(path: &str, want: &DesiredFile, ids: &Ids) -> anyhow::Result<Owner> {
    let key = match &want.requested_by {
        Some(by) => format!("{by} ({path})"),
        None => format!("files.\"{path}\""),
    };
    let uid = match &want.owner {
        None => ids.me.0,
        Some(name) => match ids.users.get(name) {
            Some(&u) => u,
            None => bail!(
                "{key}.owner = {name:?}: no such user on this machine; create the user first or drop `owner`"
            ),
        },
    };
    let gid = match &want.group {
        None => ids.me.1,
        Some(name) => match ids.groups.get(name) {
            Some(&g) => g,
            None => bail!(
                "{key}.group = {name:?}: no such group on this machine; create the group first or drop `group`"
            ),
        },
    };
    Ok(Owner {
        uid,
        gid,
        user: want.owner.clone().unwrap_or_else(|| ids.user_name(uid)),
        group: want.group.clone().unwrap_or_else(|| ids.group_name(gid)),
    })
}

/// Changes for every desired path, then removals of owned paths the profile dropped. An
/// owner or group this machine does not have is an error.
pub fn diff(
    desired: &Desired,
    observed: &Observed,
    owned: &Owned<Entry>,
    options: &DiffOptions,
) -> anyhow::Result<Vec<Change>> {
    let ids = &observed.ids;
    let mut changes = Vec::new();
    let mut save_edits: std::collections::BTreeMap<String, String> = Default::default();
    for (path, want) in desired {
        let who = owner(path, want, ids)?;
        let owned_file = match owned.get(&file_key(path)) {
            Some(Entry::File(f)) => Some(f),
            _ => None,
        };
        let now = observed.files.get(path).unwrap_or(&ObservedFile::Missing);
        let change = match now {
            ObservedFile::Missing => {
                let mut c = Change::new(address(path), Action::Create);
                c.fields = fields(None, want, &who, ids);
                c.diff = content_diff(path, None, want);
                if owned_file.is_some() {
                    c.reason = Some("managed file is missing; it is written again".into());
                }
                Some(c)
            }
            ObservedFile::File(have) => match owned_file {
                None => {
                    let mut c = Change::new(address(path), Action::Adopt);
                    c.fields = fields(Some(have), want, &who, ids);
                    c.diff = content_diff(path, Some(have), want);
                    c.reason = Some(
                        "exists and is not managed yet: it is backed up into sovereign's state, then managed; it is put back when the profile drops it"
                            .into(),
                    );
                    Some(c)
                }
                Some(own) => {
                    let same = matches(have, want, &who);
                    let recorded = own.applied_sha256.as_deref() == Some(have.sha256.as_str());
                    let hand_edited = own.applied_sha256.is_some() && !recorded;
                    if same && recorded {
                        None
                    } else if same {
                        Some(
                            Change::new(address(path), Action::Update)
                                .reason("records a write an interrupted apply made"),
                        )
                    } else {
                        // Drift: the machine does not match the profile, so the profile's
                        // content is written; a hand edit is kept as a copy in sovereign's
                        // state, so nothing is lost and no --allow-destroy is needed.
                        let mut c = Change::new(address(path), Action::Update);
                        c.fields = fields(Some(have), want, &who, ids);
                        c.diff = content_diff(path, Some(have), want);
                        if hand_edited && have.sha256 != want.sha256 {
                            let name = edit_name(path, &have.sha256);
                            c.reason = Some(format!(
                                "edited by hand since the last apply: the profile's content is written again, and the edited file is kept as {}",
                                edit_path(&name)
                            ));
                            save_edits.insert(path.clone(), name);
                        }
                        Some(c)
                    }
                }
            },
        };
        if let Some(mut c) = change {
            c = c.with_op(FileOp::Write {
                uid: who.uid,
                gid: who.gid,
                save_edit: save_edits.remove(path),
            });
            c.flags.sensitive = want.sensitive;
            if want.sensitive {
                c.diff = None;
            }
            changes.push(c);
        }
    }
    for (key, entry) in owned {
        let (Some(path), Entry::File(own)) = (key.strip_prefix("file:"), entry) else {
            continue;
        };
        if desired.contains_key(path) {
            continue;
        }
        let now = observed.files.get(path).unwrap_or(&ObservedFile::Missing);
        let mut c = Change::new(address(path), Action::Delete).with_op(FileOp::Remove);
        c.depends_on = own.remove_after.clone();
        match (now, &own.backup) {
            (ObservedFile::Missing, None) => {
                c.reason = Some("already gone; sovereign stops managing it".into());
            }
            (ObservedFile::Missing, Some(_)) => {
                c.fields.push(FieldChange::new(
                    "content",
                    None,
                    Some("the original, from the backup".into()),
                ));
                c.reason = Some("dropped from the profile: the original is put back".into());
            }
            (ObservedFile::File(have), backup) => {
                let hand_edited = own
                    .applied_sha256
                    .as_deref()
                    .is_some_and(|s| s != have.sha256);
                if hand_edited && !options.allow_destroy {
                    c.action = Action::Keep;
                    c.reason = Some(
                        "dropped from the profile but edited by hand since the last apply: left in place and still managed; pass --allow-destroy to remove it"
                            .into(),
                    );
                } else {
                    c.flags.destructive = hand_edited;
                    if backup.is_some() {
                        c.fields.push(FieldChange::new(
                            "content",
                            Some(describe(&have.sha256, have.size)),
                            Some("the original, from the backup".into()),
                        ));
                        c.reason =
                            Some("dropped from the profile: the original is put back".into());
                    } else {
                        c.fields.push(FieldChange::new(
                            "content",
                            Some(describe(&have.sha256, have.size)),
                            None,
                        ));
                        c.diff = have
                            .content
                            .as_deref()
                            .and_then(|old| unified(path, old, b""));
                        c.reason = Some(
                            "dropped from the profile: sovereign created it, so it is removed (with folders it created that are left empty)"
                                .into(),
                        );
                    }
                }
            }
        }
        if own.sensitive {
            c.flags.sensitive = true;
            c.diff = None;
            for f in &mut c.fields {
                *f = FieldChange::hidden(&f.name, f.before.is_some(), f.after.is_some());
            }
        }
        changes.push(c);
    }
    Ok(changes)
}

/// Where apply keeps hand edits, under the domain's state folder.
pub const EDITS_DIR: &str = "edits";

/// The name a hand edit is kept under: its digest (known when planning, so the plan can say
/// where it goes) and the file's own name.
fn edit_name(path: &str, sha256: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or("file");
    format!("{}-{base}", &sha256[..16.min(sha256.len())])
}

/// The kept edit's path as plans show paths (under the root).
pub fn edit_path(name: &str) -> String {
    format!(
        "{}/domains/files/{EDITS_DIR}/{name}",
        crate::state::STATE_DIR
    )
}

fn matches(have: &FileState, want: &DesiredFile, who: &Owner) -> bool {
    have.sha256 == want.sha256
        && have.mode == want.mode
        && have.uid == who.uid
        && have.gid == who.gid
}

fn describe(sha: &str, size: u64) -> String {
    format!("sha256:{} ({size} bytes)", &sha[..12.min(sha.len())])
}

fn fields(
    have: Option<&FileState>,
    want: &DesiredFile,
    who: &Owner,
    ids: &Ids,
) -> Vec<FieldChange> {
    let mut out = Vec::new();
    let content_differs = have.is_none_or(|h| h.sha256 != want.sha256);
    if content_differs {
        if want.sensitive {
            out.push(FieldChange::hidden("content", have.is_some(), true));
        } else {
            out.push(FieldChange::new(
                "content",
                have.map(|h| describe(&h.sha256, h.size)),
                Some(describe(&want.sha256, want.content.len() as u64)),
            ));
        }
    }
    if have.is_none_or(|h| h.mode != want.mode) {
        out.push(FieldChange::new(
            "mode",
            have.map(|h| format!("{:04o}", h.mode)),
            Some(format!("{:04o}", want.mode)),
        ));
    }
    if have.is_none_or(|h| h.uid != who.uid) {
        out.push(FieldChange::new(
            "owner",
            have.map(|h| ids.user_name(h.uid)),
            Some(who.user.clone()),
        ));
    }
    if have.is_none_or(|h| h.gid != who.gid) {
        out.push(FieldChange::new(
            "group",
            have.map(|h| ids.group_name(h.gid)),
            Some(who.group.clone()),
        ));
    }
    out
}

fn content_diff(path: &str, have: Option<&FileState>, want: &DesiredFile) -> Option<String> {
    match have {
        None => unified(path, b"", &want.content),
        Some(h) if h.sha256 == want.sha256 => None,
        Some(h) => h
            .content
            .as_deref()
            .and_then(|old| unified(path, old, &want.content)),
    }
}

/// A unified diff of two texts; `None` when either is not UTF-8 (binary content).
pub fn unified(path: &str, old: &[u8], new: &[u8]) -> Option<String> {
    let old = std::str::from_utf8(old).ok()?;
    let new = std::str::from_utf8(new).ok()?;
    let diff = TextDiff::from_lines(old, new);
    let text = diff
        .unified_diff()
        .context_radius(3)
        .header(&format!("{path} (now)"), &format!("{path} (profile)"))
        .to_string();
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domains::files::{Backup, OwnedFile};
    use sha2::{Digest, Sha256};

    fn want(text: &str) -> DesiredFile {
        let mut f = DesiredFile::new(text.as_bytes().to_vec(), 0o644);
        f.owner = Some("root".into());
        f.group = Some("root".into());
        f
    }

    fn have(text: &str, mode: u32) -> ObservedFile {
        ObservedFile::File(FileState {
            sha256: sha(text),
            size: text.len() as u64,
            mode,
            uid: 0,
            gid: 0,
            content: Some(text.as_bytes().to_vec()),
        })
    }

    fn sha(text: &str) -> String {
        hex::encode(Sha256::digest(text.as_bytes()))
    }

    fn owned(path: &str, applied: &str, backup: bool) -> (String, Entry) {
        (
            file_key(path),
            Entry::File(OwnedFile {
                applied_sha256: Some(sha(applied)),
                backup: backup.then(|| Backup {
                    file: "b".into(),
                    sha256: sha("orig"),
                    mode: 0o600,
                    uid: 0,
                    gid: 0,
                }),
                sensitive: false,
                remove_after: Vec::new(),
            }),
        )
    }

    fn run(
        desired: &[(&str, DesiredFile)],
        observed: &[(&str, ObservedFile)],
        owned_entries: Vec<(String, Entry)>,
        allow_destroy: bool,
    ) -> Vec<Change> {
        diff(
            &desired
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            &Observed {
                files: observed
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
                ids: root_ids(),
            },
            &owned_entries.into_iter().collect(),
            &DiffOptions { allow_destroy },
        )
        .unwrap()
    }

    /// A machine where only root exists, and sovereign runs as uid 1000.
    fn root_ids() -> Ids {
        Ids {
            me: (1000, 1000),
            users: [("root".to_string(), 0)].into(),
            groups: [("root".to_string(), 0)].into(),
            user_names: [(0, "root".to_string())].into(),
            group_names: [(0, "root".to_string())].into(),
        }
    }

    #[test]
    fn an_owner_the_machine_lacks_is_an_error_naming_the_key() {
        let mut f = want("x");
        f.owner = Some("no-such-user".into());
        let desired: Desired = [("/etc/x".to_string(), f)].into();
        let observed = Observed {
            ids: root_ids(),
            ..Observed::default()
        };
        let err = diff(&desired, &observed, &Owned::new(), &DiffOptions::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "files.\"/etc/x\".owner = \"no-such-user\": no such user on this machine; create the user first or drop `owner`"
        );
    }

    #[test]
    fn without_owner_a_file_belongs_to_the_user_sovereign_runs_as() {
        let mut f = want("x");
        f.owner = None;
        f.group = None;
        let c = run(&[("/a", f)], &[], vec![], false);
        assert_eq!(
            c[0].op::<FileOp>().unwrap(),
            &FileOp::Write {
                uid: 1000,
                gid: 1000,
                save_edit: None
            }
        );
        let owner = c[0].fields.iter().find(|f| f.name == "owner").unwrap();
        assert_eq!(
            owner.after.as_deref(),
            Some("1000"),
            "a uid without a name shows as the number"
        );
    }

    #[test]
    fn a_missing_file_is_created_with_every_field() {
        let c = run(&[("/etc/motd", want("hi\n"))], &[], vec![], false);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].action, Action::Create);
        let names: Vec<_> = c[0].fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["content", "mode", "owner", "group"]);
        insta::assert_snapshot!(c[0].diff.as_deref().unwrap());
    }

    #[test]
    fn an_owned_file_that_matches_needs_nothing() {
        let c = run(
            &[("/a", want("x"))],
            &[("/a", have("x", 0o644))],
            vec![owned("/a", "x", false)],
            false,
        );
        assert!(c.is_empty(), "{c:?}");
    }

    #[test]
    fn an_unmanaged_existing_file_is_adopted_with_a_diff() {
        let c = run(
            &[("/a", want("one\ntwo\n"))],
            &[("/a", have("one\n", 0o600))],
            vec![],
            false,
        );
        assert_eq!(c[0].action, Action::Adopt);
        insta::assert_snapshot!(c[0].diff.as_deref().unwrap());
        assert!(c[0].fields.iter().any(|f| f.name == "mode"
            && f.before.as_deref() == Some("0600")
            && f.after.as_deref() == Some("0644")));
    }

    #[test]
    fn a_hand_edit_is_drift_the_profile_wins_and_the_edit_is_kept_aside() {
        for (profile, applied) in [("old", "old"), ("new", "old")] {
            let c = run(
                &[("/etc/a.conf", want(profile))],
                &[("/etc/a.conf", have("edited", 0o644))],
                vec![owned("/etc/a.conf", applied, false)],
                false,
            );
            assert_eq!(c[0].action, Action::Update, "{profile}");
            assert!(c[0].is_pending());
            assert!(!c[0].flags.destructive, "nothing is lost: the edit is kept");
            let name = format!("{}-a.conf", &sha("edited")[..16]);
            assert_eq!(
                c[0].op::<FileOp>().unwrap(),
                &FileOp::Write {
                    uid: 0,
                    gid: 0,
                    save_edit: Some(name.clone())
                }
            );
            let reason = c[0].reason.as_deref().unwrap();
            assert!(
                reason.contains(&format!("/var/lib/sovereign/domains/files/edits/{name}")),
                "{reason}"
            );
        }
        // Not a hand edit: an update of what sovereign wrote keeps nothing aside.
        let c = run(
            &[("/a", want("new"))],
            &[("/a", have("old", 0o644))],
            vec![owned("/a", "old", false)],
            false,
        );
        assert!(matches!(
            c[0].op::<FileOp>().unwrap(),
            FileOp::Write {
                save_edit: None,
                ..
            }
        ));
    }

    #[test]
    fn dropped_files_are_removed_or_restored() {
        let c = run(
            &[],
            &[("/made", have("x", 0o644)), ("/taken", have("y", 0o644))],
            vec![owned("/made", "x", false), owned("/taken", "y", true)],
            false,
        );
        assert_eq!(c.len(), 2);
        assert!(c.iter().all(|c| c.action == Action::Delete));
        assert!(c.iter().all(|c| !c.flags.destructive));
        assert!(c[1].reason.as_deref().unwrap().contains("put back"));
    }

    #[test]
    fn a_write_an_interrupted_apply_made_is_recorded_not_kept() {
        let (key, Entry::File(mut own)) = owned("/a", "old", false) else {
            unreachable!()
        };
        own.applied_sha256 = None;
        let in_flight = vec![(key, Entry::File(own))];
        let done = run(
            &[("/a", want("new"))],
            &[("/a", have("new", 0o644))],
            in_flight.clone(),
            false,
        );
        assert_eq!(done[0].action, Action::Update);
        assert!(done[0].fields.is_empty());
        let not_yet = run(
            &[("/a", want("new"))],
            &[("/a", have("old", 0o644))],
            in_flight,
            false,
        );
        assert_eq!(
            not_yet[0].action,
            Action::Update,
            "not mistaken for a hand edit"
        );
        assert!(!not_yet[0].flags.destructive);
    }

    #[test]
    fn sensitive_content_never_shows() {
        let mut w = want("secret-token\n");
        w.sensitive = true;
        let c = run(
            &[("/k", w)],
            &[("/k", have("old-token\n", 0o644))],
            vec![],
            false,
        );
        assert!(c[0].flags.sensitive);
        assert!(c[0].diff.is_none());
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("token"), "{json}");
        assert!(json.contains("(sensitive)"));
    }
}
