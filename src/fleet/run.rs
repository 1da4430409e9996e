//! A fleet run: every selected host's plan or apply, each an independent chain of steps
//! over its own SSH master, up to `parallel` hosts at once (a pool of workers, not
//! lockstep: a slow host holds no one else up), with one result per host for the recap.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde::Serialize;

use crate::host::Host;
use crate::plan::resolve::Resolved;

use super::remote::{Binary, Failure, Remote};
use super::ssh::Transport;
use super::{Fleet, Host as FleetHost};

/// What a run does on each host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plan,
    Apply,
}

/// The options of a run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--on HOST|@TAG`, any of them; empty: every host.
    pub on: Vec<String>,
    pub allow_destroy: bool,
    /// `--max-fail PERCENT`: stop starting hosts once this share has failed.
    pub max_fail: Option<u8>,
    /// `--rollback-all-on-failure`.
    pub rollback_all_on_failure: bool,
}

/// How one host ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Planned, or applied and confirmed (or nothing to apply).
    Ok,
    Failed,
    Unreachable,
    /// Its change was rolled back: not confirmed by the deadline, a failed health check,
    /// or `--rollback-all-on-failure`.
    RolledBack,
    /// Not started: `--max-fail` stopped the run first.
    Skipped,
}

/// One host's result.
#[derive(Debug, Clone, Serialize)]
pub struct HostResult {
    pub host: String,
    pub status: Status,
    /// Changes applied (apply), or pending (plan).
    pub changed: usize,
    /// The plan's counts (plan): to add, to change, to destroy, kept, not applicable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<serde_json::Value>,
    /// The host's plan (plan): its changes, as `plan --json` has them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<serde_json::Value>,
    /// The generation the apply recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// Why it failed, was unreachable or rolled back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The last lines the host printed, when it failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tail: Vec<String>,
    /// This run sent the host its sovereign binary.
    pub shipped_binary: bool,
    pub seconds: f64,
}

impl HostResult {
    fn new(host: &str, status: Status) -> HostResult {
        HostResult {
            host: host.to_string(),
            status,
            changed: 0,
            summary: None,
            plan: None,
            generation: None,
            detail: None,
            tail: Vec::new(),
            shipped_binary: false,
            seconds: 0.0,
        }
    }

    fn failure(host: &str, f: Failure) -> HostResult {
        match f {
            Failure::Unreachable(why) => {
                let mut r = HostResult::new(host, Status::Unreachable);
                r.detail = Some(why);
                r
            }
            Failure::Failed { code, tail } => {
                let mut r = HostResult::new(host, Status::Failed);
                r.detail = Some(match code {
                    Some(c) => format!("exited {c}"),
                    None => "killed".into(),
                });
                r.tail = tail;
                r
            }
        }
    }
}

