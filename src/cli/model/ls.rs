//! `sovereign model ls`: List the cached models.

use crate::cli::{CmdResult, Output};

/// List the cached models.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_args: Args, _out: &Output) -> CmdResult {
    crate::cli::not_yet("model ls")
}
