//! After apply: every VM the profile wants running is running.

use crate::domain::{ApplyContext, HealthResult};
use crate::host::Cmd;

use super::desired::Desired;
use super::observe::{VIRSH_TIMEOUT, virsh_batch};
use super::section::Hypervisor;

pub fn health(cx: &ApplyContext<'_>, d: &Desired) -> Vec<HealthResult> {
    let want: Vec<&String> = d
        .vms
        .iter()
        .filter(|(_, v)| v.running)
        .map(|(n, _)| n)
        .collect();
    if want.is_empty() {
        return Vec::new();
    }
    let name = |vm: &str| format!("forge.vm:{vm} is running");
    let states: Result<Vec<String>, String> = match d.hypervisor {
        Hypervisor::Kvm => {
            let commands: Vec<String> = want.iter().map(|v| format!("domstate {v}")).collect();
            virsh_batch(cx.host, &d.uri, &commands)
        }
        Hypervisor::Xen => {
            if !super::observe::xen_running() {
                return want
                    .iter()
                    .map(|v| HealthResult::skipped(name(v), "Xen is not running until the reboot"))
                    .collect();
            }
            cx.host
                .run(&Cmd::new(["xl", "list"]).timeout(VIRSH_TIMEOUT))
                .map_err(|e| e.to_string())
                .map(|o| {
                    let listed = o.stdout_str();
                    want.iter()
                        .map(|v| {
                            if listed
                                .lines()
                                .any(|l| l.split_whitespace().next() == Some(v.as_str()))
                            {
                                "running".to_string()
                            } else {
                                "not listed by xl".to_string()
                            }
                        })
                        .collect()
                })
        }
    };
    match states {
        Err(why) => want
            .iter()
            .map(|v| {
                if d.hypervisor == Hypervisor::Kvm && !cx.host.has_program("virsh") {
                    HealthResult::skipped(name(v), "libvirt is not installed")
                } else if d.hypervisor == Hypervisor::Kvm && !cx.host.systemd_booted() {
                    // Where PID 1 is not systemd sovereign does not start libvirtd, and
                    // the VM's steps were not applicable: nothing ran that could fail.
                    HealthResult::skipped(name(v), &format!("libvirt does not answer ({why})"))
                } else {
                    HealthResult {
                        name: name(v),
                        ok: false,
                        detail: why.clone(),
                    }
                }
            })
            .collect(),
        Ok(states) => want
            .iter()
            .zip(states)
            .map(|(v, state)| {
                let state = state.trim().to_string();
                HealthResult {
                    name: name(v),
                    ok: state == "running",
                    detail: state,
                }
            })
            .collect(),
    }
}
