//! `sovereign serve`: Run the inference daemon in the foreground.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{CmdResult, Output};
use crate::inference::daemon::{self, DaemonOptions};
use crate::inference::limits::{
    BOUNDS, Bound, BoundKind, CONTEXT, GPU_LAYERS, LISTEN, MAX_LOADED, PROMPT_CACHE, SLOTS,
    ServerLimits, THREADS, clap_range, ttl_problem,
};

/// `--no-prompt-cache`'s help, from the daemon's one definition of the switch.
fn prompt_cache_help() -> String {
    format!(
        "Decode every prompt whole. By default the daemon does not: {}. {}.",
        PROMPT_CACHE.about.to_lowercase(),
        PROMPT_CACHE.off
    )
}
use crate::inference::model_options::{GpuLayers, ModelsFile};
use crate::profile::units::{Duration as TextDuration, Size};

const EXAMPLES: &str = "\
Examples:
  sovereign serve                      # every model in the cache, each loaded on first use
  sovereign serve --preload qwen       # ... with qwen loaded at start
  sovereign serve --model tiny=/models/tiny.gguf
  sovereign serve --listen 0.0.0.0:8080 --api-key-file /etc/sovereign/api-key \\
      --model qwen=/models/qwen2.5-7b-q4_k_m.gguf --slots 4 --context 8192
  SOVEREIGN_API_KEY=... sovereign serve --model a=/m/a.gguf --model b=/m/b.gguf
  sovereign serve --max-loaded 2 --ttl 30m --models /etc/sovereign/models.toml
  sovereign serve --card sql=cards/sql.json    # the Card sql as a model, on its cached base

The API key comes from a file (mode 600), SOVEREIGN_API_KEY, or systemd's credential
$CREDENTIALS_DIRECTORY/api-key, never from argv.
Listening beyond loopback requires a key. With no --model, serve answers for every
model in the cache (under --root) by name; before a model is loaded its blob's size and
recorded hash are checked, and a corrupt one is refused with 503 (run `sovereign model
verify`, then pull it again), and a model whose estimated memory (weights, KV cache,
compute buffers) exceeds what is free is refused with the numbers (`sovereign model load
--force` loads it anyway). SIGTERM stops accepting, lets in-flight
requests finish within --shutdown-timeout, ends the rest with an error, and exits 0.

Each slot keeps its KV cache after a request, and a request whose prompt starts like a
cached one (a conversation's earlier turns, a shared system prompt) decodes only the rest;
--no-prompt-cache turns that off where users must not learn from response times what
others sent.

Clients are bounded: a request head must arrive within --header-timeout however slowly
it trickles, a body within --body-timeout (408 beyond), an idle keep-alive connection is
closed after --idle-timeout, and beyond --max-connections a connection is answered 503.
Grammar compiles (response_format, grammar) run two at a time at low CPU priority, eight
more may wait (429 beyond), and each has --grammar-compile-timeout (503 beyond).";

/// Run the inference daemon in the foreground.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = LISTEN, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// File holding the API key (must not be readable by group or others).
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// A model to serve, as NAME=PATH to a GGUF file (repeatable). Without any, serve the
    /// model cache.
    #[arg(long = "model", value_name = "NAME=PATH", value_parser = parse_model)]
    pub models: Vec<(String, PathBuf)>,
    /// A Card to serve as a model, as NAME=FILE (repeatable): its base must be in the model
    /// cache (under --root) at the digest the Card pins. Requests naming NAME run on that
    /// base with the Card's system prompt, sampling and response constraint.
    #[arg(long = "card", value_name = "NAME=FILE", value_parser = parse_model)]
    pub cards: Vec<(String, PathBuf)>,
    /// A cached model to load at start instead of on its first request (repeatable; only
    /// without --model).
    #[arg(long, value_name = "NAME", conflicts_with = "models")]
    pub preload: Vec<String>,
    /// Sequences decoded together (continuous batching).
    #[arg(long, default_value_t = SLOTS.kind.default_value() as u16,
          value_parser = clap::value_parser!(u16).range(clap_range(SLOTS.kind.range_inclusive())))]
    pub slots: u16,
    /// Context length of each slot, in tokens.
    #[arg(long = CONTEXT.flag, alias = "ctx", value_name = "N",
          default_value_t = CONTEXT.kind.default_value() as u32,
          value_parser = clap::value_parser!(u32).range(clap_range(CONTEXT.kind.range_inclusive())))]
    pub context: u32,
    /// CPU threads (default: physical cores).
    #[arg(long, value_parser = clap::value_parser!(u16).range(clap_range(THREADS)))]
    pub threads: Option<u16>,
    /// Layers to offload to the GPU: a number or `auto` (all the build supports).
    #[arg(long, default_value_t = GPU_LAYERS, value_name = "N|auto")]
    pub gpu_layers: GpuLayers,
    /// Most cached models loaded at once; loading another unloads the least recently used.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(clap_range(MAX_LOADED)), conflicts_with = "models")]
    pub max_loaded: Option<u16>,
    /// Unload a cached model idle this long (e.g. 30m) unless it was loaded with its own
    /// TTL. Default: never.
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl, conflicts_with = "models")]
    pub ttl: Option<TextDuration>,
    /// Per-model defaults (TOML: `[models.NAME]` with context, gpu_layers, ttl, preload).
    #[arg(long = "models", value_name = "FILE", conflicts_with = "models")]
    pub models_file: Option<PathBuf>,
    /// The memory models may fill instead of the detected one (tests).
    #[arg(long, hide = true, value_name = "SIZE", env = "SOVEREIGN_TEST_MEMORY")]
    pub memory_limit: Option<Size>,
    /// Lock the model weights in RAM.
    #[arg(long)]
    pub mlock: bool,
    /// Read the model into memory instead of mapping it.
    #[arg(long)]
    pub no_mmap: bool,
    #[arg(long = PROMPT_CACHE.off_flag, help = prompt_cache_help())]
    pub no_prompt_cache: bool,
    #[command(flatten)]
    pub bounds: ClientBounds,
    /// Benchmark baseline: instead of serving, run a plain llama.cpp loop on the first
    /// model (PROMPT prompt tokens, GEN generated in each of SEQUENCES sequences decoded
    /// together, default 1) in a context shaped by --slots and --context as the daemon's, and
    /// print its figures as JSON.
    #[arg(long, hide = true, value_name = "PROMPT:GEN[:SEQUENCES]")]
    pub raw_bench: Option<String>,
}

