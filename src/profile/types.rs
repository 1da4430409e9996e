//! The typed profile: what a user can declare, with a doc comment on every key.
//!
//! These structs are the single source of the profile format: serde reads them,
//! schemars turns the same doc comments into `sovereign schema`, and the
//! validator takes its list of known keys from that schema.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::units::{Duration, Mode, Size};

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

    /// The inference daemon and the models it serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference: Option<Inference>,
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

/// One managed file. Give exactly one of `content` or `template`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// The file's content, rendered as a minijinja template with the profile and the detected
    /// facts as context (`{{ host.name }}`, `{{ facts.cpu.model }}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,

    /// A template file under templates/ (relative to the profile's directory or the project's
    /// templates/ folder), rendered with the same context as `content`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,

    /// Permission bits, applied exactly whatever the umask. Default "0644".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,

    /// Owner user name. Default: the user running sovereign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,

    /// Group name. Default: the primary group of the user running sovereign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,

    /// Hide the content in plans, diffs and logs (shown as "(sensitive)").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
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

/// One systemd service. Give exactly one of `unit` or `template`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// The unit file's content (`[Unit]`, `[Service]`, `[Install]`), rendered as a minijinja
    /// template with the profile and the detected facts as context, like a managed file's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,

    /// A unit template under templates/ (next to the profile or the project's), rendered
    /// with the same context as `unit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,

    /// Start the service at boot (`systemctl enable`). Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable: Option<bool>,

    /// Keep the service running (`systemctl start`); false keeps it stopped. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<bool>,

    /// Absolute paths of files the service reads (usually managed files); when one changes,
    /// the service is restarted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restart_on: Vec<String>,
}

/// ZFS storage: pools, datasets, zvols and snapshot policies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// ZFS pools, keyed by pool name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pools: BTreeMap<String, Pool>,

    /// ZFS datasets, keyed by full name ("tank/models"); the pool must be declared.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub datasets: BTreeMap<String, Dataset>,

    /// ZFS volumes (block devices, e.g. VM disks), keyed by full name ("tank/vms/hunt-01").
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub zvols: BTreeMap<String, Zvol>,

    /// Snapshot retention policies that datasets name in `snapshots`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub snapshot_policies: BTreeMap<String, SnapshotPolicy>,
}

/// A ZFS pool.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// The pool's layout: single devices or files (absolute paths) and groups such as
    /// `{ type = "mirror", devices = [...] }`. A layout cannot change in place.
    pub vdevs: Vec<Vdev>,

    /// log2 of the sector size (9 to 16); 12 suits most SSDs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 9, max = 16))]
    pub ashift: Option<u8>,

    /// Pool properties (`zpool create -o`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, PropertyValue>,

    /// Properties of the pool's root dataset (`zpool create -O`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub filesystem: BTreeMap<String, PropertyValue>,

    /// Create the pool even on devices that hold a filesystem, a partition table or
    /// another pool's label. Destroys what they hold.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// One vdev: a single device or file path, or a redundancy group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Vdev {
    /// A single device or file, as an absolute path.
    Single(String),
    /// A redundancy group.
    Group(VdevGroup),
}

/// A redundancy group of devices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VdevGroup {
    /// The redundancy: "mirror" (2+ devices), "raidz1" (3+), "raidz2" (4+).
    #[serde(rename = "type")]
    pub kind: VdevKind,
    /// Member devices or files, as absolute paths.
    pub devices: Vec<String>,
}

/// A vdev group's redundancy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VdevKind {
    Mirror,
    Raidz1,
    Raidz2,
}

/// A ZFS property value. Strings as ZFS prints them ("off", "lz4", "1M"); numbers and
/// booleans are accepted and written as ZFS expects ("on"/"off").
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(untagged)]
pub enum PropertyValue {
    Text(String),
    Number(i64),
    Flag(bool),
}

impl PropertyValue {
    /// The value as the zfs command line takes it.
    pub fn to_zfs(&self) -> String {
        match self {
            PropertyValue::Text(s) => s.clone(),
            PropertyValue::Number(n) => n.to_string(),
            PropertyValue::Flag(true) => "on".into(),
            PropertyValue::Flag(false) => "off".into(),
        }
    }
}

/// A ZFS dataset (filesystem).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    /// Any ZFS property: compression, recordsize, atime, quota, reservation, mountpoint,
    /// and user properties such as `"sovereign:role"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, PropertyValue>,

    /// The name of a snapshot policy in `storage.snapshot_policies`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<String>,
}

/// A ZFS volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Zvol {
    /// The volume's size; it may grow, never shrink.
    pub size: Size,

    /// The volume's block size, fixed at creation, e.g. "16K".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volblocksize: Option<Size>,

    /// Other ZFS properties of the volume.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, PropertyValue>,
}

