//! `sovereign server`: the running daemon.

use crate::cli::client::{Client, ServerArgs, seconds};
use crate::cli::{CmdResult, Output, exit};
use crate::inference::units::{ByteStyle, human_bytes};

/// Ask the running daemon (found by --server or SOVEREIGN_SERVER).
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    Status(StatusArgs),
}

const EXAMPLES: &str = "\
Examples:
  sovereign server status
  SOVEREIGN_SERVER=http://gpu-box:8080 sovereign server status --json";

/// The daemon's version, uptime, loaded models and memory.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct StatusArgs {
    /// Print as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

pub fn run(command: Command, out: &Output) -> CmdResult {
    match command {
        Command::Status(a) => status(a, out),
    }
}

fn status(args: StatusArgs, out: &Output) -> CmdResult {
    let client = Client::new(&args.server)?;
    let s = client
        .get("/v1/sovereign/status")
        .map_err(|e| e.into_report())?;
    if args.json {
        out.json(&s)?;
        return Ok(exit::OK);
    }
    let bytes = |v: &serde_json::Value| {
        v.as_u64()
            .map_or_else(|| "-".into(), |b| human_bytes(b, ByteStyle::Short))
    };
    let mut lines = vec![format!(
        "sovereign {} at {}",
        s["version"].as_str().unwrap_or("?"),
        args.server.server
    )];
    if let Some(up) = s["uptime_seconds"].as_f64() {
        lines.push(format!("up {}", seconds(up)));
    }
    if s["models"].is_object() {
        let m = &s["models"];
        let max = m["max_loaded"]
            .as_u64()
            .map_or_else(String::new, |n| format!(" (at most {n})"));
        lines.push(format!(
            "models: {} loaded{max}, {} in the cache",
            m["loaded"], m["cached"]
        ));
        let d = &s["defaults"];
        let ttl = d["ttl_seconds"]
            .as_f64()
            .map_or_else(|| "none".into(), seconds);
        lines.push(format!(
            "defaults: {} slots of {} tokens, gpu_layers {}, ttl {ttl}",
            d["slots"],
            d["context"],
            d["gpu_layers"]
                .as_str()
                .map_or_else(|| d["gpu_layers"].to_string(), str::to_string)
        ));
        let mem = &s["memory"];
        lines.push(format!(
            "memory ({}): {} in all, {} held by loaded models, {} free",
            mem["kind"].as_str().unwrap_or("?"),
            bytes(&mem["total_bytes"]),
            bytes(&mem["in_use_bytes"]),
            bytes(&mem["free_bytes"])
        ));
    }
    if let Some(fixed) = s["fixed_models"].as_array().filter(|a| !a.is_empty()) {
        let names: Vec<&str> = fixed.iter().filter_map(|v| v.as_str()).collect();
        lines.push(format!("fixed models: {}", names.join(", ")));
    }
    out.stdout(&lines.join("\n"))?;
    Ok(exit::OK)
}
