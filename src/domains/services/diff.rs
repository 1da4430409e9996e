//! Services diff: pure. systemd state compared with what `systemctl show` saw and what
//! the ledger says sovereign last started; each change carries the [`ServiceOp`] apply
//! runs.

use std::collections::{BTreeMap, BTreeSet};

use super::systemctl::{UnitState, unit};
use super::{Desired, DesiredService, Entry, Observed, service_address, service_key};
use crate::domain::{DiffOptions, Owned};
use crate::plan::{Action, Change, FieldChange};

/// What apply does for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceOp {
    /// `daemon-reload`, then enable or disable, then start, restart or stop; then record.
    Converge {
        enable: bool,
        disable: bool,
        /// `start`, `restart` or `stop`, if any.
        verb: Option<&'static str>,
        /// What the ledger records once done.
        record: Entry,
    },
    /// `disable --now`, then forget it.
    Remove,
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

fn running(b: bool) -> String {
    if b { "running" } else { "stopped" }.into()
}

pub fn diff(
    desired: &Desired,
    observed: &Observed,
    owned: &Owned<Entry>,
    _options: &DiffOptions,
) -> Vec<Change> {
    let mut out = Vec::new();
    let mut names: BTreeSet<&str> = desired.keys().map(String::as_str).collect();
    names.extend(owned.keys().filter_map(|k| k.strip_prefix("service:")));
    for name in names {
        let service_entry = owned.get(&service_key(name));
        match desired.get(name) {
            Some(w) => {
                if let Some(c) = service_change(name, w, observed, service_entry) {
                    out.push(c);
                }
            }
            None => {
                if service_entry.is_some() {
                    let mut stop = Change::new(service_address(name), Action::Delete)
                        .field(FieldChange::new("enabled", None, Some(yes_no(false))))
                        .field(FieldChange::new("active", None, Some(running(false))))
                        .reason(format!(
                            "the profile no longer declares it: systemctl disable --now {}",
                            unit(name)
                        ))
                        .with_op(ServiceOp::Remove);
                    if let Some(why) = &observed.unusable {
                        stop = stop.not_applicable(why.clone());
                    }
                    out.push(stop);
                }
            }
        }
    }
    out
}

/// The inputs' digests after this apply: planned ones as they will be, the others as
/// observe read them.
fn triggers(want: &DesiredService, observed: &Observed) -> BTreeMap<String, String> {
    want.triggers
        .iter()
        .map(|(input, planned)| {
            let digest = planned
                .clone()
                .or_else(|| observed.inputs.get(input).cloned())
                .unwrap_or_else(|| "missing".into());
            (input.clone(), digest)
        })
        .collect()
}

/// What systemd must do for a desired service, if anything.
fn service_change(
    name: &str,
    want: &DesiredService,
    observed: &Observed,
    entry: Option<&Entry>,
) -> Option<Change> {
    let recorded = match entry {
        Some(Entry::Service {
            unit_sha256,
            triggers,
            enabled,
            started,
        }) => Some((unit_sha256, triggers, *enabled, *started)),
        _ => None,
    };
    let depends_on = want.after.clone();
    let triggers = triggers(want, observed);

    if let Some(why) = &observed.unusable {
        // Nothing can be asked of systemd here: say what would be done on a systemd host.
        let mut c = Change::new(
            service_address(name),
            if recorded.is_some() {
                Action::Update
            } else {
                Action::Create
            },
        )
        .field(FieldChange::new("enabled", None, Some(yes_no(want.enable))))
        .field(FieldChange::new("active", None, Some(running(want.start))))
        .reason(format!(
            "would run: systemctl daemon-reload; systemctl {} {}",
            match (want.enable, want.start) {
                (true, true) => "enable --now",
                (true, false) => "enable",
                (false, true) => "start",
                (false, false) => "disable --now",
            },
            unit(name)
        ))
        .not_applicable(why.clone());
        c.depends_on = depends_on;
        return Some(c);
    }

    let state = observed.states.get(name).cloned().unwrap_or_default();
    let mut fields = Vec::new();
    if state.is_enabled() != want.enable {
        fields.push(FieldChange::new(
            "enabled",
            Some(yes_no(state.is_enabled())),
            Some(yes_no(want.enable)),
        ));
    }
    if !want.oneshot && state.is_active() != want.start {
        fields.push(FieldChange::new(
            "active",
            Some(describe_active(&state)),
            Some(running(want.start)),
        ));
    }
    // A unit file edited by hand since sovereign started the service: the files domain
    // writes the profile's unit again (first: the service depends on it), and the service
    // restarts onto it, whatever systemd loaded meanwhile.
    let unit_drift = recorded.is_some()
        && observed
            .unit_files
            .get(name)
            .is_some_and(|now| now.as_deref() != Some(want.unit_sha256.as_str()));
    let restart = want.start
        && state.is_active()
        && (unit_drift || restart_reasons(want, &triggers, recorded));
    if restart {
        let mut why = restart_why(want, &triggers, recorded);
        if unit_drift && why.is_empty() {
            why = "its unit file differs from the profile's on disk and is written again".into();
        }
        fields.push(FieldChange::new("restart", None, Some(why)));
    }
    let settled = recorded.is_some_and(|(_, _, e, s)| e == want.enable && s == want.start);
    if fields.is_empty() && settled {
        return None;
    }
    let field = |n: &str| fields.iter().any(|f| f.name == n);
    let op = ServiceOp::Converge {
        enable: want.enable,
        disable: !want.enable && field("enabled"),
        verb: if want.start {
            Some(if restart { "restart" } else { "start" })
        } else if field("active") {
            Some("stop")
        } else {
            None
        },
        record: Entry::Service {
            unit_sha256: want.unit_sha256.clone(),
            triggers,
            enabled: want.enable,
            started: want.start,
        },
    };
    let mut c = Change::new(
        service_address(name),
        if recorded.is_some() {
            Action::Update
        } else if fields.is_empty() {
            Action::Adopt
        } else {
            Action::Create
        },
    )
    .with_op(op);
    c.fields = fields;
    c.depends_on = depends_on;
    Some(c)
}

