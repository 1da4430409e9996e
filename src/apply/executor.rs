//! The executor: runs a plan's pending changes in order, journals every step, saves the
//! ledger, verifies, runs health checks and rolls back when one fails.

use std::collections::BTreeMap;

use anyhow::anyhow;
use serde::Serialize;

use crate::domain::{ApplyContext, HealthResult, LedgerSink, Notes, PlanContext, Requests};
use crate::host::Host;
use crate::host::fs::Root;
use crate::plan::resolve::Resolved;
use crate::plan::{Address, Change, Interrupted};
use crate::planner::{PlanOptions, Planned};
use crate::state::StateDir;
use crate::state::generations::{self, Generation, Outcome};
use crate::state::journal::{self, Journal, Record};
use crate::state::lock::{self, Lock};

/// Test-only: abort the process right after this step is journalled as done.
const STOP_AFTER_STEP: &str = "SOVEREIGN_TEST_STOP_AFTER_STEP";
/// Test-only: make this step fail with an injected error.
const FAIL_STEP: &str = "SOVEREIGN_TEST_FAIL_STEP";

/// A locked state folder, with any interrupted apply recovered into the ledger.
pub struct Session {
    /// Held for the whole apply; the kernel releases it if the process dies.
    _lock: Lock,
    /// The state folder.
    pub state: StateDir,
    /// The root managed paths live under.
    pub root: Root,
    /// An interrupted apply this session recovered from, to report.
    pub recovered: Option<Interrupted>,
}

/// Lock the state under `root` and recover from an interrupted apply, if any: its ledger
/// writes are replayed into `state.json`, what its step in progress left half-made is
/// cleaned up, and its generation is settled: `succeeded` when the machine turns out to
/// match its profile (killed after its last step), `failed` otherwise, with what was found.
/// A generation still `running` with no apply holding the lock (one that stopped on an
/// error it could not record) is settled as `failed`.
pub fn begin(root: &Root, host: &dyn Host) -> anyhow::Result<Session> {
    let state = StateDir::new(root);
    state.create()?;
    let lock = lock::acquire(&state)?;
    let mut recovered = None;
    if let Some(unfinished) = journal::unfinished(&state)? {
        let mut ledger = state.load_ledger()?;
        unfinished.replay(&mut ledger);
        state.save_ledger(&ledger)?;
        let info = unfinished.interrupted.clone();
        let mut notes = vec![format!(
            "interrupted after {} of {} steps; a later apply recovered its state",
            info.steps_done, info.steps_total
        )];
        if let Some(address) = &info.in_progress {
            if let Some(d) = crate::domains::registry()
                .into_iter()
                .find(|d| d.name() == address.domain)
            {
                notes.extend(d.recover(root, address)?);
            }
        }
        unfinished.close()?;
        settle(&state, root, host, info.generation, notes)?;
        recovered = Some(info);
    }
    // Each begin settles what it finds, so only the newest generation can still say
    // `running`.
    if let Some(mut g) = generations::latest(&state)? {
        if g.outcome == Outcome::Running {
            g.outcome = Outcome::Failed;
            g.finished = Some(generations::now());
            g.notes.push(
                "found still running with no apply holding the lock: it stopped before it could record its end"
                    .into(),
            );
            generations::save(&state, &g)?;
        }
    }
    // Temporary files of the state's own writes, left by a killed process.
    for dir in [state.path.clone(), state.generations_dir()] {
        crate::host::fs::remove_stale_temps(&dir, None)?;
    }
    Ok(Session {
        _lock: lock,
        state,
        root: root.clone(),
        recovered,
    })
}

/// Record what the run after an interrupted generation found: plan that generation's
/// profile again; nothing to do means it finished all but its record (it is `succeeded`,
/// so a later rollback returns to it), anything to do means it is `failed` and the
/// machine is between two generations.
fn settle(
    state: &StateDir,
    root: &Root,
    host: &dyn Host,
    number: u64,
    mut notes: Vec<String>,
) -> anyhow::Result<()> {
    let Ok(mut g) = generations::load(state, number) else {
        return Ok(());
    };
    let again = crate::planner::plan(
        g.profile.clone(),
        PlanOptions {
            root: root.clone(),
            allow_destroy: false,
        },
        host,
    );
    g.outcome = match again {
        Ok(p) if !p.plan.has_pending() => {
            notes.push(
                "the machine matched its profile: every change had been made, so it is recorded as finished"
                    .into(),
            );
            Outcome::Succeeded
        }
        Ok(p) => {
            notes.push(format!(
                "{} of its changes were still to make when the next apply looked",
                p.plan.summary.pending
            ));
            Outcome::Failed
        }
        Err(e) => {
            notes.push(format!("its profile could not be planned again: {e:#}"));
            Outcome::Failed
        }
    };
    g.finished = Some(generations::now());
    g.notes.extend(notes);
    generations::save(state, &g)
}

