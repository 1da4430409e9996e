//! `sovereign plan`: Show what apply would change; nothing is touched.

use super::{CmdResult, Output};

/// Show what apply would change; nothing is touched.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The profile to plan.
    pub profile: std::path::PathBuf,
    /// Print as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_args: Args, _out: &Output) -> CmdResult {
    super::not_yet("plan")
}
