//! `sovereign model verify`: Re-hash cached models; quarantine corrupted ones.

use crate::cli::{CmdResult, Output};

/// Re-hash cached models; quarantine corrupted ones.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this model.
    pub name: Option<String>,
}

pub fn run(_args: Args, _out: &Output) -> CmdResult {
    crate::cli::not_yet("model verify")
}
