//! `sovereign schema`: print the JSON Schema (draft 2020-12) of the profile format, or
//! with `--fleet` of the fleet file's, or with `--card` of a task Card's.

use super::{CmdResult, Output, exit};

const EXAMPLES: &str = "\
Examples:
  sovereign schema > schema.json
  sovereign schema --fleet > fleet-schema.json
  sovereign schema --card > card-schema.json

Editors pick the schema up through taplo (Even Better TOML in VS Code): put
`#:schema ./schema.json` on the first line of a profile (the path is relative to
the profile), or associate it once in .taplo.toml at the project's top:
  [[rule]]
  include = [\"profiles/**/*.toml\", \"modules/**/*.toml\"]
  [rule.schema]
  path = \"schema.json\"
A fleet file takes `#:schema ./fleet-schema.json` the same way. A Card is JSON:
associate card-schema.json with cards/*.json in the editor's JSON settings (VS Code:
\"json.schemas\" with a \"fileMatch\").";

/// Print the JSON Schema (draft 2020-12) of the profile format, or of the fleet file, or
/// of a task Card.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Print the fleet file's schema (what `validate --fleet` checks) instead.
    #[arg(long, conflicts_with = "card")]
    pub fleet: bool,
    /// Print a task Card's schema (what `card show` checks) instead.
    #[arg(long)]
    pub card: bool,
}

pub fn run(args: Args, out: &Output) -> CmdResult {
    let schema = if args.fleet {
        crate::fleet::file::fleet_schema()
    } else if args.card {
        crate::inference::card::schema()
    } else {
        crate::profile::schema::profile_schema()
    };
    let text = serde_json::to_string_pretty(schema)
        .map_err(|e| miette::miette!("cannot encode the schema: {e}"))?;
    out.stdout(&text)?;
    Ok(exit::OK)
}
