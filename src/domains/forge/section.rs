//! The profile's `[forge]` section: the hypervisor and the VMs it runs (the Forge).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::profile::units::{Duration, Size};

/// The libvirt connection sovereign manages VMs through unless `uri` says otherwise.
pub const DEFAULT_URI: &str = "qemu:///system";
/// How long a VM has to power off after an ACPI shutdown before it is forced off.
pub const DEFAULT_SHUTDOWN_TIMEOUT_SECS: u64 = 60;
/// The most vCPUs one VM may have (libvirt's and qemu's practical ceiling for a
/// workstation's guests).
pub const MAX_VCPUS: u32 = 256;
/// The network name that means libvirt's own NAT network (`default`), not a segment.
pub const NAT: &str = "nat";
/// The smallest memory a VM can boot a Linux kernel in.
pub const MIN_MEMORY_BYTES: u64 = 32 * 1024 * 1024;

fn uri_schema(schema: &mut schemars::Schema) {
    schema.insert("default".into(), DEFAULT_URI.into());
}

fn shutdown_schema(schema: &mut schemars::Schema) {
    schema.insert(
        "default".into(),
        format!("{DEFAULT_SHUTDOWN_TIMEOUT_SECS}s").into(),
    );
}

/// The hypervisor and its VMs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Forge {
    /// "kvm" (QEMU/KVM through libvirt) or "xen" (the Xen hypervisor, domains made with
    /// `xl`; it runs only after a reboot into Xen's boot entry).
    pub hypervisor: Hypervisor,

    /// How KVM VMs run: "kvm" (hardware virtualization; an error at plan where it cannot
    /// run), "tcg" (qemu's software emulation, slow but everywhere) or "auto" (KVM where
    /// a KVM probe passed, or with no probe where the CPU shows vmx/svm and the host is
    /// not itself a guest; else emulation). Default "auto". The plan says which and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accel: Option<Accel>,

    /// Install the hypervisor's Debian packages (observed with dpkg, installed with apt)
    /// and start its daemon. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install: Option<bool>,

    /// The libvirt connection URI (KVM only). Default "qemu:///system".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = uri_schema)]
    pub uri: Option<String>,

    /// How long a VM that must be off for a change (vCPUs, memory, disks, networks, boot)
    /// has to shut down after an ACPI request before it is forced off ("60s").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = shutdown_schema)]
    pub shutdown_timeout: Option<Duration>,

    /// VMs, keyed by name (letters, digits, '-', '_', '.'; at most 64 bytes). Each gets a
    /// UUID and MAC addresses derived from its name, so redefining it never drifts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vms: BTreeMap<String, Vm>,
}

/// Which hypervisor runs the VMs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Hypervisor {
    // Variants carry no doc comment: with one, the schema lists each as its own `const`
    // and an unknown value is reported against the first alone instead of the list.
    #[default]
    Kvm,
    Xen,
}

/// How KVM VMs execute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    #[default]
    Auto,
    Kvm,
    Tcg,
}

/// Whether a VM runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VmState {
    #[default]
    Running,
    Stopped,
}

/// One VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Vm {
    /// Virtual CPUs, 1 to 256.
    #[schemars(range(min = 1, max = MAX_VCPUS))]
    pub vcpus: u32,

    /// Host CPUs the vCPUs are pinned to, in order: vCPU i runs on `pin[i % len]`. Each
    /// must exist on this host (checked at plan against the detected CPU count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<Vec<u32>>,

    /// Memory ("2G", "512M"), at least 32M and at most the host's (checked at plan).
    pub memory: Size,

    /// Back the VM's memory with huge pages (they must be reserved on the host).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hugepages: bool,

    /// Disks, in order (the first is `vda`): `{ zvol = "tank/vms/hunt" }`, a volume
    /// declared under `[storage.zvols]`, or `{ dataset = "tank/images", file =
    /// "hunt.raw", size = "8G" }`, a sparse raw image file sovereign makes on a declared
    /// dataset (for ZFS without volumes, such as zfs-fuse). A disk belongs to one VM.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<Disk>,

    /// Networks, in order (the first is the first NIC): the name of a `[network.vxlan]`
    /// segment that has a `bridge` (the VM joins the bridge), or "nat" for libvirt's
    /// `default` NAT network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,

    /// Boot this kernel directly (an absolute host path, relocated under `--root`; it must
    /// exist at plan). Without it the VM boots from its first disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,

    /// The initramfs for `kernel` (an absolute host path, relocated under `--root`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<String>,

    /// The kernel command line for `kernel` ("console=ttyS0 root=/dev/vda1").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,

    /// Start the VM when the host boots. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub autostart: bool,

    /// "running" (default) or "stopped".
    #[serde(default)]
    pub state: VmState,
}

/// One VM disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged, deny_unknown_fields)]
pub enum Disk {
    /// A ZFS volume declared under `[storage.zvols]`: `/dev/zvol/NAME`.
    Zvol {
        /// The volume's full name ("tank/vms/hunt").
        zvol: String,
    },
    /// A sparse raw image file on a declared dataset: created at `size`, grown when
    /// `size` grows, never shrunk, removed only with `--allow-destroy`.
    Image {
        /// The dataset the file lives on ("tank/images"), declared under
        /// `[storage.datasets]`.
        dataset: String,
        /// The file's name in the dataset's mountpoint ("hunt.raw").
        file: String,
        /// The image's size ("8G").
        size: Size,
    },
}
