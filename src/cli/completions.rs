//! `sovereign completions`: shell completion scripts generated from the one CLI definition.

use clap::CommandFactory;

use super::{CmdResult, Output, exit};

/// Print a shell completion script.
///
/// Examples:
///   sovereign completions bash > /etc/bash_completion.d/sovereign
///   sovereign completions zsh > "${fpath[1]}/_sovereign"
///   sovereign completions fish > ~/.config/fish/completions/sovereign.fish
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The shell.
    pub shell: clap_complete::Shell,
}

pub fn run(args: Args, out: &Output) -> CmdResult {
    let mut script = Vec::new();
    clap_complete::generate(
        args.shell,
        &mut super::Cli::command(),
        "sovereign",
        &mut script,
    );
    out.stdout(String::from_utf8_lossy(&script).trim_end())?;
    Ok(exit::OK)
}