/// The daemon's bounds on clients: one flag per entry of [`BOUNDS`], whose name, help,
/// default and range all come from there.
#[derive(Debug, Clone)]
pub struct ClientBounds(Vec<(&'static str, u64)>);

impl ClientBounds {
    /// The value given (or defaulted) for `b`.
    fn get(&self, b: &Bound) -> u64 {
        self.0
            .iter()
            .find(|(key, _)| *key == b.key)
            .map_or(b.kind.default_value(), |(_, v)| *v)
    }
}

impl clap::FromArgMatches for ClientBounds {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Ok(ClientBounds(
            BOUNDS
                .iter()
                .map(|b| {
                    let v = m.get_one::<u64>(b.flag).copied();
                    (b.key, v.unwrap_or(b.kind.default_value()))
                })
                .collect(),
        ))
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl clap::Args for ClientBounds {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        BOUNDS.iter().fold(cmd, |cmd, b| {
            let bound: &'static Bound = b;
            let value_name = match b.kind {
                BoundKind::Seconds { .. } => "DURATION",
                BoundKind::Count { .. } => "N",
            };
            cmd.arg(
                clap::Arg::new(b.flag)
                    .long(b.flag)
                    .help(b.about)
                    .value_name(value_name)
                    .default_value(b.default_text())
                    .value_parser(move |s: &str| parse_bound(bound, s)),
            )
        })
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

/// Parse a bound's flag (a duration such as `30s`, or a count) and check its range.
fn parse_bound(b: &Bound, s: &str) -> Result<u64, String> {
    let v = match b.kind {
        BoundKind::Seconds { .. } => {
            let d: TextDuration = s.parse()?;
            d.as_std().as_secs()
        }
        BoundKind::Count { .. } => s
            .parse::<u64>()
            .map_err(|_| format!("{s:?} is not a whole number"))?,
    };
    b.check(v)
        .map_err(|e| e.replacen(b.key, &format!("--{}", b.flag), 1))
}

fn parse_ttl(s: &str) -> Result<TextDuration, String> {
    let d: TextDuration = s.parse()?;
    match ttl_problem("--ttl", d.as_std()) {
        Some(why) => Err(why),
        None => Ok(d),
    }
}

fn parse_model(s: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not NAME=PATH"))?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
    {
        return Err(format!(
            "model name {name:?} must be letters, digits, - _ . or :"
        ));
    }
    if path.is_empty() {
        return Err(format!("{s:?} has no path after ="));
    }
    Ok((name.to_string(), PathBuf::from(path)))
}

pub fn run(args: Args, out: &Output) -> CmdResult {
    if let Some(spec) = &args.raw_bench {
        return raw_bench(spec, &args, out);
    }
    // systemd's LoadCredential=api-key:FILE hands the key over as a file in
    // $CREDENTIALS_DIRECTORY, readable only by the service.
    let credential = std::env::var_os("CREDENTIALS_DIRECTORY")
        .map(|d| PathBuf::from(d).join("api-key"))
        .filter(|p| p.is_file());
    let api_key = daemon::resolve_key(args.api_key_file.as_deref(), credential.as_deref())
        .map_err(|e| miette::miette!("{e}"))?;
    let model_defaults = match &args.models_file {
        Some(path) => {
            ModelsFile::load(path)
                .map_err(|e| miette::miette!("{e}"))?
                .models
        }
        None => Default::default(),
    };
    let mut names = std::collections::HashSet::new();
    if let Some((dup, _)) = args.models.iter().find(|(n, _)| !names.insert(n.clone())) {
        return Err(miette::miette!("--model {dup} is given twice"));
    }
    let mut names = std::collections::HashSet::new();
    if let Some((dup, _)) = args.cards.iter().find(|(n, _)| !names.insert(n.clone())) {
        return Err(miette::miette!("--card {dup} is given twice"));
    }
    daemon::check_listen(&args.listen, api_key.is_some()).map_err(|e| miette::miette!("{e}"))?;
    let opts = DaemonOptions {
        listen: args.listen,
        api_key,
        cache_root: args
            .models
            .is_empty()
            .then(|| out.root.clone().unwrap_or_else(|| PathBuf::from("/"))),
        preload: args.preload,
        models: args.models,
        cards: args.cards,
        store: out.root.clone().unwrap_or_else(|| PathBuf::from("/")),
        slots: usize::from(args.slots),
        ctx: args.context as usize,
        threads: args
            .threads
            .map_or_else(crate::hardware::cpu::physical_cores, usize::from),
        gpu_layers: args.gpu_layers.as_option(),
        mlock: args.mlock,
        mmap: !args.no_mmap,
        prompt_cache: !args.no_prompt_cache,
        max_loaded: args.max_loaded.map(usize::from),
        ttl: args.ttl.map(TextDuration::as_std),
        model_defaults,
        memory_limit: args.memory_limit.map(Size::bytes),
        detect_machine: || {
            crate::hardware::detect(&crate::host::RealHost)
                .map(|facts| facts.machine())
                .map_err(|e| format!("{e:#}"))
        },
        limits: ServerLimits::from_bounds(|b| args.bounds.get(b)),
    };
    serve(opts, out)
}

#[cfg(feature = "engine")]
fn raw_bench(spec: &str, args: &Args, out: &Output) -> CmdResult {
    let parse = |s: Option<&str>| s.and_then(|v| v.parse::<usize>().ok()).filter(|n| *n > 0);
    let mut it = spec.split(':');
    let (Some(prompt), Some(generate)) = (parse(it.next()), parse(it.next())) else {
        return Err(miette::miette!(
            "--raw-bench {spec:?} is not PROMPT:GEN[:SEQUENCES]"
        ));
    };
    let sequences = match it.next() {
        None => 1,
        Some(s) => parse(Some(s)).ok_or_else(|| {
            miette::miette!("--raw-bench {spec:?}: SEQUENCES must be a positive number")
        })?,
    };
    let Some((_, path)) = args.models.first() else {
        return Err(miette::miette!("--raw-bench needs --model NAME=PATH"));
    };
    let threads = args
        .threads
        .map_or_else(crate::hardware::cpu::physical_cores, usize::from);
    let spec = crate::inference::rawbench::RawSpec {
        threads,
        ctx: args.context as usize,
        slots: usize::from(args.slots),
        prompt,
        generate,
        sequences,
    };
    let figures =
        crate::inference::rawbench::run(path, spec).map_err(|e| miette::miette!("{e}"))?;
    out.json(&figures)?;
    Ok(super::exit::OK)
}

#[cfg(not(feature = "engine"))]
fn raw_bench(_spec: &str, _args: &Args, _out: &Output) -> CmdResult {
    serve_unavailable()
}

#[cfg(feature = "engine")]
fn serve(opts: DaemonOptions, _out: &Output) -> CmdResult {
    daemon::serve(opts).map_err(|e| miette::miette!("{e}"))?;
    Ok(super::exit::OK)
}

#[cfg(not(feature = "engine"))]
fn serve(_opts: DaemonOptions, _out: &Output) -> CmdResult {
    serve_unavailable()
}

#[cfg(not(feature = "engine"))]
fn serve_unavailable() -> CmdResult {
    Err(miette::miette!(
        help = "rebuild with the default `engine` feature",
        "this sovereign was built without the llama.cpp engine"
    ))
}
