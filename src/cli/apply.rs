//! `sovereign apply`: Converge the machine to a profile or a saved plan.

use super::{CmdResult, Output};

/// Converge the machine to a profile or a saved plan.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A profile, or a plan saved with `plan -o`.
    pub target: std::path::PathBuf,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub yes: bool,
}

pub fn run(_args: Args, _out: &Output) -> CmdResult {
    super::not_yet("apply")
}
