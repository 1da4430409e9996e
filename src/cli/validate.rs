//! `sovereign validate`: Check a profile and its imports without observing or touching anything.

use super::{CmdResult, Output};

/// Check a profile and its imports without observing or touching anything.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The profile to check.
    pub profile: std::path::PathBuf,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_args: Args, _out: &Output) -> CmdResult {
    super::not_yet("validate")
}