/// Options of one execution.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Leave the changes in place when a health check fails.
    pub no_rollback: bool,
    /// This apply is `sovereign rollback N`.
    pub rollback_to: Option<u64>,
}

/// Told about each step (the CLI draws a progress bar).
pub trait Progress {
    fn start(&self, total: usize);
    fn step(&self, change: &Change);
    fn finish(&self);
}

/// No progress display.
pub struct Quiet;

impl Progress for Quiet {
    fn start(&self, _total: usize) {}
    fn step(&self, _change: &Change) {}
    fn finish(&self) {}
}

/// What an execution did.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    /// The generation recorded.
    pub generation: u64,
    pub outcome: Outcome,
    /// Changes carried out, in order.
    pub applied: Vec<Address>,
    /// Pending changes the plan had.
    pub total: usize,
    /// The change that failed and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<(Address, String)>,
    /// "inconsistent result after apply" findings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inconsistencies: Vec<String>,
    /// Every health check and its result.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub health: Vec<HealthResult>,
    /// What the automatic rollback did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackReport>,
    /// The notes recorded with the generation.
    pub notes: Vec<String>,
}

/// What an automatic rollback did.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackReport {
    /// The generation whose profile was restored; `None` for the empty profile (before
    /// the first generation).
    pub target: Option<u64>,
    /// Changes carried out to restore it.
    pub undone: Vec<Change>,
    /// Changes listed but not done (kept).
    pub kept: Vec<Change>,
    /// Why the rollback itself failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Carry out `planned`: record a generation, run its pending changes, verify, check
/// health, and roll back on a failed check unless told not to. An error that stops it
/// (the journal cannot be written: the disk is full) ends the generation `failed`, saying
/// why, never leaves it `running`.
pub fn execute(
    session: &Session,
    planned: Planned,
    host: &dyn Host,
    options: &ExecOptions,
    progress: &dyn Progress,
) -> anyhow::Result<ApplyReport> {
    let state = &session.state;
    let number = generations::next_number(state)?;
    let mut record = Generation {
        number,
        started: generations::now(),
        finished: None,
        outcome: Outcome::Running,
        notes: Vec::new(),
        rollback_to: options.rollback_to,
        profile: planned.profile.clone(),
        plan: planned.plan.clone(),
    };
    generations::save(state, &record)?;
    match run_generation(session, planned, host, options, progress, &mut record) {
        Ok(report) => Ok(report),
        Err(e) => {
            if record.outcome == Outcome::Running {
                record.outcome = Outcome::Failed;
                record.finished = Some(generations::now());
                record.notes.push(format!("stopped: {e:#}"));
                // Best effort: if this cannot be written either, the next apply settles it.
                if let Err(save) = generations::save(state, &record) {
                    tracing::warn!("cannot record generation {number} as failed: {save:#}");
                }
            }
            Err(e)
        }
    }
}

