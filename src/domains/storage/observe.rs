//! Observation: what pools, datasets and snapshots the machine has, read in bulk.
//!
//! One `zpool list -H` for every pool; one `zfs get -H -p ... -r` over the declared pools
//! (the declared properties and the few that ownership and health need); one
//! `zfs get ... sovereign:owner -r` over the other pools, when there are any; one
//! `zpool status` when a declared pool exists; and a `blkid` probe per device of a pool
//! still to be created. Never a process per dataset.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use libzetta::zpool::CreateVdevRequest;

use crate::host::{Cmd, Host};

use super::dialect::Dialect;
use super::probe::{self, DeviceUse};
use super::props::OWNER_PROPERTY;
use super::topology;

/// How long one observation command may take.
const TIMEOUT: Duration = Duration::from_secs(120);

/// One property as `zfs get` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prop {
    /// The value, parsable (`-p`: sizes in bytes).
    pub value: String,
    /// Whether it is set on this dataset itself (source `local`), not inherited or default.
    pub local: bool,
}

/// A filesystem, volume or snapshot and its properties.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedDataset {
    /// Every property `zfs get` printed.
    pub props: BTreeMap<String, Prop>,
}

impl ObservedDataset {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.props.get(name).map(|p| p.value.as_str())
    }

    /// "filesystem", "volume" or "snapshot".
    pub fn kind(&self) -> &str {
        self.get("type").unwrap_or("filesystem")
    }

    /// The state that owns it: the local value of the ownership marker.
    pub fn owner(&self) -> Option<&str> {
        self.props
            .get(OWNER_PROPERTY)
            .filter(|p| p.local && p.value != "-")
            .map(|p| p.value.as_str())
    }
}

/// A pool as `zpool list` and `zpool status` show it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedPool {
    /// ONLINE, DEGRADED, FAULTED, ...
    pub health: String,
    /// Pool properties asked for by name (the declared ones).
    pub properties: BTreeMap<String, String>,
    /// Data vdevs, when `zpool status` was read.
    pub layout: Option<Vec<CreateVdevRequest>>,
}

/// Everything the storage domain observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The ZFS that answered.
    pub dialect: Dialect,
    /// Every imported pool.
    pub pools: BTreeMap<String, ObservedPool>,
    /// Datasets, volumes and snapshots (`pool/fs@snap`) of the pools looked into.
    pub datasets: BTreeMap<String, ObservedDataset>,
    /// What each probed device holds (devices of pools still to be created).
    pub devices: BTreeMap<PathBuf, DeviceUse>,
}

impl Observed {
    /// Snapshots of `dataset` (their short names, after the `@`).
    pub fn snapshots_of<'a>(&'a self, dataset: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let prefix = format!("{dataset}@");
        self.datasets
            .range(prefix.clone()..)
            .take_while(move |(n, _)| n.starts_with(&prefix))
            .map(move |(n, _)| &n[dataset.len() + 1..])
    }

    /// `dataset` and everything below it (children, their snapshots), deepest first.
    pub fn subtree(&self, dataset: &str) -> Vec<&str> {
        let mut all: Vec<&str> = self
            .datasets
            .keys()
            .map(String::as_str)
            .filter(|n| {
                *n == dataset
                    || n.strip_prefix(dataset)
                        .is_some_and(|rest| rest.starts_with('/') || rest.starts_with('@'))
            })
            .collect();
        all.sort_by_key(|n| std::cmp::Reverse(depth(n)));
        all
    }
}

/// Depth of a dataset name, snapshots one below their dataset.
pub fn depth(name: &str) -> usize {
    name.matches('/').count() + usize::from(name.contains('@'))
}

/// What to look at.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Pools the profile declares.
    pub pools: Vec<String>,
    /// Pool properties the profile declares (asked of `zpool list -o`).
    pub pool_properties: Vec<String>,
    /// Devices of declared pools, probed when their pool does not exist yet.
    pub devices: BTreeMap<String, Vec<PathBuf>>,
    /// Dataset properties the profile declares; read along with [`ALWAYS_READ`].
    pub properties: Vec<String>,
}

