//! `sovereign schema`: print the JSON Schema (draft 2020-12) of the profile format.

use super::{CmdResult, Output, exit};

const EXAMPLES: &str = "\
Examples:
  sovereign schema > schema.json

Editors pick the schema up through taplo (Even Better TOML in VS Code): put
`#:schema ./schema.json` on the first line of a profile (the path is relative to
the profile), or associate it once in .taplo.toml at the project's top:
  [[rule]]
  include = [\"profiles/**/*.toml\", \"modules/**/*.toml\"]
  [rule.schema]
  path = \"schema.json\"";

/// Print the JSON Schema (draft 2020-12) of the profile format.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {}

pub fn run(_args: Args, out: &Output) -> CmdResult {
    let text = serde_json::to_string_pretty(crate::profile::schema::profile_schema())
        .map_err(|e| miette::miette!("cannot encode the schema: {e}"))?;
    out.stdout(&text)?;
    Ok(exit::OK)
}
