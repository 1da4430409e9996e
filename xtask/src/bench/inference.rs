//! `cargo xtask bench inference`: the raw llama.cpp loop against the daemon, one stream and
//! four concurrent streams, on the generated `bench` model in F16 and Q4_0, with the
//! machine's memory bandwidth measured in the same run; then constrained decoding: one
//! stream with a `json_schema` against one without on Q4_0, and llguidance's mask time per
//! token on the generated 128k-token vocabulary. Prints Markdown tables for BENCHMARKS.md.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{gen_model, project_root, run_step};

/// Threads given to llama.cpp everywhere (the fixed setting).
const THREADS: &str = "2";
/// Prompt and generation lengths of every run.
const PROMPT: usize = 128;
const GEN: usize = 128;
pub(super) const KEY: &str = "bench-key";
/// The daemon's context shape, which the raw loop's context copies.
const SLOTS: &str = "4";
const CTX: &str = "1024";

/// `args`: nothing for everything, or `constrained`, `reuse` or `cards` for those tables
/// alone (the same measurements, without the others).
pub fn run(args: &[String]) -> Result<()> {
    let only = args.first().map(String::as_str);
    if let Some(other) = only.filter(|o| !["constrained", "reuse", "cards"].contains(o)) {
        bail!("unknown argument {other:?}: nothing, constrained, reuse or cards");
    }
    let only_constrained = only == Some("constrained");
    let root = project_root();
    let bin = super::sovereign_binary(false, true)?;
    let dir = root.join("target/bench-models");
    std::fs::create_dir_all(&dir)?;
    let f16 = dir.join("bench-f16.gguf");
    if !f16.exists() {
        eprintln!("==> generating the bench model (about 250M parameters)");
        gen_model::write(&sovereign_gguf::model::ModelSpec::bench(42), &f16)?;
    }
    let q4 = dir.join("bench-q4_0.gguf");
    if !q4.exists() {
        let mut q = Command::new(&bin);
        q.args(["model", "quantize", "--type", "q4_0"])
            .arg(&f16)
            .arg(&q4);
        run_step(q)?;
    }
    if only == Some("reuse") {
        println!("\n{}", super::reuse::table(&super::reuse::run(&bin, &q4)?));
        return Ok(());
    }
    if only == Some("cards") {
        println!("\n{}", super::cards::table(&super::cards::run(&bin, &q4)?));
        return Ok(());
    }
    let bandwidth = memory_bandwidth();
    eprintln!(
        "memory bandwidth (copy, best of 5): {:.1} GB/s",
        bandwidth / 1e9
    );
    let mut rows = Vec::new();
    if !only_constrained {
        for (label, path) in [("F16", &f16), ("Q4_0", &q4)] {
            rows.push(measure(&bin, label, path)?);
        }
    }
    let constrained = constrained(&bin, &q4)?;
    let big = dir.join("vocab128k.gguf");
    if !big.exists() {
        eprintln!("==> generating the 128k-token vocabulary model");
        gen_model::write(&sovereign_gguf::model::ModelSpec::vocab128k(42), &big)?;
    }
    let masks = mask_times(&big)?;
    let (reuse, cards) = if only_constrained {
        (None, None)
    } else {
        (
            Some(super::reuse::run(&bin, &q4)?),
            Some(super::cards::run(&bin, &q4)?),
        )
    };
    if !only_constrained {
        println!("\n{}", table(&rows, bandwidth));
    }
    if let Some(r) = reuse {
        println!("\n{}", super::reuse::table(&r));
    }
    if let Some(c) = cards {
        println!("\n{}", super::cards::table(&c));
    }
    println!("\n{}", constrained_table(&constrained, &masks));
    Ok(())
}

/// One stream with a JSON schema against one without, on the same daemon.
struct Constrained {
    plain: Stream,
    schema: Stream,
}

/// Records whose strings the random model fills: at least GEN tokens before it can end.
fn bench_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "array",
        "minItems": 16,
        "items": {
            "type": "object",
            "properties": {
                "id": {"type": "integer", "minimum": 0},
                "name": {"type": "string", "maxLength": 16},
                "status": {"enum": ["active", "paused", "closed"]},
                "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 3}
            },
            "required": ["id", "name", "status", "tags"],
            "additionalProperties": false
        }
    })
}

