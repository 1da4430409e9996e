//! The inference benchmark.

use anyhow::{Result, bail};

pub fn run(_args: &[String]) -> Result<()> {
    bail!("the inference benchmark is not written yet")
}
