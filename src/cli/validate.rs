//! `sovereign validate`: check a profile and its imports without observing or touching anything.

use std::path::PathBuf;

use serde::Serialize;

use super::{CmdResult, Output, exit};
use crate::profile::{self, LoadError, ProfileError, ValidProfile};

const EXAMPLES: &str = "\
Examples:
  sovereign validate profiles/demo.toml
  sovereign validate profiles/rtx4090.toml --json | jq '.errors[] | .message'

Every error of the profile and its imports is reported at once, in file order, as
file:line:column with the source line, the key path and a hint. Exit status 1 when
the profile has any error. Nothing on the machine is read or changed.";

/// Check a profile and its imports without observing or touching anything.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The profile to check.
    pub profile: PathBuf,
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
    match profile::load(&args.profile) {
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

/// One line: the profile, how many files, and what it declares.
pub fn summary(vp: &ValidProfile) -> String {
    let p = &vp.profile;
    let storage = p.storage.clone().unwrap_or_default();
    let models = p.inference.as_ref().map_or(0, |i| i.models.len());
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
