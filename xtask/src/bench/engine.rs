//! The engine benchmark.

use anyhow::{Result, bail};

pub fn run(_args: &[String]) -> Result<()> {
    bail!("the engine benchmark is not written yet")
}
