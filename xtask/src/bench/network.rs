//! The network benchmark: profiles of 50 and 200 VXLAN segments (each with a bridge, an
//! address and a peer) in a network namespace of its own, over a bridge as the underlay (this kernel loads no dummy module). In one
//! run: apply from scratch, a no-op plan, and the floor, `ip -o link show` (one bare link
//! dump plus a process start), each run inside the namespace. strace counts the netlink
//! requests (`sendto`) and the processes (`execve`) of one apply and one plan.
//!
//! `cargo xtask bench network [--debug] [--sizes 50,200] [--runs 5]` (root). Prints a
//! Markdown table for BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{median, ms};

struct Options {
    debug: bool,
    sizes: Vec<usize>,
    runs: usize,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        debug: false,
        sizes: vec![50, 200],
        runs: 5,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--debug" => o.debug = true,
            "--sizes" => {
                let v = it.next().context("--sizes needs a list, e.g. 50,200")?;
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
            other => bail!("unknown option {other:?}: --debug, --sizes N,M, --runs N"),
        }
    }
    Ok(o)
}

/// A namespace with a dummy underlay and a scratch folder, removed on drop.
struct Scratch {
    ns: String,
    dir: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn must(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn profile(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!(
            "[network.vxlan.s{i}]\nvni = {}\nunderlay = \"under0\"\nlocal = \"192.0.2.1\"\npeers = [\"192.0.2.{}\"]\nbridge = \"b{i}\"\naddresses = [\"10.{}.{}.1/24\"]\n\n",
            i + 1,
            2 + i % 200,
            i / 250,
            i % 250
        ));
    }
    s
}

fn time(cmd: &mut Command) -> Result<Duration> {
    let start = Instant::now();
    must(cmd)?;
    Ok(start.elapsed())
}

/// (netlink requests, processes started) of one command, counted by strace.
fn count(scratch: &Scratch, argv: &[&str]) -> Result<(usize, usize)> {
    let trace = scratch.dir.join("trace");
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        &scratch.ns,
        "strace",
        "-f",
        "-qq",
        "-e",
        "trace=sendto,sendmsg,execve",
        "-o",
    ])
    .arg(&trace)
    .args(argv);
    must(&mut cmd)?;
    let text = std::fs::read_to_string(&trace)?;
    let netlink = text
        .lines()
        .filter(|l| l.contains("sendto(") || l.contains("sendmsg("))
        .count();
    // The first execve is the traced command itself.
    let processes = text
        .lines()
        .filter(|l| l.contains("execve("))
        .count()
        .saturating_sub(1);
    Ok((netlink, processes))
}

struct Row {
    n: usize,
    create: Duration,
    create_counts: (usize, usize),
    plan: Duration,
    plan_counts: (usize, usize),
    floor: Duration,
    /// `sovereign plan` of an empty profile on a fresh root: the engine's own cost.
    engine: Duration,
}

fn measure(bin: &Path, n: usize, runs: usize) -> Result<Row> {
    let tag = format!("svbench{}n{n}", std::process::id());
    let dir = std::env::temp_dir().join(&tag);
    std::fs::create_dir_all(dir.join("root"))?;
    must(Command::new("ip").args(["netns", "add", &tag]))?;
    let scratch = Scratch {
        ns: tag.clone(),
        dir: dir.clone(),
    };
    let in_ns = |args: &[&str]| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &tag]).args(args);
        c
    };
    must(&mut in_ns(&[
        "ip", "link", "add", "under0", "type", "bridge",
    ]))?;
    must(&mut in_ns(&[
        "ip",
        "addr",
        "add",
        "192.0.2.1/24",
        "dev",
        "under0",
    ]))?;
    must(&mut in_ns(&["ip", "link", "set", "under0", "up"]))?;
    let profile_path = dir.join("bench.toml");
    std::fs::write(&profile_path, profile(n))?;
    let empty_path = dir.join("empty.toml");
    std::fs::write(&empty_path, "")?;
    let root = dir.join("root");
    let (bin, root, profile_s, empty_s) = (
        bin.to_str().context("binary path")?,
        root.to_str().context("root path")?,
        profile_path.to_str().context("profile path")?,
        empty_path.to_str().context("profile path")?,
    );
    let sov = |args: &[&str], profile: &str| {
        let mut argv = vec![bin, "--root", root, "--color", "never", "-q"];
        argv.extend_from_slice(args);
        argv.push(profile);
        in_ns(&argv)
    };
    // Apply from scratch, then tear down with the empty profile, `runs` times.
    let create = median(runs, || {
        let took = time(&mut sov(&["apply", "--yes"], profile_s))?;
        time(&mut sov(&["apply", "--yes"], empty_s))?;
        Ok(took)
    })?;
    let create_counts = count(
        &scratch,
        &[bin, "--root", root, "-q", "apply", "--yes", profile_s],
    )?;
    let plan = median(runs, || {
        time(&mut sov(&["plan", "--detailed-exitcode"], profile_s))
    })?;
    let plan_counts = count(
        &scratch,
        &[
            bin,
            "--root",
            root,
            "-q",
            "plan",
            "--detailed-exitcode",
            profile_s,
        ],
    )?;
    let floor = median(runs, || time(&mut in_ns(&["ip", "-o", "link", "show"])))?;
    let fresh = dir.join("fresh");
    std::fs::create_dir_all(&fresh)?;
    let fresh = fresh.to_str().context("root path")?;
    let engine = median(runs, || {
        time(&mut in_ns(&[
            bin,
            "--root",
            fresh,
            "-q",
            "plan",
            "--detailed-exitcode",
            empty_s,
        ]))
    })?;
    drop(scratch);
    Ok(Row {
        n,
        create,
        create_counts,
        plan,
        plan_counts,
        floor,
        engine,
    })
}

pub fn run(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    let bin = super::sovereign_binary(o.debug, false)?;
    let mut rows = Vec::new();
    for &n in &o.sizes {
        eprintln!("bench network: {n} segments");
        rows.push(measure(&bin, n, o.runs)?);
    }
    println!(
        "Build: {}; median of {} runs; every command runs inside the namespace (`ip netns exec`).\n",
        if o.debug { "debug" } else { "release" },
        o.runs
    );
    println!(
        "| segments | apply from scratch ms | its netlink requests | its processes | no-op plan ms | its netlink requests | its processes | floor: `ip -o link show` ms | plan / floor | empty-profile plan ms | (plan - empty plan) / floor |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.2}x | {} | {:.2}x |",
            r.n,
            ms(r.create),
            r.create_counts.0,
            r.create_counts.1,
            ms(r.plan),
            r.plan_counts.0,
            r.plan_counts.1,
            ms(r.floor),
            r.plan.as_secs_f64() / r.floor.as_secs_f64(),
            ms(r.engine),
            r.plan.saturating_sub(r.engine).as_secs_f64() / r.floor.as_secs_f64()
        );
    }
    Ok(())
}
