//! `cargo xtask bench [engine|storage|inference|models]`: benchmarks measured as
//! ratios side by side in one run; figures go to BENCHMARKS.md.

mod engine;
mod inference;
mod models;

use anyhow::{Result, bail};

pub fn run(args: &[String]) -> Result<()> {
    let which = args.first().map(String::as_str).unwrap_or("all");
    let rest = args.get(1..).unwrap_or(&[]);
    match which {
        "engine" => engine::run(rest),
        "inference" => inference::run(rest),
        "models" => models::run(rest),
        "all" => {
            engine::run(rest)?;
            inference::run(rest)?;
            models::run(rest)
        }
        other => bail!("unknown benchmark {other:?}: engine, inference, models or all"),
    }
}
