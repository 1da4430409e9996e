//! `sovereign model quantize`: Quantize a GGUF model with llama.cpp.

use crate::cli::{CmdResult, Output};

/// Quantize a GGUF model with llama.cpp.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Input GGUF.
    pub input: std::path::PathBuf,
    /// Output GGUF.
    pub output: std::path::PathBuf,
}

pub fn run(_args: Args, _out: &Output) -> CmdResult {
    crate::cli::not_yet("model quantize")
}
