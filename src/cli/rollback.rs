//! `sovereign rollback`: converge back to an earlier generation.

use super::apply::converge;
use super::plan::root_of;
use super::{CmdResult, Output, report};
use crate::apply::{self, ExecOptions};
use crate::host::RealHost;
use crate::planner::{self, PlanOptions};
use crate::state::generations::{self, Outcome};

const EXAMPLES: &str = "\
Examples:
  sovereign rollback --root .demo/root            # to the last succeeded generation before the current one
  sovereign rollback 3 --yes
  sovereign rollback --before 3 --yes                # undo generation 3, even the first one";

/// Converge back to generation N by planning and applying the profile it recorded.
///
/// Without N: the last succeeded generation before the current (newest) one. Confirms
/// like apply (--yes skips it) and records a new generation.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The generation to return to.
    #[arg(conflicts_with = "before")]
    pub generation: Option<u64>,
    /// Return to the last succeeded generation before generation N, or, when there is
    /// none, to the state before the first generation (what sovereign made is removed;
    /// data is kept unless --allow-destroy). A fleet run undoes a host's apply this way.
    #[arg(long, value_name = "N")]
    pub before: Option<u64>,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub yes: bool,
    /// Carry out changes that lose data (files edited by hand are overwritten or removed).
    #[arg(long)]
    pub allow_destroy: bool,
    /// Print the apply report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, out: &Output) -> CmdResult {
    let root = root_of(out)?;
    let session = apply::begin(&root, &RealHost).map_err(report)?;
    if let Some(n) = args.before {
        let found = generations::last_succeeded_before(&session.state, n).map_err(report)?;
        let (profile, number) = match found {
            Some(g) => (g.profile, Some(g.number)),
            None => (crate::plan::resolve::Resolved::empty(), None),
        };
        out.say(match number {
            Some(g) => format!("Rolling back to generation {g}, the last succeeded before {n}."),
            None => format!(
                "Rolling back to the state before the first generation (none succeeded before {n})."
            ),
        });
        return converge_to(
            out,
            &session,
            root,
            profile,
            &rolling_back_to(number),
            args.allow_destroy,
            !args.yes,
            args.json,
        );
    }
    let target = match args.generation {
        Some(n) => generations::load(&session.state, n).map_err(report)?,
        None => {
            let all = generations::list(&session.state).map_err(report)?;
            let current = all.last().map(|g| g.number).ok_or_else(|| {
                miette::miette!("there are no generations to roll back to: nothing was applied under this root yet")
            })?;
            generations::last_succeeded_before(&session.state, current)
                .map_err(report)?
                .ok_or_else(|| {
                    miette::miette!(
                        help = "name a generation: `sovereign rollback N` (see `sovereign generations`)",
                        "no succeeded generation before generation {current}"
                    )
                })?
        }
    };
    if target.outcome != Outcome::Succeeded {
        out.say(format!(
            "note: generation {} ended {}; its profile is applied as recorded.",
            target.number, target.outcome
        ));
    }
    out.say(format!(
        "Rolling back to generation {} ({}).",
        target.number,
        target.profile.path.display()
    ));
    converge_to(
        out,
        &session,
        root,
        target.profile,
        &rolling_back_to(Some(target.number)),
        args.allow_destroy,
        !args.yes,
        args.json,
    )
}

/// A rollback to `generation` (`None`: the state before the first one).
pub(super) fn rolling_back_to(generation: Option<u64>) -> ExecOptions {
    ExecOptions {
        no_rollback: false,
        rollback_to: generation,
    }
}

/// Plan `profile` (a generation's, or the empty one for the state before the first
/// generation) and converge to it with `options` (a rollback names its target there).
#[allow(clippy::too_many_arguments)]
pub(super) fn converge_to(
    out: &Output,
    session: &apply::Session,
    root: crate::host::fs::Root,
    profile: crate::plan::resolve::Resolved,
    options: &ExecOptions,
    allow_destroy: bool,
    ask: bool,
    json: bool,
) -> CmdResult {
    let planned = planner::plan(
        profile,
        PlanOptions {
            root,
            allow_destroy,
        },
        &RealHost,
    )
    .map_err(report)?;
    converge(out, session, planned, ask, options, json)
}
