//! Developer tasks: `cargo xtask <task>`. See `cargo xtask help`.
// xtask is the developer tool around the product, not part of it: the host-layer
// rule (clippy.toml) guards the sovereign crate only.
#![allow(clippy::disallowed_methods)]

mod bench;
mod demo;
mod fuzz;
mod gen_model;
mod setup;
mod tidy;
mod vm;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const HELP: &str = "\
cargo xtask <task>

Tasks:
  setup     install the system packages sovereign needs (apt; idempotent)
  demo      setup, build, and run the main job on profiles/demo.toml
            (`demo clean` destroys the demo pool and removes .demo/)
  ci        setup, cargo fmt --check, clippy -D warnings, every test (the VM tests last)
  bench     benchmarks: engine, storage, network, fleet, inference, hostile, models (figures for BENCHMARKS.md)
  gen-model write a generated llama-architecture GGUF or a LoRA adapter for one
            (--preset tiny|bench|vocab128k|tiny-lora --out FILE [--seed N])
  fuzz      run each fuzzer (GGUF, grammar, schema) in release for N seconds [--seconds N]
  tidy      check the code's house rules (also run as a test by `ci`)
  vm-test   sovereign apply on two Debian guests under qemu with real OpenZFS and systemd
            (builds and caches the guest image; [--smoke] for one guest)
";

fn main() {
    if let Err(err) = run() {
        eprintln!("xtask: error: {err:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((t, r)) => (t.as_str(), r),
        None => ("help", &[][..]),
    };
    match task {
        "setup" => setup::run(),
        "demo" => demo::run(rest),
        "ci" => ci(),
        "bench" => bench::run(rest),
        "gen-model" => gen_model::run(rest),
        "fuzz" => fuzz::run(rest),
        "vm-test" => vm::run(rest),
        "tidy" => tidy::check(&project_root()).map(|_| println!("tidy: ok")),
        "help" | "-h" | "--help" => {
            print!("{HELP}");
            Ok(())
        }
        other => bail!("unknown task {other:?}\n\n{HELP}"),
    }
}

/// The repository root (xtask's manifest lives one level below it).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the repository")
        .to_path_buf()
}

pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(project_root());
    cmd
}

/// Run a command, echoing it first, and fail naming it when it fails.
pub fn run_step(mut cmd: Command) -> Result<()> {
    let shown = format!("{cmd:?}").replace('"', "");
    eprintln!("\n==> {shown}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

fn ci() -> Result<()> {
    setup::run()?;
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run_step(fmt)?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run_step(clippy)?;
    let mut test = cargo();
    test.args(["test", "--workspace"]);
    run_step(test)?;
    // qemu is one of setup's packages, so every machine CI runs on can boot the guests
    // (under software emulation where KVM does not work).
    vm::test(false)?;
    eprintln!("\nci: all checks passed");
    Ok(())
}
