//! `sovereign show`: print the merged profile with the file:line each value came from.

use super::{CmdResult, Output, exit};
use crate::profile::{self, show};

const EXAMPLES: &str = "\
Examples:
  sovereign show profiles/rtx4090.toml
  sovereign show profiles/rtx4090.toml --json | jq '.origins[\"storage.pools.tank.ashift\"]'

The text form is the merged profile as TOML, each line annotated with `# file:line`;
the JSON form is {\"files\", \"profile\", \"origins\"}, origins keyed by TOML key path
(storage.datasets.\"tank/models\".properties.recordsize). An invalid profile prints
its errors as `validate` does and exits 1.";

/// Print the merged profile with the file:line each value came from.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The profile to show.
    pub profile: std::path::PathBuf,
    /// Print as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, out: &Output) -> CmdResult {
    let vp = profile::load(&args.profile).map_err(miette::Report::new)?;
    if args.json {
        out.json(&show::ShowJson::new(&vp))?;
    } else {
        out.stdout(show::render_text(&vp).trim_end())?;
    }
    Ok(exit::OK)
}
