//! `sovereign apply`: converge the machine to a profile or a saved plan.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::output::Style as Paint;
use super::plan::{load_profile, root_of};
use super::{CmdResult, Output, exit, report};
use crate::apply::{self, ApplyReport, ExecOptions, Progress};
use crate::host::RealHost;
use crate::plan::Change;
use crate::plan::render::{self, Style};
use crate::planner::saved::SavedPlan;
use crate::planner::{self, PlanOptions, Planned};
use crate::state::generations::Outcome;

const EXAMPLES: &str = "\
Examples:
  sovereign apply profiles/demo.toml --root .demo/root --yes
  sovereign apply profiles/rtx4090.toml            # shows the plan, asks before changing
  sovereign plan profiles/rtx4090.toml -o p.plan && sovereign apply p.plan
  sovereign apply profiles/rtx4090.toml --no-rollback   # keep changes when a check fails
  sovereign apply profiles/forge.toml --yes --confirm-within 60s   # then: sovereign confirm TOKEN
  sovereign apply --fleet fleet.toml --on web-01 --on @forge --max-fail 30

Exit status: 0 applied (or nothing to do), 1 error or failed step, 3 a health check
failed and the changes were rolled back.";

/// Converge the machine to a profile or a saved plan.
///
/// Prints the plan, asks for confirmation on a terminal (--yes skips it; without a
/// terminal --yes is required), applies the changes in order with a journal, verifies
/// them, runs health checks and [[checks]], and records a generation. A failing check
/// rolls back to the state before this apply. A saved plan (`plan -o`) is applied
/// without asking, and refused as stale when anything it was made from changed.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// A profile, or a plan saved with `plan -o`.
    #[arg(required_unless_present = "fleet")]
    pub target: Option<PathBuf>,
    /// TARGET is a resolved profile (JSON, "-" for stdin), as a fleet run sends it.
    #[arg(long, hide = true)]
    pub resolved: bool,
    /// Keep the changes only if `sovereign confirm TOKEN` (the token is printed first)
    /// comes within this long after the apply ("60s"); otherwise this machine rolls back
    /// to the generation before by itself. A fleet run confirms each host over a new
    /// connection.
    #[arg(long, value_name = "DURATION")]
    pub confirm_within: Option<crate::profile::units::Duration>,
    /// Apply every host of this fleet file over SSH, each with its own profile and its
    /// own confirmation deadline (the fleet file's confirm_timeout).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["target", "confirm_within"])]
    pub fleet: Option<PathBuf>,
    /// With --fleet: only these hosts (NAME) or tags (@TAG); repeatable.
    #[arg(long, value_name = "HOST|@TAG", requires = "fleet")]
    pub on: Vec<String>,
    /// With --fleet: start no new host once this share of hosts (0-100) has failed.
    #[arg(long, value_name = "PERCENT", requires = "fleet", value_parser = clap::value_parser!(u8).range(0..=100))]
    pub max_fail: Option<u8>,
    /// With --fleet: when any host fails or rolls back, roll back the hosts that
    /// succeeded too.
    #[arg(long, requires = "fleet")]
    pub rollback_all_on_failure: bool,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub yes: bool,
    /// Carry out changes that lose data (files edited by hand are overwritten or removed).
    #[arg(long)]
    pub allow_destroy: bool,
    /// When a health check fails, leave the changes in place instead of rolling back.
    #[arg(long)]
    pub no_rollback: bool,
    /// Print the apply report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, out: &Output) -> CmdResult {
    if let Some(fleet) = &args.fleet {
        return super::fleet::apply(
            fleet,
            &crate::fleet::run::Options {
                on: args.on.clone(),
                allow_destroy: args.allow_destroy,
                max_fail: args.max_fail,
                rollback_all_on_failure: args.rollback_all_on_failure,
            },
            args.json,
            out,
        );
    }
    let root = root_of(out)?;
    let target = args
        .target
        .clone()
        .expect("clap requires a target without --fleet");
    let saved = if args.resolved {
        None
    } else {
        SavedPlan::read(&target).map_err(report)?
    };
    let (profile, allow_destroy) = match &saved {
        Some(s) => (load_profile(&s.profile_path)?, s.allow_destroy),
        None if args.resolved => (super::plan::load_resolved(&target)?, args.allow_destroy),
        None => (load_profile(&target)?, args.allow_destroy),
    };
    let session = apply::begin(&root, &RealHost).map_err(report)?;
    let planned = planner::plan(
        profile,
        PlanOptions {
            root: root.clone(),
            allow_destroy,
        },
        &RealHost,
    )
    .map_err(report)?;
    if let Some(s) = &saved {
        let why = s.staleness(&planned);
        if !why.is_empty() {
            return Err(miette::miette!(
                help = "make a new plan with `sovereign plan PROFILE -o FILE`",
                "the saved plan {} is stale: {}",
                target.display(),
                why.join("; ")
            ));
        }
    }
    let needs_confirmation = saved.is_none() && !args.yes;
    let armed = match args.confirm_within {
        Some(within) if planned.plan.has_pending() => {
            Some(arm(out, &root, &session, within.as_std())?)
        }
        _ => None,
    };
    let result = converge(
        out,
        &session,
        planned,
        needs_confirmation,
        &ExecOptions {
            no_rollback: args.no_rollback,
            rollback_to: None,
        },
        args.json,
    );
    if let Some(token) = armed {
        // The deadline runs from here; an apply that did not succeed has rolled itself
        // back or stopped, and its watcher must not roll back again.
        // Read from the generation record, not from `result`: a cut connection makes the
        // report's printing fail after a change that succeeded, and that is exactly the
        // change the watcher is for.
        let newest = crate::state::generations::list(&session.state)
            .ok()
            .and_then(|g| g.last().map(|g| g.outcome));
        let stage = if newest == Some(Outcome::Succeeded) {
            crate::state::confirm::Stage::Applied
        } else {
            crate::state::confirm::Stage::Disarmed
        };
        crate::state::confirm::mark(&session.state, &token, stage).map_err(report)?;
    }
    result
}

