//! `sovereign model`: the model cache and model tools.

use super::{CmdResult, Output};

/// Manage models: quantize, pull into the verified cache, list, remove, verify.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Quantize a GGUF model with llama.cpp.
    Quantize(QuantizeArgs),
}

#[derive(Debug, clap::Args)]
pub struct QuantizeArgs {
    /// Input GGUF.
    pub input: std::path::PathBuf,
    /// Output GGUF.
    pub output: std::path::PathBuf,
}

pub fn run(_command: Command, _out: &Output) -> CmdResult {
    super::not_yet("model")
}