fn constrained(bin: &Path, model: &Path) -> Result<Constrained> {
    eprintln!("==> Q4_0: json_schema against unconstrained");
    let (port, _daemon) = start_daemon(bin, model)?;
    let format = serde_json::json!({"response_format": {"type": "json_schema",
        "json_schema": {"name": "records", "schema": bench_schema(), "strict": true}}});
    // Warm-up (weights paged in, grammar compiled and cached), then alternate the two
    // kinds six times and keep each kind's median, so drift hits both alike.
    stream(port)?;
    stream_with(port, &format)?;
    let (mut plain, mut schema) = (Vec::new(), Vec::new());
    for i in 0..6 {
        // Which kind goes first alternates too, so an order effect cancels out.
        if i % 2 == 0 {
            plain.push(stream(port)?);
            schema.push(stream_with(port, &format)?);
        } else {
            schema.push(stream_with(port, &format)?);
            plain.push(stream(port)?);
        }
        let (p, s) = (plain[plain.len() - 1], schema[schema.len() - 1]);
        eprintln!(
            "   unconstrained {:.2} tok/s ({} tokens), json_schema {:.2} tok/s ({} tokens)",
            p.gen_tps, p.tokens, s.gen_tps, s.tokens
        );
    }
    Ok(Constrained {
        plain: median_by(plain, |s| s.gen_tps),
        schema: median_by(schema, |s| s.gen_tps),
    })
}

/// Mask time per token on the 128k vocabulary, measured in-process by the grammar
/// module's benchmark (run as an ignored test of the release build).
fn mask_times(model: &Path) -> Result<serde_json::Value> {
    eprintln!("==> mask time on the 128k-token vocabulary");
    let out = crate::cargo()
        .args([
            "test",
            "--release",
            "--test",
            "inference_grammar",
            "mask_benchmark",
            "--",
            "--ignored",
            "--exact",
            "--nocapture",
        ])
        .env("SOVEREIGN_MASK_BENCH_MODEL", model)
        .stderr(Stdio::inherit())
        .output()
        .context("running the mask benchmark")?;
    if !out.status.success() {
        bail!("the mask benchmark failed");
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("MASK_FIGURES "))
        .context("the mask benchmark printed no figures")?;
    Ok(serde_json::from_str(line)?)
}

fn constrained_table(c: &Constrained, masks: &serde_json::Value) -> String {
    let mut rows = String::new();
    for m in masks.as_array().into_iter().flatten() {
        let f = |k: &str| m[k].as_f64().unwrap_or(0.0);
        rows.push_str(&format!(
            "| {} | {} tokens | {:.1} | {:.1} | {:.1} | {:.0} | {:.1} | {} |\n",
            m["workload"].as_str().unwrap_or("?"),
            m["vocab"].as_u64().unwrap_or(0),
            f("mask_p50_us"),
            f("mask_p99_us"),
            f("mask_max_us"),
            f("setup_ms"),
            f("compile_ms"),
            m["steps"].as_u64().unwrap_or(0),
        ));
    }
    format!(
        "| Q4_0, 1 stream | gen tok/s | tokens |\n|---|---|---|\n| unconstrained | {:.2} | {} |\n| json_schema | {:.2} | {} |\n| json_schema / unconstrained | {:.3} | |\n\n\
         | schema | vocabulary | mask p50 us | mask p99 us | mask max us | trie + factory ms | schema compile ms | masks |\n|---|---|---|---|---|---|---|---|\n{rows}\n\
         Threads: {THREADS} for decoding; masks are computed on one core, every step a full mask (the worst case: every sampled token rejected).\n",
        c.plain.gen_tps,
        c.plain.tokens,
        c.schema.gen_tps,
        c.schema.tokens,
        c.schema.gen_tps / c.plain.gen_tps.max(1e-9),
    )
}

struct Row {
    label: String,
    model_bytes: u64,
    raw: RawRun,
    /// The raw loop decoding four sequences together: the engine's batched ceiling.
    raw_four: RawRun,
    one: Stream,
    four_gen_tps: f64,
    /// Medians of each round's own comparisons (its measurements ran back to back).
    paired: Paired,
}

/// Ratios and differences taken within each round, then their median over the rounds:
/// robust to drift between rounds, which ratios of separate medians are not.
#[derive(Clone, Copy, Default)]
struct Paired {
    generation: f64,
    prompt: f64,
    ttft_over_prompt_ms: f64,
    four_over_one: f64,
}