/// Arm the rollback watcher of an apply with a confirmation deadline, before anything
/// changes, and say so (the token on stdout, as JSON, first). The apply then ignores the
/// hang-up of its session: a change that cuts the connection must still finish, and be
/// rolled back by the watcher if nobody can confirm it.
fn arm(
    out: &Output,
    root: &crate::host::fs::Root,
    session: &apply::Session,
    within: std::time::Duration,
) -> miette::Result<String> {
    use crate::state::confirm;
    let token = confirm::new_token().map_err(report)?;
    let rollback_to = crate::state::generations::list(&session.state)
        .map_err(report)?
        .iter()
        .rev()
        .find(|g| g.outcome == Outcome::Succeeded)
        .map(|g| g.number);
    let seconds = within.as_secs().max(1);
    confirm::arm(
        &session.state,
        &token,
        &confirm::Armed {
            rollback_to,
            seconds,
        },
    )
    .map_err(report)?;
    let exe = std::env::current_exe()
        .map_err(|e| miette::miette!("cannot tell where the sovereign binary is: {e}"))?;
    let watcher = crate::host::Cmd::new([
        exe.into_os_string(),
        "--root".into(),
        root.path().as_os_str().to_owned(),
        "confirm-watch".into(),
        "--token".into(),
        token.clone().into(),
    ]);
    crate::host::spawn_detached(&watcher)
        .map_err(|e| miette::miette!("cannot start the rollback watcher: {e}"))?;
    // SAFETY: setting a signal's disposition to ignore has no preconditions.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    if out_json_armed(out, &token, seconds).is_err() {
        // stdout is gone already: the watcher still runs; nobody will confirm.
    }
    out.say(format!(
        "Armed: confirm within {seconds} s after the apply with `sovereign confirm {token}`, or this machine rolls back to {}.",
        match rollback_to {
            Some(n) => format!("generation {n}"),
            None => "the state before its first generation".into(),
        }
    ));
    Ok(token)
}

