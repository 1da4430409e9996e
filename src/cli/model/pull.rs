//! `sovereign model pull`: Download or copy a model into the verified cache.

use crate::cli::{CmdResult, Output};

/// Download or copy a model into the verified cache.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// An https URL or a local path.
    pub source: String,
}

pub fn run(_args: Args, _out: &Output) -> CmdResult {
    crate::cli::not_yet("model pull")
}
