//! Carrying out services changes: unit files through the host's file helpers, systemd
//! through `systemctl` on the host; each recorded in the ledger.

use anyhow::{Context, bail};

use super::generated;
use super::systemctl::{self, unit};
use super::{Desired, Entry, service_key, unit_key, unit_path};
use crate::domain::{ApplyContext, HealthResult, LedgerTx};
use crate::plan::{Action, Change};

/// Unit files are world-readable, like the ones packages install.
const UNIT_MODE: u32 = 0o644;

pub fn apply(
    cx: &ApplyContext<'_>,
    desired: &Desired,
    change: &Change,
    ledger: &mut LedgerTx<'_, Entry>,
) -> anyhow::Result<()> {
    let name = change.address.name.as_str();
    match change.address.kind.as_str() {
        "unit" => apply_unit(cx, desired, name, change.action, ledger),
        "service" => apply_service(cx, desired, name, change, ledger),
        other => bail!("the services domain has no {other:?} resources"),
    }
}

fn apply_unit(
    cx: &ApplyContext<'_>,
    desired: &Desired,
    name: &str,
    action: Action,
    ledger: &mut LedgerTx<'_, Entry>,
) -> anyhow::Result<()> {
    let path = unit_path(name);
    match action {
        Action::Create | Action::Update | Action::Adopt => {
            let want = desired
                .get(name)
                .with_context(|| format!("service {name:?} is not in the profile"))?;
            if action != Action::Adopt {
                generated::write(cx.root, &path, &want.unit, UNIT_MODE)?;
            }
            ledger.record_result(
                &unit_key(name),
                Entry::Unit {
                    applied_sha256: want.unit_sha256.clone(),
                },
            )
        }
        Action::Delete => {
            generated::remove(cx.root, &path)?;
            ledger.forget(&unit_key(name))?;
            if systemctl::unusable(cx.root, cx.host).is_none() {
                systemctl::run(cx.host, &["daemon-reload"])?;
            }
            Ok(())
        }
        Action::Replace | Action::Keep => {
            bail!("a unit file has no {} step", action.word())
        }
    }
}

fn apply_service(
    cx: &ApplyContext<'_>,
    desired: &Desired,
    name: &str,
    change: &Change,
    ledger: &mut LedgerTx<'_, Entry>,
) -> anyhow::Result<()> {
    if let Some(why) = systemctl::unusable(cx.root, cx.host) {
        // The plan marks these not applicable; reaching here means the machine changed.
        bail!("{} cannot run here: {why}", change.address);
    }
    let unit = unit(name);
    if change.action == Action::Delete {
        systemctl::run(cx.host, &["disable", "--now", &unit])?;
        return ledger.forget(&service_key(name));
    }
    let want = desired
        .get(name)
        .with_context(|| format!("service {name:?} is not in the profile"))?;
    systemctl::run(cx.host, &["daemon-reload"])?;
    let field = |n: &str| change.fields.iter().any(|f| f.name == n);
    if want.enable {
        systemctl::run(cx.host, &["enable", &unit])?;
    } else if field("enabled") {
        systemctl::run(cx.host, &["disable", &unit])?;
    }
    if want.start {
        let verb = if field("restart") { "restart" } else { "start" };
        systemctl::run(cx.host, &[verb, &unit])?;
    } else if field("active") {
        systemctl::run(cx.host, &["stop", &unit])?;
    }
    ledger.record_result(
        &service_key(name),
        Entry::Service {
            unit_sha256: want.unit_sha256.clone(),
            triggers: want.triggers.clone(),
            enabled: want.enable,
            started: want.start,
        },
    )
}

/// Each service that should run is active; skipped (and said so) where systemd cannot be
/// asked.
pub fn health(cx: &ApplyContext<'_>, desired: &Desired) -> Vec<HealthResult> {
    let running: Vec<&str> = desired
        .iter()
        .filter(|(_, s)| s.start)
        .map(|(n, _)| n.as_str())
        .collect();
    if running.is_empty() {
        return Vec::new();
    }
    let title = |n: &str| format!("service {} is active", unit(n));
    if let Some(why) = systemctl::unusable(cx.root, cx.host) {
        return running
            .iter()
            .map(|n| HealthResult::skipped(title(n), &why))
            .collect();
    }
    let states = match systemctl::show(cx.host, &running) {
        Ok(s) => s,
        Err(e) => {
            return running
                .iter()
                .map(|n| HealthResult {
                    name: title(n),
                    ok: false,
                    detail: format!("{e:#}"),
                })
                .collect();
        }
    };
    running
        .iter()
        .map(|n| {
            let s = states.get(*n).cloned().unwrap_or_default();
            HealthResult {
                name: title(n),
                ok: s.is_active(),
                detail: format!("ActiveState={} SubState={}", s.active, s.sub),
            }
        })
        .collect()
}