impl Paired {
    fn of(ones: &[Stream], raws: &[RawRun], fours: &[f64]) -> Self {
        let median = |v: Vec<f64>| median_by(v, |x| *x);
        let rounds = || ones.iter().zip(raws).zip(fours);
        Paired {
            generation: median(rounds().map(|((o, r), _)| o.gen_tps / r.gen_tps).collect()),
            prompt: median(
                rounds()
                    .map(|((o, r), _)| o.prompt_tps / r.prompt_tps)
                    .collect(),
            ),
            ttft_over_prompt_ms: median(
                rounds()
                    .map(|((o, r), _)| o.ttft_ms - r.prompt_ms)
                    .collect(),
            ),
            four_over_one: median(rounds().map(|((o, _), f)| f / o.gen_tps).collect()),
        }
    }
}

/// What one HTTP stream measured.
#[derive(Clone, Copy, Default)]
pub(super) struct Stream {
    ttft_ms: f64,
    /// Prompt tokens the server counted: the raw loop is given exactly as many.
    prompt_tokens: usize,
    prompt_tps: f64,
    pub(super) gen_tps: f64,
    tokens: usize,
}

/// What one run of the raw llama.cpp loop measured.
#[derive(Clone, Copy, Default)]
struct RawRun {
    prompt_tps: f64,
    gen_tps: f64,
    prompt_ms: f64,
}

/// Rounds of each measurement; every figure is the median of its rounds.
const ROUNDS: usize = 9;

/// The median of `v` by `key` (the middle run, so its figures belong together).
fn median_by<T: Copy>(mut v: Vec<T>, key: impl Fn(&T) -> f64) -> T {
    v.sort_by(|a, b| key(a).total_cmp(&key(b)));
    v[v.len() / 2]
}

fn measure(bin: &Path, label: &str, model: &Path) -> Result<Row> {
    eprintln!(
        "==> {label}: {ROUNDS} rounds of one stream and four through the daemon, and the raw \
         loop with one sequence and four"
    );
    let (port, daemon) = start_daemon(bin, model)?;
    // Warm-up (page the weights in; learn the prompt length the server counts, which chat
    // formatting and tokenization make differ from PROMPT: the raw loop gets as many).
    let prompt_tokens = stream(port)?.prompt_tokens;
    // Each round runs the four measurements back to back, the idle daemon waiting while the
    // raw loop runs, in an order that rotates, so drift and order hit all of them alike.
    let (mut ones, mut fours, mut raws, mut raw_fours) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..ROUNDS {
        for k in 0..4 {
            match (i + k) % 4 {
                0 => ones.push(stream(port)?),
                1 => raws.push(raw_loop(bin, model, prompt_tokens, 1)?),
                2 => fours.push(four_streams(port)?),
                _ => raw_fours.push(raw_loop(bin, model, prompt_tokens, 4)?),
            }
        }
        eprintln!(
            "   1 stream {:.2} tok/s (TTFT {:.0} ms), engine {:.2} tok/s (prompt {:.0} ms); \
             4 streams {:.2} tok/s, engine 4 sequences {:.2} tok/s",
            ones[i].gen_tps,
            ones[i].ttft_ms,
            raws[i].gen_tps,
            raws[i].prompt_ms,
            fours[i],
            raw_fours[i].gen_tps
        );
    }
    drop(daemon);
    let paired = Paired::of(&ones, &raws, &fours);
    let one = median_by(ones.clone(), |s| s.gen_tps);
    let ttft = median_by(ones, |s| s.ttft_ms);
    let one = Stream {
        ttft_ms: ttft.ttft_ms,
        prompt_tps: ttft.prompt_tps,
        ..one
    };
    let four_gen_tps = median_by(fours, |f| *f);
    let model_bytes = std::fs::metadata(model)?.len();
    let raw_gen = median_by(raws.clone(), |r| r.gen_tps);
    let raw_prompt = median_by(raws, |r| r.prompt_ms);
    Ok(Row {
        label: label.into(),
        model_bytes,
        raw: RawRun {
            prompt_tps: raw_prompt.prompt_tps,
            prompt_ms: raw_prompt.prompt_ms,
            gen_tps: raw_gen.gen_tps,
        },
        raw_four: median_by(raw_fours, |r| r.gen_tps),
        one,
        four_gen_tps,
        paired,
    })
}

