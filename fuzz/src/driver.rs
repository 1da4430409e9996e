//! The fuzzing loop the grammar and schema fuzzers share: run every corpus seed, then
//! mutants of the pool, keep a mutant that reaches a new outcome as a further seed, and
//! stop at the first finding.
//!
//! A finding is a panic or an input that takes more than [`SLOW`]. Inputs run on a thread
//! with half the stack of a request thread ([`STACK`]), so what would overflow one, or
//! come within 2x of it, overflows here. A stack overflow aborts the process before anything
//! can be saved, so the binaries write each input to `fuzz/artifacts/<target>/in-flight`
//! before running it (one write, no sync): after an abort that file holds the input the
//! process died on. A watchdog on the calling thread catches an input that never returns.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::mutate::Rng;

/// An input taking longer than this is a finding: a request must not cost a second of CPU
/// before it is refused or compiled.
pub const SLOW: Duration = Duration::from_secs(1);

/// The stack inputs run on: half the 2 MiB of a tokio worker and of Rust's threads. The
/// grammar limits keep llguidance's deepest compile near 450 KiB (measured with
/// llguidance 1.9.1), 5x under 2 MiB; an overflow here means that margin fell below 2x.
pub const STACK: usize = 1 << 20;

/// Mutants are cut to this size: past every size limit, short of slowing the loop down.
pub const MAX_INPUT: usize = 256 * 1024;

/// Mutants that reached a new outcome are kept up to this many.
const MAX_POOL: usize = 10_000;

/// Runs one input and describes its outcome.
pub type Run = fn(&[u8]) -> String;

/// Makes one mutant of a parent, with the pool to splice from.
pub type Mutate = fn(parent: &[u8], pool: &[Vec<u8>], rng: &mut Rng) -> Vec<u8>;

/// What a fuzzer runs and how it mutates.
pub struct Target {
    /// Names the corpus (`fuzz/corpus/<name>/`) and the findings (`fuzz/artifacts/<name>/`).
    pub name: &'static str,
    /// Run one input and describe its outcome coarsely (an error's kind and first words):
    /// a mutant with a new outcome explored something and joins the pool. Panics on a
    /// broken invariant.
    pub run: Run,
    /// One mutant of `parent`; `pool` is there to splice from.
    pub mutate: Mutate,
}

/// How long to fuzz and where the files are.
pub struct Options {
    /// Stop after this long (the binaries)...
    pub seconds: Option<u64>,
    /// ...or after this many inputs (the bounded test), whichever comes first.
    pub runs: Option<u64>,
    /// The generator's seed: the same seed and corpus give the same mutants.
    pub seed: u64,
    /// The seed inputs, one per file.
    pub corpus: PathBuf,
    /// Where findings and the input in flight are written; `None` writes nothing (the
    /// test: a finding fails it with the input in the message).
    pub artifacts: Option<PathBuf>,
}

/// A finished run without findings.
#[derive(Debug)]
pub struct Summary {
    pub runs: u64,
    pub outcomes: usize,
    pub pool: usize,
}

/// What went wrong with one input.
enum Finding {
    Panic(String),
    Slow(Duration),
}

/// The state the watchdog reads while the worker runs.
struct Shared {
    /// The input being run (a copy, for the watchdog to save).
    input: Mutex<Vec<u8>>,
    /// When it started, in nanoseconds since `epoch`; 0 between inputs.
    started: AtomicU64,
    /// The worker has returned.
    done: AtomicBool,
    epoch: Instant,
}

impl Shared {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos().max(1) as u64
    }
}

/// Parse `--seconds N --seed N --corpus DIR`, fuzz, print the outcome; the exit status.
pub fn main(target: &Target) -> i32 {
    let bin = format!("fuzz-{}", target.name);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut opts = Options {
        seconds: Some(30),
        runs: None,
        seed: 1,
        corpus: root.join("corpus").join(target.name),
        artifacts: Some(root.join("artifacts").join(target.name)),
    };
    let usage = format!("usage: {bin} [--seconds N] [--seed N] [--corpus DIR]");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        let parsed = match (arg.as_str(), value) {
            ("--seconds", Some(v)) => v.parse().map(|s| opts.seconds = Some(s)).is_ok(),
            ("--seed", Some(v)) => v.parse().map(|s| opts.seed = s).is_ok(),
            ("--corpus", Some(v)) => {
                opts.corpus = PathBuf::from(v);
                true
            }
            _ => false,
        };
        if !parsed {
            eprintln!("{bin}: bad argument {arg:?}\n{usage}");
            return 2;
        }
    }
    if let Some(dir) = &opts.artifacts {
        eprintln!(
            "{bin}: if the process dies (a stack overflow aborts it), the input it died on is {}",
            dir.join("in-flight").display()
        );
    }
    // A panic is the finding: the loop reports it with its input, quietly otherwise.
    std::panic::set_hook(Box::new(|_| {}));
    match fuzz(target, &opts) {
        Ok(s) => {
            println!(
                "{bin}: {} inputs in {}s, no finding; {} distinct outcomes, {} seeds in the pool",
                s.runs,
                opts.seconds.unwrap_or(0),
                s.outcomes,
                s.pool
            );
            0
        }
        Err(e) => {
            eprintln!("{bin}: {e}");
            1
        }
    }
}

