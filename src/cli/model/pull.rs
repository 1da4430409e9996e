//! `sovereign model pull`: download or copy a model into the verified cache.

use std::cell::RefCell;
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::{CmdResult, Output, exit, report};
use crate::inference::cache::{Cache, ModelName, Progress, PullRequest};
use crate::inference::gguf::{Summary, human_count};
use crate::inference::units::{ByteStyle, human_bytes};

const EXAMPLES: &str = "\
Examples:
  sovereign model pull https://example.org/coder-7b.Q4_K_M.gguf --sha256 3b1f...e9
  sovereign model pull ./tiny.gguf --name tiny
  sovereign --root /tmp/sandbox model pull ./tiny.gguf --json

An interrupted download resumes when the same command runs again. Without --sha256
the computed hash is printed, to pin in the profile as `sha256 = \"...\"`.";

/// Download or copy a model into the verified cache.
///
/// The file is hashed while it streams, its GGUF header is validated, and only then is
/// it moved into the cache; a hash mismatch or an invalid header deletes it.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// An http(s) URL or a local path to a GGUF file.
    pub source: String,

    /// The expected sha256 (64 hex digits, `sha256:` prefix allowed).
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,

    /// The name to register (default: the file name without `.gguf`).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, out: &Output) -> CmdResult {
    let name = args
        .name
        .as_deref()
        .map(ModelName::parse)
        .transpose()
        .map_err(|e| miette::miette!("{e}"))?;
    let cache = open_cache(out)?;
    let request = PullRequest {
        source: args.source,
        sha256: args.sha256,
        name,
    };
    let bar = Bar::new(out, args.json);
    let pulled = cache.pull(&request, &bar).map_err(report)?;
    if args.json {
        out.json(&pulled)?;
        return Ok(exit::OK);
    }
    out.say(format!(
        "pulled {} ({}, {})",
        out.paint(crate::cli::output::Style::Bold, pulled.name.as_str()),
        human_bytes(pulled.size, ByteStyle::Precise),
        describe(&pulled.summary)
    ));
    if let Some(old) = &pulled.replaced {
        out.say(format!("  replaced the earlier file (sha256 {old})"));
    }
    if pulled.resumed_from > 0 {
        out.say(format!(
            "  resumed after {}",
            human_bytes(pulled.resumed_from, ByteStyle::Precise)
        ));
    }
    out.say(format!("  blob   {}", pulled.path.display()));
    out.say(format!("  sha256 {}", pulled.sha256));
    if !pulled.pinned {
        out.say("not pinned; to pin it, add to the model in the profile:");
        out.say(format!("  sha256 = \"{}\"", pulled.sha256));
    }
    Ok(exit::OK)
}

/// The cache under `--root` (or `/`).
pub(super) fn open_cache(out: &Output) -> miette::Result<Cache> {
    let root = out.root.clone().unwrap_or_else(|| PathBuf::from("/"));
    Cache::open(&root).map_err(report)
}

/// `llama, 1.1B params, Q4_K_M, context 4096`: what `ls` and `pull` say of a model.
pub(super) fn describe(s: &Summary) -> String {
    let mut parts = vec![
        s.architecture
            .clone()
            .unwrap_or_else(|| "unknown architecture".into()),
    ];
    parts.push(format!("{} params", human_count(s.parameter_count)));
    if let Some(q) = &s.quantization {
        parts.push(q.clone());
    }
    if let Some(c) = s.context_length {
        parts.push(format!("context {c}"));
    }
    parts.join(", ")
}

/// A progress bar on stderr; hidden without a terminal, with `-q` or with `--json`.
pub(super) struct Bar {
    /// The bar of the transfer under way.
    bar: RefCell<Option<ProgressBar>>,
    /// Draw nothing at all.
    hidden: bool,
}

impl Bar {
    pub(super) fn new(out: &Output, json: bool) -> Bar {
        Bar {
            bar: RefCell::new(None),
            hidden: out.quiet || json,
        }
    }
}

impl Progress for Bar {
    fn begin(&self, what: &str, total: Option<u64>, done: u64) {
        let target = if self.hidden {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(total, target);
        let template = if total.is_some() {
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
        } else {
            "{msg} {bytes} {bytes_per_sec}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_owned());
        bar.set_position(done);
        self.bar.replace(Some(bar));
    }

    fn advance(&self, bytes: u64) {
        if let Some(bar) = self.bar.borrow().as_ref() {
            bar.inc(bytes);
        }
    }

    fn end(&self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
