//! `sovereign snapshot`: take the snapshots due and prune the expired ones, per the
//! profile's snapshot policies (what a timer runs, e.g. every 15 minutes).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{CmdResult, Output, exit, report};
use crate::domains::storage::snapshots;
use crate::host::RealHost;

const EXAMPLES: &str = "\
Examples:
  sovereign snapshot profiles/rtx4090.toml
  sovereign snapshot profiles/rtx4090.toml --json | jq '.taken'

Snapshots are named POOL/DATASET@sovereign-<period>-<YYYYMMDD>T<HHMMSS>Z (UTC), period
one of hourly, daily, weekly, monthly. Only datasets that name a policy are snapshotted,
and only snapshots of that pattern are ever pruned.";

/// Take due snapshots and prune expired ones, per the profile's snapshot policies.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The profile whose `storage.snapshot_policies` apply.
    pub profile: PathBuf,
    /// Print what was taken and pruned as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Tests only: the time to act as if it were (RFC 3339), instead of the clock.
    #[arg(long, hide = true, value_name = "TIME")]
    pub now: Option<String>,
}

pub fn run(args: Args, out: &Output) -> CmdResult {
    let valid = crate::profile::load(&args.profile).map_err(miette::Report::new)?;
    let now = match &args.now {
        None => chrono::Utc::now(),
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map_err(|e| miette::miette!("--now {t:?} is not an RFC 3339 time: {e}"))?
            .with_timezone(&chrono::Utc),
    };
    let storage = valid.profile.storage.unwrap_or_default();
    let mut datasets = BTreeMap::new();
    for (name, ds) in &storage.datasets {
        let Some(policy) = &ds.snapshots else {
            continue;
        };
        let Some(p) = storage.snapshot_policies.get(policy) else {
            return Err(miette::miette!(
                help = format!("declare [storage.snapshot_policies.{policy}]"),
                "{}: storage.datasets.\"{name}\".snapshots names no policy {policy:?}",
                args.profile.display()
            ));
        };
        datasets.insert(name.clone(), p.clone());
    }
    let done = snapshots::run(&RealHost, now, &datasets).map_err(report)?;
    if args.json {
        out.json(&done)?;
    } else {
        for s in &done.taken {
            out.say(format!("+ {s}"));
        }
        for s in &done.pruned {
            out.say(format!("- {s}"));
        }
        out.say(format!(
            "snapshot: {} taken, {} pruned, {} datasets with a policy",
            done.taken.len(),
            done.pruned.len(),
            datasets.len()
        ));
    }
    Ok(exit::OK)
}
