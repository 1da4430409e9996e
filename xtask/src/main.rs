//! Developer tasks: `cargo xtask <task>`. See `cargo xtask help`.
// xtask is the developer tool around the product, not part of it: the host-layer
// rule (clippy.toml) guards the sovereign crate only.
#![allow(clippy::disallowed_methods)]

mod bench;
mod gen_model;
mod setup;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const HELP: &str = "\
cargo xtask <task>

Tasks:
  setup     install the system packages sovereign needs (apt; idempotent)
  demo      setup, build, and run the main job on profiles/demo.toml
            (`demo clean` destroys the demo pool and removes .demo/)
  ci        setup, cargo fmt --check, clippy -D warnings, every test
  bench     benchmarks: engine, storage, inference, models (figures for BENCHMARKS.md)
  gen-model write a generated llama-architecture GGUF (--preset tiny|bench --out FILE [--seed N])
  tidy      check the code's house rules (also run as a test by `ci`)
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
        "demo" => demo(rest),
        "ci" => ci(),
        "bench" => bench::run(rest),
        "gen-model" => gen_model::run(rest),
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
    eprintln!("\nci: all checks passed");
    Ok(())
}

/// The demo pool's only vdev: a sparse file the profile names (relocated under --root).
const DEMO_POOL: &str = "sovereign-demo";
const DEMO_VDEV: &str = "var/lib/sovereign/demo/tank.img";

fn demo_pool_file(state_root: &Path) -> Result<()> {
    let img = state_root.join(DEMO_VDEV);
    if img.exists() {
        return Ok(());
    }
    let dir = img.parent().expect("the vdev path has a folder");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file =
        std::fs::File::create(&img).with_context(|| format!("cannot create {}", img.display()))?;
    file.set_len(256 << 20)
        .with_context(|| format!("cannot size {}", img.display()))?;
    eprintln!(
        "demo: created the sparse pool file {} (256M)",
        img.display()
    );
    Ok(())
}

/// `cargo xtask demo clean`: destroy the demo pool, then remove the demo's state root.
fn demo_clean(state_root: &Path) -> Result<()> {
    let listed = Command::new("zpool")
        .args(["list", "-H", "-o", "name", DEMO_POOL])
        .output();
    if listed.is_ok_and(|o| o.status.success()) {
        let mut destroy = Command::new("zpool");
        destroy.args(["destroy", DEMO_POOL]);
        run_step(destroy)?;
    }
    if state_root.exists() {
        std::fs::remove_dir_all(state_root)
            .with_context(|| format!("cannot remove {}", state_root.display()))?;
    }
    eprintln!(
        "demo: cleaned ({} and the pool {DEMO_POOL} are gone)",
        state_root.display()
    );
    Ok(())
}

/// The main job: plan, apply and plan again (no changes) on profiles/demo.toml, with the
/// demo's own state root so nothing outside the repository is touched.
fn demo(args: &[String]) -> Result<()> {
    if args.first().map(String::as_str) == Some("clean") {
        return demo_clean(&project_root().join(".demo/root"));
    }
    setup::run()?;
    let mut build = cargo();
    build.args(["build", "--bin", "sovereign"]);
    run_step(build)?;
    let root = project_root();
    let bin = root.join("target/debug/sovereign");
    let profile = root.join("profiles/demo.toml");
    let state_root = root.join(".demo/root");
    std::fs::create_dir_all(&state_root)
        .with_context(|| format!("cannot create {}", state_root.display()))?;
    demo_pool_file(&state_root)?;
    let sovereign = |args: &[&str]| {
        let mut cmd = Command::new(&bin);
        cmd.arg("--root").arg(&state_root).args(args).arg(&profile);
        cmd
    };
    run_step(sovereign(&["plan"]))?;
    run_step(sovereign(&["apply", "--yes"]))?;
    // The second plan must show no changes: --detailed-exitcode exits 2 otherwise.
    run_step(sovereign(&["plan", "--detailed-exitcode"]))?;
    eprintln!(
        "\ndemo: done. Managed files are under {root}/ (e.g. {root}/etc/motd);\n      \
         sovereign's state (ledger, journal, generations, backups) is in {root}/var/lib/sovereign/.\n      \
         List the generations: {bin} --root {root} generations\n      \
         Remove the demo (its pool and state): cargo xtask demo clean",
        root = state_root.display(),
        bin = bin.display()
    );
    Ok(())
}
