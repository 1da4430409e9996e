//! The profile's `[storage]` section: pools, datasets, zvols and snapshot policies.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::profile::units::Size;

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
