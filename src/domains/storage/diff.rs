//! The storage diff: desired against observed, a pure function into ordered operations.
//!
//! Ownership rules live here: sovereign changes or removes only what carries its marker
//! with this state's value; a declared dataset that exists unmarked is adopted; one
//! marked by another state is an error; an owned one the profile no longer names is kept
//! unless destroying is allowed, and then the plan lists every dataset and snapshot that
//! goes.

use std::collections::BTreeMap;

use libzetta::zpool::CreateVdevRequest;

use super::desired::{Desired, Problem, Problems};
use super::observe::{Observed, ObservedDataset, depth};
use super::probe::DeviceUse;
use super::props::{self, OWNER_PROPERTY};
use super::topology;

/// How to diff.
#[derive(Debug, Clone)]
pub struct Options {
    /// The ownership marker's value for this state (its state directory).
    pub owner: String,
    /// Destroy owned datasets, zvols and pools the profile no longer names.
    pub allow_destroy: bool,
}

/// One property to set: the value before (as observed) and after (as ZFS takes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropChange {
    pub name: String,
    /// `None` when the property was not reported.
    pub before: Option<String>,
    pub after: String,
}

/// What kind of thing a resource is, for addresses and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pool,
    Dataset,
    Zvol,
}

impl Kind {
    pub fn word(self) -> &'static str {
        match self {
            Kind::Pool => "pool",
            Kind::Dataset => "dataset",
            Kind::Zvol => "zvol",
        }
    }
}

/// One storage operation. Its order in the list is its execution order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `zpool create`, with the marker on the root dataset.
    CreatePool {
        name: String,
        layout: Vec<CreateVdevRequest>,
        ashift: Option<u8>,
        properties: BTreeMap<String, String>,
        filesystem: BTreeMap<String, String>,
        force: bool,
    },
    /// `zfs create` of a filesystem (marked).
    CreateDataset {
        name: String,
        properties: BTreeMap<String, String>,
    },
    /// `zfs create -V` of a volume (marked).
    CreateZvol {
        name: String,
        size: u64,
        volblocksize: Option<u64>,
        properties: BTreeMap<String, String>,
    },
    /// Set properties of an owned dataset, zvol or pool (root dataset and pool
    /// properties), after a pre-apply snapshot.
    Update {
        kind: Kind,
        name: String,
        /// Dataset properties (`zfs set`).
        set: Vec<PropChange>,
        /// Pool properties (`zpool set`).
        pool_set: Vec<PropChange>,
    },
    /// Take over an unmarked dataset or pool the profile names: snapshot, converge its
    /// properties, add the marker.
    Adopt {
        kind: Kind,
        name: String,
        set: Vec<PropChange>,
        pool_set: Vec<PropChange>,
    },
    /// Owned, no longer named (or not changeable): listed, nothing done.
    Keep {
        kind: Kind,
        name: String,
        reason: String,
    },
    /// Destroy an owned resource and everything in `subtree` (deepest first).
    Destroy {
        kind: Kind,
        name: String,
        subtree: Vec<String>,
    },
}

impl Op {
    pub fn name(&self) -> &str {
        match self {
            Op::CreatePool { name, .. }
            | Op::CreateDataset { name, .. }
            | Op::CreateZvol { name, .. }
            | Op::Update { name, .. }
            | Op::Adopt { name, .. }
            | Op::Keep { name, .. }
            | Op::Destroy { name, .. } => name,
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Op::CreatePool { .. } => Kind::Pool,
            Op::CreateDataset { .. } => Kind::Dataset,
            Op::CreateZvol { .. } => Kind::Zvol,
            Op::Update { kind, .. }
            | Op::Adopt { kind, .. }
            | Op::Keep { kind, .. }
            | Op::Destroy { kind, .. } => *kind,
        }
    }

    /// Whether apply does something for it.
    pub fn is_pending(&self) -> bool {
        !matches!(self, Op::Keep { .. })
    }
}

