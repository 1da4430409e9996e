//! `sovereign rollback`: Converge back to an earlier generation.

use super::{CmdResult, Output};

/// Converge back to an earlier generation.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The generation to return to (default: the last succeeded one before the current).
    pub generation: Option<u64>,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub yes: bool,
}

pub fn run(_args: Args, _out: &Output) -> CmdResult {
    super::not_yet("rollback")
}
