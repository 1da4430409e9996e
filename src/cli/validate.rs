//! `sovereign validate`: check a profile and its imports, or a fleet file and every
//! profile it names, without observing or touching anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{CmdResult, Output, exit};
use crate::fleet;
use crate::profile::{self, LoadError, ProfileError, ValidProfile};

const EXAMPLES: &str = "\
Examples:
  sovereign validate profiles/demo.toml
  sovereign validate profiles/rtx4090.toml --json | jq '.errors[] | .message'
  sovereign validate --fleet fleet.toml

Every error of the profile and its imports is reported at once, in file order, as
file:line:column with the source line, the key path and a hint. Exit status 1 when
the profile has any error. Nothing on the machine is read or changed.

With --fleet, the fleet file is checked (its format: `sovereign schema --fleet`) and
so is every profile its hosts name, each once; a profile's errors point into the
profile. No host is contacted.";

/// Check a profile and its imports, or a fleet file and its profiles, without observing or
/// touching anything.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The profile to check.
    #[arg(required_unless_present = "fleet")]
    pub profile: Option<PathBuf>,
    /// Check this fleet file and every profile its hosts name instead of one profile.
    #[arg(long, value_name = "FILE", conflicts_with = "profile")]
    pub fleet: Option<PathBuf>,
    /// Print the result as JSON on stdout: {"valid", "files", "errors": [{file, line,
    /// column, key_path, message, hint}]}.
    #[arg(long)]
    pub json: bool,
}

/// `validate --json`'s shape.
#[derive(Debug, Serialize)]
struct Outcome<'a> {
    /// Whether the profile loaded without errors.
    valid: bool,
    /// Every file read, the named one first.
    files: &'a [PathBuf],
    /// Every error, in file order.
    errors: &'a [ProfileError],
}

pub fn run(args: Args, out: &Output) -> CmdResult {
    let path = match (&args.fleet, &args.profile) {
        (Some(fleet), _) => return run_fleet(fleet, args.json, out),
        (None, Some(profile)) => profile,
        // clap requires one of the two.
        (None, None) => {
            return Err(miette::miette!(
                "name a profile, or a fleet file with --fleet"
            ));
        }
    };
    match profile::load(path) {
        Ok(vp) => {
            if args.json {
                out.json(&Outcome {
                    valid: true,
                    files: &vp.sources,
                    errors: &[],
                })?;
            }
            out.say(summary(&vp));
            Ok(exit::OK)
        }
        Err(err) if args.json => {
            out.json(&Outcome {
                valid: false,
                files: &err.files,
                errors: &err.errors,
            })?;
            out.error(&miette::Report::new(err));
            Ok(exit::ERROR)
        }
        Err(err) => Err(miette::Report::new::<LoadError>(err)),
    }
}

/// `validate --fleet`: the fleet file and every profile it names, reported as a profile is.
fn run_fleet(path: &Path, json: bool, out: &Output) -> CmdResult {
    match fleet::load::load_with_profiles(path) {
        Ok(checked) => {
            if json {
                out.json(&Outcome {
                    valid: true,
                    files: &checked.files,
                    errors: &[],
                })?;
            }
            out.say(fleet_summary(&checked.fleet));
            Ok(exit::OK)
        }
        Err(err) if json => {
            out.json(&Outcome {
                valid: false,
                files: &err.files,
                errors: &err.errors,
            })?;
            out.error(&miette::Report::new(err));
            Ok(exit::ERROR)
        }
        Err(err) => Err(miette::Report::new::<LoadError>(err)),
    }
}

/// One line: the fleet file, its hosts with how many carry each tag, and its profiles.
pub fn fleet_summary(fleet: &fleet::Fleet) -> String {
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut tags: BTreeMap<&str, usize> = BTreeMap::new();
    for tag in fleet.hosts.values().flat_map(|h| &h.tags) {
        *tags.entry(tag).or_default() += 1;
    }
    let tags = if tags.is_empty() {
        String::new()
    } else {
        let counts: Vec<String> = tags.iter().map(|(t, n)| format!("{t} {n}")).collect();
        format!(" (tags: {})", counts.join(", "))
    };
    format!(
        "{} is valid: {}{tags}, {}",
        fleet.path.display(),
        plural(fleet.hosts.len(), "host", "hosts"),
        plural(fleet.profiles().len(), "profile", "profiles"),
    )
}

/// One line: the profile, how many files, and what it declares.
pub fn summary(vp: &ValidProfile) -> String {
    let p = &vp.profile;
    let storage = p.storage.clone().unwrap_or_default();
    let models = p.inference.as_ref().map_or(0, |i| i.models.len());
    let cards = p.inference.as_ref().map_or(0, |i| i.cards.len());
    let segments = p.network.as_ref().map_or(0, |n| n.vxlan.len());
    let vms = p.forge.as_ref().map_or(0, |f| f.vms.len());
    let counts = [
        (p.files.len(), "managed file", "managed files"),
        (p.checks.len(), "check", "checks"),
        (storage.pools.len(), "pool", "pools"),
        (storage.datasets.len(), "dataset", "datasets"),
        (storage.zvols.len(), "zvol", "zvols"),
        (
            storage.snapshot_policies.len(),
            "snapshot policy",
            "snapshot policies",
        ),
        (models, "model", "models"),
        (cards, "card", "cards"),
        (p.services.len(), "service", "services"),
        (segments, "segment", "segments"),
        (vms, "VM", "VMs"),
    ];
    let declared: Vec<String> = counts
        .iter()
        .filter(|(n, _, _)| *n > 0)
        .map(|(n, one, many)| format!("{n} {}", if *n == 1 { one } else { many }))
        .collect();
    let files = vp.sources.len();
    format!(
        "{} is valid: {files} file{} loaded; {}",
        vp.path.display(),
        if files == 1 { "" } else { "s" },
        if declared.is_empty() {
            "nothing declared".to_string()
        } else {
            declared.join(", ")
        }
    )
}
