//! The post-apply health check: every declared pool ONLINE, every declared filesystem
//! mounted where it should be. Two bulk reads, like observation.

use std::time::Duration;

use crate::domain::HealthResult;
use crate::host::{Cmd, Host};

use super::desired::Desired;
use super::observe::{self, ObservedDataset};

fn read(host: &dyn Host, argv: Vec<String>) -> Result<String, String> {
    let cmd = Cmd::new(argv).timeout(Duration::from_secs(60));
    match host.run(&cmd) {
        Ok(out) if out.success() => Ok(out.stdout_str()),
        Ok(out) => Err(format!(
            "`{}` failed: {}",
            cmd.display(),
            out.stderr_str().trim()
        )),
        Err(e) => Err(format!("cannot run `{}`: {e}", cmd.display())),
    }
}

/// Why a filesystem is not where it should be, if it is not.
fn mount_problem(
    name: &str,
    ds: &ObservedDataset,
    want_mountpoint: Option<&str>,
) -> Option<String> {
    let mountpoint = ds.get("mountpoint").unwrap_or("-");
    if let Some(want) = want_mountpoint {
        if mountpoint != want {
            return Some(format!("{name} has mountpoint {mountpoint}, not {want}"));
        }
    }
    let expected =
        ds.get("canmount") == Some("on") && !matches!(mountpoint, "none" | "legacy" | "-");
    (expected && ds.get("mounted") != Some("yes"))
        .then(|| format!("{name} is not mounted at {mountpoint}"))
}

/// Check what `desired` declares; one result per pool and one for all filesystems.
pub fn check(host: &dyn Host, desired: &Desired) -> Vec<HealthResult> {
    if desired.pools.is_empty() {
        return Vec::new();
    }
    let mut results = Vec::new();
    let cols = ["name".to_string(), "health".to_string()];
    let pools = match read(
        host,
        vec![
            "zpool".into(),
            "list".into(),
            "-H".into(),
            "-o".into(),
            "name,health".into(),
        ],
    ) {
        Ok(text) => observe::parse_pool_list(&text, &cols),
        Err(e) => {
            return vec![HealthResult {
                name: "storage pools".into(),
                ok: false,
                detail: e,
            }];
        }
    };
    for name in desired.pools.keys() {
        let health = pools
            .get(name)
            .map(|p| p.health.as_str())
            .unwrap_or("missing");
        results.push(HealthResult {
            name: format!("storage pool {name} online"),
            ok: health == "ONLINE",
            detail: format!("{name} is {health}"),
        });
    }
    let present: Vec<String> = desired
        .pools
        .keys()
        .filter(|p| pools.contains_key(*p))
        .cloned()
        .collect();
    if present.is_empty() {
        return results;
    }
    let argv = observe::zfs_get_argv("type,mounted,mountpoint,canmount", &present);
    let mut datasets = std::collections::BTreeMap::new();
    let problems: Vec<String> = match read(host, argv) {
        Ok(text) => {
            observe::parse_zfs_get(&text, &mut datasets);
            let pool_roots = desired
                .pools
                .iter()
                .map(|(n, p)| (n, p.filesystem.get("mountpoint")));
            let children = desired
                .datasets
                .iter()
                .map(|(n, d)| (n, d.properties.get("mountpoint")));
            pool_roots
                .chain(children)
                .filter_map(|(name, want)| match datasets.get(name) {
                    None => Some(format!("{name} does not exist")),
                    Some(ds) => mount_problem(name, ds, want.map(String::as_str)),
                })
                .collect()
        }
        Err(e) => vec![e],
    };
    results.push(HealthResult {
        name: "storage datasets mounted".into(),
        ok: problems.is_empty(),
        detail: if problems.is_empty() {
            format!(
                "{} filesystems mounted where declared",
                desired.pools.len() + desired.datasets.len()
            )
        } else {
            problems.join("; ")
        },
    });
    results
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domains::storage::observe::Prop;

    fn ds(props: &[(&str, &str)]) -> ObservedDataset {
        ObservedDataset {
            props: props
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        Prop {
                            value: v.to_string(),
                            local: false,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn an_unmounted_filesystem_is_a_failure_unless_it_should_not_mount() {
        let mounted = ds(&[
            ("mounted", "yes"),
            ("mountpoint", "/t/a"),
            ("canmount", "on"),
        ]);
        assert_eq!(mount_problem("t/a", &mounted, None), None);
        let unmounted = ds(&[
            ("mounted", "no"),
            ("mountpoint", "/t/a"),
            ("canmount", "on"),
        ]);
        assert_eq!(
            mount_problem("t/a", &unmounted, None).unwrap(),
            "t/a is not mounted at /t/a"
        );
        let noauto = ds(&[
            ("mounted", "no"),
            ("mountpoint", "/t/a"),
            ("canmount", "noauto"),
        ]);
        assert_eq!(mount_problem("t/a", &noauto, None), None);
        assert!(
            mount_problem("t/a", &mounted, Some("/elsewhere"))
                .unwrap()
                .contains("not /elsewhere")
        );
    }
}
