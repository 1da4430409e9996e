//! `cargo xtask bench [engine|storage|network|fleet|inference|hostile|models]`: benchmarks
//! measured as ratios side by side in one run; figures go to BENCHMARKS.md.

mod cards;
mod engine;
mod fleet;
mod hostile;
mod inference;
mod models;
mod network;
mod reuse;
mod storage;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::{cargo, project_root, run_step};

/// Build the sovereign binary a benchmark measures and return its path: release unless
/// `debug`, with the llama.cpp engine only when `engine` (the control plane builds in
/// seconds without it).
pub(crate) fn sovereign_binary(debug: bool, engine: bool) -> Result<PathBuf> {
    let mut build = cargo();
    build.args(["build", "--bin", "sovereign"]);
    if !debug {
        build.arg("--release");
    }
    if !engine {
        build.arg("--no-default-features");
    }
    run_step(build)?;
    let profile = if debug { "debug" } else { "release" };
    Ok(project_root()
        .join("target")
        .join(profile)
        .join("sovereign"))
}

/// Run `f` `runs` times (at least once) and return the median.
pub(crate) fn median(runs: usize, mut f: impl FnMut() -> Result<Duration>) -> Result<Duration> {
    let mut v = (0..runs.max(1)).map(|_| f()).collect::<Result<Vec<_>>>()?;
    v.sort();
    Ok(v[v.len() / 2])
}

/// Milliseconds with one decimal, as the tables print them.
pub(crate) fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

pub fn run(args: &[String]) -> Result<()> {
    let which = args.first().map(String::as_str).unwrap_or("all");
    let rest = args.get(1..).unwrap_or(&[]);
    match which {
        "engine" => engine::run(rest),
        "inference" => inference::run(rest),
        "hostile" => hostile::run(rest),
        "models" => models::run(rest),
        "storage" => storage::run(rest),
        "network" => network::run(rest),
        "fleet" => fleet::run(rest),
        "all" => {
            engine::run(rest)?;
            storage::run(rest)?;
            network::run(rest)?;
            fleet::run(rest)?;
            inference::run(rest)?;
            hostile::run(rest)?;
            models::run(rest)
        }
        other => {
            bail!(
                "unknown benchmark {other:?}: engine, storage, network, fleet, inference, hostile, models or all"
            )
        }
    }
}
