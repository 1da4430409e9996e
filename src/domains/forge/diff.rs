//! From observed to desired: packages, the daemon, libvirt's NAT network, Xen's boot
//! entry, image files and VMs. Pure: every decision is here, apply only carries out the
//! typed [`ForgeOp`] a change holds.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::bail;

use crate::domain::requests::file_address;
use crate::domain::{DiffOptions, Owned};
use crate::plan::{Action, Address, Change, FieldChange};

use super::desired::{Desired, NAT_NETWORK, VmWant};
use super::domain::Entry;
use super::observe::Observed;
use super::section::Hypervisor;
use super::shape::Shape;

/// What apply does for one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForgeOp {
    /// `apt-get install` the hypervisor's packages.
    Install { packages: Vec<String> },
    /// `systemctl enable --now libvirtd`.
    StartDaemon,
    /// Start libvirt's NAT network and mark it autostart.
    StartNetwork { name: String },
    /// Make Xen's GRUB entry the default (takes effect at the next boot).
    XenBoot,
    /// Create a sparse image file, or grow one.
    Image { path: String, size: u64, vm: String },
    /// Remove an image file the profile dropped (`--allow-destroy`), or forget a gone one.
    RemoveImage { path: String, exists: bool },
    /// Define (or redefine), power and autostart one VM.
    Vm(VmOp),
    /// Power off and undefine a VM the profile dropped (`--allow-destroy`); its disks stay.
    Undefine {
        name: String,
        defined: bool,
        running: bool,
    },
}

/// The steps for one VM, in the order apply runs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmOp {
    pub name: String,
    pub hypervisor: Hypervisor,
    pub uuid: String,
    /// The rendered configuration (logical path) and its digest for the ledger.
    pub config_path: String,
    pub config_sha256: String,
    /// Shut the VM down first (gracefully, then forced): the change needs it off.
    pub stop_first: bool,
    /// (Re)define it from the configuration.
    pub define: bool,
    /// Set autostart to this.
    pub autostart: Option<bool>,
    /// Start it at the end.
    pub start: bool,
    /// Shut it down (the profile says stopped).
    pub stop: bool,
}

pub fn packages_address(d: &Desired) -> Address {
    Address::new(
        "forge",
        "packages",
        match d.hypervisor {
            Hypervisor::Kvm => "kvm",
            Hypervisor::Xen => "xen",
        },
    )
}
pub fn daemon_address() -> Address {
    Address::new("forge", "daemon", "libvirtd")
}
pub fn boot_address() -> Address {
    Address::new("forge", "boot", "xen")
}
pub fn network_address(name: &str) -> Address {
    Address::new("forge", "network", name)
}
pub fn image_address(path: &str) -> Address {
    Address::new("forge", "image", path)
}
pub fn vm_address(name: &str) -> Address {
    Address::new("forge", "vm", name)
}

pub fn vm_key(name: &str) -> String {
    format!("vm:{name}")
}
pub fn image_key(path: &str) -> String {
    format!("image:{path}")
}

