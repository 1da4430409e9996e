//! The one reporter: human text on stderr, machine output on stdout.

use std::io::{IsTerminal, Write};

use super::{ColorChoice, GlobalArgs};

/// How a command talks to the user.
#[derive(Debug, Clone)]
pub struct Output {
    /// Colour human output (after `--color`, NO_COLOR and the terminal check).
    pub color: bool,
    /// `-q`: only errors.
    pub quiet: bool,
    /// `-v` count.
    pub verbose: u8,
    /// The `--root` every command relocates under, if any.
    pub root: Option<std::path::PathBuf>,
}

/// Marker error: stdout's reader went away; the process exits 0 quietly (as ripgrep does).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("broken pipe")]
pub struct BrokenPipe;

impl Output {
    pub fn new(global: &GlobalArgs) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let color = match global.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => !no_color && std::io::stderr().is_terminal(),
        };
        // Reports wrap only on a terminal: piped into a file or a test they stay one
        // message a line, so a path of any length never splits a sentence.
        let wrap = std::io::stderr().is_terminal();
        miette::set_hook(Box::new(move |_| {
            Box::new(
                miette::MietteHandlerOpts::new()
                    .color(color)
                    .wrap_lines(wrap)
                    .build(),
            )
        }))
        .ok();
        Output {
            color,
            quiet: global.quiet,
            verbose: global.verbose,
            root: global.root.clone(),
        }
    }

    /// A line of human output (stderr); silent under `-q`.
    pub fn say(&self, text: impl std::fmt::Display) {
        if !self.quiet {
            let _ignored_stderr_gone = writeln!(std::io::stderr(), "{text}");
        }
    }

    /// Machine output on stdout: pretty JSON and a newline.
    pub fn json<T: serde::Serialize>(&self, value: &T) -> miette::Result<()> {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| miette::miette!("cannot encode JSON output: {e}"))?;
        self.stdout(&text)
    }

    /// Plain text on stdout (what a command exists to print: a schema, a DOT graph).
    pub fn stdout(&self, text: &str) -> miette::Result<()> {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{text}")
            .and_then(|_| stdout.flush())
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    miette::Report::new(BrokenPipe)
                } else {
                    miette::miette!("cannot write to stdout: {e}")
                }
            })
    }

    /// An error report on stderr, always shown.
    pub fn error(&self, report: &miette::Report) {
        let _ignored_stderr_gone = writeln!(std::io::stderr(), "{report:?}");
    }

    /// Style text as bold/green/red/yellow when colour is on.
    pub fn paint(&self, style: Style, text: &str) -> String {
        if !self.color {
            return text.to_string();
        }
        let code = match style {
            Style::Bold => "1",
            Style::Green => "32",
            Style::Red => "31",
            Style::Yellow => "33",
            Style::Dim => "2",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Style {
    Bold,
    Green,
    Red,
    Yellow,
    Dim,
}

pub fn is_broken_pipe(report: &miette::Report) -> bool {
    report.downcast_ref::<BrokenPipe>().is_some()
}

/// Logs go to stderr; `-v` raises the level, `-q` lowers it, `RUST_LOG` overrides both.
pub fn init_logging(global: &GlobalArgs) {
    let level = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = match global.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => !no_color && std::io::stderr().is_terminal(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .try_init()
        .ok();
}

/// Rows as aligned columns, the header first: the one table printer of the CLI.
pub fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..head.len())
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .chain([head[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    std::iter::once(line(head.to_vec()))
        .chain(
            rows.iter()
                .map(|r| line(r.iter().map(String::as_str).collect())),
        )
        .collect::<Vec<_>>()
        .join("\n")
}