fn prop_changes(
    want: &BTreeMap<String, String>,
    have: Option<&ObservedDataset>,
) -> Vec<PropChange> {
    want.iter()
        .filter_map(|(name, value)| {
            let before = have.and_then(|d| d.get(name)).map(str::to_string);
            let same = before
                .as_deref()
                .is_some_and(|b| props::normalize(name, b) == props::normalize(name, value));
            (!same).then(|| PropChange {
                name: name.clone(),
                before,
                after: value.clone(),
            })
        })
        .collect()
}

fn pool_prop_changes(
    want: &BTreeMap<String, String>,
    have: &BTreeMap<String, String>,
) -> Vec<PropChange> {
    want.iter()
        .filter(|(n, v)| have.get(*n) != Some(*v))
        .map(|(n, v)| PropChange {
            name: n.clone(),
            before: have.get(n).cloned(),
            after: v.clone(),
        })
        .collect()
}

/// Diff desired against observed. Problems only the machine reveals (a device in use, a
/// dataset another state owns, a shrinking zvol) are plan-time errors.
pub fn diff(desired: &Desired, observed: &Observed, opts: &Options) -> Result<Vec<Op>, Problems> {
    let (ops, problems) = plan(desired, observed, opts);
    if problems.is_empty() {
        Ok(ops)
    } else {
        Err(Problems(problems))
    }
}

/// The ops alone: what [`diff`] returns when it has no problems, and otherwise the ops
/// that are not blocked by one (the engine raises the problems at observe time).
pub fn ops(desired: &Desired, observed: &Observed, opts: &Options) -> Vec<Op> {
    plan(desired, observed, opts).0
}

