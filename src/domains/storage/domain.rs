//! The storage domain's face to the engine: [`Storage`] implements the domain interface.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::{
    ApplyContext, DiffOptions, Domain, HealthResult, LedgerTx, Owned, PlanContext,
};
use crate::host::Host;
use crate::host::fs::Root;
use crate::plan::{Action, Address, Change, FieldChange};

use super::apply::{self, Exec};
use super::desired::{self, Desired};
use super::dialect::{self, Dialect};
use super::diff::{self, Kind, Op, PropChange};
use super::health;
use super::observe::{self, Observed};
use super::props::{self, OWNER_PROPERTY};
use super::topology::{self, Relocate};

/// The storage domain.
#[derive(Debug, Default, Clone, Copy)]
pub struct Storage;

/// Where sovereign's state lives under a root; its path is the ownership marker's value.
const STATE_DIR: &str = "/var/lib/sovereign";

/// The ownership marker's value for a root: the absolute path of its state directory.
pub fn owner_for(root: &Root) -> String {
    root.join(STATE_DIR).to_string_lossy().into_owned()
}

/// What the profile asks of storage, checked against the running ZFS.
#[derive(Debug, Clone, Serialize)]
pub struct StorageDesired {
    /// The declared section as written (what the saved-plan digest pins).
    pub section: Option<crate::profile::Storage>,
    /// The ownership marker's value for this state.
    pub owner: String,
    /// `--root`, for relocating file vdevs and mountpoints.
    pub root: Option<PathBuf>,
    /// The profile file, for messages.
    #[serde(skip)]
    pub profile_path: PathBuf,
}

/// What the machine has, with the section checked against the ZFS that runs here (the
/// dialect is only known by asking the machine, so the check is part of observing).
#[derive(Debug, Clone)]
pub struct StorageObserved {
    /// The ZFS that answers.
    pub dialect: Dialect,
    /// The section checked against `dialect`, normalized.
    pub desired: Desired,
    /// Pools, datasets, zvols and snapshots as ZFS reports them.
    pub observed: Observed,
}

/// What apply runs for one change: the op and the dialect it was planned for.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageOp {
    pub op: Op,
    pub dialect: Dialect,
}

/// One ledger entry: a pool, dataset or zvol sovereign created or adopted (the ZFS marker
/// is the authority; the ledger lets a profile without `[storage]` still find them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// "pool", "dataset" or "zvol".
    pub kind: String,
}

fn relocate_of(root: &Root) -> Relocate {
    Relocate {
        root: (root.path() != Path::new("/")).then(|| root.path().to_path_buf()),
    }
}

/// The section checked against `dialect` and normalized; an empty state without one.
fn checked(desired: &StorageDesired, dialect: &Dialect) -> Result<Desired> {
    let Some(section) = &desired.section else {
        return Ok(Desired::default());
    };
    let relocate = Relocate {
        root: desired.root.clone(),
    };
    desired::desired(section, dialect, &relocate, None).map_err(|p| {
        anyhow!(
            "{}: invalid storage section:\n{p}",
            desired.profile_path.display()
        )
    })
}

