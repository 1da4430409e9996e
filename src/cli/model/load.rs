//! `sovereign model load`: load a cached model in the running daemon, or ask what it would
//! need.

use serde_json::{Value, json};

use crate::cli::client::{CallError, Client, ServerArgs};
use crate::cli::{CmdResult, Output, exit};
use crate::inference::limits::{CONTEXT, clap_range};
use crate::inference::model_options::GpuLayers;
use crate::inference::units::{ByteStyle, human_bytes};
use crate::profile::units::Duration as TextDuration;

const EXAMPLES: &str = "\
Examples:
  sovereign model load qwen                      # with the daemon's defaults
  sovereign model load qwen --context 8192 --ttl 30m
  sovereign model load qwen --estimate-only      # what it needs against what is free
  sovereign model load big --force               # load even if the estimate says no

The daemon resolves the name in its model cache. Loading a model that is loaded with the
same context and offload succeeds and changes nothing but its TTL. A load whose estimated
memory (weights, KV cache, compute buffers) exceeds what is free is refused with the
numbers unless --force is given.";

/// Load a cached model in the running daemon.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The model's name in the daemon's cache.
    pub name: String,
    /// Context length of each slot, in tokens (default: the daemon's).
    #[arg(long, alias = "ctx", value_name = "N",
          value_parser = clap::value_parser!(u32).range(clap_range(CONTEXT.kind.range_inclusive())))]
    pub context: Option<u32>,
    /// Layers to offload to the GPU: a number or `auto`.
    #[arg(long, value_name = "N|auto")]
    pub gpu_layers: Option<GpuLayers>,
    /// Unload after this long without a request (e.g. 10m).
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<TextDuration>,
    /// Only report the memory it needs against what is free; load nothing.
    #[arg(long)]
    pub estimate_only: bool,
    /// Load even when the estimate says it does not fit.
    #[arg(long, conflicts_with = "estimate_only")]
    pub force: bool,
    /// Print the daemon's answer as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

pub fn run(args: Args, out: &Output) -> CmdResult {
    let client = Client::new(&args.server)?;
    let mut body =
        json!({"model": args.name, "estimate_only": args.estimate_only, "force": args.force});
    if let Some(context) = args.context {
        body["context"] = json!(context);
    }
    if let Some(g) = args.gpu_layers {
        body["gpu_layers"] = json!(g);
    }
    if let Some(t) = args.ttl {
        body["ttl"] = json!(t.to_string());
    }
    let answer = match client.post("/v1/sovereign/models/load", &body) {
        Ok(v) => v,
        Err(CallError::Refused(r)) if args.json => {
            out.json(&r.body)?;
            return Err(miette::miette!("{}", r.message()));
        }
        Err(e) => return Err(e.into_report()),
    };
    if args.json {
        out.json(&answer)?;
        return Ok(exit::OK);
    }
    let name = &args.name;
    if args.estimate_only {
        out.stdout(&estimate_text(&answer))?;
        return Ok(exit::OK);
    }
    for gone in answer["evicted"].as_array().into_iter().flatten() {
        out.say(format!(
            "unloaded {} to stay within --max-loaded",
            gone.as_str().unwrap_or("?")
        ));
    }
    let what = if answer["already_loaded"] == true {
        "is already loaded"
    } else {
        "loaded"
    };
    let needed = &answer["needed"];
    let memory = needed["total_bytes"]
        .as_u64()
        .map(|b| format!(", about {}", human_bytes(b, ByteStyle::Short)))
        .unwrap_or_default();
    out.say(format!(
        "{name} {what} (context {} x {} slot(s){memory})",
        answer["settings"]["context"], answer["settings"]["slots"]
    ));
    if answer["fits"] == false {
        out.say("warning: loaded past the memory estimate (--force); expect slow decoding");
    }
    Ok(exit::OK)
}

/// The estimate as lines: each part, the total, what is free, and the verdict.
fn estimate_text(w: &Value) -> String {
    let bytes = |v: &Value| {
        v.as_u64()
            .map(|b| human_bytes(b, ByteStyle::Short))
            .unwrap_or_else(|| "-".into())
    };
    let n = &w["needed"];
    let mut lines = vec![
        format!(
            "{} at context {} x {} slot(s):",
            w["model"].as_str().unwrap_or("?"),
            n["context"],
            n["slots"]
        ),
        format!("  weights          {}", bytes(&n["weights_bytes"])),
        format!("  KV cache         {}", bytes(&n["kv_cache_bytes"])),
        format!("  compute buffers  {}", bytes(&n["compute_bytes"])),
        format!("  total            {}", bytes(&n["total_bytes"])),
    ];
    for d in w["available"]["devices"].as_array().into_iter().flatten() {
        lines.push(format!(
            "available: {} {}",
            d["name"].as_str().unwrap_or("?"),
            bytes(&d["bytes"])
        ));
    }
    lines.push(format!(
        "held by loaded models: {}; free: {}",
        bytes(&w["in_use_bytes"]),
        bytes(&w["free_bytes"])
    ));
    lines.push(if w["fits"] == true {
        "fits".into()
    } else {
        "does not fit: a load would be refused (--force loads it anyway)".into()
    });
    lines.join("\n")
}
