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
  sovereign plan profiles/rtx4090.toml --detailed-exitcode   # 0 none, 2 changes, 1 error";

/// Show what apply would change; nothing is touched.
///
/// Changes print as `+` create, `~` update, `-/+` replace, `-` delete, `<=` adopt (take
/// over an existing file, backed up first), `!` kept (would lose data) and `.` not
/// applicable. Human text goes to stderr; --json and --graph to stdout.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The profile to plan.
    pub profile: PathBuf,
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
    let root = root_of(out)?;
    let profile = load_profile(&args.profile)?;
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

/// Load, validate and resolve (templates read) a profile.
pub(super) fn load_profile(path: &Path) -> miette::Result<Resolved> {
    let valid = crate::profile::load(path).map_err(miette::Report::new)?;
    Resolved::from_valid(&valid).map_err(report)
}
