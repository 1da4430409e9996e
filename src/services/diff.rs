//! Services diff: pure. Unit files through [`generated::diff`]; systemd state compared
//! with what `systemctl show` saw and what the ledger says sovereign last started.

use std::collections::BTreeSet;

use super::generated::{self, Have, Ownership};
use super::systemctl::{UnitState, unit};
use super::{
    Desired, DesiredService, Entry, Observed, service_address, service_key, unit_address, unit_key,
    unit_path,
};
use crate::domain::{DiffOptions, Owned};
use crate::plan::{Action, Change, FieldChange};

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
    options: &DiffOptions,
) -> Vec<Change> {
    let mut out = Vec::new();
    let mut names: BTreeSet<&str> = desired.keys().map(String::as_str).collect();
    names.extend(observed.units.keys().map(String::as_str));
    for name in names {
        let want = desired.get(name);
        let have = observed.units.get(name).unwrap_or(&Have::Missing);
        let applied = match owned.get(&unit_key(name)) {
            Some(Entry::Unit { applied_sha256 }) => Some(applied_sha256.as_str()),
            _ => None,
        };
        let own = Ownership {
            owned: applied.is_some(),
            applied,
        };
        let service_entry = owned.get(&service_key(name));
        let mut unit_change = generated::diff(
            unit_address(name),
            &unit_path(name),
            want.map(|w| w.unit.as_slice()),
            have,
            own,
            options.allow_destroy,
        );
        match want {
            Some(w) => {
                if let Some(c) = unit_change.take() {
                    out.push(c);
                }
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
                        ));
                    if let Some(why) = &observed.unusable {
                        stop = stop.not_applicable(why.clone());
                    }
                    out.push(stop);
                }
                if let Some(mut c) = unit_change.take() {
                    c.depends_on.push(service_address(name));
                    out.push(c);
                }
            }
        }
    }
    out
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
    let mut depends_on = vec![unit_address(name)];
    depends_on.extend(want.after.iter().cloned());

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
    if state.is_active() != want.start {
        fields.push(FieldChange::new(
            "active",
            Some(describe_active(&state)),
            Some(running(want.start)),
        ));
    }
    let restart = want.start && state.is_active() && restart_reasons(want, recorded);
    if restart {
        fields.push(FieldChange::new(
            "restart",
            None,
            Some(restart_why(want, recorded)),
        ));
    }
    let settled = recorded.is_some_and(|(_, _, e, s)| e == want.enable && s == want.start);
    if fields.is_empty() && settled {
        return None;
    }
    let mut c = Change::new(
        service_address(name),
        if recorded.is_some() {
            Action::Update
        } else if fields.is_empty() {
            Action::Adopt
        } else {
            Action::Create
        },
    );
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

fn restart_reasons(want: &DesiredService, recorded: Option<Recorded<'_>>) -> bool {
    match recorded {
        // Running, but not started by sovereign from this unit: restart onto it.
        None => true,
        Some((unit_sha, triggers, _, _)) => {
            *unit_sha != want.unit_sha256 || *triggers != want.triggers
        }
    }
}

fn restart_why(want: &DesiredService, recorded: Option<Recorded<'_>>) -> String {
    let Some((unit_sha, triggers, _, _)) = recorded else {
        return "sovereign has not started it from this unit yet".into();
    };
    let mut why = Vec::new();
    if *unit_sha != want.unit_sha256 {
        why.push("the unit changed".to_string());
    }
    for (path, digest) in &want.triggers {
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
    use std::collections::BTreeMap;

    use super::*;

    fn want() -> Desired {
        let mut d = Desired::new();
        let mut s = DesiredService::new(b"[Service]\nExecStart=/bin/true\n".to_vec());
        s.triggers.insert("/etc/x.conf".into(), "aa".into());
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
            unit_key("x"),
            Entry::Unit {
                applied_sha256: s.unit_sha256.clone(),
            },
        );
        o.insert(
            service_key("x"),
            Entry::Service {
                unit_sha256: s.unit_sha256.clone(),
                triggers: s.triggers.clone(),
                enabled: true,
                started: true,
            },
        );
        o
    }

    fn present(d: &Desired) -> Have {
        Have::Present {
            sha256: d["x"].unit_sha256.clone(),
            content: Some(d["x"].unit.clone()),
            size: d["x"].unit.len() as u64,
        }
    }

    #[test]
    fn without_systemd_the_unit_is_written_and_the_service_step_is_not_applicable() {
        let d = want();
        let observed = Observed {
            unusable: Some("PID 1 is not systemd".into()),
            units: BTreeMap::from([("x".to_string(), Have::Missing)]),
            states: BTreeMap::new(),
        };
        let changes = diff(&d, &observed, &Owned::new(), &DiffOptions::default());
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].address, unit_address("x"));
        assert!(changes[0].is_pending());
        assert_eq!(changes[1].address, service_address("x"));
        assert_eq!(changes[1].action, Action::Create);
        assert!(!changes[1].is_pending());
        assert_eq!(
            changes[1].not_applicable.as_deref(),
            Some("PID 1 is not systemd")
        );
        assert!(changes[1].depends_on.contains(&unit_address("x")));
    }

    #[test]
    fn on_systemd_a_new_service_is_enabled_and_started_then_settles() {
        let d = want();
        let mut observed = Observed {
            unusable: None,
            units: BTreeMap::from([("x".to_string(), Have::Missing)]),
            states: BTreeMap::from([("x".to_string(), state("inactive", ""))]),
        };
        let changes = diff(&d, &observed, &Owned::new(), &DiffOptions::default());
        let svc = changes
            .iter()
            .find(|c| c.address == service_address("x"))
            .unwrap();
        assert_eq!(svc.action, Action::Create);
        let names: Vec<&str> = svc.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["enabled", "active"]);

        observed.units.insert("x".into(), present(&d));
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
    fn a_changed_file_it_names_restarts_it() {
        let d = want();
        let owned = owned_after_apply(&d);
        let mut d2 = d.clone();
        d2.get_mut("x")
            .unwrap()
            .triggers
            .insert("/etc/x.conf".into(), "bb".into());
        let observed = Observed {
            unusable: None,
            units: BTreeMap::from([("x".to_string(), present(&d))]),
            states: BTreeMap::from([("x".to_string(), state("active", "enabled"))]),
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
    fn a_dropped_service_is_stopped_before_its_unit_is_removed() {
        let d = want();
        let owned = owned_after_apply(&d);
        let observed = Observed {
            unusable: None,
            units: BTreeMap::from([("x".to_string(), present(&d))]),
            states: BTreeMap::from([("x".to_string(), state("active", "enabled"))]),
        };
        let changes = diff(&Desired::new(), &observed, &owned, &DiffOptions::default());
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].address, service_address("x"));
        assert_eq!(changes[0].action, Action::Delete);
        assert_eq!(changes[1].address, unit_address("x"));
        assert_eq!(changes[1].action, Action::Delete);
        assert!(changes[1].depends_on.contains(&service_address("x")));
    }
}
