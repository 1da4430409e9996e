//! The command line: parse arguments, call one operation, render its result.
//!
//! Each command lives in its own file as an options struct and a `run` function;
//! [`dispatch`] is the one table that maps commands to them. Human output goes to
//! stderr and machine output (`--json`) to stdout, both through [`output::Output`].

mod activate;
mod apply;
mod card;
mod client;
mod completions;
mod confirm;
mod detect;
mod fleet;
mod generations;
mod model;
pub mod output;
mod plan;
mod rollback;
mod schema;
mod serve;
mod server;
mod show;
#[cfg(target_os = "linux")]
mod snapshot;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

pub use output::Output;

/// Exit statuses, documented in `--help` and the README.
pub mod exit {
    /// Success; for `plan --detailed-exitcode`: no changes.
    pub const OK: u8 = 0;
    /// An error: invalid profile, failed observation or apply, refused operation.
    pub const ERROR: u8 = 1;
    /// `plan --detailed-exitcode`: the plan has changes.
    pub const CHANGES: u8 = 2;
    /// `apply`: a health check failed and the apply was rolled back.
    pub const ROLLED_BACK: u8 = 3;
}

const EXIT_CODES: &str = "\
Exit status:
  0  success (plan --detailed-exitcode: no changes)
  1  error: invalid profile, failed observation or apply, refused operation
  2  plan --detailed-exitcode: the plan has changes
  3  apply: a health check failed and the changes were rolled back";

/// Declarative provisioning for a self-hosted AI workstation.
///
/// A TOML profile describes the machine; `plan` shows what would change and
/// `apply` converges the machine to it, with generations and rollback.
#[derive(Debug, Parser)]
#[command(name = "sovereign", version, propagate_version = true, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// Relocate managed files and sovereign's own state under DIR (devices, pools, network
    /// links, /proc and /sys stay the real machine's).
    #[arg(long, global = true, value_name = "DIR", env = "SOVEREIGN_ROOT")]
    pub root: Option<PathBuf>,

    /// When to colour human output; NO_COLOR in the environment means never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// More detail on stderr (-v, -vv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Validate(validate::Args),
    Show(show::Args),
    Schema(schema::Args),
    Detect(detect::Args),
    Plan(plan::Args),
    Apply(apply::Args),
    Generations(generations::Args),
    Rollback(rollback::Args),
    Activate(activate::Args),
    Confirm(confirm::Args),
    /// The rollback watcher of `apply --confirm-within` (started by apply).
    #[command(hide = true)]
    ConfirmWatch(confirm::WatchArgs),
    // Boxed: its many flags would make every other command as large.
    Serve(Box<serve::Args>),
    #[command(subcommand)]
    Model(model::Command),
    #[command(subcommand)]
    Server(server::Command),
    #[command(subcommand)]
    Card(card::Command),
    Completions(completions::Args),
    #[cfg(target_os = "linux")]
    Snapshot(snapshot::Args),
}

/// What a command hands back: the process exit status.
pub type CmdResult = miette::Result<u8>;

fn dispatch(command: Command, out: &Output) -> CmdResult {
    match command {
        Command::Validate(a) => validate::run(a, out),
        Command::Show(a) => show::run(a, out),
        Command::Schema(a) => schema::run(a, out),
        Command::Detect(a) => detect::run(a, out),
        Command::Plan(a) => plan::run(a, out),
        Command::Apply(a) => apply::run(a, out),
        Command::Generations(a) => generations::run(a, out),
        Command::Rollback(a) => rollback::run(a, out),
        Command::Activate(a) => activate::run(a, out),
        Command::Confirm(a) => confirm::run(a, out),
        Command::ConfirmWatch(a) => confirm::watch(a, out),
        Command::Serve(a) => serve::run(*a, out),
        Command::Model(c) => model::run(c, out),
        Command::Server(c) => server::run(c, out),
        Command::Card(c) => card::run(c, out),
        Command::Completions(a) => completions::run(a, out),
        #[cfg(target_os = "linux")]
        Command::Snapshot(a) => snapshot::run(a, out),
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Output::new(&cli.global);
    output::init_logging(&cli.global);
    match dispatch(cli.command, &out) {
        Ok(code) => ExitCode::from(code),
        Err(report) if output::is_broken_pipe(&report) => ExitCode::SUCCESS,
        Err(report) => {
            out.error(&report);
            ExitCode::from(exit::ERROR)
        }
    }
}

/// Turn an `anyhow` chain into a report that prints every cause.
pub fn report(err: anyhow::Error) -> miette::Report {
    if let Some(io) = err.downcast_ref::<std::io::Error>() {
        if io.kind() == std::io::ErrorKind::BrokenPipe {
            return miette::Report::new(output::BrokenPipe);
        }
    }
    miette::miette!("{err:#}")
}
