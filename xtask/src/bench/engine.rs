//! The engine benchmark: apply from scratch, no-op plan and no-op apply of generated
//! profiles of 100, 1,000 and 10,000 managed files, against the floor (one `find | xargs
//! sha256sum` pipeline that stats and hashes the same files) and process start
//! (`sovereign --version`), measured side by side in one run. Writes the engine section
//! of BENCHMARKS.md.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{median, ms};
use crate::project_root;

/// Runs of each quick measurement; the median is reported.
const REPEATS: usize = 5;
const SIZES: [usize; 3] = [100, 1_000, 10_000];

struct Row {
    files: usize,
    apply_scratch: Duration,
    plan_noop: Duration,
    apply_noop: Duration,
    floor: Duration,
    start: Duration,
}

/// `[SIZES] [--baseline BIN]`: with `--baseline`, every size is also measured with that
/// binary (an earlier build) in the same run, and a table compares the two.
pub fn run(args: &[String]) -> Result<()> {
    let mut sizes: Vec<usize> = SIZES.to_vec();
    let mut baseline: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--baseline" {
            let v = it
                .next()
                .context("--baseline needs the path of a sovereign binary")?;
            baseline = Some(PathBuf::from(v));
        } else {
            sizes = a
                .split(',')
                .map(|n| n.parse().context("sizes are numbers, e.g. 100,1000"))
                .collect::<Result<_>>()?;
        }
    }
    let bin = super::sovereign_binary(false, false)?;
    let root = project_root();
    let rows = measure_all(&bin, &sizes, &root.join("target/bench-engine"))?;
    let mut table = render(&rows);
    if let Some(base) = &baseline {
        let base_rows = measure_all(base, &sizes, &root.join("target/bench-engine-baseline"))?;
        table.push_str(&compare(base, &rows, &base_rows));
    }
    println!("{table}");
    write_section(&root.join("BENCHMARKS.md"), &table)?;
    eprintln!("engine bench: figures written to BENCHMARKS.md");
    Ok(())
}

/// This build against the baseline, size by size.
fn compare(base: &Path, rows: &[Row], base_rows: &[Row]) -> String {
    let mut t = format!(
        "\nSide by side with the baseline ({}), same run; ratio = this build / baseline:\n\n",
        base.display()
    );
    t.push_str("| files | apply from scratch ms (this / baseline) | no-op plan ms (this / baseline) | no-op apply ms (this / baseline) |\n");
    t.push_str("|---:|---:|---:|---:|\n");
    let pair = |a: Duration, b: Duration| {
        format!(
            "{} / {} ({:.2}x)",
            ms(a),
            ms(b),
            a.as_secs_f64() / b.as_secs_f64()
        )
    };
    for (r, b) in rows.iter().zip(base_rows) {
        writeln!(
            t,
            "| {} | {} | {} | {} |",
            r.files,
            pair(r.apply_scratch, b.apply_scratch),
            pair(r.plan_noop, b.plan_noop),
            pair(r.apply_noop, b.apply_noop)
        )
        .unwrap();
    }
    t
}

fn measure_all(bin: &Path, sizes: &[usize], work: &Path) -> Result<Vec<Row>> {
    let start = median(REPEATS, || time(Command::new(bin).arg("--version")))?;
    let mut rows = Vec::new();
    for &n in sizes {
        let dir = work.join(n.to_string());
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot clear {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir.join("root"))?;
        let profile = dir.join("profile.toml");
        std::fs::write(&profile, generate(n))?;
        let sov = |args: &[&str]| {
            let mut c = Command::new(bin);
            c.arg("--root")
                .arg(dir.join("root"))
                .args(args)
                .arg(&profile);
            c
        };
        eprintln!("engine bench: {n} files ({})", bin.display());
        let apply_scratch = time(&mut sov(&["apply", "--yes"]))?;
        let plan_noop = median(REPEATS, || time(&mut sov(&["plan", "--detailed-exitcode"])))?;
        let apply_noop = median(REPEATS, || time(&mut sov(&["apply", "--yes"])))?;
        let floor = median(REPEATS, || floor(&dir.join("root/srv")))?;
        rows.push(Row {
            files: n,
            apply_scratch,
            plan_noop,
            apply_noop,
            floor,
            start,
        });
    }
    Ok(rows)
}

/// A profile of `n` files in folders of 100, each a few hundred bytes.
fn generate(n: usize) -> String {
    let mut s = String::with_capacity(n * 200);
    for i in 0..n {
        writeln!(
            s,
            "[files.\"/srv/bench/d{}/f{i}.conf\"]\ncontent = \"# generated file {i}\\nkey = value-{i}\\n{}\\n\"\nmode = \"0644\"\n",
            i / 100,
            "x".repeat(160)
        )
        .expect("writing to a String");
    }
    s
}

/// Run once; fail when the command fails (a no-op plan exits 0 with --detailed-exitcode).
fn time(cmd: &mut Command) -> Result<Duration> {
    let t = Instant::now();
    let out = cmd.stdout(Stdio::null()).output()?;
    let took = t.elapsed();
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}

/// One process tree that stats and hashes every file: `find -type f | xargs sha256sum`.
fn floor(dir: &Path) -> Result<Duration> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("find \"$1\" -type f -print0 | xargs -0 sha256sum > /dev/null")
        .arg("floor")
        .arg(dir);
    time(&mut cmd)
}

fn render(rows: &[Row]) -> String {
    let mut t = String::new();
    writeln!(t, "Machine: {}", machine()).unwrap();
    writeln!(
        t,
        "Release build without the llama.cpp engine; medians of {REPEATS} runs (apply from scratch: one run).\n"
    )
    .unwrap();
    t.push_str("| files | apply from scratch (ms) | no-op plan (ms) | no-op apply (ms) | floor: find+sha256sum (ms) | process start (ms) | plan / (floor + start) |\n");
    t.push_str("|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {:.2}x |",
            r.files,
            ms(r.apply_scratch),
            ms(r.plan_noop),
            ms(r.apply_noop),
            ms(r.floor),
            ms(r.start),
            r.plan_noop.as_secs_f64() / (r.floor + r.start).as_secs_f64()
        )
        .unwrap();
    }
    // Linearity: each step up in size against the time it costs.
    for pair in rows.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        writeln!(
            t,
            "\n{} -> {} files ({:.0}x): no-op plan {:.1}x time, no-op apply {:.1}x, apply from scratch {:.1}x.",
            a.files,
            b.files,
            b.files as f64 / a.files as f64,
            b.plan_noop.as_secs_f64() / a.plan_noop.as_secs_f64(),
            b.apply_noop.as_secs_f64() / a.apply_noop.as_secs_f64(),
            b.apply_scratch.as_secs_f64() / a.apply_scratch.as_secs_f64()
        )
        .unwrap();
    }
    t
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|r| r.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores available, Linux {kernel}")
}

const BEGIN: &str = "<!-- engine:begin (cargo xtask bench engine) -->";
const END: &str = "<!-- engine:end -->";

/// Replace the engine section of BENCHMARKS.md, creating the file if needed.
fn write_section(path: &PathBuf, table: &str) -> Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n".into());
    let section = format!("{BEGIN}\n{table}{END}");
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if e > b => {
            format!("{}{section}{}", &old[..b], &old[e + END.len()..])
        }
        _ => format!(
            "{}\n## Engine: plan and apply\n\n{section}\n",
            old.trim_end()
        ),
    };
    std::fs::write(path, new).with_context(|| format!("cannot write {}", path.display()))
}
