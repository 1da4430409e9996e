//! The rules of `[storage]` a schema cannot say: ZFS names, vdev groups and devices,
//! references between pools, datasets, zvols and snapshot policies.

use indexmap::IndexMap;

use crate::profile::diagnostics::Issue;
use crate::profile::rules::{absolute_normalized, kp, path_of, table_at};
use crate::profile::suggest;
use crate::profile::tree::{Entry, Seg};
use crate::profile::tree::{Node, key_path, quote};
use crate::profile::zfs_names::{dataset_name, pool_name};

const NAME_HINT: &str = "use letters, digits, '_', '-', '.' and ':' in each '/'-separated part, with no empty, '.' or '..' parts, e.g. \"tank/models\"";

pub fn check(root: &Node, out: &mut Vec<Issue>) {
    let pools = table_at(root, &["storage", "pools"]);
    let pool_names: Vec<&str> = pools
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let policies = table_at(root, &["storage", "snapshot_policies"]);
    let policy_names: Vec<&str> = policies
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default();

    for (name, entry) in pools.into_iter().flatten() {
        let here = kp(&["storage", "pools", name]);
        if let Err(why) = pool_name(name) {
            out.push(
                Issue::new(&entry.key_loc, &here, format!("pool name {} {why}", quote(name)))
                    .label("not a pool name")
                    .hint("a pool name starts with a letter and holds letters, digits, '_', '-', '.' and ':', e.g. \"tank\""),
            );
        }
        pool_rules(name, &entry.node, out);
    }
    shared_devices(pools, out);

    for (name, entry) in policies.into_iter().flatten() {
        // Every count zero (or left out) keeps no snapshot: each one taken is pruned at once.
        let counts = ["hourly", "daily", "weekly", "monthly"];
        let keeps = counts.iter().any(|k| {
            entry
                .node
                .get(k)
                .and_then(|e| e.node.int())
                .is_some_and(|n| n > 0)
        });
        let typed = counts
            .iter()
            .all(|k| entry.node.get(k).is_none_or(|e| e.node.int().is_some()));
        if !keeps && typed {
            out.push(
                Issue::new(
                    &entry.key_loc,
                    kp(&["storage", "snapshot_policies", name]),
                    format!(
                        "snapshot policy {} keeps nothing: every count is 0, so each snapshot it takes would be pruned at once",
                        quote(name)
                    ),
                )
                .label("keeps no snapshot")
                .hint("keep at least one, e.g. hourly = 24, daily = 7"),
            );
        }
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            out.push(
                Issue::new(
                    &entry.key_loc,
                    kp(&["storage", "snapshot_policies", name]),
                    format!(
                        "snapshot policy name {} may hold only letters, digits, '_' and '-'",
                        quote(name)
                    ),
                )
                .label("not a policy name")
                .hint("e.g. [storage.snapshot_policies.rolling]"),
            );
        }
    }

    for section in ["datasets", "zvols"] {
        let what = if section == "datasets" {
            "dataset"
        } else {
            "zvol"
        };
        for (name, entry) in table_at(root, &["storage", section]).into_iter().flatten() {
            let here = kp(&["storage", section, name]);
            if let Err(why) = dataset_name(name) {
                out.push(
                    Issue::new(
                        &entry.key_loc,
                        &here,
                        format!("{what} name {} {why}", quote(name)),
                    )
                    .label(format!("not a {what} name"))
                    .hint(NAME_HINT),
                );
                continue;
            }
            let pool = name.split('/').next().unwrap_or_default();
            if !pool_names.contains(&pool) {
                let declared = if pool_names.is_empty() {
                    "no pools are declared".to_string()
                } else {
                    format!("declared pools: {}", pool_names.join(", "))
                };
                out.push(
                    Issue::new(
                        &entry.key_loc,
                        &here,
                        format!(
                            "{what} {} is on pool {}, which is not declared in storage.pools{}",
                            quote(name),
                            quote(pool),
                            suggest::suffix(pool, pool_names.iter().copied())
                        ),
                    )
                    .label("undeclared pool")
                    .hint(format!(
                        "declare [storage.pools.{}] or fix the name ({declared})",
                        crate::profile::tree::toml_key(pool)
                    )),
                );
            }
            if section == "zvols" {
                zvol_rules(root, name, &entry.node, out);
                continue;
            }
            let Some(snap) = entry.node.get("snapshots") else {
                continue;
            };
            let Some(policy) = snap.node.str() else {
                continue;
            };
            if !policy_names.contains(&policy) {
                out.push(
                    Issue::new(
                        &snap.node.loc,
                        kp(&["storage", "datasets", name, "snapshots"]),
                        format!(
                            "snapshot policy {} is not declared in storage.snapshot_policies{}",
                            quote(policy),
                            suggest::suffix(policy, policy_names.iter().copied())
                        ),
                    )
                    .label("undeclared policy")
                    .hint(format!(
                        "declare [storage.snapshot_policies.{}] or name one of: {}",
                        crate::profile::tree::toml_key(policy),
                        if policy_names.is_empty() {
                            "(none declared)".to_string()
                        } else {
                            policy_names.join(", ")
                        }
                    )),
                );
            }
        }
    }
}