fn plan(desired: &Desired, observed: &Observed, opts: &Options) -> (Vec<Op>, Vec<Problem>) {
    let mut ops = Vec::new();
    let mut problems = Vec::new();
    let mut problem = |at: String, message: String| problems.push(Problem { at, message });
    let ours = |d: &ObservedDataset| d.owner() == Some(opts.owner.as_str());

    let claim = |kind: Kind,
                 name: &str,
                 have: &ObservedDataset,
                 set: Vec<PropChange>,
                 pool_set: Vec<PropChange>,
                 problem: &mut dyn FnMut(String, String)|
     -> Option<Op> {
        match have.owner() {
            Some(o) if o == opts.owner => {
                (!set.is_empty() || !pool_set.is_empty()).then(|| Op::Update {
                    kind,
                    name: name.to_string(),
                    set,
                    pool_set,
                })
            }
            Some(other) => {
                problem(
                    format!("storage.{}s.{name}", kind.word()),
                    format!(
                        "{name} belongs to another sovereign state ({OWNER_PROPERTY}={other}); this state ({}) leaves it alone: remove it from this profile or from the other state",
                        opts.owner
                    ),
                );
                None
            }
            None => Some(Op::Adopt {
                kind,
                name: name.to_string(),
                set,
                pool_set,
            }),
        }
    };

    for (name, pool) in &desired.pools {
        match observed.pools.get(name) {
            None => {
                for dev in topology::devices(&pool.layout) {
                    match observed.devices.get(&dev) {
                        Some(DeviceUse::Missing) => problem(
                            format!("storage.pools.{name}.vdevs"),
                            format!(
                                "{} does not exist: attach the device, or create a file vdev first (e.g. `truncate -s 1G {}`)",
                                dev.display(),
                                dev.display()
                            ),
                        ),
                        Some(DeviceUse::InUse(why)) if !pool.force => problem(
                            format!("storage.pools.{name}.vdevs"),
                            format!(
                                "refusing to create pool {name}: {} {why}; set `force = true` on the pool to overwrite it (its contents are lost)",
                                dev.display()
                            ),
                        ),
                        _ => {}
                    }
                }
                ops.push(Op::CreatePool {
                    name: name.clone(),
                    layout: pool.layout.clone(),
                    ashift: pool.ashift,
                    properties: pool.properties.clone(),
                    filesystem: pool.filesystem.clone(),
                    force: pool.force,
                });
            }
            Some(have) => {
                if let Some(layout) = &have.layout {
                    if !topology::same_layout(layout, &pool.layout) {
                        ops.push(Op::Keep {
                            kind: Kind::Pool,
                            name: name.clone(),
                            reason: format!(
                                "the pool's layout is {} and the profile asks for {}; a layout cannot change in place, so nothing is done (recreate the pool by hand to change it)",
                                topology::describe(layout),
                                topology::describe(&pool.layout)
                            ),
                        });
                    }
                }
                let root = observed.datasets.get(name).cloned().unwrap_or_default();
                let set = prop_changes(&pool.filesystem, Some(&root));
                let pool_set = pool_prop_changes(&pool.properties, &have.properties);
                if let Some(op) = claim(Kind::Pool, name, &root, set, pool_set, &mut problem) {
                    ops.push(op);
                }
            }
        }
    }

    // Parents sort before children in a BTreeMap only per branch; sort by depth so every
    // parent is created before anything below it.
    let mut names: Vec<(&String, bool)> = desired
        .datasets
        .keys()
        .map(|n| (n, false))
        .chain(desired.zvols.keys().map(|n| (n, true)))
        .collect();
    names.sort_by_key(|(n, _)| (depth(n), n.as_str()));
    for (name, is_zvol) in names {
        let have = observed.datasets.get(name);
        if let Some(h) = have {
            let actual = h.kind();
            let want = if is_zvol { "volume" } else { "filesystem" };
            if actual != want {
                problem(
                    format!(
                        "storage.{}s.\"{name}\"",
                        if is_zvol { "zvol" } else { "dataset" }
                    ),
                    format!("{name} exists as a {actual}, not a {want}"),
                );
                continue;
            }
        }
        if is_zvol {
            let z = &desired.zvols[name];
            match have {
                None => ops.push(Op::CreateZvol {
                    name: name.clone(),
                    size: z.size,
                    volblocksize: z.volblocksize,
                    properties: z.properties.clone(),
                }),
                Some(h) => {
                    let key = format!("storage.zvols.\"{name}\"");
                    let size: u64 = h.get("volsize").and_then(|v| v.parse().ok()).unwrap_or(0);
                    if z.size < size {
                        problem(
                            format!("{key}.size"),
                            format!(
                                "{name} is {} and the profile asks for {}: shrinking a zvol loses data and is refused",
                                crate::profile::units::Size(size),
                                crate::profile::units::Size(z.size)
                            ),
                        );
                        continue;
                    }
                    if let (Some(want), Some(have_bs)) = (
                        z.volblocksize,
                        h.get("volblocksize").and_then(|v| v.parse::<u64>().ok()),
                    ) {
                        if want != have_bs {
                            problem(
                                format!("{key}.volblocksize"),
                                format!(
                                    "{name} has volblocksize {} and the profile asks for {}: it is fixed at creation",
                                    props::display("volblocksize", &have_bs.to_string()),
                                    props::display("volblocksize", &want.to_string())
                                ),
                            );
                            continue;
                        }
                    }
                    let mut want = z.properties.clone();
                    want.insert("volsize".into(), z.size.to_string());
                    if let Some(op) = claim(
                        Kind::Zvol,
                        name,
                        h,
                        prop_changes(&want, Some(h)),
                        Vec::new(),
                        &mut problem,
                    ) {
                        ops.push(op);
                    }
                }
            }
            continue;
        }
        let d = &desired.datasets[name];
        match have {
            None => ops.push(Op::CreateDataset {
                name: name.clone(),
                properties: d.properties.clone(),
            }),
            // An implicit parent that exists is left as it is, whoever made it.
            Some(_) if d.implicit => {}
            Some(h) => {
                if let Some(op) = claim(
                    Kind::Dataset,
                    name,
                    h,
                    prop_changes(&d.properties, Some(h)),
                    Vec::new(),
                    &mut problem,
                ) {
                    ops.push(op);
                }
            }
        }
    }

    // Owned resources the profile no longer names: kept, or destroyed when allowed.
    let declared = |n: &str| {
        desired.datasets.contains_key(n)
            || desired.zvols.contains_key(n)
            || desired.pools.contains_key(n)
    };
    let orphans: Vec<&String> = observed
        .datasets
        .iter()
        .filter(|(n, d)| !n.contains('@') && ours(d) && !declared(n))
        .map(|(n, _)| n)
        .collect();
    let mut leaving = Vec::new();
    for name in &orphans {
        // Folded into an ancestor that goes too.
        if orphans.iter().any(|o| name.starts_with(&format!("{o}/"))) {
            continue;
        }
        let kind = if !name.contains('/') {
            Kind::Pool
        } else if observed.datasets[*name].kind() == "volume" {
            Kind::Zvol
        } else {
            Kind::Dataset
        };
        let subtree: Vec<String> = observed
            .subtree(name)
            .into_iter()
            .map(String::from)
            .collect();
        let foreign: Vec<&str> = subtree
            .iter()
            .map(String::as_str)
            .filter(|n| !n.contains('@') && !ours(&observed.datasets[*n]))
            .collect();
        let still_declared: Vec<&str> = subtree
            .iter()
            .map(String::as_str)
            .filter(|n| declared(n))
            .collect();
        let summary = subtree.join(", ");
        let reason = if !foreign.is_empty() {
            format!(
                "no longer in the profile, but it holds {} which sovereign does not own; kept",
                foreign.join(", ")
            )
        } else if !still_declared.is_empty() {
            format!(
                "no longer in the profile, but it holds {} which the profile still declares; kept",
                still_declared.join(", ")
            )
        } else if !opts.allow_destroy {
            format!("no longer in the profile; kept (apply --allow-destroy destroys {summary})")
        } else {
            leaving.push(Op::Destroy {
                kind,
                name: name.to_string(),
                subtree,
            });
            continue;
        };
        leaving.push(Op::Keep {
            kind,
            name: name.to_string(),
            reason,
        });
    }
    // Deepest first, so nothing is destroyed before what it holds.
    leaving.sort_by_key(|op| std::cmp::Reverse(depth(op.name())));
    ops.extend(leaving);
    (ops, problems)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domains::storage::desired::{DesiredDataset, DesiredPool, DesiredZvol};
    use crate::domains::storage::dialect::Dialect;
    use crate::domains::storage::observe::{ObservedPool, parse_zfs_get};

    const OWNER: &str = "/state";

    fn opts(allow_destroy: bool) -> Options {
        Options {
            owner: OWNER.into(),
            allow_destroy,
        }
    }

    fn pool() -> DesiredPool {
        DesiredPool {
            layout: vec![CreateVdevRequest::SingleDisk("/img".into())],
            ashift: None,
            properties: BTreeMap::new(),
            filesystem: BTreeMap::new(),
            force: false,
        }
    }

    fn desired(datasets: &[(&str, &[(&str, &str)])]) -> Desired {
        let mut d = Desired::default();
        d.pools.insert("tank".into(), pool());
        for (name, props) in datasets {
            d.datasets.insert(
                name.to_string(),
                DesiredDataset {
                    properties: props
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    ..DesiredDataset::default()
                },
            );
        }
        d
    }

    /// Observed state from `zfs get` lines: "name prop value source" with spaces.
    fn observed(lines: &[&str]) -> Observed {
        let text: String = lines
            .iter()
            .map(|l| l.split(' ').collect::<Vec<_>>().join("\t") + "\n")
            .collect();
        let mut datasets = BTreeMap::new();
        parse_zfs_get(&text, &mut datasets);
        let mut pools = BTreeMap::new();
        pools.insert(
            "tank".into(),
            ObservedPool {
                health: "ONLINE".into(),
                properties: BTreeMap::new(),
                layout: Some(vec![CreateVdevRequest::SingleDisk("/img".into())]),
            },
        );
        Observed {
            dialect: Dialect::ZfsFuse { pool_version: 23 },
            pools,
            datasets,
            devices: BTreeMap::new(),
        }
    }

    fn owned(name: &str) -> String {
        format!("{name} sovereign:owner {OWNER} local")
    }

    #[test]
    fn an_empty_machine_gets_pool_then_parents_then_children() {
        let mut d = desired(&[("tank/a/b", &[("compression", "on")])]);
        d.datasets.insert(
            "tank/a".into(),
            DesiredDataset {
                implicit: true,
                ..DesiredDataset::default()
            },
        );
        let mut obs = observed(&[]);
        obs.pools.clear();
        obs.devices.insert("/img".into(), DeviceUse::Free);
        let ops = diff(&d, &obs, &opts(false)).unwrap();
        let names: Vec<&str> = ops.iter().map(Op::name).collect();
        assert_eq!(names, ["tank", "tank/a", "tank/a/b"]);
        assert!(matches!(ops[0], Op::CreatePool { .. }));
    }

    #[test]
    fn a_converged_machine_has_no_pending_ops() {
        let d = desired(&[("tank/a", &[("recordsize", "64K"), ("quota", "none")])]);
        let tank = owned("tank");
        let a = owned("tank/a");
        let obs = observed(&[
            &tank,
            &a,
            "tank/a recordsize 65536 local",
            "tank/a quota 0 default",
        ]);
        let ops = diff(&d, &obs, &opts(false)).unwrap();
        assert!(ops.is_empty(), "{ops:?}");
    }

    #[test]
    fn a_changed_property_is_an_update_with_before_and_after() {
        let d = desired(&[("tank/a", &[("compression", "gzip")])]);
        let (tank, a) = (owned("tank"), owned("tank/a"));
        let obs = observed(&[&tank, &a, "tank/a compression off default"]);
        let ops = diff(&d, &obs, &opts(false)).unwrap();
        assert_eq!(
            ops,
            [Op::Update {
                kind: Kind::Dataset,
                name: "tank/a".into(),
                set: vec![PropChange {
                    name: "compression".into(),
                    before: Some("off".into()),
                    after: "gzip".into()
                }],
                pool_set: vec![],
            }]
        );
    }

    #[test]
    fn unmarked_datasets_are_adopted_and_foreign_ones_refused() {
        let d = desired(&[("tank/mine", &[]), ("tank/theirs", &[])]);
        let tank = owned("tank");
        let obs = observed(&[
            &tank,
            "tank/mine type filesystem -",
            "tank/theirs sovereign:owner /other local",
        ]);
        let err = diff(&d, &obs, &opts(false)).unwrap_err().to_string();
        assert!(
            err.contains("tank/theirs belongs to another sovereign state"),
            "{err}"
        );
        let d = desired(&[("tank/mine", &[])]);
        let ops = diff(&d, &obs, &opts(false)).unwrap();
        assert!(matches!(&ops[0], Op::Adopt { name, .. } if name == "tank/mine"));
    }

    #[test]
    fn removed_datasets_are_kept_unless_destroy_is_allowed() {
        let d = desired(&[]);
        let (tank, a, b) = (owned("tank"), owned("tank/a"), owned("tank/a/b"));
        let obs = observed(&[
            &tank,
            &a,
            &b,
            "tank/a@s1 type snapshot -",
            "tank/a/b@s2 type snapshot -",
        ]);
        let ops = diff(&d, &obs, &opts(false)).unwrap();
        assert_eq!(ops.len(), 1, "tank/a/b folds into tank/a: {ops:?}");
        assert!(
            matches!(&ops[0], Op::Keep { name, reason, .. } if name == "tank/a" && reason.contains("tank/a/b@s2"))
        );
        assert!(!ops[0].is_pending());
        let ops = diff(&d, &obs, &opts(true)).unwrap();
        assert_eq!(
            ops,
            [Op::Destroy {
                kind: Kind::Dataset,
                name: "tank/a".into(),
                subtree: ["tank/a/b@s2", "tank/a/b", "tank/a@s1", "tank/a"]
                    .map(String::from)
                    .to_vec(),
            }]
        );
    }

    #[test]
    fn a_destroy_that_would_take_unowned_datasets_is_kept() {
        let d = desired(&[]);
        let (tank, a) = (owned("tank"), owned("tank/a"));
        let obs = observed(&[&tank, &a, "tank/a/user type filesystem -"]);
        let ops = diff(&d, &obs, &opts(true)).unwrap();
        assert!(
            matches!(&ops[0], Op::Keep { reason, .. } if reason.contains("tank/a/user which sovereign does not own"))
        );
    }

    #[test]
    fn a_device_in_use_refuses_pool_creation_unless_forced() {
        let mut d = desired(&[]);
        let mut obs = observed(&[]);
        obs.pools.clear();
        obs.devices.insert(
            "/img".into(),
            DeviceUse::InUse("holds a signature of type ext4".into()),
        );
        let err = diff(&d, &obs, &opts(false)).unwrap_err().to_string();
        assert!(err.contains("refusing to create pool tank: /img holds a signature of type ext4; set `force = true`"), "{err}");
        d.pools.get_mut("tank").unwrap().force = true;
        assert!(diff(&d, &obs, &opts(false)).is_ok());
    }

    #[test]
    fn a_missing_vdev_is_a_plan_time_error_with_a_hint() {
        let d = desired(&[]);
        let mut obs = observed(&[]);
        obs.pools.clear();
        obs.devices.insert("/img".into(), DeviceUse::Missing);
        let err = diff(&d, &obs, &opts(false)).unwrap_err().to_string();
        assert!(
            err.contains("/img does not exist") && err.contains("truncate -s 1G /img"),
            "{err}"
        );
    }

    #[test]
    fn a_different_layout_is_reported_never_changed() {
        let mut d = desired(&[]);
        d.pools.get_mut("tank").unwrap().layout = vec![CreateVdevRequest::Mirror(vec![
            "/img".into(),
            "/img2".into(),
        ])];
        let tank = owned("tank");
        let ops = diff(&d, &observed(&[&tank]), &opts(true)).unwrap();
        assert!(
            matches!(&ops[0], Op::Keep { reason, .. } if reason.contains("cannot change in place"))
        );
    }

    #[test]
    fn zvols_grow_and_refuse_to_shrink() {
        let mut d = desired(&[]);
        d.zvols.insert(
            "tank/vm".into(),
            DesiredZvol {
                size: 2 << 30,
                volblocksize: Some(16 << 10),
                properties: BTreeMap::new(),
            },
        );
        let (tank, vm) = (owned("tank"), owned("tank/vm"));
        let lines = |size: u64| {
            vec![
                tank.clone(),
                vm.clone(),
                "tank/vm type volume -".into(),
                format!("tank/vm volsize {size} local"),
                "tank/vm volblocksize 16384 -".into(),
            ]
        };
        let obs = observed(
            &lines(1 << 30)
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        let ops = diff(&d, &obs, &opts(false)).unwrap();
        assert!(
            matches!(&ops[0], Op::Update { set, .. } if set[0].name == "volsize" && set[0].after == (2u64 << 30).to_string())
        );
        let obs = observed(
            &lines(4 << 30)
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        let err = diff(&d, &obs, &opts(false)).unwrap_err().to_string();
        assert!(
            err.contains("shrinking a zvol loses data and is refused"),
            "{err}"
        );
        let mut obs = observed(
            &lines(2 << 30)
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        assert!(diff(&d, &obs, &opts(false)).unwrap().is_empty());
        obs.datasets.remove("tank/vm");
        assert!(
            matches!(&diff(&d, &obs, &opts(false)).unwrap()[0], Op::CreateZvol { size, .. } if *size == 2 << 30)
        );
    }
}
