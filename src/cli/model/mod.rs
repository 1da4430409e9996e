//! `sovereign model`: the model cache and model tools, one file per subcommand.

mod load;
mod ls;
mod ps;
mod pull;
mod quantize;
mod rm;
mod unload;
mod verify;

use super::{CmdResult, Output};

/// Manage models: pull into the verified cache, list, remove, verify, quantize; load,
/// unload and list the models of the running daemon.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    Pull(pull::Args),
    Ls(ls::Args),
    Rm(rm::Args),
    Verify(verify::Args),
    Quantize(quantize::Args),
    Load(load::Args),
    Unload(unload::Args),
    Ps(ps::Args),
}

pub fn run(command: Command, out: &Output) -> CmdResult {
    match command {
        Command::Pull(a) => pull::run(a, out),
        Command::Ls(a) => ls::run(a, out),
        Command::Rm(a) => rm::run(a, out),
        Command::Verify(a) => verify::run(a, out),
        Command::Quantize(a) => quantize::run(a, out),
        Command::Load(a) => load::run(a, out),
        Command::Unload(a) => unload::run(a, out),
        Command::Ps(a) => ps::run(a, out),
    }
}