/// The observation request for a desired state.
fn request(d: &Desired) -> observe::Request {
    observe::Request {
        pools: d.pools.keys().cloned().collect(),
        pool_properties: d
            .pools
            .values()
            .flat_map(|p| p.properties.keys().cloned())
            .collect(),
        devices: d
            .pools
            .iter()
            .map(|(n, p)| (n.clone(), topology::devices(&p.layout)))
            .collect(),
        properties: d
            .pools
            .values()
            .flat_map(|p| p.filesystem.keys())
            .chain(d.datasets.values().flat_map(|ds| ds.properties.keys()))
            .chain(d.zvols.values().flat_map(|z| z.properties.keys()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .cloned()
            .collect(),
    }
}

impl Domain for Storage {
    type Desired = StorageDesired;
    type Observed = Option<StorageObserved>;
    type Entry = Entry;

    const NAME: &'static str = "storage";
    const SECTIONS: &'static [&'static str] = &["storage"];

    fn desired(&self, cx: &PlanContext<'_>) -> Result<StorageDesired> {
        let section = cx.profile.profile.storage.clone().filter(|s| {
            !(s.pools.is_empty()
                && s.datasets.is_empty()
                && s.zvols.is_empty()
                && s.snapshot_policies.is_empty())
        });
        Ok(StorageDesired {
            section,
            owner: owner_for(cx.root),
            root: relocate_of(cx.root).root,
            profile_path: cx.profile.path.clone(),
        })
    }

    fn observe(
        &self,
        cx: &PlanContext<'_>,
        desired: &StorageDesired,
        owned: &Owned<Entry>,
    ) -> Result<Option<StorageObserved>> {
        let dialect = match (&desired.section, owned.is_empty()) {
            (Some(_), _) => dialect::detect(cx.host)
                .map_err(|e| anyhow!("the profile declares [storage], but {e}"))?,
            (None, true) => return Ok(None),
            (None, false) => dialect::detect(cx.host)
                .map_err(|e| anyhow!("sovereign owns storage from an earlier apply, but {e}"))?,
        };
        let checked = checked(desired, &dialect)?;
        let observed = observe::observe(cx.host, &dialect, &request(&checked))?;
        Ok(Some(StorageObserved {
            dialect,
            desired: checked,
            observed,
        }))
    }

    fn digests(&self, observed: &Option<StorageObserved>) -> BTreeMap<Address, String> {
        let Some(StorageObserved { observed: o, .. }) = observed else {
            return BTreeMap::new();
        };
        let mut out = BTreeMap::new();
        for (name, pool) in &o.pools {
            let text = format!(
                "{}|{:?}|{}",
                pool.health,
                pool.properties,
                pool.layout
                    .as_deref()
                    .map(topology::describe)
                    .unwrap_or_default()
            );
            out.insert(
                Address::new("storage", "pool", name),
                hex::encode(Sha256::digest(text)),
            );
        }
        for (name, ds) in &o.datasets {
            let (base, kind) = match name.split_once('@') {
                Some((b, _)) => (b, "snapshot"),
                None => (name.as_str(), ds.kind()),
            };
            let stable: Vec<String> = ds
                .props
                .iter()
                .filter(|(k, _)| !props::is_volatile(k))
                .map(|(k, v)| format!("{k}={}{}", v.value, if v.local { "L" } else { "" }))
                .collect();
            let text = format!("{name}|{kind}|{}", stable.join(","));
            let address = if base.contains('/') {
                Address::new(
                    "storage",
                    if ds.kind() == "volume" {
                        "zvol"
                    } else {
                        "dataset"
                    },
                    base,
                )
            } else {
                Address::new("storage", "pool", base)
            };
            let entry = out.entry(address).or_insert_with(String::new);
            *entry = hex::encode(Sha256::digest(format!("{entry}{text}")));
        }
        out
    }

    fn diff(
        &self,
        desired: &StorageDesired,
        observed: &Option<StorageObserved>,
        _owned: &Owned<Entry>,
        options: &DiffOptions,
    ) -> Result<Vec<Change>> {
        let Some(o) = observed else {
            return Ok(Vec::new());
        };
        let opts = diff::Options {
            owner: desired.owner.clone(),
            allow_destroy: options.allow_destroy,
        };
        let ops = diff::diff(&o.desired, &o.observed, &opts).map_err(|p| {
            anyhow!(
                "{}: storage cannot be planned:\n{p}",
                desired.profile_path.display()
            )
        })?;
        Ok(ops
            .into_iter()
            .map(|op| {
                to_change(&op, &desired.owner).with_op(StorageOp {
                    op,
                    dialect: o.dialect.clone(),
                })
            })
            .collect())
    }

    fn apply(
        &self,
        cx: &ApplyContext<'_>,
        desired: &StorageDesired,
        change: &Change,
        ledger: &mut LedgerTx<'_, Entry>,
    ) -> Result<()> {
        let StorageOp { op, dialect } = change.op::<StorageOp>()?;
        let key = change.address.to_string();
        let exec = Exec {
            host: cx.host,
            dialect,
            owner: &desired.owner,
            generation: cx.generation,
        };
        match op {
            Op::CreatePool { .. }
            | Op::CreateDataset { .. }
            | Op::CreateZvol { .. }
            | Op::Adopt { .. } => {
                ledger.record(
                    &key,
                    Entry {
                        kind: op.kind().word().into(),
                    },
                )?;
                exec.apply(op)
            }
            Op::Destroy { .. } => {
                exec.apply(op)?;
                ledger.forget(&key)
            }
            _ => exec.apply(op),
        }
        .with_context(|| format!("{}", change.address))
    }

    fn health(&self, cx: &ApplyContext<'_>, desired: &StorageDesired) -> Vec<HealthResult> {
        if desired.section.is_none() {
            return Vec::new();
        }
        match dialect::detect(cx.host)
            .map_err(|e| anyhow!("{e}"))
            .and_then(|d| checked(desired, &d))
        {
            Ok(checked) => health::check(cx.host, &checked),
            Err(e) => vec![HealthResult {
                name: "storage can be read".into(),
                ok: false,
                detail: format!("{e:#}"),
            }],
        }
    }
}

fn address(kind: Kind, name: &str) -> Address {
    Address::new("storage", kind.word(), name)
}

fn parent_address(name: &str) -> Option<Address> {
    let (parent, _) = name.rsplit_once('/')?;
    Some(if parent.contains('/') {
        address(Kind::Dataset, parent)
    } else {
        address(Kind::Pool, parent)
    })
}

fn prop_fields(set: &[PropChange], prefix: &str) -> Vec<FieldChange> {
    set.iter()
        .map(|p| {
            FieldChange::new(
                &format!("{prefix}{}", p.name),
                p.before.as_deref().map(|b| props::display(&p.name, b)),
                Some(props::display(&p.name, &p.after)),
            )
        })
        .collect()
}

fn new_fields(map: &BTreeMap<String, String>, prefix: &str) -> Vec<FieldChange> {
    map.iter()
        .map(|(k, v)| FieldChange::new(&format!("{prefix}{k}"), None, Some(props::display(k, v))))
        .collect()
}

/// An op as a plan change.
pub fn to_change(op: &Op, owner: &str) -> Change {
    let addr = address(op.kind(), op.name());
    let marker = || FieldChange::new(OWNER_PROPERTY, None, Some(owner.to_string()));
    let mut change = match op {
        Op::CreatePool {
            layout,
            ashift,
            properties,
            filesystem,
            force,
            ..
        } => {
            let mut c = Change::new(addr, Action::Create).field(FieldChange::new(
                "vdevs",
                None,
                Some(topology::describe(layout)),
            ));
            if let Some(a) = ashift {
                c = c.field(FieldChange::new("ashift", None, Some(a.to_string())));
            }
            c.fields.extend(new_fields(properties, "pool."));
            c.fields.extend(new_fields(filesystem, ""));
            c = c.field(marker());
            if *force {
                c.flags.destructive = true;
                c = c.reason("force = true: whatever the devices hold is overwritten");
            }
            c
        }
        Op::CreateDataset { properties, .. } => {
            let mut c = Change::new(addr, Action::Create);
            c.fields.extend(new_fields(properties, ""));
            c.field(marker())
        }
        Op::CreateZvol {
            size,
            volblocksize,
            properties,
            ..
        } => {
            let mut c = Change::new(addr, Action::Create).field(FieldChange::new(
                "volsize",
                None,
                Some(props::display("volsize", &size.to_string())),
            ));
            if let Some(b) = volblocksize {
                c = c.field(FieldChange::new(
                    "volblocksize",
                    None,
                    Some(props::display("volblocksize", &b.to_string())),
                ));
            }
            c.fields.extend(new_fields(properties, ""));
            c.field(marker())
        }
        Op::Update {
            set,
            pool_set,
            name,
            ..
        } => {
            let mut c = Change::new(addr, Action::Update);
            c.fields.extend(prop_fields(set, ""));
            c.fields.extend(prop_fields(pool_set, "pool."));
            if !set.is_empty() {
                c = c.reason(format!(
                    "{name} is snapshotted first (@sovereign-pre-<generation>)"
                ));
            }
            c
        }
        Op::Adopt {
            set,
            pool_set,
            name,
            ..
        } => {
            let mut c = Change::new(addr, Action::Adopt);
            c.fields.extend(prop_fields(set, ""));
            c.fields.extend(prop_fields(pool_set, "pool."));
            c.field(marker())
                .reason(format!("{name} exists and sovereign did not create it: it is snapshotted, then marked as managed"))
        }
        Op::Keep { reason, .. } => Change::new(addr, Action::Keep).reason(reason.clone()),
        Op::Destroy { subtree, .. } => {
            let mut c = Change::new(addr, Action::Delete);
            for item in subtree {
                let what = if item.contains('@') {
                    "snapshot"
                } else {
                    "dataset"
                };
                c = c.field(FieldChange::new(item, Some(what.into()), None));
            }
            c.flags.destructive = true;
            c.reason(format!(
                "destroys {} datasets and snapshots (--allow-destroy)",
                subtree.len()
            ))
        }
    };
    if matches!(op, Op::CreateDataset { .. } | Op::CreateZvol { .. }) {
        change.depends_on.extend(parent_address(op.name()));
    }
    change
}

/// The pre-apply snapshot name of a generation (re-exported for tests and docs).
pub fn pre_snapshot_name(generation: u64) -> String {
    apply::pre_snapshot_name(generation)
}

/// Ask ZFS which dialect answers; a convenience for callers holding a host.
pub fn detect(host: &dyn Host) -> Result<Dialect> {
    dialect::detect(host).map_err(|e| anyhow!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_show_sizes_in_zfs_units_and_depend_on_their_parent() {
        let op = Op::CreateDataset {
            name: "tank/a/b".into(),
            properties: BTreeMap::from([("recordsize".into(), "65536".into())]),
        };
        let c = to_change(&op, "/state");
        assert_eq!(c.address.to_string(), "storage.dataset:tank/a/b");
        assert_eq!(c.fields[0].after.as_deref(), Some("64K"));
        assert_eq!(c.depends_on, [Address::new("storage", "dataset", "tank/a")]);
        let kept = to_change(
            &Op::Keep {
                kind: Kind::Dataset,
                name: "tank/x".into(),
                reason: "kept".into(),
            },
            "/state",
        );
        assert_eq!(kept.action, Action::Keep);
        assert!(!kept.is_pending());
    }
}