/// Fuzz `target` until the time or the run count is up; `Err` describes the finding (and
/// where its input was saved).
pub fn fuzz(target: &Target, opts: &Options) -> Result<Summary, String> {
    let seeds = read_corpus(&opts.corpus)?;
    if seeds.is_empty() {
        return Err(format!("no seeds in {}", opts.corpus.display()));
    }
    let in_flight = match &opts.artifacts {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let path = dir.join("in-flight");
            let file = File::create(&path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            Some((path, file))
        }
        None => None,
    };
    let shared = Arc::new(Shared {
        input: Mutex::new(Vec::new()),
        started: AtomicU64::new(0),
        done: AtomicBool::new(false),
        epoch: Instant::now(),
    });
    let worker = {
        let shared = shared.clone();
        let (run, mutate) = (target.run, target.mutate);
        let file = in_flight
            .as_ref()
            .map(|(_, f)| f.try_clone())
            .transpose()
            .map_err(|e| format!("cannot reopen the in-flight file: {e}"))?;
        let (seconds, runs, seed) = (opts.seconds, opts.runs, opts.seed);
        std::thread::Builder::new()
            .name(format!("fuzz-{}", target.name))
            .stack_size(STACK)
            .spawn(move || {
                // Set `done` even when the loop itself panics, so the watchdog stops.
                struct Done(Arc<Shared>);
                impl Drop for Done {
                    fn drop(&mut self) {
                        self.0.done.store(true, Ordering::SeqCst);
                    }
                }
                let done = Done(shared);
                work(&done.0, file, seeds, run, mutate, seconds, runs, seed)
            })
            .map_err(|e| format!("cannot start the fuzzing thread: {e}"))?
    };
    // The watchdog: an input that runs past the budget is a finding even if it never
    // returns (the worker is left to it; the process ends soon after).
    while !shared.done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
        let started = shared.started.load(Ordering::SeqCst);
        if started != 0 && shared.now().saturating_sub(started) > SLOW.as_nanos() as u64 * 2 {
            let input = shared
                .input
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            return Err(report(
                opts,
                &input,
                &format!(
                    "an input ran past {}s without returning",
                    SLOW.as_secs() * 2
                ),
                "slow",
            ));
        }
    }
    let result = worker.join().map_err(|payload| {
        format!(
            "the fuzzer itself panicked (mutating, not running an input): {}",
            message(payload.as_ref())
        )
    })?;
    let out = match result {
        Ok(summary) => Ok(summary),
        Err((input, Finding::Panic(message))) => Err(report(
            opts,
            &input,
            &format!("the target panicked: {message}"),
            "crash",
        )),
        Err((input, Finding::Slow(took))) => Err(report(
            opts,
            &input,
            &format!("an input took {took:?}, more than {SLOW:?}"),
            "slow",
        )),
    };
    if let Some((path, _)) = in_flight {
        // Nothing died: the last input is no finding.
        std::fs::remove_file(&path)
            .map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
    }
    out
}

/// The loop on the worker thread: the seeds as they are, then mutants.
#[allow(clippy::too_many_arguments)]
fn work(
    shared: &Shared,
    file: Option<File>,
    mut pool: Vec<Vec<u8>>,
    run: Run,
    mutate: Mutate,
    seconds: Option<u64>,
    runs: Option<u64>,
    seed: u64,
) -> Result<Summary, (Vec<u8>, Finding)> {
    let deadline = seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let mut rng = Rng::new(seed);
    let mut outcomes: HashSet<String> = HashSet::new();
    let mut count = 0u64;
    let seeds = pool.len();
    loop {
        if runs.is_some_and(|n| count >= n) || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let input = if (count as usize) < seeds {
            pool[count as usize].clone()
        } else {
            let parent = &pool[rng.below(pool.len())];
            let mut m = mutate(parent, &pool, &mut rng);
            m.truncate(MAX_INPUT);
            m
        };
        count += 1;
        if let Some(f) = &file {
            // Best effort: the file only matters if the process dies.
            if f.set_len(0)
                .and_then(|()| f.write_all_at(&input, 0))
                .is_err()
            {
                eprintln!("fuzz: cannot write the in-flight input");
            }
        }
        shared
            .input
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone_from(&input);
        let start = Instant::now();
        shared.started.store(shared.now(), Ordering::SeqCst);
        let result = std::panic::catch_unwind(|| run(&input));
        shared.started.store(0, Ordering::SeqCst);
        let took = start.elapsed();
        match result {
            Err(payload) => return Err((input, Finding::Panic(message(payload.as_ref())))),
            Ok(_) if took > SLOW => return Err((input, Finding::Slow(took))),
            Ok(outcome) => {
                if outcomes.insert(outcome) && pool.len() < MAX_POOL {
                    pool.push(input);
                }
            }
        }
    }
    Ok(Summary {
        runs: count,
        outcomes: outcomes.len(),
        pool: pool.len(),
    })
}

/// A panic's message, when it has one.
fn message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}

/// Save a finding's input (when there is an artifacts folder) and describe it.
fn report(opts: &Options, input: &[u8], what: &str, kind: &str) -> String {
    let shown = String::from_utf8_lossy(&input[..input.len().min(300)]).into_owned();
    let Some(dir) = &opts.artifacts else {
        return format!("{what}; input ({} bytes): {shown:?}", input.len());
    };
    let path = dir.join(format!("{kind}-{:016x}", fnv(input)));
    match std::fs::write(&path, input) {
        Ok(()) => format!("{what}; input saved to {}", path.display()),
        Err(e) => format!(
            "{what}; cannot save the input to {}: {e}; input: {shown:?}",
            path.display()
        ),
    }
}

/// FNV-1a: a stable name for a saved input.
pub fn fnv(input: &[u8]) -> u64 {
    input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The corpus files' contents, in name order.
pub fn read_corpus(dir: &Path) -> Result<Vec<Vec<u8>>, String> {
    Ok(read_named(dir)?.into_iter().map(|(_, b)| b).collect())
}

/// The corpus files with their names, in name order.
pub fn read_named(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            std::fs::read(p)
                .map(|b| (name, b))
                .map_err(|e| format!("cannot read {}: {e}", p.display()))
        })
        .collect()
}
