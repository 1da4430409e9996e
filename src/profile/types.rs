//! The typed profile: what a user can declare, with a doc comment on every key.
//!
//! These structs are the single source of the profile format: serde reads them,
//! schemars turns the same doc comments into `sovereign schema`, and the
//! validator takes its list of known keys from that schema.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::units::Duration;

// Each section's types live with the domain that manages it; the profile names them here.
pub use crate::domains::deployment::section::*;
pub use crate::domains::files::section::*;
pub use crate::domains::forge::section::*;
pub use crate::domains::network::section::*;
pub use crate::domains::services::section::*;
pub use crate::domains::storage::section::*;

/// A sovereign profile: the declared state of one workstation. Every section is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "sovereign profile")]
pub struct Profile {
    /// Profile fragments merged into this one, NixOS-style. Paths are relative to this file.
    /// Tables merge recursively; this file's values override what it imports; two imports
    /// that set the same value differently is an error unless this file sets it. Arrays
    /// (vdevs, checks, command lines) are values: one replaces another, they never
    /// concatenate. An import cycle or a missing file is an error naming the chain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<String>,

    /// The machine this profile describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<Host>,

    /// Managed files, keyed by absolute path (relocated under `--root`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, FileSpec>,

    /// Health checks run after every apply; a failing one rolls the apply back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,

    /// ZFS pools, datasets, zvols and snapshot policies (the Nest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Storage>,

    /// systemd services, keyed by unit name without ".service" (`[services.backup]` is
    /// backup.service). sovereign writes the unit file, enables and starts the service,
    /// restarts it when the unit or a file it names in `restart_on` changes, and stops,
    /// disables and removes it when the profile drops it. Where PID 1 is not systemd, the
    /// systemctl steps are listed as not applicable and skipped.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, ServiceSpec>,

    /// VXLAN segments and their bridges (the Hunt), made over netlink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,

    /// The inference daemon and the models it serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference: Option<Inference>,

    /// The hypervisor (KVM under libvirt, or Xen) and the VMs it runs, on zvols or image
    /// files and segment bridges (the Forge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forge: Option<Forge>,
}

/// The machine this profile describes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// The host name; templates see it as `host.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,

    /// The hardware archetype this profile is written for (an id from hardware/, e.g.
    /// "rtx-4090", "2x-rtx-3090", "m2-ultra", "rtx-3060", "cpu-only"). Plan refuses to run
    /// on a machine whose detected archetype differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
}

/// A post-apply health check: a command that must exit 0.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// A name shown in apply output and generations.
    pub name: String,

    /// The command as an argv array; it is run directly, not through a shell.
    pub command: Vec<String>,

    /// How long one attempt may take. Default "30s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,

    /// Further attempts after a failure before the check counts as failed. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,

    /// Pause between attempts. Default "1s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
}
