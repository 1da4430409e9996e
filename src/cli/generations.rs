//! `sovereign generations`: List the recorded generations.

use super::{CmdResult, Output};

/// List the recorded generations.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_args: Args, _out: &Output) -> CmdResult {
    super::not_yet("generations")
}