/// The hosts `--on` selects, in the fleet file's order; an unknown name or tag is an error.
pub fn select<'a>(fleet: &'a Fleet, on: &[String]) -> anyhow::Result<Vec<&'a FleetHost>> {
    if on.is_empty() {
        return Ok(fleet.hosts.values().collect());
    }
    let mut chosen: Vec<&FleetHost> = Vec::new();
    for want in on {
        let matched: Vec<&FleetHost> = match want.strip_prefix('@') {
            Some(tag) => fleet
                .hosts
                .values()
                .filter(|h| h.tags.iter().any(|t| t == tag))
                .collect(),
            None => fleet.hosts.get(want).into_iter().collect(),
        };
        if matched.is_empty() {
            let hosts: Vec<&str> = fleet.hosts.keys().map(String::as_str).collect();
            let mut tags: Vec<&str> = fleet
                .hosts
                .values()
                .flat_map(|h| h.tags.iter().map(String::as_str))
                .collect();
            tags.sort_unstable();
            tags.dedup();
            bail!(
                "--on {want}: no {} in {} (hosts: {}; tags: {})",
                if want.starts_with('@') {
                    "host has that tag"
                } else {
                    "such host"
                },
                fleet.path.display(),
                hosts.join(", "),
                if tags.is_empty() {
                    "none".into()
                } else {
                    tags.iter()
                        .map(|t| format!("@{t}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            );
        }
        for h in matched {
            if !chosen.iter().any(|c| c.name == h.name) {
                chosen.push(h);
            }
        }
    }
    chosen.sort_by_key(|h| fleet.hosts.keys().position(|k| *k == h.name));
    Ok(chosen)
}

/// Load every selected host's profile before any host is contacted: a broken profile
/// stops the run with nothing done anywhere.
pub fn profiles(hosts: &[&FleetHost]) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for h in hosts {
        match crate::profile::load(&h.profile) {
            Ok(valid) => {
                let resolved = Resolved::from_valid(&valid)?;
                out.insert(h.name.clone(), serde_json::to_vec(&resolved)?);
            }
            Err(e) => errors.push(format!("host {}: {}", h.name, miette::Report::new(e))),
        }
    }
    if !errors.is_empty() {
        bail!(
            "nothing was run: a host's profile is not valid\n{}",
            errors.join("\n")
        );
    }
    Ok(out)
}

/// Run `mode` on `hosts`; `say` reports progress (one line per step and host).
pub fn run(
    fleet: &Fleet,
    hosts: &[&FleetHost],
    mode: Mode,
    options: &Options,
    layer: &dyn Host,
    say: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Vec<HostResult>> {
    let profiles = profiles(hosts)?;
    let binary = Binary::current()?;
    let transport = Transport::new(fleet)?;
    let next = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let results: Mutex<Vec<Option<HostResult>>> = Mutex::new(vec![None; hosts.len()]);
    let workers = fleet.parallel.clamp(1, hosts.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(host) = hosts.get(i) else { break };
                    let result = if stop.load(Ordering::SeqCst) {
                        let mut r = HostResult::new(&host.name, Status::Skipped);
                        r.detail = Some("not started: --max-fail stopped the run".into());
                        r
                    } else {
                        let remote = Remote {
                            transport: &transport,
                            host,
                            layer,
                            binary: &binary,
                        };
                        let started = Instant::now();
                        let mut r = one(&remote, fleet, mode, options, &profiles[&host.name], say);
                        r.seconds = started.elapsed().as_secs_f64();
                        r
                    };
                    say(&line(&result, mode));
                    if matches!(
                        result.status,
                        Status::Failed | Status::Unreachable | Status::RolledBack
                    ) {
                        let n = failed.fetch_add(1, Ordering::SeqCst) + 1;
                        if let Some(pct) = options.max_fail
                            && n * 100 >= usize::from(pct) * hosts.len()
                        {
                            stop.store(true, Ordering::SeqCst);
                        }
                    }
                    results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(result);
                }
            });
        }
    });
    let mut results: Vec<HostResult> = results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .flatten()
        .collect();
    if mode == Mode::Apply && options.rollback_all_on_failure {
        let bad = results.iter().any(|r| {
            matches!(
                r.status,
                Status::Failed | Status::Unreachable | Status::RolledBack
            )
        });
        if bad {
            for r in results
                .iter_mut()
                .filter(|r| r.status == Status::Ok && r.changed > 0)
            {
                let host = &fleet.hosts[&r.host];
                say(&format!(
                    "{}: rolling back (--rollback-all-on-failure)",
                    r.host
                ));
                let remote = Remote {
                    transport: &transport,
                    host,
                    layer,
                    binary: &binary,
                };
                let Some(generation) = r.generation else {
                    continue;
                };
                match remote.rollback(generation) {
                    Ok(()) => {
                        r.status = Status::RolledBack;
                        r.detail = Some(
                            "rolled back because another host failed (--rollback-all-on-failure)"
                                .into(),
                        );
                    }
                    Err(f) => {
                        let why = HostResult::failure(&r.host, f);
                        r.status = Status::Failed;
                        r.detail = Some(format!(
                            "rolling back after another host failed did not work: {}",
                            why.detail.unwrap_or_default()
                        ));
                        r.tail = why.tail;
                    }
                }
            }
        }
    }
    for h in hosts {
        transport.close(layer, h);
    }
    Ok(results)
}

