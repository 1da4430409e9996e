//! The desired hypervisor and VMs, from the profile and the facts alone: which packages,
//! how VMs run (KVM or emulation, and why), each VM's shape and its rendered
//! configuration, and the image files its disks need. Errors that depend on the machine
//! (CPUs to pin to, memory, a missing kernel) are raised here, at plan, with the key's
//! file:line.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::domain::PlanContext;
use crate::hardware::Facts;
use crate::host::fs::Root;
use crate::plan::Address;
use crate::profile::rules::kp;
use crate::profile::types::Profile;

use super::identity;
use super::section::{
    Accel, DEFAULT_SHUTDOWN_TIMEOUT_SECS, DEFAULT_URI, Disk, Forge, Hypervisor, MIN_MEMORY_BYTES,
    NAT, Vm, VmState,
};
use super::shape::{DOMAIN_TEMPLATE, Nic, Shape, XL_TEMPLATE};

/// Where the rendered VM configurations live (managed files, one per VM).
pub const CONFIG_DIR: &str = "/etc/sovereign/forge";
/// libvirt's NAT network, what `networks = ["nat"]` joins.
pub const NAT_NETWORK: &str = "default";

/// What the profile asks of the hypervisor.
#[derive(Debug, Clone, Serialize)]
pub struct Desired {
    pub hypervisor: Hypervisor,
    /// Debian packages the hypervisor needs (empty when `install = false`).
    pub packages: Vec<String>,
    /// The libvirt URI (KVM).
    pub uri: String,
    pub shutdown_timeout_secs: u64,
    /// How KVM VMs run and why (KVM only).
    pub accel: Option<Execution>,
    pub vms: BTreeMap<String, VmWant>,
    /// Image files the VMs' disks need, by their real path.
    pub images: BTreeMap<String, ImageWant>,
    /// Some VM joins libvirt's NAT network.
    pub uses_nat: bool,
}

/// How the VMs execute, decided once for all of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Execution {
    /// libvirt's domain type: "kvm" or "qemu".
    pub domain_type: String,
    /// Why, for the plan.
    pub why: String,
}

/// One desired VM.
#[derive(Debug, Clone, Serialize)]
pub struct VmWant {
    pub shape: Shape,
    /// The managed file its configuration is rendered to (logical path).
    pub config_path: String,
    pub config: String,
    pub autostart: bool,
    pub running: bool,
    /// What its definition needs first: its disks and bridges (other domains' changes).
    pub needs: Vec<Address>,
    /// Where the VM is declared (`file:line: forge.vms.NAME`), for messages.
    pub at: String,
}

/// One image file a disk lives in.
#[derive(Debug, Clone, Serialize)]
pub struct ImageWant {
    pub size: u64,
    pub dataset: String,
    pub vm: String,
    pub at: String,
}

/// The packages each hypervisor needs on Debian.
pub fn packages(hypervisor: Hypervisor, uses_nat: bool) -> Vec<String> {
    let mut out: Vec<&str> = match hypervisor {
        Hypervisor::Kvm => vec![
            "libvirt-daemon-system",
            "libvirt-daemon-driver-qemu",
            "libvirt-clients",
            "qemu-system-x86",
        ],
        Hypervisor::Xen => vec!["xen-system-amd64", "xen-utils-common"],
    };
    if uses_nat {
        out.push("libvirt-daemon-config-network");
    }
    out.into_iter().map(String::from).collect()
}

/// The storage domain's address of a dataset (a pool's root dataset is the pool's).
pub fn dataset_address(dataset: &str) -> Address {
    if dataset.contains('/') {
        Address::new("storage", "dataset", dataset)
    } else {
        Address::new("storage", "pool", dataset)
    }
}

/// The path of a VM's serial console log (libvirt writes it; operators and tests read it).
pub fn console_log(vm: &str) -> String {
    format!("/var/log/libvirt/qemu/{vm}-console.log")
}