/// How many snapshots of each period to keep (sanoid-style, in UTC).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotPolicy {
    /// Hourly snapshots to keep.
    #[serde(default)]
    pub hourly: u32,
    /// Daily snapshots to keep.
    #[serde(default)]
    pub daily: u32,
    /// Weekly snapshots to keep.
    #[serde(default)]
    pub weekly: u32,
    /// Monthly snapshots to keep.
    #[serde(default)]
    pub monthly: u32,
}

/// `[inference] ctx`, the old spelling of `context`: the same schema, marked deprecated, so
/// that editors and `validate` read older profiles as serde does.
fn ctx_alias_schema(schema: &mut schemars::Schema) {
    let Some(props) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) else {
        return;
    };
    if let Some(mut context) = props.get("context").cloned() {
        if let Some(obj) = context.as_object_mut() {
            obj.insert("deprecated".into(), true.into());
            obj.insert(
                "description".into(),
                "The old spelling of `context`; give one of the two.".into(),
            );
        }
        props.insert("ctx".into(), context);
    }
}

/// The systemd unit `[inference]` runs the daemon as (a `[services]` entry cannot take it).
pub const INFERENCE_UNIT: &str = "sovereign-inference";
/// The template the daemon's unit renders from: a `templates/` folder above the profile
/// may carry its own, otherwise the binary's copy is used.
pub const INFERENCE_UNIT_TEMPLATE: &str = "sovereign-inference.service.j2";

/// The inference daemon (`sovereign serve`) and its models.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = ctx_alias_schema)]
pub struct Inference {
    /// The address the OpenAI-compatible API listens on. Default "127.0.0.1:8080". A
    /// non-loopback address needs `api_key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,

    /// A file holding the API key (mode 0600 or stricter). The key itself never appears in
    /// a profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_file: Option<String>,

    /// Concurrent sequences decoded together. The schema's description, default and range
    /// come from the daemon's own definition (`inference::limits::SLOTS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::inference::limits::slots_schema)]
    pub slots: Option<u32>,

    /// Context length per slot, in tokens: each model's default. The schema's
    /// description, default and range come from the daemon's own definition
    /// (`inference::limits::CONTEXT`). `ctx`, its old spelling, is still read.
    #[serde(default, alias = "ctx", skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::inference::limits::ctx_schema)]
    pub context: Option<u32>,

    /// CPU threads for the engine. Default: the number of physical cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::inference::limits::threads_schema)]
    pub threads: Option<u32>,

    /// Most models loaded at once; the least recently used is unloaded first. Default: no
    /// limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::inference::limits::max_loaded_schema)]
    pub max_loaded: Option<u32>,

    /// Deadline for a request's whole head. The schema's description, default and range come from the daemon's
    /// own definition (`inference::limits`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::inference::limits::bound_schema::<0>)]
    pub header_timeout: Option<Duration>,

    /// Deadline for a request's body and for a client that stops reading. The schema's description, default and range come from the daemon's
    /// own definition (`inference::limits`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::inference::limits::bound_schema::<1>)]
    pub body_timeout: Option<Duration>,

    /// Idle keep-alive timeout. The schema's description, default and range come from the daemon's
    /// own definition (`inference::limits`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::inference::limits::bound_schema::<2>)]
    pub idle_timeout: Option<Duration>,

    /// Connections served at once. The schema's description, default and range come from the daemon's
    /// own definition (`inference::limits`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::inference::limits::bound_schema::<3>)]
    pub max_connections: Option<u32>,

    /// Shutdown deadline for in-flight requests. The schema's description, default and range come from the daemon's
    /// own definition (`inference::limits`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::inference::limits::bound_schema::<4>)]
    pub shutdown_timeout: Option<Duration>,

    /// Time budget of one grammar compile. The schema's description, default and range come from the daemon's
    /// own definition (`inference::limits`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::inference::limits::bound_schema::<5>)]
    pub grammar_compile_timeout: Option<Duration>,

    /// Models to pull, verify and serve, keyed by the name clients use.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, ModelSpec>,
}

/// A model served by the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Where the GGUF file comes from: an https URL or a local absolute path.
    pub source: String,

    /// The file's sha256 (64 hex digits). A file that does not match is never served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-fA-F]{64}$"))]
    pub sha256: Option<String>,

    /// Context length to load the model with, in tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::inference::limits::context_schema)]
    pub context: Option<u32>,

    /// Layers to offload to the GPU: a number, or "auto" for as many as fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_layers: Option<GpuLayers>,

    /// Unload the model after this long without a request, e.g. "30m".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,

    /// Load at daemon start instead of on the first request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub preload: bool,
}

/// GPU offload: a layer count or "auto".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum GpuLayers {
    Count(u32),
    Auto(AutoKeyword),
}

/// The keyword "auto".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AutoKeyword {
    Auto,
}
