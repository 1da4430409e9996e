//! `sovereign show`: Print the merged profile with the file:line each value came from.

use super::{CmdResult, Output};

/// Print the merged profile with the file:line each value came from.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The profile to show.
    pub profile: std::path::PathBuf,
    /// Print as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_args: Args, _out: &Output) -> CmdResult {
    super::not_yet("show")
}