/// Decide how KVM VMs run. `Err` is why `accel = "kvm"` cannot run here.
pub fn execution(accel: Accel, facts: &Facts) -> Result<Execution, String> {
    let flags = matches!(facts.cpu.virtualization.as_str(), "vmx" | "svm");
    let probe = facts.kvm_probe.as_ref();
    let hardware = || -> Result<String, String> {
        if !facts.kvm {
            return Err("there is no /dev/kvm (load the kvm module, or enable virtualization in the firmware)".into());
        }
        match probe {
            Some(p) if p.passed => Ok(format!("a KVM boot probe passed ({})", p.at)),
            Some(p) => Err(format!(
                "a KVM boot probe failed on this kernel ({}): {}",
                p.at, p.detail
            )),
            None if !flags => Err(format!(
                "/dev/kvm exists but the CPU shows no vmx/svm flag{}; run `sovereign detect --probe-kvm KERNEL INITRD` to test whether a guest boots",
                if facts.guest { " (this host is itself a guest)" } else { "" }
            )),
            None if facts.guest => Err("this host is itself a guest, where nested KVM often hangs; run `sovereign detect --probe-kvm KERNEL INITRD` to test whether a guest boots".into()),
            None => Ok(format!("the CPU has {} and /dev/kvm", facts.cpu.virtualization)),
        }
    };
    match accel {
        Accel::Tcg => Ok(Execution {
            domain_type: "qemu".into(),
            why: "accel = \"tcg\": qemu's software emulation".into(),
        }),
        Accel::Kvm => hardware().map(|why| Execution {
            domain_type: "kvm".into(),
            why: format!("accel = \"kvm\": {why}"),
        }),
        Accel::Auto => Ok(match hardware() {
            Ok(why) => Execution {
                domain_type: "kvm".into(),
                why: format!("accel = \"auto\" chose KVM: {why}"),
            },
            Err(why) => Execution {
                domain_type: "qemu".into(),
                why: format!("accel = \"auto\" chose software emulation (TCG): {why}"),
            },
        }),
    }
}

/// The mountpoint a dataset will have, as ZFS inherits it: its own declared one, else
/// its parent's plus its last name, else its pool's root dataset's, else `/NAME`.
/// Declared mountpoints are relocated under `--root` as the storage domain does.
pub fn mountpoint(profile: &Profile, root: &Root, dataset: &str) -> Result<PathBuf, String> {
    let storage = profile.storage.as_ref();
    let declared = |name: &str| -> Option<String> {
        let props = if name.contains('/') {
            &storage?.datasets.get(name)?.properties
        } else {
            &storage?.pools.get(name)?.filesystem
        };
        props.get("mountpoint").map(|v| v.to_zfs())
    };
    let mut suffix: Vec<&str> = Vec::new();
    let mut name = dataset;
    loop {
        if let Some(mp) = declared(name) {
            if !mp.starts_with('/') {
                return Err(format!(
                    "dataset {dataset:?} has mountpoint {mp:?}: an image file needs a mounted dataset"
                ));
            }
            let mut path = root.join(&mp);
            for part in suffix.iter().rev() {
                path.push(part);
            }
            return Ok(path);
        }
        match name.rsplit_once('/') {
            Some((parent, last)) => {
                suffix.push(last);
                name = parent;
            }
            None => return Ok(PathBuf::from(format!("/{dataset}"))),
        }
    }
}

pub fn desired(cx: &PlanContext<'_>) -> anyhow::Result<Option<Desired>> {
    let Some(forge) = cx.profile.profile.forge.as_ref() else {
        return Ok(None);
    };
    let place = |keys: &[&str]| cx.profile.place(&kp(keys));
    let accel = match forge.hypervisor {
        Hypervisor::Kvm => Some(
            execution(forge.accel.unwrap_or_default(), cx.facts).map_err(|why| {
                anyhow::anyhow!(
                    "{}: KVM cannot run here: {why}; set accel = \"tcg\" (software emulation) or \"auto\"",
                    place(&["forge", "accel"])
                )
            })?,
        ),
        Hypervisor::Xen => None,
    };
    let uses_nat = forge
        .vms
        .values()
        .any(|vm| vm.networks.iter().any(|n| n == NAT));
    let mut out = Desired {
        hypervisor: forge.hypervisor,
        packages: if forge.install.unwrap_or(true) {
            packages(forge.hypervisor, uses_nat)
        } else {
            Vec::new()
        },
        uri: forge.uri.clone().unwrap_or_else(|| DEFAULT_URI.into()),
        shutdown_timeout_secs: forge
            .shutdown_timeout
            .map_or(DEFAULT_SHUTDOWN_TIMEOUT_SECS, |d| {
                d.as_std().as_secs().max(1)
            }),
        accel,
        vms: BTreeMap::new(),
        images: BTreeMap::new(),
        uses_nat,
    };
    for (name, vm) in &forge.vms {
        let want = vm_want(cx, forge, &out, name, vm)?;
        for (i, disk) in vm.disks.iter().enumerate() {
            if let Disk::Image { dataset, size, .. } = disk {
                out.images.insert(
                    want.shape.disks[i].clone(),
                    ImageWant {
                        size: size.bytes(),
                        dataset: dataset.clone(),
                        vm: name.clone(),
                        at: cx
                            .profile
                            .place(&format!("{}[{i}]", kp(&["forge", "vms", name, "disks"]))),
                    },
                );
            }
        }
        out.vms.insert(name.clone(), want);
    }
    Ok(Some(out))
}

