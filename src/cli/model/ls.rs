//! `sovereign model ls`: list the cached models.

use super::pull::open_cache;
use crate::cli::{CmdResult, Output, exit, report};
use crate::inference::cache::BlobState;
use crate::inference::estimate::{Budget, Estimate, Offload, Shape, estimate};
use crate::inference::gguf::human_count;
use crate::inference::limits::{CONTEXT, SLOTS, batch_for, clap_range};
use crate::inference::units::{ByteStyle, human_bytes};

const EXAMPLES: &str = "\
Examples:
  sovereign model ls
  sovereign model ls --json | jq '.[].name'
  sovereign model ls --context 8192 --slots 4     # memory needed at that context

MEMORY is the estimate (weights, KV cache, compute buffers) at --context (default: the
context the model was trained for) with --slots sequences; FITS compares it with the
GPU memory detected (else unified memory on Apple Silicon, else available RAM).";

/// List the cached models: size, hash, and from the GGUF header the architecture,
/// parameter count, quantization, context length and the memory needed to run it.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Print as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Context length per slot for the memory estimate (default: the model's own).
    #[arg(long, alias = "ctx", value_name = "N", value_parser = clap::value_parser!(u32).range(clap_range(CONTEXT.kind.range_inclusive())))]
    pub context: Option<u32>,
    /// Sequences decoded together, for the memory estimate.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(clap_range(SLOTS.kind.range_inclusive())))]
    pub slots: u16,
}

/// One row of `ls --json`.
#[derive(Debug, serde::Serialize)]
struct Row {
    name: String,
    size: u64,
    sha256: String,
    architecture: Option<String>,
    parameter_count: u64,
    quantization: Option<String>,
    context_length: Option<u64>,
    source: String,
    pulled_at: chrono::DateTime<chrono::Utc>,
    verified_at: chrono::DateTime<chrono::Utc>,
    /// `present`, `missing` or `quarantined`.
    state: &'static str,
    /// Memory needed at the listed context (none for a blob that is not present or a
    /// header without the keys it needs).
    estimate: Option<Estimate>,
    /// Whether the estimate fits the detected memory.
    fits: Option<bool>,
}

pub fn run(args: Args, out: &Output) -> CmdResult {
    let cache = open_cache(out)?;
    let entries = cache.list().map_err(report)?;
    // The daemon offloads every layer by default where it can: judge by the GPUs. Without
    // hardware facts the list still shows the estimates.
    let budget = match crate::hardware::detect(&crate::host::RealHost) {
        Ok(facts) => Some(Budget::of(&facts.machine(), Offload::Full)),
        Err(e) => {
            tracing::warn!("cannot detect the machine's memory: {e:#}");
            None
        }
    };
    let rows: Vec<Row> = entries
        .into_iter()
        .map(|e| {
            let m = e.manifest;
            let estimate = matches!(e.state, BlobState::Present)
                .then(|| crate::inference::gguf::parse_file(&cache.blob_path(&m.sha256)).ok())
                .flatten()
                .and_then(|h| Shape::of(&h).ok())
                .map(|shape| {
                    let ctx = args
                        .context
                        .map(u64::from)
                        .or(shape.context_length)
                        .unwrap_or(CONTEXT.kind.default_value());
                    let slots = u64::from(args.slots);
                    estimate(&shape, ctx, slots, batch_for(slots as usize) as u64)
                });
            let fits = estimate
                .zip(budget.as_ref())
                .map(|(est, b)| b.check(&m.name, &est, 0).is_ok());
            Row {
                estimate,
                fits,
                state: match e.state {
                    BlobState::Present => "present",
                    BlobState::Missing => "missing",
                    BlobState::Quarantined(_) => "quarantined",
                },
                name: m.name,
                size: m.size,
                sha256: m.sha256,
                architecture: m.summary.architecture,
                parameter_count: m.summary.parameter_count,
                quantization: m.summary.quantization,
                context_length: m.summary.context_length,
                source: m.source,
                pulled_at: m.pulled_at,
                verified_at: m.verified_at,
            }
        })
        .collect();
    if args.json {
        out.json(&rows)?;
        return Ok(exit::OK);
    }
    if rows.is_empty() {
        out.say(format!(
            "no models in {} (add one with `sovereign model pull`)",
            cache.dir().display()
        ));
        return Ok(exit::OK);
    }
    let dash = || "-".to_string();
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                human_bytes(r.size, ByteStyle::Precise),
                r.architecture.clone().unwrap_or_else(dash),
                human_count(r.parameter_count),
                r.quantization.clone().unwrap_or_else(dash),
                r.context_length.map(|c| c.to_string()).unwrap_or_else(dash),
                r.sha256.get(..12).unwrap_or(&r.sha256).to_string(),
                r.state.to_string(),
                r.estimate
                    .map_or_else(dash, |e| human_bytes(e.total_bytes, ByteStyle::Short)),
                r.fits
                    .map_or_else(dash, |f| if f { "yes" } else { "no" }.to_string()),
            ]
        })
        .collect();
    let head = [
        "NAME", "SIZE", "ARCH", "PARAMS", "QUANT", "CONTEXT", "SHA256", "STATE", "MEMORY", "FITS",
    ];
    out.stdout(&crate::cli::output::table(&head, &table))?;
    Ok(exit::OK)
}
