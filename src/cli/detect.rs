//! `sovereign detect`: Detect the machine: CPU, memory, GPUs and the matching hardware archetype.

use super::{CmdResult, Output};

/// Detect the machine: CPU, memory, GPUs and the matching hardware archetype.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Check the machine against the `host.expect` of this profile.
    #[arg(long, value_name = "PROFILE")]
    pub expect: Option<std::path::PathBuf>,
}

pub fn run(_args: Args, _out: &Output) -> CmdResult {
    super::not_yet("detect")
}
