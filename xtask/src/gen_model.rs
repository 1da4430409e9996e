//! `cargo xtask gen-model`: write a llama-architecture GGUF with random weights.

use anyhow::{Result, bail};

pub fn run(_args: &[String]) -> Result<()> {
    bail!("gen-model is not written yet")
}