type Recorded<'a> = (
    &'a String,
    &'a std::collections::BTreeMap<String, String>,
    bool,
    bool,
);

fn restart_reasons(
    want: &DesiredService,
    now: &BTreeMap<String, String>,
    recorded: Option<Recorded<'_>>,
) -> bool {
    match recorded {
        // Running, but not started by sovereign from this unit: restart onto it.
        None => true,
        Some((unit_sha, triggers, _, _)) => *unit_sha != want.unit_sha256 || triggers != now,
    }
}

fn restart_why(
    want: &DesiredService,
    now: &BTreeMap<String, String>,
    recorded: Option<Recorded<'_>>,
) -> String {
    let Some((unit_sha, triggers, _, _)) = recorded else {
        return "sovereign has not started it from this unit yet".into();
    };
    let mut why = Vec::new();
    if *unit_sha != want.unit_sha256 {
        why.push("the unit changed".to_string());
    }
    for (path, digest) in now {
        if triggers.get(path) != Some(digest) {
            why.push(format!("{path} changed"));
        }
    }
    why.join(", ")
}

fn describe_active(s: &UnitState) -> String {
    if s.active.is_empty() {
        "unknown".into()
    } else if s.sub.is_empty() {
        s.active.clone()
    } else {
        format!("{} ({})", s.active, s.sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::requests::{file_address, unit_file_path};

    fn want() -> Desired {
        let mut d = Desired::new();
        let mut s = DesiredService::new(b"[Service]\nExecStart=/bin/true\n");
        s.triggers.insert("/etc/x.conf".into(), Some("aa".into()));
        s.after.push(file_address(&unit_file_path("x")));
        d.insert("x".into(), s);
        d
    }

    fn state(active: &str, enabled: &str) -> UnitState {
        UnitState {
            load: "loaded".into(),
            active: active.into(),
            sub: String::new(),
            unit_file: enabled.into(),
        }
    }

    fn owned_after_apply(d: &Desired) -> Owned<Entry> {
        let s = &d["x"];
        let mut o = Owned::new();
        o.insert(
            service_key("x"),
            Entry::Service {
                unit_sha256: s.unit_sha256.clone(),
                triggers: triggers(s, &Observed::default()),
                enabled: true,
                started: true,
            },
        );
        o
    }

    #[test]
    fn without_systemd_the_service_step_is_not_applicable_and_waits_for_its_unit_file() {
        let d = want();
        let observed = Observed {
            unusable: Some("PID 1 is not systemd".into()),
            ..Observed::default()
        };
        let changes = diff(&d, &observed, &Owned::new(), &DiffOptions::default());
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].address, service_address("x"));
        assert_eq!(changes[0].action, Action::Create);
        assert!(!changes[0].is_pending());
        assert_eq!(
            changes[0].not_applicable.as_deref(),
            Some("PID 1 is not systemd")
        );
        assert!(
            changes[0]
                .depends_on
                .contains(&file_address("/etc/systemd/system/x.service"))
        );
    }

    #[test]
    fn on_systemd_a_new_service_is_enabled_and_started_then_settles() {
        let d = want();
        let mut observed = Observed {
            states: BTreeMap::from([("x".to_string(), state("inactive", ""))]),
            ..Observed::default()
        };
        let changes = diff(&d, &observed, &Owned::new(), &DiffOptions::default());
        let svc = changes
            .iter()
            .find(|c| c.address == service_address("x"))
            .unwrap();
        assert_eq!(svc.action, Action::Create);
        let names: Vec<&str> = svc.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["enabled", "active"]);
        assert!(matches!(
            svc.op::<ServiceOp>().unwrap(),
            ServiceOp::Converge {
                enable: true,
                verb: Some("start"),
                ..
            }
        ));

        observed
            .states
            .insert("x".into(), state("active", "enabled"));
        let again = diff(
            &d,
            &observed,
            &owned_after_apply(&d),
            &DiffOptions::default(),
        );
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn a_oneshot_unit_is_enabled_but_never_started_or_stopped() {
        let mut d = want();
        let x = d.get_mut("x").unwrap();
        x.start = false;
        x.oneshot = true;
        let mut observed = Observed {
            states: BTreeMap::from([("x".to_string(), state("inactive", ""))]),
            ..Observed::default()
        };
        let changes = diff(&d, &observed, &Owned::new(), &DiffOptions::default());
        let names: Vec<&str> = changes[0].fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["enabled"]);
        assert!(matches!(
            changes[0].op::<ServiceOp>().unwrap(),
            ServiceOp::Converge {
                enable: true,
                verb: None,
                ..
            }
        ));
        // At boot it runs `sovereign activate`, which plans this unit while it is
        // activating: stopping it would kill that very process.
        observed
            .states
            .insert("x".into(), state("activating", "enabled"));
        let mut owned = Owned::new();
        owned.insert(
            service_key("x"),
            Entry::Service {
                unit_sha256: d["x"].unit_sha256.clone(),
                triggers: triggers(&d["x"], &Observed::default()),
                enabled: true,
                started: false,
            },
        );
        let running = diff(&d, &observed, &owned, &DiffOptions::default());
        assert!(running.is_empty(), "{running:?}");
    }

    #[test]
    fn a_changed_file_it_names_restarts_it() {
        let d = want();
        let owned = owned_after_apply(&d);
        let mut d2 = d.clone();
        d2.get_mut("x")
            .unwrap()
            .triggers
            .insert("/etc/x.conf".into(), Some("bb".into()));
        let observed = Observed {
            states: BTreeMap::from([("x".to_string(), state("active", "enabled"))]),
            ..Observed::default()
        };
        let changes = diff(&d2, &observed, &owned, &DiffOptions::default());
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].action, Action::Update);
        assert_eq!(changes[0].fields[0].name, "restart");
        assert_eq!(
            changes[0].fields[0].after.as_deref(),
            Some("/etc/x.conf changed")
        );
    }

    #[test]
    fn a_file_no_domain_writes_restarts_it_when_observe_reads_a_new_digest() {
        let mut d = want();
        d.get_mut("x")
            .unwrap()
            .triggers
            .insert("/etc/x.conf".into(), None);
        let mut observed = Observed {
            states: BTreeMap::from([("x".to_string(), state("active", "enabled"))]),
            inputs: BTreeMap::from([("/etc/x.conf".to_string(), "aa".to_string())]),
            ..Observed::default()
        };
        let mut owned = Owned::new();
        owned.insert(
            service_key("x"),
            Entry::Service {
                unit_sha256: d["x"].unit_sha256.clone(),
                triggers: triggers(&d["x"], &observed),
                enabled: true,
                started: true,
            },
        );
        assert!(diff(&d, &observed, &owned, &DiffOptions::default()).is_empty());
        observed.inputs.insert("/etc/x.conf".into(), "cc".into());
        let changes = diff(&d, &observed, &owned, &DiffOptions::default());
        assert_eq!(changes[0].fields[0].name, "restart");
    }

    #[test]
    fn a_unit_file_edited_by_hand_restarts_the_service_onto_the_profiles_unit() {
        let d = want();
        let owned = owned_after_apply(&d);
        let mut observed = Observed {
            states: BTreeMap::from([("x".to_string(), state("active", "enabled"))]),
            unit_files: BTreeMap::from([("x".to_string(), Some(d["x"].unit_sha256.clone()))]),
            ..Observed::default()
        };
        assert!(diff(&d, &observed, &owned, &DiffOptions::default()).is_empty());
        observed
            .unit_files
            .insert("x".into(), Some("edited-by-hand".into()));
        let changes = diff(&d, &observed, &owned, &DiffOptions::default());
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].fields[0].name, "restart");
        assert!(
            changes[0].fields[0]
                .after
                .as_deref()
                .unwrap()
                .contains("unit file differs"),
            "{changes:?}"
        );
        assert!(matches!(
            changes[0].op::<ServiceOp>().unwrap(),
            ServiceOp::Converge {
                verb: Some("restart"),
                ..
            }
        ));
    }

    #[test]
    fn a_dropped_service_is_stopped() {
        let d = want();
        let owned = owned_after_apply(&d);
        let observed = Observed {
            states: BTreeMap::from([("x".to_string(), state("active", "enabled"))]),
            ..Observed::default()
        };
        let changes = diff(&Desired::new(), &observed, &owned, &DiffOptions::default());
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].address, service_address("x"));
        assert_eq!(changes[0].action, Action::Delete);
        assert_eq!(changes[0].op::<ServiceOp>().unwrap(), &ServiceOp::Remove);
    }
}