fn sha256(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Human sizes for fields.
fn bytes(n: u64) -> String {
    crate::inference::units::human_bytes(n, crate::inference::units::ByteStyle::Precise)
}

pub fn diff(
    desired: Option<&Desired>,
    observed: &Observed,
    owned: &Owned<Entry>,
    options: &DiffOptions,
) -> anyhow::Result<Vec<Change>> {
    let mut changes = Vec::new();
    let mut before_vms: Vec<Address> = Vec::new();
    // Why the VMs cannot be handled by this apply, when they cannot.
    let mut vms_blocked: Option<String> = None;
    if let Some(d) = desired {
        let missing: Vec<String> = d
            .packages
            .iter()
            .filter(|p| !observed.installed.contains(*p))
            .cloned()
            .collect();
        if !missing.is_empty() {
            let mut c =
                Change::new(packages_address(d), Action::Create).with_op(ForgeOp::Install {
                    packages: missing.clone(),
                });
            c.fields = vec![FieldChange::new("packages", None, Some(missing.join(" ")))];
            c.reason =
                Some("apt-get update, then apt-get install (dpkg shows them missing)".into());
            before_vms.push(c.address.clone());
            changes.push(c);
        }
        match d.hypervisor {
            Hypervisor::Kvm => {
                kvm_host(d, observed, &mut changes, &mut before_vms, &mut vms_blocked)
            }
            Hypervisor::Xen => xen_host(d, observed, &mut changes, &before_vms, &mut vms_blocked),
        }
        images(d, observed, owned, &mut changes)?;
        hugepages(d, observed)?;
        for (name, want) in &d.vms {
            if let Some(c) = vm(
                d,
                name,
                want,
                observed,
                owned,
                &before_vms,
                vms_blocked.as_deref(),
            )? {
                changes.push(c);
            }
        }
    }
    removed(desired, observed, owned, options, &mut changes);
    Ok(changes)
}

fn kvm_host(
    d: &Desired,
    o: &Observed,
    changes: &mut Vec<Change>,
    before_vms: &mut Vec<Address>,
    blocked: &mut Option<String>,
) {
    let libvirt = match &o.libvirt {
        Ok(l) => Some(l),
        Err(why) => {
            let mut c = Change::new(daemon_address(), Action::Create).with_op(ForgeOp::StartDaemon);
            c.fields = vec![FieldChange::new("state", None, Some("running".into()))];
            c.reason = Some(format!("{why}; systemctl enable --now libvirtd"));
            c.depends_on = before_vms.clone();
            if !o.systemd {
                let na = format!(
                    "PID 1 is not systemd, so sovereign does not start libvirtd here ({why}): start it yourself (`virtlogd -d; libvirtd -d`) and plan again"
                );
                c.not_applicable = Some(na.clone());
                *blocked = Some(na);
            }
            before_vms.push(c.address.clone());
            changes.push(c);
            None
        }
    };
    if d.uses_nat {
        let active = libvirt.and_then(|l| l.networks.get(NAT_NETWORK).copied());
        if active != Some(true) {
            let mut c = Change::new(
                network_address(NAT_NETWORK),
                if active.is_some() {
                    Action::Update
                } else {
                    Action::Create
                },
            )
            .with_op(ForgeOp::StartNetwork {
                name: NAT_NETWORK.into(),
            });
            c.fields = vec![FieldChange::new(
                "state",
                active.map(|_| "inactive".into()),
                Some("active, autostart".into()),
            )];
            c.reason = Some("VMs with networks = [\"nat\"] join libvirt's default network".into());
            c.depends_on = before_vms.clone();
            if libvirt.is_some() && active.is_none() {
                c.not_applicable = Some(
                    "libvirt has no network named \"default\": install libvirt-daemon-config-network, or define it".into(),
                );
            }
            before_vms.push(c.address.clone());
            changes.push(c);
        }
    }
}

fn xen_host(
    _d: &Desired,
    o: &Observed,
    changes: &mut Vec<Change>,
    before_vms: &[Address],
    blocked: &mut Option<String>,
) {
    if o.xen.running {
        return;
    }
    if !o.xen.boot_default {
        let mut c = Change::new(boot_address(), Action::Update).with_op(ForgeOp::XenBoot);
        c.fields = vec![FieldChange::new(
            "default boot entry",
            Some("Linux".into()),
            Some("Xen hypervisor".into()),
        )];
        c.flags.reboot = true;
        if o.xen.staged {
            c.not_applicable =
                Some("under --root the running machine's boot entry is not changed".into());
        }
        c.reason = Some(
            "GRUB's Xen entries go first (dpkg-divert 20_linux_xen to 08_linux_xen), then update-grub; Xen runs after the next reboot".into(),
        );
        c.depends_on = before_vms.to_vec();
        changes.push(c);
    }
    *blocked = Some(
        "Xen is not running yet: the VMs are created after a reboot into Xen's boot entry".into(),
    );
}

/// VMs backed by huge pages that this apply starts must find them free: otherwise qemu
/// fails at start, after everything else was changed.
fn hugepages(d: &Desired, o: &Observed) -> anyhow::Result<()> {
    let running_now = |name: &str| {
        o.libvirt
            .as_ref()
            .ok()
            .and_then(|l| l.domains.get(name))
            .is_some_and(|s| s.running)
    };
    let starting: Vec<(&String, &VmWant)> = d
        .vms
        .iter()
        .filter(|(name, v)| v.shape.hugepages && v.running && !running_now(name))
        .collect();
    let need: u64 = starting
        .iter()
        .map(|(_, v)| v.shape.memory_kib * 1024)
        .sum();
    if need == 0 {
        return Ok(());
    }
    let free = o.hugepages_free.unwrap_or(0);
    if need > free {
        bail!(
            "{}: hugepages = true needs {} of free huge pages and the host has {} (HugePages_Free in /proc/meminfo); reserve more (sysctl vm.nr_hugepages) or set hugepages = false",
            starting
                .iter()
                .map(|(_, v)| v.at.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            bytes(need),
            bytes(free)
        );
    }
    Ok(())
}

fn images(
    d: &Desired,
    o: &Observed,
    owned: &Owned<Entry>,
    changes: &mut Vec<Change>,
) -> anyhow::Result<()> {
    // The images of one pool together must fit in it (they are sparse, but a full pool
    // stops every writer on it).
    let mut per_pool: BTreeMap<&str, (u64, Vec<&str>)> = BTreeMap::new();
    for (path, want) in &d.images {
        let pool = want.dataset.split('/').next().unwrap_or(&want.dataset);
        let e = per_pool.entry(pool).or_default();
        e.0 += want.size;
        e.1.push(&want.at);
        let _ = path;
    }
    for (pool, (total, at)) in &per_pool {
        if let Some(size) = o.pools.get(*pool)
            && total > size
        {
            bail!(
                "{}: the image files on pool {pool:?} add up to {}, more than the pool's {}; make them smaller or the pool larger",
                at.join(", "),
                bytes(*total),
                bytes(*size)
            );
        }
    }
    for (path, want) in &d.images {
        let have = o.images.get(path).copied().flatten();
        let ours = owned.contains_key(&image_key(path));
        let action = match have {
            None => Action::Create,
            // A file already there that sovereign did not make: taken over with its data
            // (grown when smaller, never shrunk), so that removing it later needs
            // --allow-destroy like any image of ours.
            Some(_) if !ours => Action::Adopt,
            Some(h) if h < want.size => Action::Update,
            Some(h) if h > want.size => {
                let mut c = Change::new(image_address(path), Action::Keep);
                c.fields = vec![FieldChange::new(
                    "size",
                    Some(bytes(h)),
                    Some(bytes(want.size)),
                )];
                c.reason = Some("an image never shrinks: that would cut off the end of its disk; the image keeps its size".into());
                changes.push(c);
                continue;
            }
            Some(_) => continue,
        };
        let mut c = Change::new(image_address(path), action).with_op(ForgeOp::Image {
            path: path.clone(),
            size: want.size,
            vm: want.vm.clone(),
        });
        c.fields = vec![
            FieldChange::new("size", have.map(bytes), Some(bytes(want.size))),
            FieldChange::new("dataset", None, Some(want.dataset.clone())),
        ];
        c.reason = Some(match action {
            Action::Create => "a sparse raw image: it takes space only as the VM writes".into(),
            Action::Adopt => "an existing file at this path is taken over with its data (grown when smaller, never shrunk)".into(),
            _ => "grown in place; the guest sees the new size after it rescans its disk".into(),
        });
        c.depends_on = vec![super::desired::dataset_address(&want.dataset)];
        changes.push(c);
    }
    Ok(())
}

fn vm(
    d: &Desired,
    name: &str,
    want: &VmWant,
    o: &Observed,
    owned: &Owned<Entry>,
    before: &[Address],
    blocked: Option<&str>,
) -> anyhow::Result<Option<Change>> {
    let config_sha256 = sha256(&want.config);
    let mut op = VmOp {
        name: name.into(),
        hypervisor: d.hypervisor,
        uuid: want.shape.uuid.clone(),
        config_path: want.config_path.clone(),
        config_sha256: config_sha256.clone(),
        stop_first: false,
        define: false,
        autostart: None,
        start: false,
        stop: false,
    };
    let mut fields = Vec::new();
    let mut reason = Vec::new();
    let action;
    match d.hypervisor {
        Hypervisor::Kvm => {
            let seen = o.libvirt.as_ref().ok().and_then(|l| l.domains.get(name));
            match seen {
                None => {
                    action = Action::Create;
                    fields = shape_fields(None, &want.shape);
                    op.define = true;
                    op.autostart = want.autostart.then_some(true);
                    op.start = want.running;
                    reason.push(match &d.accel {
                        Some(a) => format!("defined with libvirt ({})", a.why),
                        None => "defined with libvirt".into(),
                    });
                }
                Some(seen) => {
                    let is_ours = owned.contains_key(&vm_key(name));
                    let shape = seen.shape.as_ref().ok();
                    if !is_ours && shape.is_none_or(|s| s.uuid != want.shape.uuid) {
                        bail!(
                            "{}: libvirt already has a VM named {name:?} that sovereign did not define (its UUID is {}, not {}); rename the VM in the profile, or undefine the other one (`virsh undefine {name}`)",
                            want.at,
                            shape.map_or("unreadable", |s| s.uuid.as_str()),
                            want.shape.uuid
                        );
                    }
                    let diffs = match &seen.shape {
                        Ok(s) => s.differences(&want.shape),
                        Err(why) => vec![(
                            "definition",
                            format!("unreadable: {why}"),
                            "the profile's".into(),
                        )],
                    };
                    for (field, before, after) in &diffs {
                        fields.push(FieldChange::new(
                            field,
                            Some(before.clone()),
                            Some(after.clone()),
                        ));
                    }
                    op.define = !diffs.is_empty();
                    if op.define && seen.running {
                        op.stop_first = true;
                        op.start = want.running;
                        reason.push(format!(
                            "needs the VM off: graceful shutdown (forced after {} s), redefine, start",
                            d.shutdown_timeout_secs
                        ));
                    } else if op.define {
                        reason.push("redefined while off".into());
                    }
                    if seen.autostart != want.autostart {
                        op.autostart = Some(want.autostart);
                        fields.push(FieldChange::new(
                            "autostart",
                            Some(seen.autostart.to_string()),
                            Some(want.autostart.to_string()),
                        ));
                    }
                    op.start = want.running && (!seen.running || op.stop_first);
                    op.stop = !want.running && seen.running && !op.stop_first;
                    if want.running != seen.running {
                        fields.push(FieldChange::new(
                            "state",
                            Some(if seen.running { "running" } else { "stopped" }.into()),
                            Some(if want.running { "running" } else { "stopped" }.into()),
                        ));
                    }
                    if fields.is_empty() && is_ours {
                        return Ok(None);
                    }
                    action = if is_ours {
                        Action::Update
                    } else {
                        Action::Adopt
                    };
                    if !is_ours {
                        op.define = true;
                        reason
                            .push("defined before by this profile (same UUID): taken over".into());
                    }
                }
            }
        }
        Hypervisor::Xen => {
            let running = o.xen.domains.contains(name);
            let recorded = match owned.get(&vm_key(name)) {
                Some(Entry::Vm { config_sha256, .. }) => Some(config_sha256.clone()),
                _ => None,
            };
            let changed = running && recorded.as_deref() != Some(config_sha256.as_str());
            if running == want.running && !changed {
                return Ok(None);
            }
            action = if running || recorded.is_some() {
                Action::Update
            } else {
                Action::Create
            };
            if !running {
                fields = shape_fields(None, &want.shape);
            }
            if changed {
                fields.push(FieldChange::new(
                    "configuration",
                    recorded.map(|s| s[..12].to_string()),
                    Some(config_sha256[..12].to_string()),
                ));
                op.stop_first = true;
                op.start = want.running;
                reason.push(format!(
                    "its configuration changed: xl shutdown (forced after {} s), xl create",
                    d.shutdown_timeout_secs
                ));
            } else if want.running {
                op.start = true;
                reason.push("xl create".into());
            } else {
                op.stop = true;
                reason.push("xl shutdown".into());
            }
            if running != want.running && action != Action::Create {
                fields.push(FieldChange::new(
                    "state",
                    Some(if running { "running" } else { "stopped" }.into()),
                    Some(if want.running { "running" } else { "stopped" }.into()),
                ));
            }
        }
    }
    let mut c = Change::new(vm_address(name), action);
    c.fields = fields;
    c.reason = Some(reason.join("; "));
    let mut deps: Vec<Address> = before.to_vec();
    deps.push(file_address(&want.config_path));
    deps.extend(
        want.shape
            .disks
            .iter()
            .filter(|p| d.images.contains_key(*p))
            .map(|p| image_address(p)),
    );
    deps.extend(want.needs.iter().cloned());
    c.depends_on = deps;
    if let Some(why) = blocked {
        c.not_applicable = Some(why.to_string());
    }
    Ok(Some(c.with_op(ForgeOp::Vm(op))))
}

/// The fields of a VM that is created: every owned one.
fn shape_fields(before: Option<&Shape>, want: &Shape) -> Vec<FieldChange> {
    let empty = Shape::default();
    before
        .unwrap_or(&empty)
        .differences(want)
        .into_iter()
        .filter(|(_, _, after)| after != "-" && after != "false")
        .map(|(name, _, after)| FieldChange::new(name, None, Some(after)))
        .collect()
}

/// VMs and images the ledger records that the profile dropped.
fn removed(
    desired: Option<&Desired>,
    o: &Observed,
    owned: &Owned<Entry>,
    options: &DiffOptions,
    changes: &mut Vec<Change>,
) {
    let wanted_vms: BTreeSet<&String> = desired.map(|d| d.vms.keys().collect()).unwrap_or_default();
    let wanted_images: BTreeSet<&String> = desired
        .map(|d| d.images.keys().collect())
        .unwrap_or_default();
    for (key, entry) in owned {
        match entry {
            Entry::Vm { .. } => {
                let name = &key["vm:".len()..];
                if wanted_vms.contains(&name.to_string()) {
                    continue;
                }
                let xen = desired.is_some_and(|d| d.hypervisor == Hypervisor::Xen);
                let (defined, running) = match &o.libvirt {
                    Ok(l) if !xen => (
                        l.names.contains(name),
                        l.domains.get(name).is_some_and(|d| d.running),
                    ),
                    _ if xen && o.xen.running => {
                        (o.xen.domains.contains(name), o.xen.domains.contains(name))
                    }
                    // Nobody answers for the VMs: whether it is still there is unknown, so
                    // its record is kept and nothing is done.
                    other => {
                        let why = match other {
                            Err(why) => why.clone(),
                            Ok(_) => "Xen is not running".into(),
                        };
                        let mut c = Change::new(vm_address(name), Action::Keep);
                        c.reason = Some(format!(
                            "removed from the profile, but {why}: it is left as it is until it can be seen"
                        ));
                        changes.push(c);
                        continue;
                    }
                };
                let destroy = options.allow_destroy || !defined;
                let mut c = Change::new(
                    vm_address(name),
                    if destroy {
                        Action::Delete
                    } else {
                        Action::Keep
                    },
                );
                c.reason = Some(if !defined {
                    "no longer defined: forgotten".into()
                } else if destroy {
                    "removed from the profile: powered off and undefined; its disks are kept".into()
                } else {
                    "removed from the profile: kept defined (undefining it needs --allow-destroy); its disks are never removed with it".into()
                });
                if destroy {
                    changes.push(c.with_op(ForgeOp::Undefine {
                        name: name.to_string(),
                        defined,
                        running,
                    }));
                } else {
                    changes.push(c);
                }
            }
            Entry::Image { .. } => {
                let path = &key["image:".len()..];
                if wanted_images.contains(&path.to_string()) {
                    continue;
                }
                let exists = o.images.get(path).copied().flatten().is_some();
                let destroy = options.allow_destroy || !exists;
                let mut c = Change::new(
                    image_address(path),
                    if destroy {
                        Action::Delete
                    } else {
                        Action::Keep
                    },
                );
                c.flags.destructive = exists && destroy;
                c.reason = Some(if !exists {
                    "gone: forgotten".into()
                } else if destroy {
                    "removed from the profile: the image file (the VM's disk data) is deleted"
                        .into()
                } else {
                    "removed from the profile: the image keeps the disk's data; deleting it needs --allow-destroy".into()
                });
                // An image goes only after the VM that used it is gone.
                c.depends_on = owned
                    .keys()
                    .filter(|k| k.starts_with("vm:"))
                    .map(|k| vm_address(&k["vm:".len()..]))
                    .collect();
                if destroy {
                    changes.push(c.with_op(ForgeOp::RemoveImage {
                        path: path.to_string(),
                        exists,
                    }));
                } else {
                    changes.push(c);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::domains::forge::desired::ImageWant;
    use crate::domains::forge::observe::{Libvirt, Xen};

    fn desired(images: &[(&str, u64)]) -> Desired {
        Desired {
            hypervisor: Hypervisor::Kvm,
            packages: Vec::new(),
            uri: "test:///default".into(),
            shutdown_timeout_secs: 5,
            accel: None,
            vms: BTreeMap::new(),
            images: images
                .iter()
                .map(|(p, size)| {
                    (
                        p.to_string(),
                        ImageWant {
                            size: *size,
                            dataset: "tank/images".into(),
                            vm: "a".into(),
                            at: "p.toml:1:1: forge.vms.a.disks[0]".into(),
                        },
                    )
                })
                .collect(),
            uses_nat: false,
        }
    }

    fn observed(images: &[(&str, Option<u64>)], pool: Option<u64>) -> Observed {
        Observed {
            installed: BTreeSet::new(),
            libvirt: Ok(Libvirt::default()),
            xen: Xen::default(),
            images: images.iter().map(|(p, s)| (p.to_string(), *s)).collect(),
            pools: pool.map(|s| ("tank".to_string(), s)).into_iter().collect(),
            systemd: false,
            hugepages_free: None,
        }
    }

    fn actions(changes: &[Change]) -> Vec<(String, Action)> {
        changes
            .iter()
            .map(|c| (c.address.to_string(), c.action))
            .collect()
    }

    #[test]
    fn images_are_made_grown_taken_over_never_shrunk_and_removed_only_when_allowed() {
        let g = 1 << 30;
        let mut owned: Owned<Entry> = BTreeMap::new();
        owned.insert(
            image_key("/t/grow.raw"),
            Entry::Image {
                size: g,
                vm: "a".into(),
            },
        );
        owned.insert(
            image_key("/t/shrink.raw"),
            Entry::Image {
                size: 4 * g,
                vm: "a".into(),
            },
        );
        owned.insert(
            image_key("/t/gone.raw"),
            Entry::Image {
                size: g,
                vm: "b".into(),
            },
        );
        let d = desired(&[
            ("/t/new.raw", g),
            ("/t/grow.raw", 2 * g),
            ("/t/shrink.raw", g),
            ("/t/theirs.raw", g),
        ]);
        let o = observed(
            &[
                ("/t/new.raw", None),
                ("/t/grow.raw", Some(g)),
                ("/t/shrink.raw", Some(4 * g)),
                ("/t/theirs.raw", Some(g / 2)),
                ("/t/gone.raw", Some(g)),
            ],
            Some(100 * g),
        );
        let changes = diff(Some(&d), &o, &owned, &DiffOptions::default()).unwrap();
        let got = actions(&changes);
        assert!(
            got.contains(&("forge.image:/t/new.raw".into(), Action::Create)),
            "{got:?}"
        );
        assert!(
            got.contains(&("forge.image:/t/grow.raw".into(), Action::Update)),
            "{got:?}"
        );
        assert!(
            got.contains(&("forge.image:/t/shrink.raw".into(), Action::Keep)),
            "{got:?}"
        );
        assert!(
            got.contains(&("forge.image:/t/theirs.raw".into(), Action::Adopt)),
            "{got:?}"
        );
        assert!(
            got.contains(&("forge.image:/t/gone.raw".into(), Action::Keep)),
            "{got:?}"
        );

        let allowed = DiffOptions {
            allow_destroy: true,
        };
        let changes = diff(Some(&d), &o, &owned, &allowed).unwrap();
        let gone = changes
            .iter()
            .find(|c| c.address.to_string() == "forge.image:/t/gone.raw")
            .unwrap();
        assert_eq!(gone.action, Action::Delete);
        assert!(gone.flags.destructive);
        // Still never shrunk, even when destroying is allowed.
        assert!(actions(&changes).contains(&("forge.image:/t/shrink.raw".into(), Action::Keep)));
    }

    #[test]
    fn images_that_do_not_fit_their_pool_are_a_plan_error() {
        let g = 1 << 30;
        let d = desired(&[("/t/a.raw", 3 * g), ("/t/b.raw", 2 * g)]);
        let o = observed(&[("/t/a.raw", None), ("/t/b.raw", None)], Some(4 * g));
        let err = diff(Some(&d), &o, &BTreeMap::new(), &DiffOptions::default()).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("forge.vms.a.disks[0]"), "{text}");
        assert!(text.contains("more than the pool's"), "{text}");
    }

    fn vm_want(vcpus: u32, running: bool, autostart: bool) -> VmWant {
        VmWant {
            shape: Shape {
                domain_type: "qemu".into(),
                uuid: crate::domains::forge::identity::uuid("a"),
                vcpus,
                memory_kib: 65536,
                ..Shape::default()
            },
            config_path: "/etc/sovereign/forge/a.xml".into(),
            config: "<domain/>".into(),
            autostart,
            running,
            needs: Vec::new(),
            at: "p.toml:3:1: forge.vms.a".into(),
        }
    }

    fn defined(want: &VmWant, vcpus: u32, running: bool, uuid: Option<&str>) -> Observed {
        let mut shape = want.shape.clone();
        shape.vcpus = vcpus;
        if let Some(u) = uuid {
            shape.uuid = u.into();
        }
        let mut l = Libvirt::default();
        l.names.insert("a".into());
        l.domains.insert(
            "a".into(),
            crate::domains::forge::observe::Defined {
                shape: Ok(shape),
                running,
                autostart: false,
            },
        );
        let mut o = observed(&[], None);
        o.libvirt = Ok(l);
        o
    }

    fn vm_op(changes: &[Change]) -> (Action, VmOp) {
        let c = changes
            .iter()
            .find(|c| c.address.to_string() == "forge.vm:a")
            .expect("a change of the VM");
        (
            c.action,
            c.op::<ForgeOp>()
                .map(|op| match op {
                    ForgeOp::Vm(v) => v.clone(),
                    other => panic!("{other:?}"),
                })
                .unwrap(),
        )
    }

    #[test]
    fn a_vm_is_redefined_off_started_stopped_and_never_taken_from_someone_else() {
        let mut d = desired(&[]);
        let mut owned: Owned<Entry> = BTreeMap::new();
        owned.insert(
            vm_key("a"),
            Entry::Vm {
                uuid: String::new(),
                config_sha256: String::new(),
            },
        );
        let none = DiffOptions::default();

        // Fewer vCPUs on a running VM: off first, redefined, started again.
        d.vms.insert("a".into(), vm_want(1, true, false));
        let o = defined(&d.vms["a"], 2, true, None);
        let (action, op) = vm_op(&diff(Some(&d), &o, &owned, &none).unwrap());
        assert_eq!(action, Action::Update);
        assert!(op.stop_first && op.define && op.start && !op.stop, "{op:?}");

        // Matching and running: nothing to do.
        let o = defined(&d.vms["a"], 1, true, None);
        assert!(diff(Some(&d), &o, &owned, &none).unwrap().is_empty());

        // Off but wanted running: only started.
        let o = defined(&d.vms["a"], 1, false, None);
        let (_, op) = vm_op(&diff(Some(&d), &o, &owned, &none).unwrap());
        assert!(op.start && !op.define && !op.stop_first, "{op:?}");

        // Wanted stopped and autostarted: stopped, autostart set, not redefined.
        d.vms.insert("a".into(), vm_want(1, false, true));
        let o = defined(&d.vms["a"], 1, true, None);
        let (_, op) = vm_op(&diff(Some(&d), &o, &owned, &none).unwrap());
        assert!(op.stop && !op.start && !op.define, "{op:?}");
        assert_eq!(op.autostart, Some(true));

        // A domain of that name sovereign did not define: a plan error naming the VM.
        let o = defined(
            &d.vms["a"],
            1,
            true,
            Some("00000000-0000-4000-8000-000000000000"),
        );
        let err = diff(Some(&d), &o, &BTreeMap::new(), &none).unwrap_err();
        assert!(format!("{err:#}").contains("p.toml:3:1"), "{err:#}");
        // One with our UUID (a lost state folder): taken over.
        let o = defined(&d.vms["a"], 1, false, None);
        let (action, op) = vm_op(&diff(Some(&d), &o, &BTreeMap::new(), &none).unwrap());
        assert_eq!(action, Action::Adopt);
        assert!(op.define);
    }

    #[test]
    fn a_dropped_vm_is_left_alone_while_libvirt_does_not_answer() {
        let mut owned: Owned<Entry> = BTreeMap::new();
        owned.insert(
            vm_key("gone"),
            Entry::Vm {
                uuid: String::new(),
                config_sha256: String::new(),
            },
        );
        let mut o = observed(&[], None);
        o.libvirt = Err("libvirt at qemu:///system does not answer: refused".into());
        let allowed = DiffOptions {
            allow_destroy: true,
        };
        let changes = diff(Some(&desired(&[])), &o, &owned, &allowed).unwrap();
        let vm = changes
            .iter()
            .find(|c| c.address == vm_address("gone"))
            .unwrap();
        assert_eq!(
            vm.action,
            Action::Keep,
            "never forgotten unseen: {changes:?}"
        );
        // Seen and gone: forgotten.
        o.libvirt = Ok(Libvirt::default());
        let changes = diff(Some(&desired(&[])), &o, &owned, &allowed).unwrap();
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].action, Action::Delete);
        assert!(matches!(
            changes[0].op::<ForgeOp>().unwrap(),
            ForgeOp::Undefine { defined: false, .. }
        ));
    }
}