fn pool_rules(name: &str, pool: &Node, out: &mut Vec<Issue>) {
    let Some(vdevs) = pool.get("vdevs") else {
        return;
    };
    let Some(list) = vdevs.node.array() else {
        return;
    };
    let base = path_of(&["storage", "pools", name, "vdevs"]);
    if list.is_empty() {
        out.push(
            Issue::new(
                &vdevs.node.loc,
                key_path(&base),
                format!("pool {} has no vdevs", quote(name)),
            )
            .label("empty")
            .hint(
                "list at least one device or file, e.g. vdevs = [\"/var/lib/sovereign/tank.img\"]",
            ),
        );
    }
    for (i, vdev) in list.iter().enumerate() {
        let mut p = base.clone();
        p.push(Seg::Index(i));
        if let Some(device) = vdev.str() {
            device_path(device, vdev, &p, out);
            continue;
        }
        let (Some(kind), Some(devices)) = (vdev.get("type"), vdev.get("devices")) else {
            continue;
        };
        let (Some(kind), Some(members)) = (kind.node.str(), devices.node.array()) else {
            continue;
        };
        let least = match kind {
            "mirror" => 2,
            "raidz1" => 3,
            "raidz2" => 4,
            _ => continue,
        };
        p.push(Seg::Key("devices".into()));
        if members.len() < least {
            out.push(
                Issue::new(
                    &devices.node.loc,
                    key_path(&p),
                    format!("a {kind} vdev needs at least {least} devices, found {}", members.len()),
                )
                .label(format!("{} device(s)", members.len()))
                .hint("mirror needs 2 or more devices, raidz1 3 or more, raidz2 4 or more; a single device is written as a plain path"),
            );
        }
        for (j, member) in members.iter().enumerate() {
            if let Some(device) = member.str() {
                let mut q = p.clone();
                q.push(Seg::Index(j));
                device_path(device, member, &q, out);
            }
        }
    }
}

/// What ZFS refuses of a zvol, known from the profile alone: a size of zero, a block size
/// that is not a power of two from 512 bytes to 128K, a dataset of the same name, a
/// dataset under it (a zvol holds no datasets).
fn zvol_rules(root: &Node, name: &str, zvol: &Node, out: &mut Vec<Issue>) {
    use crate::profile::units::Size;
    let size_of = |key: &str| {
        zvol.get(key)
            .and_then(|e| Some((e, e.node.str()?.parse::<Size>().ok()?)))
    };
    if let Some((e, size)) = size_of("size") {
        if size.bytes() == 0 {
            out.push(
                Issue::new(
                    &e.node.loc,
                    kp(&["storage", "zvols", name, "size"]),
                    format!("zvol {} has a size of 0", quote(name)),
                )
                .label("empty volume")
                .hint("give the volume's size, e.g. size = \"64G\""),
            );
        }
    }
    if let Some((e, bs)) = size_of("volblocksize") {
        let b = bs.bytes();
        if !b.is_power_of_two() || !(512..=128 * 1024).contains(&b) {
            out.push(
                Issue::new(
                    &e.node.loc,
                    kp(&["storage", "zvols", name, "volblocksize"]),
                    format!("volblocksize {bs} is not a power of two from 512B to 128K"),
                )
                .label("not a block size")
                .hint("e.g. volblocksize = \"16K\" (512B, 1K, 2K, 4K, 8K, 16K, 32K, 64K or 128K)"),
            );
        }
    }
    for (dataset, entry) in table_at(root, &["storage", "datasets"])
        .into_iter()
        .flatten()
    {
        let message = if dataset == name {
            format!("{} is declared as a dataset and as a zvol", quote(name))
        } else if dataset.starts_with(&format!("{name}/")) {
            format!(
                "dataset {} is under zvol {}, and a zvol holds no datasets",
                quote(dataset),
                quote(name)
            )
        } else {
            continue;
        };
        out.push(
            Issue::new(
                &entry.key_loc,
                kp(&["storage", "datasets", dataset]),
                message,
            )
            .label("conflicts with a zvol")
            .hint(
                "a name is either a dataset (a filesystem) or a zvol (a block device); rename one",
            ),
        );
    }
}

