//! `sovereign model ls`: list the cached models.

use super::pull::{human_bytes, open_cache};
use crate::cli::{CmdResult, Output, exit, report};
use crate::inference::cache::BlobState;
use crate::inference::gguf::human_count;

const EXAMPLES: &str = "\
Examples:
  sovereign model ls
  sovereign model ls --json | jq '.[].name'";

/// List the cached models: size, hash, and from the GGUF header the architecture,
/// parameter count, quantization and context length.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Print as JSON on stdout.
    #[arg(long)]
    pub json: bool,
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
}

pub fn run(args: Args, out: &Output) -> CmdResult {
    let cache = open_cache(out)?;
    let entries = cache.list().map_err(report)?;
    let rows: Vec<Row> = entries
        .into_iter()
        .map(|e| {
            let m = e.manifest;
            Row {
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
    let table: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                human_bytes(r.size),
                r.architecture.clone().unwrap_or_else(dash),
                human_count(r.parameter_count),
                r.quantization.clone().unwrap_or_else(dash),
                r.context_length.map(|c| c.to_string()).unwrap_or_else(dash),
                r.sha256.get(..12).unwrap_or(&r.sha256).to_string(),
                r.state.to_string(),
            ]
        })
        .collect();
    let head = [
        "NAME", "SIZE", "ARCH", "PARAMS", "QUANT", "CONTEXT", "SHA256", "STATE",
    ]
    .map(String::from);
    let widths: Vec<usize> = (0..8)
        .map(|i| {
            std::iter::once(&head)
                .chain(&table)
                .map(|row| row.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |row: &[String; 8]| {
        row.iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut text = vec![line(&head)];
    text.extend(table.iter().map(line));
    out.stdout(&text.join("\n"))?;
    Ok(exit::OK)
}
