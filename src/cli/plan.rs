//! `sovereign plan`: show what apply would change; nothing is touched.

use std::path::{Path, PathBuf};

use super::{CmdResult, Output, exit, report};
use crate::host::RealHost;
use crate::host::fs::Root;
use crate::plan::render::{self, Style};
use crate::plan::resolve::Resolved;
use crate::planner::saved::SavedPlan;
use crate::planner::{self, PlanOptions};

const EXAMPLES: &str = "\
Examples:
  sovereign plan profiles/demo.toml --root .demo/root
  sovereign plan profiles/rtx4090.toml --json | jq '.summary'
  sovereign plan profiles/rtx4090.toml --graph | dot -Tsvg > plan.svg
  sovereign plan profiles/rtx4090.toml -o tonight.plan && sovereign apply tonight.plan
  sovereign plan profiles/rtx4090.toml --detailed-exitcode   # 0 none, 2 changes, 1 error
  sovereign plan --fleet fleet.toml --on @forge              # every host tagged forge, over SSH";

/// Show what apply would change; nothing is touched.
///
/// Changes print as `+` create, `~` update, `-/+` replace, `-` delete, `<=` adopt (take
/// over an existing file, backed up first), `!` kept (would lose data) and `.` not
/// applicable. Human text goes to stderr; --json and --graph to stdout.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The profile to plan.
    #[arg(required_unless_present = "fleet")]
    pub profile: Option<PathBuf>,
    /// PROFILE is a resolved profile (JSON, "-" for stdin), as a fleet run sends it.
    #[arg(long, hide = true)]
    pub resolved: bool,
    /// Plan every host of this fleet file over SSH, each with its own profile.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["profile", "out", "graph"])]
    pub fleet: Option<PathBuf>,
    /// With --fleet: only these hosts (NAME) or tags (@TAG); repeatable.
    #[arg(long, value_name = "HOST|@TAG", requires = "fleet")]
    pub on: Vec<String>,
    /// Print the plan as JSON on stdout (format: docs/plan-format.md).
    #[arg(long, conflicts_with = "graph")]
    pub json: bool,
    /// Print the change order as Graphviz DOT on stdout.
    #[arg(long)]
    pub graph: bool,
    /// Exit 0 when there are no changes, 2 when there are, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Save the plan to FILE for `sovereign apply FILE`.
    #[arg(short, long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Plan changes that lose data (overwriting or removing files edited by hand).
    #[arg(long)]
    pub allow_destroy: bool,
}

pub fn run(args: Args, out: &Output) -> CmdResult {
    if let Some(fleet) = &args.fleet {
        return super::fleet::plan(
            fleet,
            &args.on,
            args.allow_destroy,
            args.json,
            args.detailed_exitcode,
            out,
        );
    }
    let root = root_of(out)?;
    let path = args
        .profile
        .as_deref()
        .expect("clap requires a profile without --fleet");
    let profile = if args.resolved {
        load_resolved(path)?
    } else {
        load_profile(path)?
    };
    let planned = planner::plan(
        profile,
        PlanOptions {
            root,
            allow_destroy: args.allow_destroy,
        },
        &RealHost,
    )
    .map_err(report)?;
    if let Some(path) = &args.out {
        let saved = SavedPlan::new(&planned);
        crate::state::write_json(path, &saved).map_err(report)?;
        out.say(format!("Saved the plan to {}.", path.display()));
    }
    if args.json {
        out.json(&planned.plan)?;
    } else if args.graph {
        out.stdout(&render::dot(&planned.plan))?;
    } else {
        out.say(render::text(&planned.plan, Style { color: out.color }));
    }
    Ok(if args.detailed_exitcode && planned.plan.has_pending() {
        exit::CHANGES
    } else {
        exit::OK
    })
}

/// The root from `--root`, or `/`.
pub(super) fn root_of(out: &Output) -> miette::Result<Root> {
    match &out.root {
        None => Ok(Root::system()),
        Some(dir) => Root::new(dir).map_err(|e| miette::miette!("--root {}: {e}", dir.display())),
    }
}

/// A resolved profile as JSON (what a fleet run sends a host), from a file or "-" (stdin).
pub(super) fn load_resolved(path: &Path) -> miette::Result<Resolved> {
    let bytes = if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .map_err(|e| miette::miette!("cannot read the resolved profile from stdin: {e}"))?;
        buf
    } else {
        std::fs::read(path).map_err(|e| {
            miette::miette!("cannot read the resolved profile {}: {e}", path.display())
        })?
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| miette::miette!("the resolved profile is not valid: {e}"))
}

/// Load, validate and resolve (templates read) a profile.
pub(super) fn load_profile(path: &Path) -> miette::Result<Resolved> {
    let valid = crate::profile::load(path).map_err(miette::Report::new)?;
    Resolved::from_valid(&valid).map_err(report)
}
