//! `sovereign model`: the model cache and model tools, one file per subcommand.

mod ls;
mod pull;
mod quantize;
mod rm;
mod verify;

use super::{CmdResult, Output};

/// Manage models: pull into the verified cache, list, remove, verify, quantize.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    Pull(pull::Args),
    Ls(ls::Args),
    Rm(rm::Args),
    Verify(verify::Args),
    Quantize(quantize::Args),
}

pub fn run(command: Command, out: &Output) -> CmdResult {
    match command {
        Command::Pull(a) => pull::run(a, out),
        Command::Ls(a) => ls::run(a, out),
        Command::Rm(a) => rm::run(a, out),
        Command::Verify(a) => verify::run(a, out),
        Command::Quantize(a) => quantize::run(a, out),
    }
}
