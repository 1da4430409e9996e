//! `cargo xtask bench hostile`: what grammar compiles in flight cost a plain chat. The
//! daemon serves the generated model with a 128k-token vocabulary (compile and mask costs
//! grow with the vocabulary; the tiny model's 300 tokens would hide them); plain chats are timed alone and beside four
//! clients that keep worst-case compiles in flight (a distinct schema each time, so the
//! cache never answers), in alternating rounds of one run; then the daemon's peak resident
//! memory after filling the grammar cache. Prints a Markdown table for BENCHMARKS.md.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::inference::{KEY, start_daemon};
use crate::{gen_model, project_root};

/// Alternating rounds, and plain chats timed in each.
const ROUNDS: usize = 6;
const CHATS: usize = 40;
/// Clients keeping compiles in flight.
const COMPILERS: usize = 4;

pub fn run(args: &[String]) -> Result<()> {
    if let Some(a) = args.first() {
        bail!("bench hostile takes no arguments, got {a:?}");
    }
    let bin = super::sovereign_binary(false, true)?;
    let dir = project_root().join("target/bench-models");
    std::fs::create_dir_all(&dir)?;
    let model = dir.join("vocab128k.gguf");
    if !model.exists() {
        gen_model::write(&sovereign_gguf::model::ModelSpec::vocab128k(42), &model)?;
    }
    let (port, daemon) = start_daemon(&bin, &model)?;
    let pid = daemon.0.id();
    for _ in 0..10 {
        plain(port)?;
    }
    let one = Instant::now();
    let (status, _) = post(port, &worst_schema(u64::MAX))?;
    let compile_once = one.elapsed();
    eprintln!("one worst-case compile: {status} in {compile_once:?}");
    let (mut alone, mut beside) = (Vec::new(), Vec::new());
    let (mut answered, mut refused) = (0usize, 0usize);
    for round in 0..ROUNDS {
        eprintln!("==> round {}/{ROUNDS}", round + 1);
        alone.extend(chats(port)?);
        let stop = AtomicBool::new(false);
        let (ok, busy) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let timed = std::thread::scope(|sc| {
            for c in 0..COMPILERS {
                let (stop, ok, busy) = (&stop, &ok, &busy);
                sc.spawn(move || {
                    let mut n = (round * 1_000_000 + c * 10_000) as u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        match post(port, &worst_schema(n)) {
                            Ok((200, _)) => ok.fetch_add(1, Ordering::Relaxed),
                            Ok(_) => busy.fetch_add(1, Ordering::Relaxed),
                            Err(_) => busy.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                });
            }
            // Let the compiles start before timing.
            std::thread::sleep(Duration::from_millis(200));
            let timed = chats(port);
            stop.store(true, Ordering::Relaxed);
            timed
        })?;
        beside.extend(timed);
        answered += ok.load(Ordering::Relaxed);
        refused += busy.load(Ordering::Relaxed);
    }
    let rss_before = peak_rss(pid)?;
    // Fill the cache: distinct compiles until it has had far more than it may keep.
    for n in 0..200u64 {
        post(port, &worst_schema(10_000_000 + n))?;
    }
    let rss_full = peak_rss(pid)?;
    drop(daemon);
    let (a50, a99) = (percentile(&mut alone, 50), percentile(&mut alone, 99));
    let (b50, b99) = (percentile(&mut beside, 50), percentile(&mut beside, 99));
    println!(
        "\n| plain chat (128k-vocabulary model, 4 tokens) | p50 ms | p99 ms |\n|---|---:|---:|\n| alone | {} | {} |\n| beside {COMPILERS} clients compiling worst-case schemas | {} | {} |\n| ratio | {:.2}x | {:.2}x |\n",
        super::ms(a50),
        super::ms(a99),
        super::ms(b50),
        super::ms(b99),
        b50.as_secs_f64() / a50.as_secs_f64(),
        b99.as_secs_f64() / a99.as_secs_f64(),
    );
    println!(
        "{} plain chats each way in {ROUNDS} alternating rounds; {answered} compiles answered and {refused} refused (429/503) meanwhile; one worst-case compile alone: {} ms.\n",
        alone.len(),
        super::ms(compile_once)
    );
    println!(
        "| daemon peak RSS | MiB |\n|---|---:|\n| after the latency rounds | {:.0} |\n| after 200 more distinct worst-case compiles (cache full) | {:.0} |",
        rss_before as f64 / 1048576.0,
        rss_full as f64 / 1048576.0
    );
    Ok(())
}

fn chats(port: u16) -> Result<Vec<Duration>> {
    (0..CHATS).map(|_| plain(port)).collect()
}

fn percentile(v: &mut [Duration], p: usize) -> Duration {
    v.sort();
    v[((v.len() - 1) * p) / 100]
}

/// A schema near the daemon's limits that is slow to compile: an enum of 2000 values, a
/// pattern whose automaton is exponential in its width, and many properties with patterns
/// of nested repetitions. `nonce` makes each one distinct.
fn worst_schema(nonce: u64) -> serde_json::Value {
    let mut props: serde_json::Map<String, serde_json::Value> = (0..120)
        .map(|k| {
            (
                format!("p{nonce}_{k}"),
                serde_json::json!({"type": "string", "pattern": format!("^([a-z]{{1,{}}}-){{0,6}}[0-9]{{1,8}}$", 10 + k % 20)}),
            )
        })
        .collect();
    let words: Vec<String> = (0..2000).map(|i| format!("w{nonce}x{i}")).collect();
    props.insert("pick".into(), serde_json::json!({"enum": words}));
    props.insert(
        "blowup".into(),
        serde_json::json!({"type": "string", "pattern": format!("^{nonce}(a|b)*a(a|b){{20}}$")}),
    );
    serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1, "temperature": 0,
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object", "properties": props}}}})
}

fn plain(port: u16) -> Result<Duration> {
    let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4, "temperature": 0});
    let start = Instant::now();
    let (status, text) = post(port, &body)?;
    if status != 200 {
        bail!("a plain chat failed: {status} {text}");
    }
    Ok(start.elapsed())
}

fn post(port: u16, body: &serde_json::Value) -> Result<(u16, String)> {
    let body = body.to_string();
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.write_all(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )?;
    let mut r = String::new();
    s.read_to_string(&mut r)?;
    let status = r
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status line")?;
    Ok((status, r))
}

/// VmHWM: the most resident memory the process has had.
fn peak_rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/PID/status")?;
    Ok(kb * 1024)
}