fn run_generation(
    session: &Session,
    mut planned: Planned,
    host: &dyn Host,
    options: &ExecOptions,
    progress: &dyn Progress,
    record: &mut Generation,
) -> anyhow::Result<ApplyReport> {
    let state = &session.state;
    let number = record.number;
    let mut journal = Journal::create(state, number)?;
    let total = planned.plan.summary.pending;
    journal.append(
        &Record::Begin {
            generation: number,
            pid: std::process::id(),
            started: record.started.clone(),
            steps: total,
        },
        true,
    )?;

    let mut report = ApplyReport {
        generation: number,
        outcome: Outcome::Running,
        applied: Vec::new(),
        total,
        failed: None,
        inconsistencies: Vec::new(),
        health: Vec::new(),
        rollback: None,
        notes: skipped_notes(&planned.plan.changes),
    };
    progress.start(total);
    let steps = run_steps(session, &mut planned, host, &mut journal, progress, true);
    progress.finish();
    let steps = steps?;
    report.applied = steps.done.clone();
    report.notes.extend(steps.notes.iter().cloned());

    if let Some((address, error)) = &steps.failed {
        report.failed = Some((address.clone(), error.clone()));
        report.notes.push(format!(
            "{address} failed: {error}; {} of {total} changes were made before it and are kept; a re-run converges",
            steps.done.len()
        ));
        return finish(state, record, &mut journal, report, Outcome::Failed);
    }

    // Verification re-observes and re-diffs the desired state the plan holds: nothing
    // is asked or planned anew.
    let (requests, none) = (Requests::default(), BTreeMap::new());
    let pcx = PlanContext {
        profile: &planned.profile,
        facts: &planned.facts,
        root: &session.root,
        host,
        exe: &planned.exe,
        requests: &requests,
        planned: &none,
    };
    for (d, dp) in &planned.domains {
        let mine: Vec<Address> = steps
            .done
            .iter()
            .filter(|a| a.domain == d.name())
            .cloned()
            .collect();
        if !mine.is_empty() {
            report.inconsistencies.extend(d.verify(&pcx, dp, &mine)?);
        }
    }
    if !report.inconsistencies.is_empty() {
        report.notes.extend(report.inconsistencies.clone());
        return finish(state, record, &mut journal, report, Outcome::Failed);
    }

    for (d, dp) in &planned.domains {
        let dir = state.domain_dir(d.name());
        let notes = Notes::default();
        let cx = ApplyContext {
            root: &session.root,
            host,
            state_dir: &dir,
            generation: number,
            notes: &notes,
        };
        report.health.extend(d.health(&cx, dp));
    }
    report
        .health
        .extend(super::checks::run(&planned.profile.profile.checks, host));
    let failing: Vec<&HealthResult> = report.health.iter().filter(|h| !h.ok).collect();
    if failing.is_empty() {
        return finish(state, record, &mut journal, report, Outcome::Succeeded);
    }
    let failing_text = failing
        .iter()
        .map(|h| format!("{} failed: {}", h.name, h.detail))
        .collect::<Vec<_>>()
        .join("; ");
    if options.no_rollback {
        report.notes.push(format!(
            "{failing_text}; the changes are left in place (--no-rollback)"
        ));
        return finish(state, record, &mut journal, report, Outcome::Failed);
    }

    let target = generations::last_succeeded_before(state, number)?;
    let target_number = target.as_ref().map(|g| g.number);
    let profile = target.map(|g| g.profile).unwrap_or_else(Resolved::empty);
    let back = crate::planner::plan(
        profile,
        PlanOptions {
            root: session.root.clone(),
            allow_destroy: false,
        },
        host,
    );
    let mut rollback = RollbackReport {
        target: target_number,
        undone: Vec::new(),
        kept: Vec::new(),
        error: None,
    };
    let outcome = match back {
        Err(e) => {
            rollback.error = Some(format!("cannot plan the rollback: {e:#}"));
            Outcome::Failed
        }
        Ok(mut back) => {
            // Undo exactly what this apply did: a difference it did not make (left by an
            // earlier interrupted apply, say) is not its to undo.
            let mine: std::collections::BTreeSet<&Address> = steps.done.iter().collect();
            back.plan
                .changes
                .retain(|c| !c.is_pending() || mine.contains(&c.address));
            back.plan.summary = crate::plan::Summary::of(&back.plan.changes);
            rollback.kept = back
                .plan
                .changes
                .iter()
                .filter(|c| !c.is_pending())
                .cloned()
                .collect();
            let pending: BTreeMap<Address, Change> = back
                .plan
                .pending()
                .map(|c| (c.address.clone(), c.clone()))
                .collect();
            let steps = run_steps(session, &mut back, host, &mut journal, &Quiet, false)?;
            rollback.undone = steps
                .done
                .iter()
                .filter_map(|a| pending.get(a).cloned())
                .collect();
            match steps.failed {
                Some((a, e)) => {
                    rollback.error = Some(format!("{a} failed while rolling back: {e}"));
                    Outcome::Failed
                }
                None => Outcome::RolledBack,
            }
        }
    };
    let to = match target_number {
        Some(n) => format!("generation {n}"),
        None => "the state before the first generation".into(),
    };
    report.notes.push(match &rollback.error {
        None => format!(
            "{failing_text}; rolled back to {to}: {} changes undone",
            rollback.undone.len()
        ),
        Some(e) => format!("{failing_text}; the rollback to {to} failed: {e}"),
    });
    report.rollback = Some(rollback);
    finish(state, record, &mut journal, report, outcome)
}