/// One host's chain of steps.
fn one(
    remote: &Remote<'_>,
    fleet: &Fleet,
    mode: Mode,
    options: &Options,
    profile: &[u8],
    say: &(dyn Fn(&str) + Sync),
) -> HostResult {
    let name = &remote.host.name;
    let shipped = match remote.ensure_binary() {
        Ok(s) => s,
        Err(f) => return HostResult::failure(name, f),
    };
    if shipped {
        say(&format!(
            "{name}: sent sovereign ({})",
            &remote.binary.sha256()[..12]
        ));
    }
    let mut result = match mode {
        Mode::Plan => plan(remote, options, profile),
        Mode::Apply => {
            say(&format!("{name}: applying"));
            apply(remote, fleet, options, profile, say)
        }
    };
    result.shipped_binary = shipped;
    result
}

fn plan(remote: &Remote<'_>, options: &Options, profile: &[u8]) -> HostResult {
    let name = &remote.host.name;
    match remote.plan(profile, options.allow_destroy) {
        Err(f) => HostResult::failure(name, f),
        Ok(plan) => {
            let mut r = HostResult::new(name, Status::Ok);
            r.changed = plan["summary"]["pending"].as_u64().unwrap_or(0) as usize;
            r.summary = Some(plan["summary"].clone());
            r.plan = Some(plan);
            r
        }
    }
}

fn apply(
    remote: &Remote<'_>,
    fleet: &Fleet,
    options: &Options,
    profile: &[u8],
    say: &(dyn Fn(&str) + Sync),
) -> HostResult {
    let name = &remote.host.name;
    let applied = match remote.apply(profile, options.allow_destroy, fleet.confirm_timeout) {
        Ok(a) => a,
        Err(f) => return HostResult::failure(name, f),
    };
    let report = applied.report.clone();
    let changed = report
        .as_ref()
        .and_then(|r| r["applied"].as_array())
        .map_or(0, Vec::len);
    let generation = report.as_ref().and_then(|r| r["generation"].as_u64());
    let outcome = report
        .as_ref()
        .and_then(|r| r["outcome"].as_str())
        .map(str::to_string);
    let Some(token) = applied.token.clone() else {
        // Nothing was armed: nothing to apply, or it failed before changing anything.
        return match (&applied.cut, applied.code) {
            (Some(why), _) => HostResult::failure(name, Failure::Unreachable(why.clone())),
            (None, Some(0)) => HostResult::new(name, Status::Ok),
            (None, code) => HostResult::failure(
                name,
                Failure::Failed {
                    code,
                    tail: applied.tail.clone(),
                },
            ),
        };
    };
    match outcome.as_deref() {
        Some("succeeded") | None => {}
        Some(other) => {
            // The host's own apply failed or rolled back, and disarmed its watcher.
            let mut r = HostResult::new(
                name,
                if other == "rolled_back" {
                    Status::RolledBack
                } else {
                    Status::Failed
                },
            );
            r.generation = generation;
            r.detail = Some(format!("the apply {}", other.replace('_', " ")));
            r.tail = applied.tail.clone();
            return r;
        }
    }
    if applied.report.is_none() {
        // The connection was cut before the report: the apply may still be running there
        // (it ignores the hang-up). Wait for it to end before confirming anything.
        let started = Instant::now();
        while started.elapsed() < super::remote::APPLY_TIMEOUT {
            match remote.status(&token) {
                Ok(state) if state == "armed" => std::thread::sleep(Duration::from_secs(2)),
                Ok(state) if state == "disarmed" => {
                    let mut r = HostResult::new(name, Status::Failed);
                    r.detail = Some(
                        "the connection was cut and the apply did not succeed (see `sovereign generations` there)".into(),
                    );
                    r.tail = applied.tail.clone();
                    return r;
                }
                _ => break,
            }
        }
    }
    say(&format!("{name}: confirming over a new connection"));
    match remote.confirm(&token) {
        Ok(()) => {
            let mut r = HostResult::new(name, Status::Ok);
            r.changed = changed;
            r.generation = generation;
            r
        }
        Err(first) => {
            // The change cut the way to the host (or the confirmation came too late): its
            // watcher rolls it back at its deadline. Wait for it, then look.
            let why = match &first {
                Failure::Unreachable(w) => w.clone(),
                Failure::Failed { tail, .. } => tail.join(" / "),
            };
            say(&format!(
                "{name}: not confirmed ({why}); waiting for its rollback deadline"
            ));
            std::thread::sleep(fleet.confirm_timeout + Duration::from_secs(5));
            let mut r = HostResult::new(name, Status::Failed);
            r.generation = generation;
            r.tail = applied.tail.clone();
            let mut seen = String::new();
            for _ in 0..12 {
                match remote.status(&token) {
                    Ok(state) if state == "armed" => {}
                    Ok(state) => {
                        seen = state;
                        break;
                    }
                    Err(_) => {}
                }
                std::thread::sleep(Duration::from_secs(5));
            }
            if seen == "rolled_back" {
                r.status = Status::RolledBack;
                r.detail = Some(format!(
                    "not confirmed ({why}): the host rolled itself back at its deadline"
                ));
            } else {
                r.detail = Some(format!(
                    "not confirmed ({why}); its state afterwards: {}",
                    if seen.is_empty() {
                        "unknown (unreachable)"
                    } else {
                        &seen
                    }
                ));
            }
            r
        }
    }
}

