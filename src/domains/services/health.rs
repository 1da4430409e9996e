//! The services' health check: each service that should run is active.

use super::Desired;
use super::systemctl::{self, UnitState, unit};
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
            let (ok, detail) = verdict(n, &s);
            HealthResult {
                name: title(n),
                ok,
                detail,
            }
        })
        .collect()
}

/// Whether a service that should run does, and what its state says. systemd shows a
/// service waiting to restart after its process failed as "activating (auto-restart)":
/// that is a crash loop, not a start.
fn verdict(name: &str, s: &UnitState) -> (bool, String) {
    if s.sub == "auto-restart" {
        return (
            false,
            format!(
                "ActiveState={} SubState=auto-restart: its process failed and systemd is restarting it (journalctl -u {})",
                s.active,
                unit(name)
            ),
        );
    }
    (
        s.is_active(),
        format!("ActiveState={} SubState={}", s.active, s.sub),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(active: &str, sub: &str) -> UnitState {
        UnitState {
            active: active.into(),
            sub: sub.into(),
            ..UnitState::default()
        }
    }

    #[test]
    fn a_service_restarting_after_a_failure_is_not_healthy() {
        let (ok, detail) = verdict("x", &state("activating", "auto-restart"));
        assert!(!ok);
        assert!(detail.contains("journalctl -u x.service"), "{detail}");
        assert!(verdict("x", &state("active", "running")).0);
        assert!(verdict("x", &state("activating", "start")).0);
        assert!(!verdict("x", &state("failed", "failed")).0);
        assert!(!verdict("x", &state("inactive", "dead")).0);
    }
}
