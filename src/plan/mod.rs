//! The plan: an ordered list of changes, a pure value built by diffing what the profile
//! wants with what the machine has.
//!
//! [`Plan`] is data only: rendering it ([`render`]), saving it ([`saved`]) and running
//! it (`crate::apply`) are separate. The JSON shape is documented in docs/plan-format.md
//! and pinned by snapshot tests; [`FORMAT_VERSION`] changes whenever it does.

pub mod change;

pub mod order;
pub mod render;

pub mod resolve;

use serde::{Deserialize, Serialize};

pub use change::{Action, Address, Change, FieldChange, Flags, SENSITIVE};

/// The version of the plan JSON (printed by `plan --json` and saved by `plan -o`).
pub const FORMAT_VERSION: u32 = 1;

/// What would change, in the order apply runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// [`FORMAT_VERSION`] of this document.
    pub format_version: u32,
    /// Every change, pending or listed only, in execution order.
    pub changes: Vec<Change>,
    /// Profile sections that are declared but that no domain of this build manages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmanaged: Vec<Unmanaged>,
    /// An apply that was interrupted before it finished, found in the journal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<Interrupted>,
    /// Counts by action.
    pub summary: Summary,
}

/// A declared profile section that this version does not manage yet, or what a domain
/// found on the machine and leaves alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unmanaged {
    /// The profile section (`storage`, `inference`).
    pub section: String,
    /// What the user should know.
    pub note: String,
}

/// What the journal says about an apply that never finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interrupted {
    /// The generation the interrupted apply was recording.
    pub generation: u64,
    /// The process that ran it.
    pub pid: u32,
    /// When it started (RFC 3339).
    pub started: String,
    /// Steps that finished.
    pub steps_done: usize,
    /// Steps the plan had.
    pub steps_total: usize,
    /// The step that had started and not finished, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress: Option<Address>,
    /// The apply is still running (it holds the lock): not interrupted, only unfinished.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub running: bool,
}

impl Interrupted {
    /// One line for people.
    pub fn describe(&self) -> String {
        if self.running {
            return format!(
                "an apply is running (generation {}, pid {}, started {}): {} of {} steps done so far; this plan shows the machine mid-apply",
                self.generation, self.pid, self.started, self.steps_done, self.steps_total
            );
        }
        let mut s = format!(
            "an interrupted apply (generation {}, pid {}, started {}) was found: {} of {} steps done",
            self.generation, self.pid, self.started, self.steps_done, self.steps_total
        );
        if let Some(a) = &self.in_progress {
            s.push_str(&format!("; {a} had started"));
        }
        s.push_str("; this run converges from where it stopped");
        s
    }
}

/// How many changes of each kind a plan holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub replace: usize,
    pub delete: usize,
    pub adopt: usize,
    pub keep: usize,
    /// Changes marked not applicable on this machine (counted apart from their action).
    pub not_applicable: usize,
    /// Changes apply would carry out (create + update + replace + delete + adopt), never
    /// those marked not applicable.
    pub pending: usize,
    /// Pending changes that lose data.
    pub destructive: usize,
}

impl Summary {
    pub fn of(changes: &[Change]) -> Summary {
        let mut s = Summary::default();
        for c in changes {
            if c.not_applicable.is_some() {
                s.not_applicable += 1;
                continue;
            }
            match c.action {
                Action::Create => s.create += 1,
                Action::Update => s.update += 1,
                Action::Replace => s.replace += 1,
                Action::Delete => s.delete += 1,
                Action::Adopt => s.adopt += 1,
                Action::Keep => s.keep += 1,
            }
            if c.is_pending() {
                s.pending += 1;
                if c.flags.destructive {
                    s.destructive += 1;
                }
            }
        }
        s
    }
}

impl Plan {
    /// Build a plan from unordered changes: orders them by their dependencies.
    pub fn new(changes: Vec<Change>, unmanaged: Vec<Unmanaged>) -> Plan {
        let changes = order::by_dependencies(changes);
        Plan {
            format_version: FORMAT_VERSION,
            summary: Summary::of(&changes),
            changes,
            unmanaged,
            interrupted: None,
        }
    }

    /// The changes apply carries out, in order.
    pub fn pending(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.is_pending())
    }

    pub fn has_pending(&self) -> bool {
        self.summary.pending > 0
    }
}
