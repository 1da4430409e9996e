//! `cargo xtask bench models`: pulling a large GGUF into the cache (from a local file
//! and from a local HTTP server) against a plain `cp` plus `sha256sum` of the same file,
//! measured side by side in one run; the figures go to BENCHMARKS.md.
//!
//!     cargo xtask bench models [--runs N] [--size-mb N]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::project_root;

/// The goal from the model cache's design: a pull within 1.3x of copy + hash.
const GOAL: f64 = 1.3;

pub fn run(args: &[String]) -> Result<()> {
    let mut runs = 3usize;
    let mut size_mb = 256u64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => runs = it.next().context("--runs needs a value")?.parse()?,
            "--size-mb" => size_mb = it.next().context("--size-mb needs a value")?.parse()?,
            other => bail!("unknown argument {other:?}: --runs N, --size-mb N"),
        }
    }
    let root = project_root();
    let work = root.join("target/bench/models");
    if work.exists() {
        std::fs::remove_dir_all(&work)
            .with_context(|| format!("cannot clear {}", work.display()))?;
    }
    std::fs::create_dir_all(&work)?;

    let bin = super::sovereign_binary(false, false)?;

    let model = work.join("bench.gguf");
    let how = bench_model(&model, size_mb)?;
    let size = std::fs::metadata(&model)?.len();
    eprintln!("bench models: {} ({}), {runs} runs each", human(size), how);

    let server = serve(&model)?;
    let mut copy_hash = Vec::new();
    let mut pull_file = Vec::new();
    let mut pull_http = Vec::new();
    for i in 0..runs {
        // Interleaved, so drift in the machine's load hits every variant alike.
        copy_hash.push(time_copy_and_hash(
            &model,
            &work.join(format!("copy-{i}.gguf")),
        )?);
        pull_file.push(time_pull(
            &bin,
            &work.join(format!("root-file-{i}")),
            model.to_str().context("path")?,
        )?);
        pull_http.push(time_pull(
            &bin,
            &work.join(format!("root-http-{i}")),
            &server,
        )?);
        for dir in [format!("root-file-{i}"), format!("root-http-{i}")] {
            remove_tree(&work.join(dir))?;
        }
        std::fs::remove_file(work.join(format!("copy-{i}.gguf")))?;
    }
    let base = median(&copy_hash.iter().map(|t| t.0).collect::<Vec<_>>());
    let hash_only = median(&copy_hash.iter().map(|t| t.1).collect::<Vec<_>>());
    let file = median(&pull_file);
    let http = median(&pull_http);
    let rows = [
        ("cp + sha256sum (baseline)", base),
        ("  of which sha256sum", hash_only),
        ("model pull PATH", file),
        ("model pull http://127.0.0.1", http),
    ];
    let mut table =
        String::from("| variant | median time | throughput | vs baseline |\n|---|---|---|---|\n");
    for (name, t) in rows {
        table.push_str(&format!(
            "| {name} | {:.2} s | {:.0} MB/s | {:.2}x |\n",
            t.as_secs_f64(),
            size as f64 / 1e6 / t.as_secs_f64(),
            t.as_secs_f64() / base.as_secs_f64()
        ));
    }
    let verdict = |t: Duration| {
        let r = t.as_secs_f64() / base.as_secs_f64();
        if r <= GOAL {
            format!("{r:.2}x, within the {GOAL}x goal")
        } else {
            format!("{r:.2}x, outside the {GOAL}x goal")
        }
    };
    let section = format!(
        "## Models\n\n\
         `cargo xtask bench models`: pulling {} ({how}) into the model cache, against `cp` \
         then `sha256sum` of the same file, median of {runs} interleaved runs, page cache warm. \
         A pull streams once, hashing while it writes, validates the GGUF header, fsyncs the \
         blob and renames it into the store; `cp` does not fsync. Most of the difference is the \
         hash: `sha256sum` here does not use the CPU's SHA extensions, the `sha2` crate does \
         when the CPU has them.\n\n{table}\n\
         Local file: {}. HTTP (a std-only server on 127.0.0.1 using sendfile): {}.\n\n\
         Machine: {}; {}.\n",
        human(size),
        verdict(file),
        verdict(http),
        cpu_name(),
        chrono_free_date(),
    );
    print!("{section}");
    write_section(&root.join("BENCHMARKS.md"), &section)?;
    eprintln!("bench models: BENCHMARKS.md updated");
    Ok(())
}

/// The benchmark model: `gen-model --preset bench` when it is available, else a GGUF of
/// `size_mb` written here (the cache only reads the header, so any valid file will do).
fn bench_model(path: &Path, size_mb: u64) -> Result<String> {
    let args: Vec<String> = ["--preset", "bench", "--out"]
        .iter()
        .map(|s| s.to_string())
        .chain([path.display().to_string()])
        .collect();
    if crate::gen_model::run(&args).is_ok() && path.is_file() {
        return Ok("the `bench` preset of gen-model".into());
    }
    write_gguf(path, size_mb)?;
    Ok(format!(
        "a generated llama-shaped F16 GGUF of {size_mb} MiB"
    ))
}

