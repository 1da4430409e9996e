//! `fuzz-gguf`: a mutation fuzzer for the GGUF header parser that runs on stable Rust.
//!
//! It mutates the corpus in `fuzz/corpus/gguf/`, parses every mutant, keeps mutants that
//! reach a new outcome (error kind and place) as further seeds, and stops at the first
//! panic, saving the input under `fuzz/artifacts/gguf/`.
//!
//!     cargo run --release -p sovereign-fuzz -- --seconds 60
//!     cargo run --release -p sovereign-fuzz -- --write-seeds fuzz/corpus/gguf

mod mutate;
mod seeds;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sovereign_fuzz::driver::read_corpus;
use sovereign_gguf::{self as gguf, GgufError};

const USAGE: &str = "usage: fuzz-gguf [--seconds N] [--seed N] [--corpus DIR] | --write-seeds DIR";

fn main() {
    if let Err(e) = run() {
        eprintln!("fuzz-gguf: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut seconds = 30u64;
    let mut seed = 1u64;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut corpus = root.join("corpus/gguf");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--seconds" => seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--seed" => seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--corpus" => corpus = PathBuf::from(value()?),
            "--write-seeds" => return write_seeds(Path::new(&value()?)),
            _ => return Err(format!("unknown argument {arg:?}\n{USAGE}")),
        }
    }
    let mut pool = read_corpus(&corpus)?;
    if pool.is_empty() {
        return Err(format!("no seeds in {}", corpus.display()));
    }
    let artifacts = root.join("artifacts/gguf");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut rng = mutate::Rng::new(seed);
    let mut outcomes: HashSet<String> = HashSet::new();
    let mut runs = 0u64;
    // A panic in the parser is the finding: report it ourselves, quietly otherwise.
    std::panic::set_hook(Box::new(|_| {}));
    while Instant::now() < deadline {
        for _ in 0..1000 {
            let parent = &pool[rng.below(pool.len())];
            let input = mutate::mutant(parent, &mut rng);
            runs += 1;
            match std::panic::catch_unwind(|| gguf::parse_bytes(&input)) {
                Ok(result) => {
                    if outcomes.insert(outcome(&result)) && pool.len() < 10_000 {
                        pool.push(input);
                    }
                }
                Err(_) => {
                    let path = save_crash(&artifacts, &input)?;
                    return Err(format!(
                        "the parser panicked after {runs} runs; input saved to {}",
                        path.display()
                    ));
                }
            }
        }
    }
    println!(
        "fuzz-gguf: {runs} inputs in {seconds}s, no panic; {} distinct outcomes, {} seeds in the pool",
        outcomes.len(),
        pool.len()
    );
    Ok(())
}

/// What a parse came to, coarsely: the signal that a mutant explored something new.
fn outcome(result: &Result<gguf::Header, GgufError>) -> String {
    match result {
        Ok(h) => format!("ok {} {}", h.tensors.len(), h.metadata.len()),
        Err(e) => {
            let place = e
                .place
                .as_deref()
                .unwrap_or("")
                .split(' ')
                .next()
                .unwrap_or("");
            format!(
                "{:?} {place} {}",
                e.kind,
                e.message.split(' ').take(3).collect::<Vec<_>>().join(" ")
            )
        }
    }
}

fn save_crash(dir: &Path, input: &[u8]) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let name = format!(
        "crash-{:016x}",
        input
            .iter()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b))
                .wrapping_mul(0x100_0000_01b3))
    );
    let path = dir.join(name);
    std::fs::write(&path, input).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

fn write_seeds(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (name, bytes) in seeds::all() {
        let path = dir.join(name);
        std::fs::write(&path, &bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("{} ({} bytes)", path.display(), bytes.len());
    }
    Ok(())
}
