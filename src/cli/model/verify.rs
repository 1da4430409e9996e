//! `sovereign model verify`: re-hash cached models; quarantine corrupted ones.

use super::pull::{Bar, open_cache};
use crate::cli::output::Style;
use crate::cli::{CmdResult, Output, exit, report};
use crate::inference::cache::{ModelName, VerifyStatus};

const EXAMPLES: &str = "\
Examples:
  sovereign model verify              # every cached model
  sovereign model verify coder-7b --json

Exit status 1 when any model was corrupt, missing or already quarantined.";

/// Re-hash cached models against their recorded sha256. A corrupted file is moved to
/// the quarantine, is no longer served, and is named in the output.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Only this model.
    pub name: Option<String>,

    /// Print the results as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, out: &Output) -> CmdResult {
    let only = args
        .name
        .as_deref()
        .map(ModelName::parse)
        .transpose()
        .map_err(|e| miette::miette!("{e}"))?;
    let cache = open_cache(out)?;
    let bar = Bar::new(out, args.json);
    let results = cache.verify(only.as_ref(), &bar).map_err(report)?;
    let failed = results.iter().filter(|r| r.status.is_failure()).count();
    if args.json {
        out.json(&results)?;
    } else {
        if results.is_empty() {
            out.say("no models in the cache");
        }
        for r in &results {
            match r.status {
                VerifyStatus::Ok => {
                    out.say(format!("{} {}", out.paint(Style::Green, "ok     "), r.name))
                }
                VerifyStatus::Corrupt => out.say(format!(
                    "{} {}: sha256 is {}, expected {}; moved to {}",
                    out.paint(Style::Red, "CORRUPT"),
                    r.name,
                    r.actual_sha256.as_deref().unwrap_or("?"),
                    r.sha256,
                    r.quarantined_to
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                )),
                VerifyStatus::Missing => out.say(format!(
                    "{} {}: its file is gone; pull it again",
                    out.paint(Style::Red, "MISSING"),
                    r.name
                )),
                VerifyStatus::Quarantined => out.say(format!(
                    "{} {}: quarantined earlier as {}; pull it again",
                    out.paint(Style::Yellow, "QUARANTINED"),
                    r.name,
                    r.quarantined_to
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                )),
            }
        }
    }
    Ok(if failed > 0 { exit::ERROR } else { exit::OK })
}