/// A minimal valid GGUF v3: a few llama keys and F16 tensors of 4096x512 (4 MiB each).
fn write_gguf(path: &Path, size_mb: u64) -> Result<()> {
    let tensors = size_mb / 4;
    let mut h: Vec<u8> = Vec::new();
    h.extend(b"GGUF");
    h.extend(3u32.to_le_bytes());
    h.extend(tensors.to_le_bytes());
    h.extend(3u64.to_le_bytes());
    let s = |h: &mut Vec<u8>, v: &str| {
        h.extend((v.len() as u64).to_le_bytes());
        h.extend(v.as_bytes());
    };
    s(&mut h, "general.architecture");
    h.extend(8u32.to_le_bytes());
    s(&mut h, "llama");
    s(&mut h, "general.file_type");
    h.extend(4u32.to_le_bytes());
    h.extend(1u32.to_le_bytes());
    s(&mut h, "llama.context_length");
    h.extend(4u32.to_le_bytes());
    h.extend(4096u32.to_le_bytes());
    let bytes_each: u64 = 4096 * 512 * 2;
    for i in 0..tensors {
        s(&mut h, &format!("blk.{i}.ffn_up.weight"));
        h.extend(2u32.to_le_bytes());
        h.extend(4096u64.to_le_bytes());
        h.extend(512u64.to_le_bytes());
        h.extend(1u32.to_le_bytes());
        h.extend((i * bytes_each).to_le_bytes());
    }
    h.resize(h.len().div_ceil(32) * 32, 0);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    out.write_all(&h)?;
    let mut block = vec![0u8; bytes_each as usize];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for chunk in block.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let bytes = x.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
    for _ in 0..tensors {
        out.write_all(&block)?;
    }
    out.flush()?;
    Ok(())
}

/// `cp` then `sha256sum`: the whole, and the hash's share of it.
fn time_copy_and_hash(src: &Path, dst: &Path) -> Result<(Duration, Duration)> {
    let start = Instant::now();
    quiet(Command::new("cp").arg(src).arg(dst))?;
    let hash = Instant::now();
    quiet(Command::new("sha256sum").arg(dst))?;
    Ok((start.elapsed(), hash.elapsed()))
}

fn time_pull(bin: &Path, root: &Path, source: &str) -> Result<Duration> {
    let start = Instant::now();
    quiet(
        Command::new(bin)
            .arg("--root")
            .arg(root)
            .args(["-q", "model", "pull", source, "--name", "bench"]),
    )?;
    Ok(start.elapsed())
}

fn quiet(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {shown}"))?;
    if !out.status.success() {
        bail!("{shown} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Blobs are read-only; removing the tree needs no more than the directory's rights.
fn remove_tree(dir: &Path) -> Result<()> {
    std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))
}

/// Serve `file` over HTTP/1.1 on 127.0.0.1 from a thread; returns its URL.
fn serve(file: &Path) -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/bench.gguf", listener.local_addr()?);
    let path: PathBuf = file.to_owned();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            if let Err(e) = answer(stream, &path) {
                eprintln!("bench server: {e}");
            }
        }
    });
    Ok(url)
}

fn answer(stream: TcpStream, path: &Path) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 200 OK\r\ncontent-length: {len}\r\netag: \"bench\"\r\nconnection: close\r\n\r\n"
    )?;
    // std copies a file to a socket with sendfile(2).
    std::io::copy(&mut file, &mut out)?;
    Ok(())
}

fn median(times: &[Duration]) -> Duration {
    let mut v = times.to_vec();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn human(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

fn cpu_name() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split(':').nth(1))
        })
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = info.lines().filter(|l| l.starts_with("processor")).count();
    format!("{model}, {cores} cores")
}

fn chrono_free_date() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Replace the `## Models` section of BENCHMARKS.md (up to the next `## `), or add it.
fn write_section(path: &Path, section: &str) -> Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n\n".into());
    let new = match old.find("## Models\n") {
        Some(start) => {
            let rest = &old[start + 1..];
            let end = rest
                .find("\n## ")
                .map(|i| start + 1 + i + 1)
                .unwrap_or(old.len());
            format!(
                "{}{section}{}",
                &old[..start],
                if end < old.len() {
                    format!("\n{}", &old[end..])
                } else {
                    String::new()
                }
            )
        }
        None => format!("{}\n\n{section}", old.trim_end()),
    };
    std::fs::write(path, new).with_context(|| format!("cannot write {}", path.display()))
}
