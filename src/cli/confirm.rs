//! `sovereign confirm TOKEN`: keep an apply made with `--confirm-within`; and the watcher
//! that rolls it back when no confirmation comes (`sovereign confirm-watch`, started by
//! apply itself, hidden).

use std::time::{Duration, SystemTime};

use super::plan::root_of;
use super::{CmdResult, Output, exit, report};
use crate::host::RealHost;
use crate::state::StateDir;
use crate::state::confirm::{self, Stage};

const EXAMPLES: &str = "\
Examples:
  sovereign apply profiles/forge.toml --yes --confirm-within 60s   # prints {\"armed\": {\"token\": ...}}
  sovereign confirm 3f1c...e9                                     # from a new session, within 60 s
  sovereign confirm --status 3f1c...e9                            # armed, applied, confirmed, rolled_back

Exit status: 0 confirmed (or nothing to confirm: the apply did not change the machine);
1 too late (the machine rolled back) or no such token.";

/// Keep an apply made with `--confirm-within`: without this, the machine rolls itself
/// back to the generation before it when the deadline passes.
///
/// Run it over a new connection: the point is to prove that the machine is still
/// reachable after the change (a fleet run does this for every host).
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The token `apply --confirm-within` printed; "-" reads it from stdin (so it is not
    /// in the process list).
    pub token: String,
    /// Print where the apply stands (armed, applied, confirmed, disarmed, rolled_back)
    /// instead of confirming it.
    #[arg(long)]
    pub status: bool,
}

/// The watcher `apply --confirm-within` starts (not for people).
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    #[arg(long)]
    pub token: String,
}

/// How often the watcher looks.
const POLL: Duration = Duration::from_millis(200);

pub fn run(mut args: Args, out: &Output) -> CmdResult {
    let root = root_of(out)?;
    let state = StateDir::new(&root);
    if args.token == "-" {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| miette::miette!("cannot read the token from stdin: {e}"))?;
        args.token = line.trim().to_string();
    }
    if !confirm::valid_token(&args.token) {
        return Err(miette::miette!(
            help = "use the token `apply --confirm-within` printed (32 hex digits)",
            "{:?} is not a confirmation token",
            args.token
        ));
    }
    let Some(stage) = confirm::stage(&state, &args.token) else {
        if args.status {
            out.stdout("unknown\n")?;
            return Ok(exit::OK);
        }
        return Err(miette::miette!(
            "no apply is waiting for confirmation under token {} (under {})",
            args.token,
            state.path.display()
        ));
    };
    if args.status {
        out.stdout(&format!("{}\n", stage.word()))?;
        return Ok(exit::OK);
    }
    match stage {
        Stage::Confirmed => {
            out.say("Already confirmed.");
            Ok(exit::OK)
        }
        Stage::Disarmed => {
            out.say("Nothing to confirm: that apply did not change the machine to keep.");
            Ok(exit::OK)
        }
        Stage::RolledBack => Err(miette::miette!(
            "too late: the deadline passed and the machine rolled back"
        )),
        Stage::Armed => Err(miette::miette!(
            help = "confirm once it has ended (`sovereign confirm --status TOKEN` says applied)",
            "the apply is still running: there is nothing to confirm yet"
        )),
        Stage::Applied => {
            if confirm::claim(&state, &args.token).map_err(report)? {
                confirm::mark(&state, &args.token, Stage::Confirmed).map_err(report)?;
                out.say("Confirmed: the apply is kept.");
                Ok(exit::OK)
            } else {
                Err(miette::miette!(
                    "too late: the deadline passed and the machine is rolling back"
                ))
            }
        }
    }
}

/// Wait for the apply to end, then for its confirmation until the deadline; roll back
/// when none came.
pub fn watch(args: WatchArgs, out: &Output) -> CmdResult {
    let root = root_of(out)?;
    let state = StateDir::new(&root);
    if !confirm::valid_token(&args.token) {
        return Err(miette::miette!(
            "{:?} is not a confirmation token",
            args.token
        ));
    }
    let Some(armed) = confirm::armed(&state, &args.token) else {
        return Err(miette::miette!("nothing is armed under {}", args.token));
    };
    let started = SystemTime::now();
    let applied_at = loop {
        match confirm::stage(&state, &args.token) {
            Some(Stage::Applied) => {
                break confirm::reached(&state, &args.token, Stage::Applied)
                    .unwrap_or_else(SystemTime::now);
            }
            Some(Stage::Armed) => {}
            _ => return Ok(exit::OK),
        }
        if started.elapsed().unwrap_or_default() > confirm::APPLY_BOUND {
            return Ok(exit::OK);
        }
        std::thread::sleep(POLL);
    };
    let deadline = applied_at + Duration::from_secs(armed.seconds);
    while SystemTime::now() < deadline {
        if confirm::stage(&state, &args.token) == Some(Stage::Confirmed) {
            return Ok(exit::OK);
        }
        std::thread::sleep(POLL);
    }
    if !confirm::claim(&state, &args.token).map_err(report)? {
        return Ok(exit::OK); // confirmed at the last moment
    }
    let session = crate::apply::begin(&root, &RealHost).map_err(report)?;
    let profile = match armed.rollback_to {
        Some(n) => {
            crate::state::generations::load(&session.state, n)
                .map_err(report)?
                .profile
        }
        None => crate::plan::resolve::Resolved::empty(),
    };
    let code = super::rollback::converge_to(
        out,
        &session,
        root,
        profile,
        &super::rollback::rolling_back_to(armed.rollback_to),
        false,
        false,
        false,
    );
    confirm::mark(&state, &args.token, Stage::RolledBack).map_err(report)?;
    code
}
