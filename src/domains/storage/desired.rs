//! Desired state: the profile's `[storage]` section checked against the running dialect
//! and turned into values the diff compares directly (sizes in bytes, paths relocated).

use std::collections::BTreeMap;

use libzetta::zpool::CreateVdevRequest;

use crate::profile::{PropertyValue, SnapshotPolicy, Storage, ValidProfile};

use super::dialect::Dialect;
use super::props;
use super::topology::{self, Relocate};
use crate::profile::zfs_names;

/// A pool the profile declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredPool {
    /// Data vdevs, paths as used on the machine.
    pub layout: Vec<CreateVdevRequest>,
    /// log2 sector size, fixed at creation.
    pub ashift: Option<u8>,
    /// Pool properties (`zpool create -o`, `zpool set`).
    pub properties: BTreeMap<String, String>,
    /// Root dataset properties (`zpool create -O`, then `zfs set`).
    pub filesystem: BTreeMap<String, String>,
    /// Create over devices that hold something.
    pub force: bool,
}

/// A filesystem dataset the profile declares, or a parent it implies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredDataset {
    /// Declared properties, values as ZFS takes them.
    pub properties: BTreeMap<String, String>,
    /// The snapshot policy it names.
    pub policy: Option<String>,
    /// Not declared itself: a parent of something declared, created bare.
    pub implicit: bool,
}

/// A volume the profile declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredZvol {
    /// Size in bytes.
    pub size: u64,
    /// Block size in bytes, fixed at creation.
    pub volblocksize: Option<u64>,
    /// Other properties.
    pub properties: BTreeMap<String, String>,
}

/// The whole desired storage state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub pools: BTreeMap<String, DesiredPool>,
    /// Filesystems below pool roots (pool roots are in `pools`).
    pub datasets: BTreeMap<String, DesiredDataset>,
    pub zvols: BTreeMap<String, DesiredZvol>,
    pub policies: BTreeMap<String, SnapshotPolicy>,
}

/// One thing wrong with the storage section: where, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The TOML key path (`storage.datasets."tank/a".properties.compression`), with the
    /// file and line in front when the loader recorded them.
    pub at: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// All problems of a storage section, as one error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct Problems(pub Vec<Problem>);

const FUSE_POOL_PROPS: &[&str] = &[
    "altroot",
    "autoexpand",
    "autoreplace",
    "bootfs",
    "cachefile",
    "dedupditto",
    "delegation",
    "failmode",
    "listsnapshots",
    "version",
];
const OPENZFS_POOL_PROPS: &[&str] = &[
    "altroot",
    "autoexpand",
    "autoreplace",
    "autotrim",
    "bootfs",
    "cachefile",
    "comment",
    "compatibility",
    "dedupditto",
    "delegation",
    "failmode",
    "listsnapshots",
    "multihost",
    "version",
];

fn pool_property_known(dialect: &Dialect, name: &str) -> bool {
    match dialect {
        Dialect::ZfsFuse { .. } => FUSE_POOL_PROPS.contains(&name),
        Dialect::Openzfs { .. } => {
            OPENZFS_POOL_PROPS.contains(&name) || name.starts_with("feature@")
        }
    }
}

struct Collector<'a> {
    profile: Option<&'a ValidProfile>,
    problems: Vec<Problem>,
}

impl Collector<'_> {
    fn add(&mut self, key: String, message: impl Into<String>) {
        let at = match self.profile.and_then(|p| p.origin(&key)) {
            Some(origin) => format!("{origin}: {key}"),
            None => key,
        };
        self.problems.push(Problem {
            at,
            message: message.into(),
        });
    }
}

