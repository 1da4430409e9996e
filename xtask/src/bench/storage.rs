//! The storage benchmark: profiles of 50 and 1,000 datasets on a file-backed pool. In one
//! run: create (first apply), no-op plan, no-op apply, and the floor, one bare
//! `zfs get -H -p all -r` over the same pool, plus the cost of starting the binary.
//!
//! `cargo xtask bench storage [--debug] [--sizes 50,1000] [--runs 5] [--baseline BIN]`
//! (root, with ZFS answering: `cargo xtask setup`). Prints a Markdown table for
//! BENCHMARKS.md; with `--baseline`, each size is also measured with another build of
//! sovereign (an earlier commit's) in the same run, and a table compares the two.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{median, ms};

/// Options of one benchmark run.
struct Options {
    /// Use the debug build instead of the release build.
    debug: bool,
    /// Dataset counts to measure.
    sizes: Vec<usize>,
    /// Repetitions of each timed step (the median is reported).
    runs: usize,
    /// Another sovereign binary measured side by side (the build before a change).
    baseline: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        debug: false,
        sizes: vec![50, 1000],
        runs: 5,
        baseline: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--debug" => o.debug = true,
            "--sizes" => {
                let v = it.next().context("--sizes needs a list, e.g. 50,1000")?;
                o.sizes = v
                    .split(',')
                    .map(|s| {
                        s.parse()
                            .with_context(|| format!("--sizes: {s:?} is not a count"))
                    })
                    .collect::<Result<_>>()?;
            }
            "--runs" => {
                let v = it.next().context("--runs needs a number")?;
                o.runs = v
                    .parse()
                    .with_context(|| format!("--runs: {v:?} is not a number"))?;
            }
            "--baseline" => {
                let v = it
                    .next()
                    .context("--baseline needs the path of a sovereign binary")?;
                o.baseline = Some(PathBuf::from(v));
            }
            other => {
                bail!("unknown option {other:?}: --debug, --sizes N,M, --runs N, --baseline BIN")
            }
        }
    }
    Ok(o)
}

/// A temporary root and the pool in it, destroyed on drop.
struct Scratch {
    dir: PathBuf,
    pool: String,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let destroyed = Command::new("zpool")
            .args(["destroy", "-f", &self.pool])
            .output();
        if let Err(e) = destroyed {
            eprintln!("bench: cannot destroy pool {}: {e}", self.pool);
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("bench: cannot remove {}: {e}", self.dir.display());
        }
    }
}

fn profile(pool: &str, n: usize) -> String {
    // Nothing is mounted: zfs-fuse serves at most about 1,000 mounted filesystems (the
    // 1,001st mount fails with an I/O error), and mounting is not what is measured.
    let mut s = format!(
        "[storage.pools.{pool}]\nvdevs = [\"/tank.img\"]\nfilesystem = {{ mountpoint = \"none\", atime = \"off\" }}\n\n"
    );
    // Groups of 50 below the pool: a realistic tree, parents implied.
    for i in 0..n {
        s.push_str(&format!(
            "[storage.datasets.\"{pool}/g{}/d{i}\"]\nproperties = {{ compression = \"on\", \"sovereign:role\" = \"bench\" }}\n",
            i / 50
        ));
    }
    s
}

fn time(cmd: &mut Command) -> Result<Duration> {
    let start = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    let took = start.elapsed();
    // plan --detailed-exitcode exits 0 for no changes; anything else is a failed step.
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(took)
}

/// One size's figures.
struct Row {
    n: usize,
    create: Duration,
    plan: Duration,
    apply: Duration,
    floor: Duration,
}

fn measure(bin: &Path, n: usize, runs: usize) -> Result<Row> {
    let dir = std::env::temp_dir().join(format!(
        "sovereign-bench-storage-{}-{n}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    let scratch = Scratch {
        dir: dir.clone(),
        pool: format!("sovbench{}x{n}", std::process::id()),
    };
    let img = std::fs::File::create(dir.join("tank.img"))?;
    img.set_len((256 + n as u64 / 2) << 20)?;
    let profile_path = dir.join("bench.toml");
    std::fs::write(&profile_path, profile(&scratch.pool, n))?;
    let sov = |args: &[&str]| {
        let mut c = Command::new(bin);
        c.arg("--root")
            .arg(&dir)
            .args(["--color", "never", "-q"])
            .args(args)
            .arg(&profile_path);
        c
    };
    let create = time(&mut sov(&["apply", "--yes"]))?;
    let plan = median(runs, || time(&mut sov(&["plan", "--detailed-exitcode"])))?;
    let apply = median(runs, || time(&mut sov(&["apply", "--yes"])))?;
    let floor = median(runs, || {
        time(Command::new("zfs").args(["get", "-H", "-p", "all", "-r", &scratch.pool]))
    })?;
    drop(scratch);
    Ok(Row {
        n,
        create,
        plan,
        apply,
        floor,
    })
}

pub fn run(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    let bin = super::sovereign_binary(o.debug, false)?;
    let start = median(o.runs, || time(Command::new(&bin).arg("--version")))?;
    let mut rows = Vec::new();
    let mut base_rows = Vec::new();
    for &n in &o.sizes {
        eprintln!("bench storage: {n} datasets");
        rows.push(measure(&bin, n, o.runs)?);
        if let Some(base) = &o.baseline {
            eprintln!("bench storage: {n} datasets, baseline {}", base.display());
            base_rows.push(measure(base, n, o.runs)?);
        }
    }
    println!(
        "Build: {}; median of {} runs; process start (`sovereign --version`): {} ms.\n",
        if o.debug { "debug" } else { "release" },
        o.runs,
        ms(start)
    );
    println!(
        "| datasets | create (first apply) ms | no-op plan ms | no-op apply ms | floor: `zfs get -H -p all -r` ms | plan / (floor + start) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let ratio = r.plan.as_secs_f64() / (r.floor + start).as_secs_f64();
        println!(
            "| {} | {} | {} | {} | {} | {ratio:.2}x |",
            r.n,
            ms(r.create),
            ms(r.plan),
            ms(r.apply),
            ms(r.floor)
        );
    }
    if let (Some(a), Some(b)) = (rows.first(), rows.last())
        && b.n > a.n
    {
        println!(
            "\n{}x the datasets: create {:.1}x, no-op plan {:.1}x, floor {:.1}x.",
            b.n / a.n,
            b.create.as_secs_f64() / a.create.as_secs_f64(),
            b.plan.as_secs_f64() / a.plan.as_secs_f64(),
            b.floor.as_secs_f64() / a.floor.as_secs_f64()
        );
    }
    if let Some(base) = &o.baseline {
        println!(
            "\nSide by side with the baseline ({}), same run; ratio = this build / baseline:\n",
            base.display()
        );
        println!(
            "| datasets | create ms (this / baseline) | no-op plan ms (this / baseline) | no-op apply ms (this / baseline) |"
        );
        println!("|---:|---:|---:|---:|");
        let pair = |a: Duration, b: Duration| {
            format!(
                "{} / {} ({:.2}x)",
                ms(a),
                ms(b),
                a.as_secs_f64() / b.as_secs_f64()
            )
        };
        for (r, b) in rows.iter().zip(&base_rows) {
            println!(
                "| {} | {} | {} | {} |",
                r.n,
                pair(r.create, b.create),
                pair(r.plan, b.plan),
                pair(r.apply, b.apply)
            );
        }
    }
    Ok(())
}
