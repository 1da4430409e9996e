//! `sovereign activate`: converge the machine back to its current generation. What the
//! boot unit runs: some of what apply makes lives only in the running kernel (VXLAN links,
//! bridges, their addresses and forwarding entries) and is gone after a reboot.

use super::plan::root_of;
use super::{CmdResult, Output, exit, report};
use crate::apply::{self, ExecOptions};
use crate::host::RealHost;
use crate::state::generations;

const EXAMPLES: &str = "\
Examples:
  sovereign activate                    # what sovereign-activate.service runs at boot
  sovereign activate --root .demo/root --json";

/// Converge the machine to its current generation (the last succeeded one), as recorded.
///
/// Run at boot by `sovereign-activate.service`, which apply installs while the profile
/// declares a VXLAN segment: links made over netlink do not survive a reboot. It asks for
/// no confirmation (the generation was applied already), never destroys anything, and
/// leaves its changes in place when a health check fails (exit status 1): undoing them
/// would take the machine further from its generation. Nothing changed, nothing recorded.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Print the apply report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, out: &Output) -> CmdResult {
    let root = root_of(out)?;
    let session = apply::begin(&root, &RealHost).map_err(report)?;
    let Some(current) =
        generations::last_succeeded_before(&session.state, u64::MAX).map_err(report)?
    else {
        out.say("No succeeded generation under this root: nothing to activate.");
        return Ok(exit::OK);
    };
    out.say(format!(
        "Activating generation {} ({}).",
        current.number,
        current.profile.path.display()
    ));
    super::rollback::converge_to(
        out,
        &session,
        root,
        current.profile,
        &ExecOptions {
            no_rollback: true,
            rollback_to: None,
        },
        false,
        false,
        args.json,
    )
}
