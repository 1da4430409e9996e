//! `sovereign schema`: Print the JSON Schema (draft 2020-12) of the profile format.

use super::{CmdResult, Output};

/// Print the JSON Schema (draft 2020-12) of the profile format.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args, _out: &Output) -> CmdResult {
    super::not_yet("schema")
}