/// A device or file may back one vdev of one pool: listed twice (in one mirror, or in two
/// pools), `zpool create` refuses it, or worse, two pools fight over it.
fn shared_devices(pools: Option<&IndexMap<String, Entry>>, out: &mut Vec<Issue>) {
    // Every device of every pool, then in file order, so the second mention is the one
    // reported whatever order the pools merged in.
    let mut devices: Vec<(&str, Vec<Seg>, &Node)> = Vec::new();
    for (pool, entry) in pools.into_iter().flatten() {
        let Some(vdevs) = entry.node.get("vdevs").and_then(|v| v.node.array()) else {
            continue;
        };
        for (i, vdev) in vdevs.iter().enumerate() {
            let mut p = path_of(&["storage", "pools", pool, "vdevs"]);
            p.push(Seg::Index(i));
            if vdev.str().is_some() {
                devices.push((pool, p, vdev));
            } else if let Some(members) = vdev.get("devices").and_then(|d| d.node.array()) {
                p.push(Seg::Key("devices".into()));
                for (j, m) in members.iter().enumerate() {
                    let mut q = p.clone();
                    q.push(Seg::Index(j));
                    devices.push((pool, q, m));
                }
            }
        }
    }
    devices.sort_by_key(|(_, _, n)| (n.loc.file, n.loc.span.start));
    let mut seen: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for (pool, path, node) in devices {
        let Some(device) = node.str() else {
            continue;
        };
        let Some(first) = seen.get(device) else {
            seen.insert(device, pool);
            continue;
        };
        let message = if *first == pool {
            format!(
                "device {} is listed twice in pool {}",
                quote(device),
                quote(pool)
            )
        } else {
            format!(
                "device {} is already a vdev of pool {}",
                quote(device),
                quote(first)
            )
        };
        out.push(
            Issue::new(&node.loc, key_path(&path), message)
                .label("listed again")
                .hint("each device or file backs one vdev of one pool; name another device here"),
        );
    }
}

fn device_path(device: &str, node: &Node, path: &[Seg], out: &mut Vec<Issue>) {
    if let Err(why) = absolute_normalized(device) {
        out.push(
            Issue::new(&node.loc, key_path(path), format!("vdev path {} {why}", quote(device)))
                .label("not an absolute path")
                .hint("name devices by absolute path, e.g. \"/dev/disk/by-id/nvme-A\" or a file \"/var/lib/sovereign/tank.img\""),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::zfs_names::component;

    #[test]
    fn names_are_bounded() {
        assert!(dataset_name("tank/models").is_ok());
        assert!(dataset_name("tank/vms/hunt-01").is_ok());
        assert!(dataset_name("tank").is_err());
        assert!(dataset_name("tank//x").is_err());
        assert!(dataset_name("tank/../x").is_err());
        assert!(dataset_name("tank/a b").is_err());
        assert!(pool_name("mirror0").is_err());
        assert!(pool_name("1tank").is_err());
        // Exactly what ZFS reserves, no more.
        for bad in ["log", "raidz2pool", "draidx", "spare", "c0", "c1tank"] {
            assert!(pool_name(bad).is_err(), "{bad}");
        }
        for good in ["logs", "logpool", "cache", "cachepool", "ctank", "c"] {
            assert!(pool_name(good).is_ok(), "{good}: {:?}", pool_name(good));
        }
        assert!(component("a.b").is_ok());
    }
}