fn vm_want(
    cx: &PlanContext<'_>,
    forge: &Forge,
    d: &Desired,
    name: &str,
    vm: &Vm,
) -> anyhow::Result<VmWant> {
    let place = |keys: &[&str]| {
        let mut path = vec!["forge", "vms", name];
        path.extend(keys);
        cx.profile.place(&kp(&path))
    };
    let place_at = |key: &str, i: usize| {
        cx.profile
            .place(&format!("{}[{i}]", kp(&["forge", "vms", name, key])))
    };
    let threads = cx.facts.cpu.threads;
    if let Some(pin) = &vm.pin
        && let Some(bad) = pin.iter().find(|c| **c >= threads)
    {
        bail!(
            "{}: host CPU {bad} does not exist: this machine has {threads} (0 to {}); pin to CPUs it has (see `sovereign detect`)",
            place(&["pin"]),
            threads.saturating_sub(1)
        );
    }
    let memory = vm.memory.bytes();
    let host_memory = cx.facts.memory.total_bytes;
    if memory > host_memory {
        bail!(
            "{}: memory {} is more than this machine's {} bytes; give the VM less",
            place(&["memory"]),
            memory,
            host_memory
        );
    }
    if memory < MIN_MEMORY_BYTES {
        bail!(
            "{}: memory {memory} bytes is below the 32M a Linux guest needs to boot",
            place(&["memory"])
        );
    }
    let mut boot = BTreeMap::new();
    for (key, value) in [("kernel", &vm.kernel), ("initrd", &vm.initrd)] {
        let Some(logical) = value else { continue };
        let path = cx
            .root
            .resolve(logical)
            .with_context(|| place(&[key]).to_string())?;
        if !path.is_file() {
            bail!(
                "{}: {key} {} does not exist{}; put the file there or fix the path",
                place(&[key]),
                path.display(),
                if cx.root.path() == std::path::Path::new("/") {
                    String::new()
                } else {
                    format!(
                        " (paths are relocated under --root {})",
                        cx.root.path().display()
                    )
                }
            );
        }
        boot.insert(key, path.to_string_lossy().into_owned());
    }
    let mut needs = Vec::new();
    let mut disks = Vec::new();
    for (i, disk) in vm.disks.iter().enumerate() {
        disks.push(match disk {
            Disk::Zvol { zvol } => {
                needs.push(Address::new("storage", "zvol", zvol));
                format!("/dev/zvol/{zvol}")
            }
            Disk::Image { dataset, file, .. } => {
                let mp = mountpoint(&cx.profile.profile, cx.root, dataset)
                    .map_err(|why| anyhow::anyhow!("{}: {why}", place_at("disks", i)))?;
                needs.push(dataset_address(dataset));
                mp.join(file).to_string_lossy().into_owned()
            }
        });
    }
    let segments = cx.profile.profile.network.as_ref().map(|n| &n.vxlan);
    let mut nics = Vec::new();
    for (i, net) in vm.networks.iter().enumerate() {
        let (kind, source) = if net == NAT {
            ("network", NAT_NETWORK.to_string())
        } else {
            let bridge = segments
                .and_then(|s| s.get(net))
                .and_then(|s| s.bridge.clone())
                .with_context(|| {
                    format!(
                        "{}: {net:?} is not a declared segment with a bridge",
                        place_at("networks", i)
                    )
                })?;
            needs.push(Address::new("network", "bridge", &bridge));
            ("bridge", bridge)
        };
        nics.push(Nic {
            kind: kind.into(),
            source,
            mac: identity::mac(name, i),
        });
    }
    let shape = Shape {
        domain_type: d
            .accel
            .as_ref()
            .map_or_else(|| "xen".into(), |a| a.domain_type.clone()),
        uuid: identity::uuid(name),
        vcpus: vm.vcpus,
        pin: vm
            .pin
            .as_ref()
            .map(|p| (0..vm.vcpus as usize).map(|i| p[i % p.len()]).collect())
            .unwrap_or_default(),
        memory_kib: memory / 1024,
        hugepages: vm.hugepages,
        disks,
        nics,
        kernel: boot.get("kernel").cloned(),
        initrd: boot.get("initrd").cloned(),
        cmdline: vm.cmdline.clone().filter(|_| vm.kernel.is_some()),
    };
    let (config_path, config) = match forge.hypervisor {
        Hypervisor::Kvm => (
            format!("{CONFIG_DIR}/{name}.xml"),
            render(DOMAIN_TEMPLATE, "domain.xml.j2", name, &shape)?,
        ),
        Hypervisor::Xen => (
            format!("{CONFIG_DIR}/{name}.cfg"),
            render(XL_TEMPLATE, "xl.cfg.j2", name, &shape)?,
        ),
    };
    Ok(VmWant {
        shape,
        config_path,
        config,
        autostart: vm.autostart,
        running: vm.state == VmState::Running,
        needs,
        at: place(&[]),
    })
}

