//! `sovereign model rm`: Remove a cached model.

use crate::cli::{CmdResult, Output};

/// Remove a cached model.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model name.
    pub name: String,
}

pub fn run(_args: Args, _out: &Output) -> CmdResult {
    crate::cli::not_yet("model rm")
}
