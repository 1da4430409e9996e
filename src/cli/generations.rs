//! `sovereign generations`: list the recorded generations.

use serde::Serialize;

use super::plan::root_of;
use super::{CmdResult, Output, exit, report};
use crate::state::StateDir;
use crate::state::generations;

const EXAMPLES: &str = "\
Examples:
  sovereign generations --root .demo/root
  sovereign generations --json | jq '.[] | select(.outcome == \"succeeded\") | .number'";

/// List the recorded generations: one per apply that changed something, with its
/// outcome (succeeded, failed, rolled_back) and what it changed.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Print as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// One generation as listed.
#[derive(Debug, Serialize)]
struct Row {
    number: u64,
    started: String,
    finished: Option<String>,
    outcome: generations::Outcome,
    changes: usize,
    rollback_to: Option<u64>,
    profile: String,
    notes: Vec<String>,
}

pub fn run(args: Args, out: &Output) -> CmdResult {
    let state = StateDir::new(&root_of(out)?);
    let rows: Vec<Row> = generations::list(&state)
        .map_err(report)?
        .into_iter()
        .map(|g| Row {
            number: g.number,
            started: g.started,
            finished: g.finished,
            outcome: g.outcome,
            changes: g.plan.summary.pending,
            rollback_to: g.rollback_to,
            profile: g.profile.path.display().to_string(),
            notes: g.notes,
        })
        .collect();
    if args.json {
        out.json(&rows)?;
        return Ok(exit::OK);
    }
    if rows.is_empty() {
        out.say(format!(
            "No generations under {}: nothing has been applied yet.",
            state.path.display()
        ));
        return Ok(exit::OK);
    }
    let mut table = format!(
        "{:>4}  {:<24}  {:<11}  {:>7}  profile",
        "gen", "started", "outcome", "changes"
    );
    for r in &rows {
        let profile = match r.rollback_to {
            Some(n) => format!("{} (rollback to {n})", r.profile),
            None => r.profile.clone(),
        };
        table.push_str(&format!(
            "\n{:>4}  {:<24}  {:<11}  {:>7}  {profile}",
            r.number,
            r.started,
            r.outcome.to_string(),
            r.changes
        ));
        for n in &r.notes {
            table.push_str(&format!("\n{:>6}{n}", ""));
        }
    }
    out.stdout(&table)?;
    Ok(exit::OK)
}
