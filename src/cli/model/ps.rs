//! `sovereign model ps`: the models the running daemon has loaded.

use serde_json::Value;

use crate::cli::client::{Client, ServerArgs, seconds};
use crate::cli::output::table;
use crate::cli::{CmdResult, Output, exit};
use crate::inference::units::{ByteStyle, human_bytes};

const EXAMPLES: &str = "\
Examples:
  sovereign model ps
  sovereign model ps --json | jq '.models[].name'
  sovereign model ps --server http://gpu-box:8080 --api-key-file ~/.config/sovereign/key";

/// List the models the running daemon has loaded: memory, busy slots, idle time, TTL left.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Print as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

pub fn run(args: Args, out: &Output) -> CmdResult {
    let client = Client::new(&args.server)?;
    let answer = client
        .get("/v1/sovereign/models")
        .map_err(|e| e.into_report())?;
    if args.json {
        out.json(&answer)?;
        return Ok(exit::OK);
    }
    let models = answer["models"].as_array().cloned().unwrap_or_default();
    if models.is_empty() {
        out.say(
            "no model is loaded (one loads on its first request, or with `sovereign model load`)",
        );
        return Ok(exit::OK);
    }
    let text = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> = models
        .iter()
        .map(|m| {
            vec![
                text(&m["name"]),
                text(&m["state"]),
                text(&m["context"]),
                format!("{}/{}", text(&m["busy_slots"]), text(&m["slots"])),
                m["memory"]["total_bytes"]
                    .as_u64()
                    .map_or_else(|| "-".into(), |b| human_bytes(b, ByteStyle::Short)),
                m["idle_seconds"]
                    .as_f64()
                    .map_or_else(|| "-".into(), seconds),
                m["ttl_left_seconds"]
                    .as_f64()
                    .map_or_else(|| "-".into(), seconds),
                match m["cards"].as_array() {
                    Some(c) if !c.is_empty() => c.iter().map(text).collect::<Vec<_>>().join(","),
                    _ => "-".into(),
                },
            ]
        })
        .collect();
    out.stdout(&table(
        &[
            "NAME", "STATE", "CONTEXT", "BUSY", "MEMORY", "IDLE", "TTL LEFT", "CARDS",
        ],
        &rows,
    ))?;
    Ok(exit::OK)
}
