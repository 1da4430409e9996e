//! The services' health check: each service that should run is active.

use super::Desired;
use super::systemctl::{self, unit};
use crate::domain::{ApplyContext, HealthResult};

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
    if let Some(why) = crate::host::systemd_unusable(cx.root, cx.host) {
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
