//! `sovereign model rm`: remove a cached model.

use std::io::{BufRead, IsTerminal, Write};

use super::pull::open_cache;
use crate::cli::{CmdResult, Output, exit, report};
use crate::inference::cache::ModelName;

const EXAMPLES: &str = "\
Examples:
  sovereign model rm coder-7b          # asks first
  sovereign model rm coder-7b --yes    # scripts: no question";

/// Remove a cached model. Its file goes too unless another name points at it.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The model name.
    pub name: String,

    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, out: &Output) -> CmdResult {
    let name = ModelName::parse(&args.name).map_err(|e| miette::miette!("{e}"))?;
    let cache = open_cache(out)?;
    if !args.yes && !confirm(&name)? {
        out.say("nothing removed");
        return Ok(exit::ERROR);
    }
    let removed = cache.remove(&name).map_err(report)?;
    if args.json {
        out.json(&removed)?;
    } else if removed.blob_removed {
        out.say(format!("removed {name} (sha256 {})", removed.sha256));
    } else {
        out.say(format!(
            "removed {name}; its file stays, another name points at it (sha256 {})",
            removed.sha256
        ));
    }
    Ok(exit::OK)
}

/// Ask on the terminal; refuse outright when there is none to ask on.
fn confirm(name: &ModelName) -> miette::Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(miette::miette!(
            help = "pass --yes to remove it without a question",
            "refusing to remove model {name:?} without confirmation: stdin is not a terminal",
            name = name.as_str()
        ));
    }
    let mut stderr = std::io::stderr();
    write!(stderr, "remove model {name}? [y/N] ")
        .and_then(|()| stderr.flush())
        .map_err(|e| miette::miette!("cannot write to stderr: {e}"))?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| miette::miette!("cannot read the answer: {e}"))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}