/// XML text: the five characters XML gives meaning to, escaped.
fn xml_escape(text: String) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// A string inside an xl.cfg double-quoted value: backslash and quote escaped, line
/// breaks (which would end the value) replaced by spaces.
fn xl_escape(text: String) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace(['\n', '\r'], " ")
}

/// Render a VM's configuration: the shape plus what only the file needs (disk targets,
/// the console log).
pub fn render(template: &str, name: &str, vm: &str, shape: &Shape) -> anyhow::Result<String> {
    let mut env = crate::domain::template::environment(&BTreeMap::new())?;
    // Escaping is explicit (`| xml`, `| xl`): the HTML escaping minijinja picks for
    // `.xml` names would write '/' as a character reference.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.add_filter("xml", xml_escape);
    env.add_filter("xl", xl_escape);
    env.add_template_owned(name.to_string(), template.to_string())
        .with_context(|| format!("template {name:?} does not parse"))?;
    let disks: Vec<_> = shape
        .disks
        .iter()
        .enumerate()
        .map(|(i, path)| {
            let letter = disk_letters(i);
            minijinja::context! {
                path => path,
                block => path.starts_with("/dev/"),
                target => format!("vd{letter}"),
                letter => letter,
            }
        })
        .collect();
    let context = minijinja::context! {
        name => vm,
        domain_type => shape.domain_type.clone(),
        uuid => shape.uuid.clone(),
        memory_kib => shape.memory_kib,
        memory_mib => shape.memory_kib.div_ceil(1024),
        hugepages => shape.hugepages,
        vcpus => shape.vcpus,
        pin => shape.pin.clone(),
        kernel => shape.kernel.clone(),
        initrd => shape.initrd.clone(),
        cmdline => shape.cmdline.clone(),
        disks => disks,
        nics => minijinja::Value::from(minijinja::value::Serde(&shape.nics)),
        console_log => console_log(vm),
    };
    env.get_template(name)?
        .render(context)
        .with_context(|| format!("cannot render {name} for VM {vm:?}"))
}

