//! The domain interface: the one shape every domain has. It names no domain; the
//! registry that lists them is [`crate::domains`].
//!
//! # How a domain plugs in
//!
//! 1. Write a type in the domain's own folder (`src/domains/storage/`) and implement [`Domain`]:
//!    - [`Domain::requests`] (optional): files it wants written and units it wants run,
//!      handed by the planner to the files and services domains ([`Requests`]).
//!    - [`Domain::desired`]: read the domain's sections of the resolved profile (and the
//!      requests addressed to it) into `Self::Desired`; pure: the profile and the facts
//!      only, never the machine.
//!    - [`Domain::planned`] (optional): the digests its resources will have after apply,
//!      for domains planned later (a service restarting when a file changes).
//!    - [`Domain::observe`]: read the machine, read-only, one bulk call per kind of resource
//!      (`zfs get -H -p ... `, one directory walk), never one process per resource.
//!    - [`Domain::digests`]: a digest of the observed state of every resource the plan
//!      covers, without volatile readings (free space, timestamps). A saved plan carries
//!      them; `apply FILE` refuses the plan as stale when one differs.
//!    - [`Domain::diff`]: pure and fallible: desired, observed and what sovereign owns
//!      (the domain's ledger entries) in, [`Change`]s out, each carrying the typed
//!      operation apply will run ([`Change::with_op`]). Addresses are `domain.kind:name`. Use
//!      `Keep` for what would lose data without `--allow-destroy`, `Adopt` to take over an
//!      existing unmanaged resource, and mark a change [`Change::not_applicable`] when it
//!      cannot be carried out on this machine (it keeps its action, so the plan still says
//!      what it would do; apply skips it and says so).
//!    - [`Domain::apply`]: carry out one pending change's operation through the host layer
//!      (`crate::host`), recording ownership in the ledger *before* acting when a crash in
//!      the middle could otherwise orphan something ([`LedgerTx::record`] is durable when it
//!      returns).
//!    - [`Domain::health`] (optional): checks that run after apply; a failure rolls back.
//! 2. Add one line to [`crate::domains::registry`].
//!
//! The engine does the rest for every domain alike: ordering by `depends_on`, the lock,
//! the journal, generations, confirmation, verification after apply (re-observe, re-diff,
//! and "inconsistent result after apply" if an applied address is still pending), rollback
//! and saved-plan staleness. A domain never prints: it returns data and errors with context.
//!
//! Profile sections no registered domain claims ([`Domain::SECTIONS`]) are reported by
//! `plan` as declared but not managed by this version, never silently ignored.

mod erased;
pub mod requests;
pub mod template;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use erased::{AnyDomain, DomainPlan, LedgerSink, erase};
pub use requests::{FileRequest, Requests, UnitRequest};

use crate::hardware::Facts;
use crate::host::Host;
use crate::host::fs::Root;
use crate::plan::resolve::Resolved;
use crate::plan::{Address, Change};

/// Top-level profile sections the engine itself handles (not a domain's).
pub const ENGINE_SECTIONS: &[&str] = &["imports", "host", "checks"];

/// What planning reads: the profile, the machine's facts, where files live, the host.
pub struct PlanContext<'a> {
    /// The resolved profile (templates loaded), the only source of desired state.
    pub profile: &'a Resolved,
    /// Hardware facts, for templates and domains that depend on the machine.
    pub facts: &'a Facts,
    /// The root managed paths are relocated under (`--root`, or `/`).
    pub root: &'a Root,
    /// The side-effect boundary; observation only reads through it.
    pub host: &'a dyn Host,
    /// The sovereign binary (canonical path): units that run it name it.
    pub exe: &'a Path,
    /// What every domain asks of the others ([`Domain::requests`]), gathered first.
    pub requests: &'a Requests,
    /// The digests the resources of the domains planned before this one will have after
    /// this apply ([`Domain::planned`]), by address: a service restarts on a file's change
    /// by reading its digest here, not by asking the files domain.
    pub planned: &'a BTreeMap<Address, String>,
}

/// Options that change what diff decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiffOptions {
    /// Allow changes that lose data (otherwise they are listed as `Keep`).
    pub allow_destroy: bool,
}

/// What applying reads: the root, the host, and the domain's own folder in the state
/// directory (backups).
pub struct ApplyContext<'a> {
    /// The root managed paths are relocated under.
    pub root: &'a Root,
    /// The side-effect boundary: every change to the machine goes through it.
    pub host: &'a dyn Host,
    /// `<state>/domains/<name>/`: the domain's own storage (backups of taken-over files).
    pub state_dir: &'a Path,
    /// The generation this apply records (storage names its pre-apply snapshots after it).
    pub generation: u64,
    /// What the operator must know of this step (where a hand edit was saved): shown after
    /// apply and recorded with the generation.
    pub notes: &'a Notes,
}

/// Notes a domain's apply leaves for the operator and the generation record.
#[derive(Debug, Default)]
pub struct Notes(std::sync::Mutex<Vec<String>>);

impl Notes {
    pub fn add(&self, note: impl Into<String>) {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(note.into());
    }

    /// Every note so far, emptied.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }
}

/// The outcome of one health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthResult {
    /// What was checked.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was seen (an error, the failing output).
    pub detail: String,
}

impl HealthResult {
    /// A check that cannot run on this machine (its service cannot be started here): it
    /// does not fail the apply, and its detail says it was skipped and why.
    pub fn skipped(name: impl Into<String>, why: &str) -> HealthResult {
        HealthResult {
            name: name.into(),
            ok: true,
            detail: format!("skipped (not applicable: {why})"),
        }
    }
}