/// Four concurrent streams; their aggregate generated tokens/s after the last prompt.
fn four_streams(port: u16) -> Result<f64> {
    concurrent(
        port,
        &[
            serde_json::json!({}),
            serde_json::json!({}),
            serde_json::json!({}),
            serde_json::json!({}),
        ],
    )
}

/// Concurrent streams, one per entry of `extras` (body fields over [`stream_with`]'s);
/// their aggregate generated tokens/s after the last prompt.
pub(super) fn concurrent(port: u16, extras: &[serde_json::Value]) -> Result<f64> {
    let start = Instant::now();
    let four: Vec<Stream> = std::thread::scope(|s| {
        let hs: Vec<_> = extras
            .iter()
            .map(|e| s.spawn(move || stream_with(port, e)))
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("stream thread"))
            .collect::<Result<Vec<_>>>()
    })?;
    let wall = start.elapsed().as_secs_f64();
    let total: usize = four.iter().map(|s| s.tokens).sum();
    let slowest_ttft = four.iter().map(|s| s.ttft_ms).fold(0.0, f64::max) / 1e3;
    Ok(total as f64 / (wall - slowest_ttft).max(1e-9))
}

/// One run of the raw llama.cpp loop: `prompt` tokens, then GEN in each of `sequences`.
fn raw_loop(bin: &Path, model: &Path, prompt: usize, sequences: usize) -> Result<RawRun> {
    let out = Command::new(bin)
        .args([
            "serve",
            "--threads",
            THREADS,
            "--slots",
            SLOTS,
            "--context",
            CTX,
            "--raw-bench",
            &format!("{prompt}:{GEN}:{sequences}"),
            "--model",
        ])
        .arg(format!("m={}", model.display()))
        .stderr(Stdio::inherit())
        .output()
        .context("running the raw engine loop")?;
    if !out.status.success() {
        bail!("the raw engine loop failed");
    }
    let raw: serde_json::Value = serde_json::from_slice(&out.stdout).context("raw figures")?;
    let f = |k: &str| raw[k].as_f64().unwrap_or(0.0);
    Ok(RawRun {
        prompt_tps: f("prompt_tps"),
        gen_tps: f("gen_tps"),
        prompt_ms: f("prompt_ms"),
    })
}

/// A daemon serving `model` as "m" with four slots on a free loopback port, once healthy.
pub(super) fn start_daemon(bin: &Path, model: &Path) -> Result<(u16, Daemon)> {
    start_daemon_with(bin, model, CTX.parse()?)
}

/// [`start_daemon`] with `ctx` tokens per slot.
pub(super) fn start_daemon_with(bin: &Path, model: &Path, ctx: usize) -> Result<(u16, Daemon)> {
    start_daemon_args(bin, model, ctx, &[])
}

/// [`start_daemon_with`] with more `serve` arguments (`--root` is global, so it may come
/// after `serve` too).
pub(super) fn start_daemon_args(
    bin: &Path,
    model: &Path,
    ctx: usize,
    extra: &[std::ffi::OsString],
) -> Result<(u16, Daemon)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut daemon = Daemon(
        Command::new(bin)
            .env("SOVEREIGN_API_KEY", KEY)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--slots",
                SLOTS,
                "--context",
                &ctx.to_string(),
                "--threads",
                THREADS,
                "--model",
            ])
            .arg(format!("m={}", model.display()))
            .args(extra)
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_healthy(port, &mut daemon.0)?;
    Ok((port, daemon))
}

