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
  sovereign rollback 3 --yes";

/// Converge back to generation N by planning and applying the profile it recorded.
///
/// Without N: the last succeeded generation before the current (newest) one. Confirms
/// like apply (--yes skips it) and records a new generation.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The generation to return to.
    pub generation: Option<u64>,
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
    let planned = planner::plan(
        target.profile,
        PlanOptions {
            root,
            allow_destroy: args.allow_destroy,
        },
        &RealHost,
    )
    .map_err(report)?;
    converge(
        out,
        &session,
        planned,
        !args.yes,
        &ExecOptions {
            no_rollback: false,
            rollback_to: Some(target.number),
        },
        args.json,
    )
}