/// One domain's ownership records: ledger key -> entry, persisted by the engine.
pub type Owned<E> = BTreeMap<String, E>;

/// A write handle on the domain's ledger entries during one apply step: each call is
/// journalled (fsynced) before it returns, so a crash never loses an ownership record.
pub struct LedgerTx<'a, E> {
    entries: &'a mut Owned<E>,
    sink: &'a mut dyn LedgerSink,
}

impl<'a, E: Serialize + Clone> LedgerTx<'a, E> {
    pub fn new(entries: &'a mut Owned<E>, sink: &'a mut dyn LedgerSink) -> Self {
        LedgerTx { entries, sink }
    }

    pub fn get(&self, key: &str) -> Option<&E> {
        self.entries.get(key)
    }

    pub fn entries(&self) -> &Owned<E> {
        self.entries
    }

    /// Record (or replace) an entry before acting on the machine; durable when this
    /// returns.
    pub fn record(&mut self, key: &str, entry: E) -> anyhow::Result<()> {
        let value = serde_json::to_value(&entry)?;
        self.sink.write(key, Some(value), true)?;
        self.entries.insert(key.to_string(), entry);
        Ok(())
    }

    /// Record the result of an action just taken: durable together with the end of the
    /// step (one fsync fewer per step). Use `record` for anything an action depends on.
    pub fn record_result(&mut self, key: &str, entry: E) -> anyhow::Result<()> {
        let value = serde_json::to_value(&entry)?;
        self.sink.write(key, Some(value), false)?;
        self.entries.insert(key.to_string(), entry);
        Ok(())
    }

    /// Drop an entry; durable when this returns.
    pub fn forget(&mut self, key: &str) -> anyhow::Result<()> {
        self.sink.write(key, None, true)?;
        self.entries.remove(key);
        Ok(())
    }
}

/// The typed shape of a domain. Implement this; [`erase`] adapts it for the registry.
pub trait Domain: Send + Sync + 'static {
    /// What the profile asks for, as this domain sees it. Serialized for the digest that
    /// pins a saved plan to its desired state.
    type Desired: Serialize + Send + Sync + 'static;
    /// What the machine has (read by `observe`).
    type Observed: Send + Sync + 'static;
    /// One ledger entry: what sovereign owns of one resource (keyed by the domain).
    type Entry: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;

    /// The domain's name: the first part of its addresses and its ledger section.
    const NAME: &'static str;
    /// The top-level profile sections this domain manages (`["files"]`, `["storage"]`).
    const SECTIONS: &'static [&'static str];

    /// What this domain asks of the others (files to write, units to run), from the
    /// profile and the facts alone. None by default.
    fn requests(&self, _cx: &PlanContext<'_>) -> anyhow::Result<Requests> {
        Ok(Requests::default())
    }

    /// Desired state from the resolved profile, the facts and the requests addressed to
    /// this domain; it never reads the machine. Errors name the key and what to do.
    fn desired(&self, cx: &PlanContext<'_>) -> anyhow::Result<Self::Desired>;

    /// The digest each resource of `desired` will have after this apply, for the domains
    /// planned after this one ([`PlanContext::planned`]). None by default.
    fn planned(&self, _desired: &Self::Desired) -> BTreeMap<Address, String> {
        BTreeMap::new()
    }

    /// Observe the machine, read-only, in bulk: what `desired` names and what `owned`
    /// records.
    fn observe(
        &self,
        cx: &PlanContext<'_>,
        desired: &Self::Desired,
        owned: &Owned<Self::Entry>,
    ) -> anyhow::Result<Self::Observed>;

    /// Digests of the observed state of every resource the plan covers (stable readings
    /// only).
    fn digests(&self, observed: &Self::Observed) -> BTreeMap<Address, String>;

    /// What the machine has of this domain's kind that sovereign neither manages nor will
    /// touch (links it did not make), for the plan to list. None by default.
    fn unmanaged(&self, _desired: &Self::Desired, _observed: &Self::Observed) -> Vec<String> {
        Vec::new()
    }

    /// Pure: the changes from `observed` to `desired`, given what sovereign owns. An
    /// error says why no plan can be made (a conflict between the two).
    fn diff(
        &self,
        desired: &Self::Desired,
        observed: &Self::Observed,
        owned: &Owned<Self::Entry>,
        options: &DiffOptions,
    ) -> anyhow::Result<Vec<Change>>;

    /// Carry out one pending change: the typed operation `diff` stored in it
    /// ([`Change::op`]), never one rebuilt from the text shown to people. Record ownership
    /// through `ledger` before acting where a crash could otherwise orphan a resource.
    fn apply(
        &self,
        cx: &ApplyContext<'_>,
        desired: &Self::Desired,
        change: &Change,
        ledger: &mut LedgerTx<'_, Self::Entry>,
    ) -> anyhow::Result<()>;

    /// Clean up after a step of this domain that a killed apply left in progress
    /// (`address`): what the step may have left half-made that no ledger entry records.
    /// Runs under the apply lock, before planning. Returns what it did, for the record.
    /// Nothing by default.
    fn recover(&self, _root: &Root, _address: &Address) -> anyhow::Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// Health checks after apply; a failing one rolls the apply back. None by default.
    fn health(&self, _cx: &ApplyContext<'_>, _desired: &Self::Desired) -> Vec<HealthResult> {
        Vec::new()
    }
}