/// Properties every observation reads: what ownership, kind, zvol sizes and the health
/// check need. Asking for these and the declared ones, not `all`, halves the cost of the
/// bulk read on zfs-fuse.
pub const ALWAYS_READ: &[&str] = &[
    "type",
    OWNER_PROPERTY,
    "mounted",
    "mountpoint",
    "canmount",
    "volsize",
    "volblocksize",
];

fn run(host: &dyn Host, argv: Vec<String>) -> Result<String> {
    run_tolerating_vanished(host, argv).map(|(text, _)| text)
}

/// Run a read; a pool exported or destroyed between `zpool list` and this read is not an
/// error: its name comes back in the second value, the rest of the output is kept.
fn run_tolerating_vanished(host: &dyn Host, argv: Vec<String>) -> Result<(String, Vec<String>)> {
    let cmd = Cmd::new(argv).timeout(TIMEOUT);
    let out = host
        .run(&cmd)
        .with_context(|| format!("cannot run `{}`", cmd.display()))?;
    let stderr = out.stderr_str();
    let vanished: Vec<String> = stderr
        .lines()
        .filter_map(|l| {
            l.strip_prefix("cannot open '")?
                .strip_suffix("': dataset does not exist")
        })
        .map(String::from)
        .collect();
    let only_vanished = !vanished.is_empty()
        && stderr.lines().filter(|l| !l.trim().is_empty()).count() == vanished.len();
    if out.code == Some(1) && only_vanished {
        return Ok((out.stdout_str(), vanished));
    }
    if !out.success() {
        bail!(
            "`{}` failed ({}): {}",
            cmd.display(),
            out.code.map_or("killed".into(), |c| format!("exit {c}")),
            out.stderr_str().trim()
        );
    }
    Ok((out.stdout_str(), Vec::new()))
}

/// Observe the pools and datasets the request names, and the pools sovereign may own.
pub fn observe(host: &dyn Host, dialect: &Dialect, req: &Request) -> Result<Observed> {
    let mut columns = vec!["name".to_string(), "health".to_string()];
    for p in &req.pool_properties {
        if !columns.contains(p) {
            columns.push(p.clone());
        }
    }
    let list = run(
        host,
        vec![
            "zpool".into(),
            "list".into(),
            "-H".into(),
            "-o".into(),
            columns.join(","),
        ],
    )?;
    let pools = parse_pool_list(&list, &columns);

    let declared: Vec<String> = req
        .pools
        .iter()
        .filter(|p| pools.contains_key(*p))
        .cloned()
        .collect();
    let others: Vec<String> = pools
        .keys()
        .filter(|p| !req.pools.contains(p))
        .cloned()
        .collect();
    let mut datasets = BTreeMap::new();
    let mut gone: Vec<String> = Vec::new();
    if !declared.is_empty() {
        let argv = zfs_get_argv("all", &declared);
        let (text, vanished) = run_tolerating_vanished(host, argv)?;
        parse_zfs_get(&text, &mut datasets);
        gone.extend(vanished);
    }
    if !others.is_empty() {
        let argv = zfs_get_argv(OWNER_PROPERTY, &others);
        let (text, vanished) = run_tolerating_vanished(host, argv)?;
        parse_zfs_get(&text, &mut datasets);
        gone.extend(vanished);
    }
    let mut pools = pools;
    for g in &gone {
        pools.remove(g);
    }
    if !declared.is_empty() {
        let layouts = topology::parse_status(&run(host, vec!["zpool".into(), "status".into()])?);
        for (name, layout) in layouts {
            if let Some(p) = pools.get_mut(&name) {
                p.layout = Some(layout);
            }
        }
    }
    let mut devices = BTreeMap::new();
    for (pool, devs) in &req.devices {
        if pools.contains_key(pool) {
            continue;
        }
        for d in devs {
            devices.insert(d.clone(), probe::probe(host, d)?);
        }
    }
    Ok(Observed {
        dialect: dialect.clone(),
        pools,
        datasets,
        devices,
    })
}