/// Check the storage section against the running ZFS and build the desired state.
pub fn desired(
    storage: &Storage,
    dialect: &Dialect,
    relocate: &Relocate,
    profile: Option<&ValidProfile>,
) -> Result<Desired, Problems> {
    let mut c = Collector {
        profile,
        problems: Vec::new(),
    };
    let mut out = Desired {
        policies: storage.snapshot_policies.clone(),
        ..Desired::default()
    };
    let props_of = |c: &mut Collector, key: &str, map: &BTreeMap<String, PropertyValue>| {
        let mut res = BTreeMap::new();
        for (name, value) in map {
            let v = value.to_zfs();
            if let Err(m) = props::validate(dialect, name, &v) {
                c.add(format!("{key}.{name}"), m);
            }
            let v = if name == "mountpoint" {
                relocate.mountpoint(&v)
            } else {
                v
            };
            res.insert(name.clone(), v);
        }
        res
    };

    for (name, pool) in &storage.pools {
        let key = format!("storage.pools.{name}");
        if let Err(why) = zfs_names::pool_name(name) {
            c.add(key.clone(), format!("pool name {name:?} {why}"));
        }
        if pool.vdevs.is_empty() {
            c.add(format!("{key}.vdevs"), "a pool needs at least one vdev");
        }
        let mut layout = Vec::new();
        for (i, v) in pool.vdevs.iter().enumerate() {
            match topology::to_request(v, relocate) {
                Ok(r) => layout.push(r),
                Err(m) => c.add(format!("{key}.vdevs[{i}]"), m),
            }
        }
        if let Some(a) = pool.ashift {
            let range = dialect.ashift_range();
            if !range.contains(&a) {
                c.add(
                    format!("{key}.ashift"),
                    format!(
                        "ashift {a} is outside {}..={} on {}",
                        range.start(),
                        range.end(),
                        dialect.describe()
                    ),
                );
            }
        }
        let mut properties = BTreeMap::new();
        for (p, v) in &pool.properties {
            if p == "ashift" {
                c.add(
                    format!("{key}.properties.ashift"),
                    "set ashift with the pool's `ashift` key",
                );
            } else if !pool_property_known(dialect, p) {
                c.add(
                    format!("{key}.properties.{p}"),
                    format!("unknown pool property `{p}` for {}", dialect.describe()),
                );
            }
            properties.insert(p.clone(), v.to_zfs());
        }
        let filesystem = props_of(&mut c, &format!("{key}.filesystem"), &pool.filesystem);
        out.pools.insert(
            name.clone(),
            DesiredPool {
                layout,
                ashift: pool.ashift,
                properties,
                filesystem,
                force: pool.force,
            },
        );
    }

    let pool_of = |name: &str| name.split('/').next().unwrap_or(name).to_string();
    let check_name = |c: &mut Collector, key: &str, name: &str| {
        if !name.contains('/') {
            c.add(key.to_string(), format!("{name:?} is not below a pool: write \"POOL/NAME\" (a pool's own properties go in its `filesystem` table)"));
            return false;
        }
        if let Err(why) = zfs_names::dataset_name(name) {
            c.add(
                key.to_string(),
                format!("{name:?} is not a valid dataset name: it {why}"),
            );
            return false;
        }
        if !storage.pools.contains_key(&pool_of(name)) {
            c.add(
                key.to_string(),
                format!("{name:?} is in pool {:?}, which the profile does not declare: add [storage.pools.{}]", pool_of(name), pool_of(name)),
            );
            return false;
        }
        true
    };

    for (name, ds) in &storage.datasets {
        let key = format!("storage.datasets.\"{name}\"");
        if !check_name(&mut c, &key, name) {
            continue;
        }
        if let Some(p) = &ds.snapshots {
            if !storage.snapshot_policies.contains_key(p) {
                c.add(
                    format!("{key}.snapshots"),
                    format!("no snapshot policy {p:?}: declare [storage.snapshot_policies.{p}]"),
                );
            }
        }
        let properties = props_of(&mut c, &format!("{key}.properties"), &ds.properties);
        out.datasets.insert(
            name.clone(),
            DesiredDataset {
                properties,
                policy: ds.snapshots.clone(),
                implicit: false,
            },
        );
    }

    for (name, zv) in &storage.zvols {
        let key = format!("storage.zvols.\"{name}\"");
        if !check_name(&mut c, &key, name) {
            continue;
        }
        if !dialect.has_zvols() {
            c.add(
                key.clone(),
                format!(
                    "the running ZFS, {}, cannot create volumes (zvols); they need OpenZFS",
                    dialect.describe()
                ),
            );
        }
        if storage.datasets.contains_key(name) {
            c.add(
                key.clone(),
                format!("{name:?} is declared both as a dataset and as a zvol"),
            );
        }
        if let Some(b) = zv.volblocksize {
            if let Err(m) = props::validate(dialect, "volblocksize", &b.bytes().to_string()) {
                c.add(format!("{key}.volblocksize"), m);
            }
        }
        if zv.size.bytes() == 0 {
            c.add(format!("{key}.size"), "a zvol's size must be more than 0");
        }
        let properties = props_of(&mut c, &format!("{key}.properties"), &zv.properties);
        out.zvols.insert(
            name.clone(),
            DesiredZvol {
                size: zv.size.bytes(),
                volblocksize: zv.volblocksize.map(|s| s.bytes()),
                properties,
            },
        );
    }

    // Parents that are not declared are created bare (and marked), parents first.
    let names: Vec<String> = out
        .datasets
        .keys()
        .chain(out.zvols.keys())
        .cloned()
        .collect();
    for name in names {
        let mut parent = name.as_str();
        while let Some((p, _)) = parent.rsplit_once('/') {
            parent = p;
            if !p.contains('/') {
                break;
            }
            if out.zvols.contains_key(p) {
                c.add(
                    format!("storage.zvols.\"{p}\""),
                    format!("{p:?} is a zvol, and volumes cannot hold {name:?}"),
                );
                break;
            }
            out.datasets.entry(p.to_string()).or_insert(DesiredDataset {
                implicit: true,
                ..DesiredDataset::default()
            });
        }
    }

    if c.problems.is_empty() {
        Ok(out)
    } else {
        Err(Problems(c.problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;

    fn storage(text: &str) -> Storage {
        toml::from_str::<Profile>(text).unwrap().storage.unwrap()
    }

    fn fuse() -> Dialect {
        Dialect::ZfsFuse { pool_version: 23 }
    }

    #[test]
    fn implicit_parents_are_added_and_paths_relocated() {
        let s = storage(
            r#"
            [storage.pools.tank]
            vdevs = ["/img/tank.img"]
            filesystem = { mountpoint = "/srv/tank" }
            [storage.datasets."tank/a/b/c"]
            properties = { recordsize = "64K" }
        "#,
        );
        let reloc = Relocate {
            root: Some("/r".into()),
        };
        let d = desired(&s, &fuse(), &reloc, None).unwrap();
        assert!(d.datasets["tank/a"].implicit);
        assert!(d.datasets["tank/a/b"].implicit);
        assert!(!d.datasets["tank/a/b/c"].implicit);
        assert_eq!(d.pools["tank"].filesystem["mountpoint"], "/r/srv/tank");
        assert_eq!(
            topology::describe(&d.pools["tank"].layout),
            "/r/img/tank.img"
        );
    }

    #[test]
    fn bad_storage_sections_say_where_and_what() {
        let s = storage(
            r#"
            [storage.pools.tank]
            vdevs = [{ type = "raidz1", devices = ["/a"] }, "rel.img"]
            ashift = 16
            properties = { autotrim = "on" }
            [storage.datasets."tank/a"]
            properties = { compression = "lz4", bogus = "1" }
            snapshots = "nightly"
            [storage.datasets."other/b"]
            [storage.zvols."tank/vm"]
            size = "1G"
        "#,
        );
        let err = desired(&s, &fuse(), &Relocate::default(), None)
            .unwrap_err()
            .to_string();
        for expected in [
            "storage.pools.tank.vdevs[0]: a raidz1 group needs at least 3 devices",
            "storage.pools.tank.vdevs[1]: vdev path \"rel.img\" is not absolute",
            "storage.pools.tank.ashift: ashift 16 is outside 9..=13",
            "storage.pools.tank.properties.autotrim: unknown pool property",
            "storage.datasets.\"tank/a\".properties.compression: compression \"lz4\" is not available on zfs-fuse",
            "storage.datasets.\"tank/a\".properties.bogus: unknown ZFS property `bogus`",
            "storage.datasets.\"tank/a\".snapshots: no snapshot policy \"nightly\"",
            "storage.datasets.\"other/b\": \"other/b\" is in pool \"other\", which the profile does not declare",
            "storage.zvols.\"tank/vm\": the running ZFS, zfs-fuse (pool version 23), cannot create volumes",
        ] {
            assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
        }
    }
}
