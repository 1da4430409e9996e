//! `cargo xtask bench [engine|storage|inference|models]`: benchmarks measured as
//! ratios side by side in one run; figures go to BENCHMARKS.md.

mod engine;
mod inference;
mod models;
mod storage;

use anyhow::{Result, bail};

pub fn run(args: &[String]) -> Result<()> {
    let which = args.first().map(String::as_str).unwrap_or("all");
    let rest = args.get(1..).unwrap_or(&[]);
    match which {
        "engine" => engine::run(rest),
        "inference" => inference::run(rest),
        "models" => models::run(rest),
        "storage" => storage::run(rest),
        "all" => {
            engine::run(rest)?;
            storage::run(rest)?;
            inference::run(rest)?;
            models::run(rest)
        }
        other => bail!("unknown benchmark {other:?}: engine, storage, inference, models or all"),
    }
}