/// `zpool list -H -o COLUMNS`: one tab-separated line per pool.
pub fn parse_pool_list(text: &str, columns: &[String]) -> BTreeMap<String, ObservedPool> {
    let mut pools = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let Some(name) = fields.first() else { continue };
        let mut pool = ObservedPool {
            health: fields.get(1).unwrap_or(&"").to_string(),
            ..ObservedPool::default()
        };
        for (col, val) in columns.iter().zip(&fields).skip(2) {
            pool.properties.insert(col.clone(), val.to_string());
        }
        pools.insert(name.to_string(), pool);
    }
    pools
}

/// `zfs get -H -p -o name,property,value,source PROPS -r NAMES...`: the one bulk read of
/// dataset properties (both dialects take it; `-t` is OpenZFS-only, so it is not used).
pub fn zfs_get_argv(props: &str, names: &[String]) -> Vec<String> {
    let mut argv: Vec<String> = [
        "zfs",
        "get",
        "-H",
        "-p",
        "-o",
        "name,property,value,source",
        props,
        "-r",
    ]
    .map(String::from)
    .to_vec();
    argv.extend(names.iter().cloned());
    argv
}

/// `zfs get -H -p -o name,property,value,source`: one tab-separated line per property.
pub fn parse_zfs_get(text: &str, into: &mut BTreeMap<String, ObservedDataset>) {
    for line in text.lines() {
        let mut f = line.splitn(4, '\t');
        let (Some(name), Some(prop), Some(value), Some(source)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        into.entry(name.to_string()).or_default().props.insert(
            prop.to_string(),
            Prop {
                value: value.to_string(),
                local: source == "local",
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: &str = "tank\ttype\tfilesystem\t-\ntank\trecordsize\t131072\tdefault\ntank\tsovereign:owner\t/s\tlocal\ntank/a\ttype\tfilesystem\t-\ntank/a\tsovereign:owner\t/s\tinherited from tank\ntank/a@x\ttype\tsnapshot\t-\ntank/a/b\ttype\tfilesystem\t-\ntank/ab\ttype\tfilesystem\t-\n";

    #[test]
    fn bulk_get_output_becomes_datasets_with_sources() {
        let mut ds = BTreeMap::new();
        parse_zfs_get(GET, &mut ds);
        assert_eq!(ds["tank"].get("recordsize"), Some("131072"));
        assert_eq!(ds["tank"].owner(), Some("/s"));
        // An inherited marker is not ownership: someone else made tank/a.
        assert_eq!(ds["tank/a"].owner(), None);
        assert_eq!(ds["tank/a@x"].kind(), "snapshot");
    }

    #[test]
    fn subtrees_and_snapshots_are_found_by_name() {
        let mut datasets = BTreeMap::new();
        parse_zfs_get(GET, &mut datasets);
        let obs = Observed {
            dialect: Dialect::ZfsFuse { pool_version: 23 },
            pools: BTreeMap::new(),
            datasets,
            devices: BTreeMap::new(),
        };
        assert_eq!(obs.subtree("tank/a"), ["tank/a/b", "tank/a@x", "tank/a"]);
        assert_eq!(obs.snapshots_of("tank/a").collect::<Vec<_>>(), ["x"]);
    }

    #[test]
    fn pool_list_columns_map_to_properties() {
        let cols: Vec<String> = ["name", "health", "autoexpand"].map(String::from).to_vec();
        let pools = parse_pool_list("tank\tONLINE\toff\nold\tDEGRADED\ton\n", &cols);
        assert_eq!(pools["tank"].health, "ONLINE");
        assert_eq!(pools["old"].properties["autoexpand"], "on");
    }
}
