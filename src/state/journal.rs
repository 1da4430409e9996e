//! The append-only journal of one apply: one JSON record per line, fsynced before the
//! step it describes goes on, so a killed apply leaves an exact account of how far it got.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{Ledger, StateDir};
use crate::plan::{Address, Interrupted};

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Record {
    /// The apply of `generation` began with `steps` pending changes.
    Begin {
        generation: u64,
        pid: u32,
        started: String,
        steps: usize,
    },
    /// Step `step` (1-based) is about to run.
    Start { step: usize, address: Address },
    /// A ledger write made during a step (replayed over `state.json` after a crash).
    Ledger {
        domain: String,
        key: String,
        entry: Option<serde_json::Value>,
    },
    /// Step `step` finished.
    Done { step: usize },
    /// Step `step` failed.
    Failed { step: usize, error: String },
    /// The apply ended; nothing after this line.
    End { outcome: String },
}

/// An open journal being appended to.
pub struct Journal {
    /// The file, opened for appending.
    file: File,
    /// Its path, for messages.
    path: PathBuf,
    /// The generation this journal records; domains name their artefacts after it
    /// (storage's `@sovereign-pre-<generation>` snapshots).
    generation: u64,
    /// Records appended so far (for the test-only full-disk hook).
    written: usize,
}

/// Test-only: the journal's disk is "full" after this many records (never set it outside
/// tests): the write fails as `ENOSPC` would.
const FULL_AFTER: &str = "SOVEREIGN_TEST_JOURNAL_FULL_AFTER";

impl Journal {
    /// Start the journal of `generation`.
    pub fn create(state: &StateDir, generation: u64) -> anyhow::Result<Journal> {
        let path = state.journal_dir().join(format!("{generation}.jsonl"));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open the journal {}", path.display()))?;
        crate::host::fs::sync_dir(&state.journal_dir())?;
        Ok(Journal {
            file,
            path,
            generation,
            written: 0,
        })
    }

    /// The generation this journal records.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Reopen an existing journal to close it.
    fn reopen(path: &Path, generation: u64) -> anyhow::Result<Journal> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open the journal {}", path.display()))?;
        Ok(Journal {
            file,
            path: path.to_path_buf(),
            generation,
            written: 0,
        })
    }

    /// Append a record; durable when `sync` (every record a later step depends on).
    pub fn append(&mut self, record: &Record, sync: bool) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        let full = std::env::var(FULL_AFTER)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|n| self.written >= n);
        self.written += 1;
        if full {
            return Err(std::io::Error::from_raw_os_error(libc::ENOSPC)).with_context(|| {
                format!(
                    "cannot write the journal {} (injected by {FULL_AFTER}, a test-only hook)",
                    self.path.display()
                )
            });
        }
        self.file
            .write_all(&line)
            .and_then(|_| if sync { self.file.sync_data() } else { Ok(()) })
            .with_context(|| format!("cannot write the journal {}", self.path.display()))
    }
}

/// The latest journal, when its apply never wrote `End`.
pub struct Unfinished {
    /// What to tell the user.
    pub interrupted: Interrupted,
    /// The ledger writes it made, in order.
    pub records: Vec<(String, String, Option<serde_json::Value>)>,
    /// The journal file.
    pub path: PathBuf,
}

/// Find the newest journal and, if its apply did not finish, what it did.
pub fn unfinished(state: &StateDir) -> anyhow::Result<Option<Unfinished>> {
    let dir = state.journal_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut newest: Option<(u64, PathBuf)> = None;
    for entry in entries {
        let path = entry?.path();
        let n = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".jsonl"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(n) = n {
            if newest.as_ref().is_none_or(|(m, _)| n > *m) {
                newest = Some((n, path));
            }
        }
    }
    let Some((generation, path)) = newest else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the journal {}", path.display()))?;
    let mut interrupted = Interrupted {
        generation,
        pid: 0,
        started: String::new(),
        steps_done: 0,
        steps_total: 0,
        in_progress: None,
        running: false,
    };
    let mut records = Vec::new();
    for line in text.lines() {
        // A line cut short by the crash is the last one; it carries nothing durable.
        let Ok(record) = serde_json::from_str::<Record>(line) else {
            break;
        };
        match record {
            Record::Begin {
                pid,
                started,
                steps,
                ..
            } => {
                interrupted.pid = pid;
                interrupted.started = started;
                interrupted.steps_total = steps;
            }
            Record::Start { address, .. } => interrupted.in_progress = Some(address),
            Record::Ledger { domain, key, entry } => records.push((domain, key, entry)),
            Record::Done { .. } => {
                interrupted.steps_done += 1;
                interrupted.in_progress = None;
            }
            Record::Failed { .. } => interrupted.in_progress = None,
            Record::End { .. } => return Ok(None),
        }
    }
    Ok(Some(Unfinished {
        interrupted,
        records,
        path,
    }))
}

impl Unfinished {
    /// The ledger as the interrupted apply left it.
    pub fn replay(&self, ledger: &mut Ledger) {
        for (domain, key, entry) in &self.records {
            ledger.apply_record(domain, key, entry.clone());
        }
    }

    /// Close the journal: its ledger writes are in `state.json` now.
    pub fn close(&self) -> anyhow::Result<()> {
        let mut j = Journal::reopen(&self.path, self.interrupted.generation)?;
        j.append(
            &Record::End {
                outcome: "failed (interrupted; recovered by a later apply)".into(),
            },
            true,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fs::Root;

    fn state() -> (tempfile::TempDir, StateDir) {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(&Root::new(dir.path()).unwrap());
        state.create().unwrap();
        (dir, state)
    }

    #[test]
    fn an_unfinished_journal_reports_progress_and_replays_its_ledger_writes() {
        let (_d, state) = state();
        let mut j = Journal::create(&state, 7).unwrap();
        let a = Address::new("files", "file", "/a");
        let b = Address::new("files", "file", "/b");
        for r in [
            Record::Begin {
                generation: 7,
                pid: 99,
                started: "t".into(),
                steps: 3,
            },
            Record::Start {
                step: 1,
                address: a.clone(),
            },
            Record::Ledger {
                domain: "files".into(),
                key: "file:/a".into(),
                entry: Some(serde_json::json!({"kind": "dir"})),
            },
            Record::Done { step: 1 },
            Record::Start {
                step: 2,
                address: b.clone(),
            },
        ] {
            j.append(&r, true).unwrap();
        }
        let u = unfinished(&state).unwrap().expect("no End record");
        assert_eq!(u.interrupted.generation, 7);
        assert_eq!(u.interrupted.pid, 99);
        assert_eq!(
            (u.interrupted.steps_done, u.interrupted.steps_total),
            (1, 3)
        );
        assert_eq!(u.interrupted.in_progress, Some(b));
        let mut ledger = Ledger::default();
        u.replay(&mut ledger);
        assert!(ledger.domains["files"].contains_key("file:/a"));

        u.close().unwrap();
        assert!(
            unfinished(&state).unwrap().is_none(),
            "closed journals are finished"
        );
    }

    #[test]
    fn a_line_cut_short_by_a_crash_is_ignored() {
        let (_d, state) = state();
        let path = state.journal_dir().join("1.jsonl");
        std::fs::write(
            &path,
            "{\"event\":\"begin\",\"generation\":1,\"pid\":5,\"started\":\"t\",\"steps\":2}\n{\"event\":\"do",
        )
        .unwrap();
        let u = unfinished(&state).unwrap().unwrap();
        assert_eq!(u.interrupted.steps_total, 2);
        assert_eq!(u.interrupted.steps_done, 0);
    }
}
