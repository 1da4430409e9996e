//! `sovereign model unload`: unload models from the running daemon.

use serde_json::json;

use crate::cli::client::{Client, ServerArgs};
use crate::cli::{CmdResult, Output, exit};

const EXAMPLES: &str = "\
Examples:
  sovereign model unload qwen
  sovereign model unload --all

Requests in flight finish first; a later request for the model loads it again.";

/// Unload a model (or all) from the running daemon.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The loaded model's name.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub name: Option<String>,
    /// Unload every loaded model.
    #[arg(long)]
    pub all: bool,
    /// Print the daemon's answer as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

pub fn run(args: Args, out: &Output) -> CmdResult {
    let client = Client::new(&args.server)?;
    let body = match &args.name {
        Some(n) => json!({"model": n}),
        None => json!({"all": true}),
    };
    let answer = client
        .post("/v1/sovereign/models/unload", &body)
        .map_err(|e| e.into_report())?;
    if args.json {
        out.json(&answer)?;
        return Ok(exit::OK);
    }
    let names: Vec<&str> = answer["unloaded"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .collect();
    if names.is_empty() {
        out.say("no model was loaded");
    } else {
        out.say(format!("unloaded {}", names.join(", ")));
    }
    Ok(exit::OK)
}