fn out_json_armed(out: &Output, token: &str, seconds: u64) -> miette::Result<()> {
    out.json(&serde_json::json!({"armed": {"token": token, "seconds": seconds}}))
}

/// Show the plan, confirm, execute and report: shared by apply and rollback.
pub(super) fn converge(
    out: &Output,
    session: &apply::Session,
    mut planned: Planned,
    needs_confirmation: bool,
    options: &ExecOptions,
    json: bool,
) -> CmdResult {
    if planned.plan.interrupted.is_none() {
        planned.plan.interrupted = session.recovered.clone();
    }
    out.say(render::text(&planned.plan, Style { color: out.color }));
    if !planned.plan.has_pending() {
        out.say("Nothing to apply; no generation recorded.");
        return Ok(exit::OK);
    }
    if needs_confirmation {
        confirm(out, planned.plan.summary.pending)?;
    }
    let progress = Bar::new(out);
    let report = apply::execute(session, planned, &RealHost, options, &progress).map_err(report)?;
    say_report(out, &report);
    if json {
        out.json(&report)?;
    }
    Ok(match report.outcome {
        Outcome::Succeeded => exit::OK,
        Outcome::RolledBack => exit::ROLLED_BACK,
        Outcome::Failed | Outcome::Running => exit::ERROR,
    })
}

fn confirm(out: &Output, count: usize) -> miette::Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(miette::miette!(
            help = "pass --yes to apply without confirmation",
            "apply needs confirmation but there is no terminal to ask on"
        ));
    }
    let mut stderr = std::io::stderr();
    write!(stderr, "Apply {count} changes? [y/N] ")
        .and_then(|_| stderr.flush())
        .map_err(|e| miette::miette!("cannot ask for confirmation: {e}"))?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| miette::miette!("cannot read the answer: {e}"))?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        out.say("Not applied.");
        Err(miette::miette!(
            "apply was not confirmed; nothing was changed"
        ))
    }
}

fn say_report(out: &Output, r: &ApplyReport) {
    for h in &r.health {
        let mark = if h.ok {
            out.paint(Paint::Green, "ok    ")
        } else {
            out.paint(Paint::Red, "FAILED")
        };
        out.say(format!("  {mark} {}: {}", h.name, h.detail));
    }
    if let Some(rb) = &r.rollback {
        let to = match rb.target {
            Some(n) => format!("generation {n}"),
            None => "the state before the first generation".into(),
        };
        out.say(format!("Rolled back to {to}:"));
        for c in &rb.undone {
            out.say(format!("  {:>3} {}", c.action.glyph(), c.address));
        }
        for c in &rb.kept {
            out.say(format!(
                "  kept {} ({})",
                c.address,
                c.reason.as_deref().unwrap_or("not changed")
            ));
        }
    }
    for note in &r.notes {
        out.say(format!("{} {note}", out.paint(Paint::Yellow, "note:")));
    }
    let line = format!(
        "{} {} of {} changes; generation {} {}.",
        match r.outcome {
            Outcome::Succeeded => "Applied",
            _ => "Made",
        },
        r.applied.len(),
        r.total,
        r.generation,
        r.outcome
    );
    let style = match r.outcome {
        Outcome::Succeeded => Paint::Green,
        Outcome::RolledBack => Paint::Yellow,
        _ => Paint::Red,
    };
    out.say(out.paint(style, &line));
}

/// An indicatif bar on stderr, hidden when stderr is not a terminal or under -q.
struct Bar(ProgressBar);

impl Bar {
    fn new(out: &Output) -> Bar {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if out.quiet || !std::io::stderr().is_terminal() {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} {wide_msg}")
                .expect("the template is valid"),
        );
        Bar(bar)
    }
}

impl Progress for Bar {
    fn start(&self, total: usize) {
        self.0.set_length(total as u64);
    }
    fn step(&self, change: &Change) {
        self.0
            .set_message(format!("{} {}", change.action.glyph(), change.address));
        self.0.inc(1);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}
