//! `cargo xtask fuzz [--seconds N]`: build the fuzz crate in release, with llguidance (so
//! every grammar and schema the limits accept is compiled too, on a 1 MiB stack), and run
//! each fuzzer for N seconds (60 by default): GGUF headers, grammar text, JSON schemas.
//! Fails naming each fuzzer that found something and where its input was saved.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, project_root, run_step};

/// Each fuzzer's binary and its folder name under `fuzz/corpus` and `fuzz/artifacts`.
const FUZZERS: &[(&str, &str)] = &[
    ("fuzz-gguf", "gguf"),
    ("fuzz-gbnf", "gbnf"),
    ("fuzz-schema", "schema"),
];

pub fn run(args: &[String]) -> Result<()> {
    let mut seconds = 60u64;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--seconds" => {
                let v = rest.next().context("--seconds needs a number")?;
                seconds = v.parse().with_context(|| format!("--seconds {v:?}"))?;
            }
            other => bail!("unknown argument {other:?}: usage: cargo xtask fuzz [--seconds N]"),
        }
    }
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "sovereign-fuzz",
        "--features",
        "llguidance",
    ]);
    run_step(build)?;
    let bin_dir = target_dir().join("release");
    let mut failed = Vec::new();
    for (bin, name) in FUZZERS {
        let mut cmd = Command::new(bin_dir.join(bin));
        cmd.current_dir(project_root())
            .args(["--seconds", &seconds.to_string()]);
        if let Err(e) = run_step(cmd) {
            failed.push(format!("{bin}: {e:#}{}", died_on(name)?));
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} fuzzer(s) found something:\n  {}",
            failed.len(),
            failed.join("\n  ")
        );
    }
    eprintln!("\nfuzz: every fuzzer ran {seconds}s without a finding");
    Ok(())
}

/// Cargo's target folder, as cargo itself finds it.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("target"))
}

/// A fuzzer killed by a stack overflow could not save its input; it wrote it to
/// `in-flight` before running it. Keep that file under a name of its own.
fn died_on(name: &str) -> Result<String> {
    let dir = project_root().join("fuzz/artifacts").join(name);
    let in_flight = dir.join("in-flight");
    if !in_flight.exists() {
        return Ok(String::new());
    }
    let input =
        std::fs::read(&in_flight).with_context(|| format!("reading {}", in_flight.display()))?;
    let hash = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let kept = dir.join(format!("died-{hash:016x}"));
    std::fs::rename(&in_flight, &kept)
        .with_context(|| format!("renaming {} to {}", in_flight.display(), kept.display()))?;
    Ok(format!(
        "\n    the process died on the input saved as {}",
        kept.display()
    ))
}
