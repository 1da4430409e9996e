//! `sovereign serve`: Run the inference daemon in the foreground.

use super::{CmdResult, Output};

/// Run the inference daemon in the foreground.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
}

pub fn run(_args: Args, _out: &Output) -> CmdResult {
    super::not_yet("serve")
}
