//! The Forge domain behind the one interface.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::domain::{
    ApplyContext, DiffOptions, Domain, FileRequest, HealthResult, LedgerTx, Owned, PlanContext,
    Requests,
};
use crate::plan::{Address, Change};

use super::desired::{self, Desired};
use super::diff::{self, image_address, vm_address};
use super::observe::{self, Observed};
use super::section::Hypervisor;
use super::{apply, health};

/// The Forge domain.
#[derive(Debug, Default, Clone, Copy)]
pub struct Forge;

/// One ledger entry: a VM sovereign defined (`vm:NAME`) or an image file it made
/// (`image:PATH`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    Vm {
        uuid: String,
        /// The digest of the configuration it was last defined or created from (Xen keeps
        /// no definition to compare with).
        config_sha256: String,
    },
    Image {
        size: u64,
        /// The VM it was made for.
        vm: String,
    },
}

impl Domain for Forge {
    type Desired = Option<Desired>;
    type Observed = Observed;
    type Entry = Entry;

    const NAME: &'static str = "forge";
    const SECTIONS: &'static [&'static str] = &["forge"];

    fn requests(&self, cx: &PlanContext<'_>) -> anyhow::Result<Requests> {
        let mut out = Requests::default();
        let Some(d) = desired::desired(cx)? else {
            return Ok(out);
        };
        for (name, vm) in &d.vms {
            out.files.push(FileRequest {
                path: vm.config_path.clone(),
                content: vm.config.clone().into_bytes(),
                mode: 0o644,
                sensitive: false,
                by: format!("forge.vms.{name}"),
                remove_after: vec![vm_address(name)],
            });
        }
        Ok(out)
    }

    fn desired(&self, cx: &PlanContext<'_>) -> anyhow::Result<Option<Desired>> {
        desired::desired(cx)
    }

    fn observe(
        &self,
        cx: &PlanContext<'_>,
        desired: &Option<Desired>,
        owned: &Owned<Entry>,
    ) -> anyhow::Result<Observed> {
        let vms: BTreeSet<String> = owned
            .keys()
            .filter_map(|k| k.strip_prefix("vm:"))
            .map(str::to_string)
            .collect();
        let images: BTreeSet<String> = owned
            .keys()
            .filter_map(|k| k.strip_prefix("image:"))
            .map(str::to_string)
            .collect();
        Ok(observe::observe(
            cx.root,
            cx.host,
            desired.as_ref(),
            &vms,
            &images,
        ))
    }

    fn digests(&self, o: &Observed) -> BTreeMap<Address, String> {
        let mut out = BTreeMap::new();
        if let Ok(l) = &o.libvirt {
            for (name, d) in &l.domains {
                out.insert(vm_address(name), format!("{d:?}"));
            }
        }
        for name in &o.xen.domains {
            out.insert(vm_address(name), "xen running".into());
        }
        for (path, size) in &o.images {
            out.insert(image_address(path), format!("{size:?}"));
        }
        out.insert(
            Address::new("forge", "host", "state"),
            format!(
                "{:?} {:?} {} {}",
                o.installed,
                o.libvirt.as_ref().map(|l| &l.networks),
                o.xen.running,
                o.xen.boot_default
            ),
        );
        out
    }

    fn unmanaged(&self, desired: &Option<Desired>, o: &Observed) -> Vec<String> {
        let Some(d) = desired else {
            return Vec::new();
        };
        let mut notes = Vec::new();
        if let Some(a) = &d.accel
            && !d.vms.is_empty()
        {
            let how = if a.domain_type == "kvm" {
                "KVM".to_string()
            } else {
                "software emulation (libvirt domain type qemu, much slower than KVM)".to_string()
            };
            notes.push(format!("forge: VMs run under {how}: {}", a.why));
        }
        if d.hypervisor == Hypervisor::Xen && !o.xen.running && o.xen.boot_default {
            notes.push(
                "forge: Xen is the default boot entry but this boot is not under Xen: reboot to run it; the VMs wait for it".into(),
            );
        }
        if let Ok(l) = &o.libvirt {
            let others: Vec<&str> = l
                .names
                .iter()
                .filter(|n| !d.vms.contains_key(*n) && !l.domains.contains_key(*n))
                .map(String::as_str)
                .collect();
            if !others.is_empty() {
                notes.push(format!(
                    "forge: {} VMs sovereign did not define are left alone: {}",
                    others.len(),
                    others.join(", ")
                ));
            }
        }
        notes
    }

    fn diff(
        &self,
        desired: &Option<Desired>,
        observed: &Observed,
        owned: &Owned<Entry>,
        options: &DiffOptions,
    ) -> anyhow::Result<Vec<Change>> {
        diff::diff(desired.as_ref(), observed, owned, options)
    }

    fn apply(
        &self,
        cx: &ApplyContext<'_>,
        desired: &Option<Desired>,
        change: &Change,
        ledger: &mut LedgerTx<'_, Entry>,
    ) -> anyhow::Result<()> {
        apply::apply(cx, desired.as_ref(), change, ledger)
    }

    fn health(&self, cx: &ApplyContext<'_>, desired: &Option<Desired>) -> Vec<HealthResult> {
        match desired {
            Some(d) => health::health(cx, d),
            None => Vec::new(),
        }
    }
}