/// The progress line of a finished host.
pub fn line(r: &HostResult, mode: Mode) -> String {
    let what = match (r.status, mode) {
        (Status::Ok, Mode::Plan) => match &r.summary {
            Some(s) => format!(
                "planned: {} to add, {} to change, {} to destroy, {} kept",
                s["create"].as_u64().unwrap_or(0) + s["adopt"].as_u64().unwrap_or(0),
                s["update"].as_u64().unwrap_or(0) + s["replace"].as_u64().unwrap_or(0),
                s["delete"].as_u64().unwrap_or(0),
                s["keep"].as_u64().unwrap_or(0)
            ),
            None => "planned".into(),
        },
        (Status::Ok, Mode::Apply) if r.changed == 0 => "ok: nothing to change".into(),
        (Status::Ok, Mode::Apply) => format!(
            "ok: {} changed (generation {}), confirmed",
            r.changed,
            r.generation.unwrap_or(0)
        ),
        (Status::Failed, _) => format!("FAILED: {}", r.detail.as_deref().unwrap_or("")),
        (Status::Unreachable, _) => format!("UNREACHABLE: {}", r.detail.as_deref().unwrap_or("")),
        (Status::RolledBack, _) => format!("ROLLED BACK: {}", r.detail.as_deref().unwrap_or("")),
        (Status::Skipped, _) => "skipped".into(),
    };
    format!("{}: {what}", r.host)
}

/// The recap line of a host, Ansible's way.
pub fn recap_line(r: &HostResult, width: usize) -> String {
    let one = |s: Status| usize::from(r.status == s);
    format!(
        "{:width$} : ok={} changed={} failed={} unreachable={} rolled_back={}",
        r.host,
        one(Status::Ok),
        r.changed,
        one(Status::Failed),
        one(Status::Unreachable),
        one(Status::RolledBack),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn host(name: &str, tags: &[&str]) -> FleetHost {
        FleetHost {
            name: name.into(),
            address: name.into(),
            user: None,
            port: None,
            identity_file: None,
            profile: "/p.toml".into(),
            root: None,
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn on_selects_hosts_and_tags_in_file_order_once_each() {
        let fleet = Fleet {
            path: "fleet.toml".into(),
            parallel: 10,
            confirm_timeout: Duration::from_secs(30),
            strict_host_keys: Default::default(),
            known_hosts: None,
            hosts: BTreeMap::from([
                ("a".into(), host("a", &["gpu"])),
                ("b".into(), host("b", &["forge"])),
                ("c".into(), host("c", &["gpu", "forge"])),
            ]),
        };
        let names = |on: &[&str]| -> Vec<String> {
            let on: Vec<String> = on.iter().map(|s| s.to_string()).collect();
            select(&fleet, &on)
                .unwrap()
                .iter()
                .map(|h| h.name.clone())
                .collect()
        };
        assert_eq!(names(&[]), ["a", "b", "c"]);
        assert_eq!(names(&["@gpu"]), ["a", "c"]);
        assert_eq!(names(&["c", "@forge", "a"]), ["a", "b", "c"]);
        let err = select(&fleet, &["@nope".to_string()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("@forge, @gpu"), "{err}");
        assert!(select(&fleet, &["zz".to_string()]).is_err());
    }
}