/// The letters of the `index`th disk's device name: a..z, then aa, ab, ...
fn disk_letters(index: usize) -> String {
    let mut n = index;
    let mut out = Vec::new();
    loop {
        out.push(b'a' + (n % 26) as u8);
        if n < 26 {
            break;
        }
        n = n / 26 - 1;
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII letters")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disks_are_named_like_the_kernel_names_them() {
        assert_eq!(disk_letters(0), "a");
        assert_eq!(disk_letters(25), "z");
        assert_eq!(disk_letters(26), "aa");
        assert_eq!(disk_letters(27), "ab");
        assert_eq!(disk_letters(26 + 26 * 26), "aaa");
    }

    fn facts(kvm: bool, virt: &str, guest: bool) -> Facts {
        let mut f = Facts {
            kvm,
            guest,
            ..Facts::default()
        };
        f.cpu.virtualization = virt.into();
        f
    }

    #[test]
    fn auto_uses_kvm_only_where_it_can_run() {
        let e = execution(Accel::Auto, &facts(true, "vmx", false)).unwrap();
        assert_eq!(e.domain_type, "kvm");
        // This machine: /dev/kvm opens, no vmx flag, the host is a guest.
        let e = execution(Accel::Auto, &facts(true, "none", true)).unwrap();
        assert_eq!(e.domain_type, "qemu");
        assert!(e.why.contains("no vmx/svm"), "{}", e.why);
        let err = execution(Accel::Kvm, &facts(true, "none", true)).unwrap_err();
        assert!(err.contains("--probe-kvm"), "{err}");
        assert!(execution(Accel::Kvm, &facts(false, "vmx", false)).is_err());
        let mut probed = facts(true, "none", true);
        probed.kvm_probe = Some(crate::hardware::virt::KvmProbe {
            passed: true,
            detail: "marker".into(),
            kernel: "/k".into(),
            initrd: "/i".into(),
            host_kernel: "6.1".into(),
            seconds: 2.0,
            at: "2026-12-07T00:00:00Z".into(),
        });
        assert_eq!(execution(Accel::Kvm, &probed).unwrap().domain_type, "kvm");
        probed.kvm_probe.as_mut().unwrap().passed = false;
        assert_eq!(execution(Accel::Auto, &probed).unwrap().domain_type, "qemu");
        assert_eq!(
            execution(Accel::Tcg, &facts(true, "vmx", false))
                .unwrap()
                .domain_type,
            "qemu"
        );
    }

    fn sample() -> Shape {
        Shape {
            domain_type: "qemu".into(),
            uuid: identity::uuid("hunt-01"),
            vcpus: 3,
            pin: vec![2, 3, 2],
            memory_kib: 2 * 1024 * 1024,
            hugepages: true,
            disks: vec![
                "/dev/zvol/tank/vms/hunt-01".into(),
                "/srv/images/a&b's.raw".into(),
            ],
            nics: vec![
                Nic {
                    kind: "bridge".into(),
                    source: "br-hunt".into(),
                    mac: identity::mac("hunt-01", 0),
                },
                Nic {
                    kind: "network".into(),
                    source: NAT_NETWORK.into(),
                    mac: identity::mac("hunt-01", 1),
                },
            ],
            kernel: Some("/srv/vm/vmlinuz".into()),
            initrd: Some("/srv/vm/initrd.img".into()),
            cmdline: Some("console=ttyS0 root=/dev/vda1 quiet \"x<y\"".into()),
        }
    }

    #[test]
    fn the_domain_xml_is_golden_and_reads_back_as_its_shape() {
        let shape = sample();
        let xml = render(DOMAIN_TEMPLATE, "domain.xml.j2", "hunt-01", &shape).unwrap();
        insta::assert_snapshot!(xml);
        let (name, back) = crate::domains::forge::shape::parse_domain(&xml).unwrap();
        assert_eq!(name, "hunt-01");
        assert_eq!(back, shape, "what is rendered is what observe reads back");
        assert!(back.differences(&shape).is_empty());
    }

    #[test]
    fn a_vm_booting_from_its_disk_has_no_kernel_and_reads_back() {
        let shape = Shape {
            kernel: None,
            initrd: None,
            cmdline: None,
            pin: Vec::new(),
            hugepages: false,
            ..sample()
        };
        let xml = render(DOMAIN_TEMPLATE, "domain.xml.j2", "hunt-01", &shape).unwrap();
        assert!(xml.contains("<boot dev='hd'/>"), "{xml}");
        assert!(!xml.contains("cputune"));
        let (_, back) = crate::domains::forge::shape::parse_domain(&xml).unwrap();
        assert_eq!(back, shape);
    }

    #[test]
    fn the_xl_cfg_is_golden() {
        let mut shape = sample();
        shape.domain_type = "xen".into();
        shape.nics.truncate(1);
        insta::assert_snapshot!(render(XL_TEMPLATE, "xl.cfg.j2", "hunt-01", &shape).unwrap());
    }
}
