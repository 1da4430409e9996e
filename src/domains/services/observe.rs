//! Observing services: one `systemctl show` for every desired or owned service, the digest
//! now of each file a service restarts on that no domain writes, and of each unit file (a
//! unit edited by hand since is written again by the files domain: the service restarts
//! onto the profile's unit).

use std::collections::BTreeMap;

use super::{Desired, Entry, Observed, systemctl};
use crate::domain::{Owned, PlanContext};

pub fn observe(
    cx: &PlanContext<'_>,
    desired: &Desired,
    owned: &Owned<Entry>,
) -> anyhow::Result<Observed> {
    let mut names: Vec<&str> = desired.keys().map(String::as_str).collect();
    for key in owned.keys() {
        if let Some(name) = key.strip_prefix("service:") {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let mut inputs = BTreeMap::new();
    for (name, service) in desired {
        for path in service
            .triggers
            .iter()
            .filter(|(_, d)| d.is_none())
            .map(|(p, _)| p)
        {
            if inputs.contains_key(path) {
                continue;
            }
            let digest = crate::host::fs::sha256_of(cx.root, path)
                .map_err(|e| e.context(format!("services.{name}.restart_on {path:?}")))?;
            inputs.insert(path.clone(), digest.unwrap_or_else(|| "missing".into()));
        }
    }
    let mut unit_files = BTreeMap::new();
    for name in desired.keys() {
        let path = crate::domain::requests::unit_file_path(name);
        let digest = crate::host::fs::sha256_of(cx.root, &path)
            .map_err(|e| e.context(format!("services.{name}: its unit file {path}")))?;
        unit_files.insert(name.clone(), digest);
    }
    let unusable = crate::host::systemd_unusable(cx.root, cx.host);
    let states = match unusable {
        Some(_) => BTreeMap::new(),
        None => systemctl::show(cx.host, &names)?,
    };
    Ok(Observed {
        unusable,
        states,
        unit_files,
        inputs,
    })
}
