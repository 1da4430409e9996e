//! Carry out one Forge change through the host: apt, systemctl, virsh, xl, and the image
//! files. A VM is recorded in the ledger before it is defined, so a crash never leaves a
//! domain sovereign made but does not know.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::domain::{ApplyContext, LedgerTx};
use crate::host::{Cmd, Host};
use crate::plan::Change;

use super::desired::Desired;
use super::diff::{ForgeOp, VmOp, image_key, vm_key};
use super::domain::Entry;
use super::observe::{VIRSH_TIMEOUT, XEN_GRUB_SCRIPT, XEN_GRUB_SCRIPT_FIRST};
use super::section::{DEFAULT_URI, Hypervisor};

/// How often a shutting-down VM is asked whether it is off.
const POLL: Duration = Duration::from_millis(500);

pub fn apply(
    cx: &ApplyContext<'_>,
    desired: Option<&Desired>,
    change: &Change,
    ledger: &mut LedgerTx<'_, Entry>,
) -> anyhow::Result<()> {
    let uri = desired.map_or(DEFAULT_URI, |d| d.uri.as_str());
    let timeout = Duration::from_secs(
        desired.map_or(super::section::DEFAULT_SHUTDOWN_TIMEOUT_SECS, |d| {
            d.shutdown_timeout_secs
        }),
    );
    match change.op::<ForgeOp>()? {
        ForgeOp::Install { packages } => {
            let names: Vec<&str> = packages.iter().map(String::as_str).collect();
            crate::host::apt::install(cx.host, &names)
        }
        ForgeOp::StartDaemon => run(
            cx.host,
            &["systemctl", "enable", "--now", "libvirtd.service"],
        ),
        ForgeOp::StartNetwork { name } => {
            virsh(cx.host, uri, &["net-start", name])?;
            virsh(cx.host, uri, &["net-autostart", name])
        }
        ForgeOp::XenBoot => {
            // Debian's way to boot Xen by default: its GRUB script sorts before Linux's.
            run(
                cx.host,
                &[
                    "dpkg-divert",
                    "--local",
                    "--divert",
                    XEN_GRUB_SCRIPT_FIRST,
                    "--rename",
                    "--add",
                    XEN_GRUB_SCRIPT,
                ],
            )?;
            run(cx.host, &["update-grub"])?;
            cx.notes.add(
                "reboot required: Xen is now the default boot entry; the VMs are created by the first apply after the reboot",
            );
            Ok(())
        }
        ForgeOp::Image { path, size, vm } => {
            ledger.record(
                &image_key(path),
                Entry::Image {
                    size: *size,
                    vm: vm.clone(),
                },
            )?;
            crate::host::fs::sparse_file(Path::new(path), *size)
                .with_context(|| format!("cannot make the image file {path}"))
        }
        ForgeOp::RemoveImage { path, exists } => {
            if *exists {
                crate::host::fs::remove_file(Path::new(path))
                    .with_context(|| format!("cannot remove the image file {path}"))?;
            }
            ledger.forget(&image_key(path))
        }
        ForgeOp::Vm(op) => {
            ledger.record(
                &vm_key(&op.name),
                Entry::Vm {
                    uuid: op.uuid.clone(),
                    config_sha256: op.config_sha256.clone(),
                },
            )?;
            match op.hypervisor {
                Hypervisor::Kvm => kvm_vm(cx, uri, timeout, op),
                Hypervisor::Xen => xen_vm(cx, timeout, op),
            }
        }
        ForgeOp::Undefine {
            name,
            defined,
            running,
        } => {
            if *defined {
                match desired.map(|d| d.hypervisor) {
                    Some(Hypervisor::Xen) => {
                        if *running {
                            xen_shutdown(cx.host, name, timeout)?;
                        }
                    }
                    _ => {
                        if *running {
                            kvm_shutdown(cx.host, uri, name, timeout)?;
                        }
                        // Never --remove-all-storage: the disks are the profile's to drop.
                        virsh(cx.host, uri, &["undefine", name])?;
                    }
                }
            }
            ledger.forget(&vm_key(name))
        }
    }
}

fn kvm_vm(cx: &ApplyContext<'_>, uri: &str, timeout: Duration, op: &VmOp) -> anyhow::Result<()> {
    if op.stop_first || op.stop {
        kvm_shutdown(cx.host, uri, &op.name, timeout)?;
    }
    if op.define {
        let path = cx.root.resolve(&op.config_path)?;
        virsh(cx.host, uri, &["define", &path.to_string_lossy()])?;
    }
    if let Some(on) = op.autostart {
        if on {
            virsh(cx.host, uri, &["autostart", &op.name])?;
        } else {
            virsh(cx.host, uri, &["autostart", "--disable", &op.name])?;
        }
    }
    if op.start {
        virsh(cx.host, uri, &["start", &op.name])?;
    }
    Ok(())
}

/// ACPI shutdown, then a forced one once `timeout` passed: a guest that ignores the
/// power button must not stall the apply.
fn kvm_shutdown(host: &dyn Host, uri: &str, name: &str, timeout: Duration) -> anyhow::Result<()> {
    let state = |host: &dyn Host| -> anyhow::Result<String> {
        let out =
            host.run(&Cmd::new(["virsh", "-c", uri, "domstate", name]).timeout(VIRSH_TIMEOUT))?;
        Ok(out.stdout_str().trim().to_string())
    };
    if state(host)? == "shut off" {
        return Ok(());
    }
    // A guest that is still booting may not listen yet: asking fails, the wait still runs.
    let _ = virsh(host, uri, &["shutdown", name]);
    let start = Instant::now();
    while start.elapsed() < timeout {
        if state(host)? == "shut off" {
            return Ok(());
        }
        std::thread::sleep(POLL);
    }
    virsh(host, uri, &["destroy", name])
}

fn xen_vm(cx: &ApplyContext<'_>, timeout: Duration, op: &VmOp) -> anyhow::Result<()> {
    if op.stop_first || op.stop {
        xen_shutdown(cx.host, &op.name, timeout)?;
    }
    if op.start {
        let path = cx.root.resolve(&op.config_path)?;
        run(cx.host, &["xl", "create", &path.to_string_lossy()])?;
    }
    Ok(())
}

fn xen_shutdown(host: &dyn Host, name: &str, timeout: Duration) -> anyhow::Result<()> {
    let out = host
        .run(&Cmd::new(["xl", "shutdown", "-w", name]).timeout(timeout + Duration::from_secs(5)))?;
    if out.success() {
        return Ok(());
    }
    run(host, &["xl", "destroy", name])
}

fn virsh(host: &dyn Host, uri: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut argv = vec!["virsh", "-c", uri];
    argv.extend(args);
    run(host, &argv)
}

fn run(host: &dyn Host, argv: &[&str]) -> anyhow::Result<()> {
    let cmd = Cmd::new(argv.iter().copied()).timeout(VIRSH_TIMEOUT.max(Duration::from_secs(300)));
    let out = host
        .run(&cmd)
        .with_context(|| format!("cannot run `{}`", cmd.display()))?;
    if out.timed_out {
        bail!("`{}` did not finish in time", cmd.display());
    }
    if !out.success() {
        let said = format!("{}{}", out.stderr_str(), out.stdout_str());
        bail!("`{}` failed: {}", cmd.display(), said.trim());
    }
    Ok(())
}
