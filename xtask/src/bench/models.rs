//! The models benchmark.

use anyhow::{Result, bail};

pub fn run(_args: &[String]) -> Result<()> {
    bail!("the models benchmark is not written yet")
}