/// Kills the daemon when the benchmark ends, whatever happened.
pub(super) struct Daemon(pub(super) Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_healthy(port: u16, child: &mut Child) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        if let Some(st) = child.try_wait()? {
            bail!("the daemon exited early ({st})");
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut r = String::new();
            let _ = s.read_to_string(&mut r);
            if r.starts_with("HTTP/1.1 200") {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the daemon did not become healthy in 300 s")
}

/// One streamed completion of GEN tokens after a PROMPT-token prompt; token counts come
/// from the usage chunk. The prompt is the same every time, so it opts out of prefix reuse:
/// these are cold requests.
fn stream(port: u16) -> Result<Stream> {
    stream_with(port, &serde_json::json!({}))
}

/// [`stream`] with extra body fields.
pub(super) fn stream_with(port: u16, extra: &serde_json::Value) -> Result<Stream> {
    let prompt =
        "the quiet river and the green stone hold the light of the local machine ".repeat(PROMPT);
    let mut body = serde_json::json!({
        "model": "m", "prompt": prompt_prefix(&prompt), "max_tokens": GEN, "temperature": 0,
        "stream": true, "stream_options": {"include_usage": true}, "cache_prompt": false
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let body = body.to_string();
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    let start = Instant::now();
    write!(
        s,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    let mut first = None;
    let mut last = start;
    let (mut prompt_tokens, mut completion_tokens) = (0usize, 0usize);
    while r.read_line(&mut line)? > 0 {
        let data = line.trim_end().strip_prefix("data: ");
        if let Some(data) = data.filter(|d| *d != "[DONE]") {
            let v: serde_json::Value = serde_json::from_str(data)?;
            if v["choices"][0]["text"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
            {
                first.get_or_insert_with(Instant::now);
                last = Instant::now();
            }
            if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
                prompt_tokens = u["prompt_tokens"].as_u64().unwrap_or(0) as usize;
                completion_tokens = u["completion_tokens"].as_u64().unwrap_or(0) as usize;
            }
        }
        line.clear();
    }
    let first = first.context("the stream produced no text")?;
    let ttft = first.duration_since(start).as_secs_f64();
    let gen_s = last.duration_since(first).as_secs_f64();
    Ok(Stream {
        ttft_ms: ttft * 1e3,
        prompt_tokens,
        prompt_tps: prompt_tokens as f64 / ttft,
        gen_tps: completion_tokens.saturating_sub(1) as f64 / gen_s.max(1e-9),
        tokens: completion_tokens,
    })
}

/// The prompt text, cut so it tokenizes to about PROMPT tokens (each word is a piece).
fn prompt_prefix(text: &str) -> String {
    text.split(' ')
        .take(PROMPT - 1)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Best-of-5 copy bandwidth over a 256 MiB buffer (read + write bytes per second).
fn memory_bandwidth() -> f64 {
    let n = 256 << 20;
    let src = vec![1u8; n];
    let mut dst = vec![0u8; n];
    (0..5)
        .map(|_| {
            let t = Instant::now();
            dst.copy_from_slice(std::hint::black_box(&src));
            std::hint::black_box(&dst);
            (2 * n) as f64 / t.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

fn table(rows: &[Row], bandwidth: f64) -> String {
    let mut t = String::from(
        "| model | weights | engine prompt tok/s | engine gen tok/s | gen / (bandwidth / weights) | 1 stream prompt tok/s | 1 stream gen tok/s | TTFT ms (engine prompt ms) | 4 streams gen tok/s | engine 4 sequences gen tok/s | server/engine gen | server/engine prompt | 4 streams / 1 | engine 4 sequences / 1 |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let ceiling = bandwidth / r.model_bytes.max(1) as f64;
        t.push_str(&format!(
            "| {} | {:.0} MB | {:.1} | {:.2} | {:.2} | {:.1} | {:.2} | {:.0} ({:.0}) | {:.2} | {:.2} | {:.3} | {:.3} | {:.2} | {:.2} |\n",
            r.label,
            r.model_bytes as f64 / 1e6,
            r.raw.prompt_tps,
            r.raw.gen_tps,
            r.raw.gen_tps / ceiling,
            r.one.prompt_tps,
            r.one.gen_tps,
            r.one.ttft_ms,
            r.raw.prompt_ms,
            r.four_gen_tps,
            r.raw_four.gen_tps,
            r.one.gen_tps / r.raw.gen_tps,
            r.one.prompt_tps / r.raw.prompt_tps,
            r.four_gen_tps / r.one.gen_tps,
            r.raw_four.gen_tps / r.raw.gen_tps,
        ));
    }
    t.push_str(
        "\nThe same comparisons within each round (the round's own pair), median over the rounds:\n\n\
         | model | server/engine gen | server/engine prompt | TTFT - engine prompt ms | 4 streams / 1 |\n|---|---|---|---|---|\n",
    );
    for r in rows {
        let p = r.paired;
        t.push_str(&format!(
            "| {} | {:.3} | {:.3} | {:+.0} | {:.2} |\n",
            r.label, p.generation, p.prompt, p.ttft_over_prompt_ms, p.four_over_one
        ));
    }
    t.push_str(&format!("\nMemory bandwidth (copy) measured in the same run: {:.1} GB/s; threads: {THREADS}; prompt {PROMPT} tokens, {GEN} generated; every figure the median of {ROUNDS} alternated rounds.\n", bandwidth / 1e9));
    t
}