/// One line per change this machine cannot carry out: apply skips it and says so.
fn skipped_notes(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .filter_map(|c| {
            let why = c.not_applicable.as_ref()?;
            Some(format!(
                "skipped {} ({}): not applicable: {why}",
                c.address,
                c.action.word()
            ))
        })
        .collect()
}

fn finish(
    state: &StateDir,
    record: &mut Generation,
    journal: &mut Journal,
    mut report: ApplyReport,
    outcome: Outcome,
) -> anyhow::Result<ApplyReport> {
    report.outcome = outcome;
    record.outcome = outcome;
    record.notes = report.notes.clone();
    record.finished = Some(generations::now());
    generations::save(state, record)?;
    journal.append(
        &Record::End {
            outcome: outcome.to_string(),
        },
        true,
    )?;
    Ok(report)
}

struct Steps {
    done: Vec<Address>,
    failed: Option<(Address, String)>,
    /// What the domains noted while applying.
    notes: Vec<String>,
}

/// Journals each ledger write of one domain.
struct JournalSink<'a> {
    journal: &'a mut Journal,
    domain: &'static str,
}

impl LedgerSink for JournalSink<'_> {
    fn write(
        &mut self,
        key: &str,
        entry: Option<serde_json::Value>,
        sync: bool,
    ) -> anyhow::Result<()> {
        self.journal.append(
            &Record::Ledger {
                domain: self.domain.to_string(),
                key: key.to_string(),
                entry,
            },
            sync,
        )
    }
}

fn test_hook(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Run the pending changes in order; stop at the first failure. The ledger is saved
/// whatever happens (the journal already holds every write).
fn run_steps(
    session: &Session,
    planned: &mut Planned,
    host: &dyn Host,
    journal: &mut Journal,
    progress: &dyn Progress,
    hooks: bool,
) -> anyhow::Result<Steps> {
    let (stop_after, fail_at) = if hooks {
        (test_hook(STOP_AFTER_STEP), test_hook(FAIL_STEP))
    } else {
        (None, None)
    };
    let pending: Vec<Change> = planned.plan.pending().cloned().collect();
    let mut steps = Steps {
        done: Vec::new(),
        failed: None,
        notes: Vec::new(),
    };
    let notes = Notes::default();
    for (i, change) in pending.iter().enumerate() {
        let step = i + 1;
        progress.step(change);
        journal.append(
            &Record::Start {
                step,
                address: change.address.clone(),
            },
            false,
        )?;
        let result = match planned
            .domains
            .iter_mut()
            .find(|(d, _)| d.name() == change.address.domain)
        {
            None => Err(anyhow!(
                "no domain {:?} in this build",
                change.address.domain
            )),
            Some(_) if fail_at == Some(step) => Err(anyhow!(
                "injected failure ({FAIL_STEP}={step}, a test-only hook)"
            )),
            Some((d, dp)) => {
                let dir = session.state.domain_dir(d.name());
                crate::host::fs::ensure_dir(&dir)?;
                let cx = ApplyContext {
                    root: &session.root,
                    host,
                    state_dir: &dir,
                    generation: journal.generation(),
                    notes: &notes,
                };
                let mut sink = JournalSink {
                    journal: &mut *journal,
                    domain: d.name(),
                };
                d.apply(&cx, dp, change, &mut sink)
            }
        };
        match result {
            Ok(()) => {
                journal.append(&Record::Done { step }, true)?;
                steps.done.push(change.address.clone());
                if stop_after == Some(step) {
                    std::process::abort();
                }
            }
            Err(e) => {
                let error = format!("{e:#}");
                journal.append(
                    &Record::Failed {
                        step,
                        error: error.clone(),
                    },
                    true,
                )?;
                steps.failed = Some((change.address.clone(), error));
                break;
            }
        }
    }
    steps.notes = notes.take();
    save_ledger(session, planned)?;
    Ok(steps)
}

fn save_ledger(session: &Session, planned: &mut Planned) -> anyhow::Result<()> {
    let mut ledger = planned.ledger.clone();
    for (d, dp) in &planned.domains {
        let value = d.owned_json(dp)?;
        let map: BTreeMap<String, serde_json::Value> = serde_json::from_value(value)?;
        if map.is_empty() {
            ledger.domains.remove(d.name());
        } else {
            ledger.domains.insert(d.name().to_string(), map);
        }
    }
    session.state.save_ledger(&ledger)?;
    planned.ledger = ledger;
    Ok(())
}
