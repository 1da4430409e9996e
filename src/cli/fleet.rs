//! `plan --fleet` and `apply --fleet`: every selected host over SSH, a line per host as
//! it progresses, and a recap at the end (`--json`: one object per host).

use std::path::Path;

use super::output::Style;
use super::{CmdResult, Output, exit, report};
use crate::fleet::run::{self, HostResult, Mode, Options, Status};
use crate::host::RealHost;

fn load(path: &Path) -> miette::Result<crate::fleet::Fleet> {
    crate::fleet::load(path).map_err(miette::Report::new)
}

/// `sovereign plan --fleet FILE`.
pub fn plan(
    path: &Path,
    on: &[String],
    allow_destroy: bool,
    json: bool,
    detailed_exitcode: bool,
    out: &Output,
) -> CmdResult {
    let fleet = load(path)?;
    let options = Options {
        on: on.to_vec(),
        allow_destroy,
        ..Options::default()
    };
    let results = execute(&fleet, Mode::Plan, &options, out)?;
    if json {
        out.json(&results)?;
    } else {
        for r in &results {
            if let Some(plan) = &r.plan
                && let Ok(plan) = serde_json::from_value::<crate::plan::Plan>(plan.clone())
            {
                out.say(format!("── {} ──", r.host));
                out.say(crate::plan::render::text(
                    &plan,
                    crate::plan::render::Style { color: out.color },
                ));
            }
        }
        recap(&results, Mode::Plan, out);
    }
    let bad = results
        .iter()
        .any(|r| !matches!(r.status, Status::Ok | Status::Skipped));
    Ok(if bad {
        exit::ERROR
    } else if detailed_exitcode && results.iter().any(|r| r.changed > 0) {
        exit::CHANGES
    } else {
        exit::OK
    })
}

/// `sovereign apply --fleet FILE`.
pub fn apply(path: &Path, options: &Options, json: bool, out: &Output) -> CmdResult {
    let fleet = load(path)?;
    let results = execute(&fleet, Mode::Apply, options, out)?;
    if json {
        out.json(&results)?;
    } else {
        recap(&results, Mode::Apply, out);
    }
    let bad = results.iter().any(|r| !matches!(r.status, Status::Ok));
    Ok(if bad { exit::ERROR } else { exit::OK })
}

fn execute(
    fleet: &crate::fleet::Fleet,
    mode: Mode,
    options: &Options,
    out: &Output,
) -> miette::Result<Vec<HostResult>> {
    let hosts = run::select(fleet, &options.on).map_err(report)?;
    out.say(format!(
        "{} {} host{} of {} ({} at a time)",
        match mode {
            Mode::Plan => "Planning",
            Mode::Apply => "Applying",
        },
        hosts.len(),
        if hosts.len() == 1 { "" } else { "s" },
        fleet.path.display(),
        fleet.parallel.min(hosts.len().max(1))
    ));
    let say = |line: &str| out.say(line);
    run::run(fleet, &hosts, mode, options, &RealHost, &say).map_err(report)
}

fn recap(results: &[HostResult], mode: Mode, out: &Output) {
    let width = results.iter().map(|r| r.host.len()).max().unwrap_or(0);
    out.say("");
    out.say("Recap:");
    for r in results {
        let line = match mode {
            Mode::Apply => run::recap_line(r, width),
            Mode::Plan => format!(
                "{:width$} : {}",
                r.host,
                run::line(r, mode)
                    .split_once(": ")
                    .map_or("", |(_, rest)| rest)
            ),
        };
        let style = match r.status {
            Status::Ok => Style::Green,
            Status::Skipped => Style::Yellow,
            Status::RolledBack => Style::Yellow,
            _ => Style::Red,
        };
        out.say(out.paint(style, &line));
        if matches!(r.status, Status::Failed) && !r.tail.is_empty() {
            for l in &r.tail {
                out.say(format!("    {l}"));
            }
        }
    }
}
