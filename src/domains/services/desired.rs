//! Desired services: the units the profile's `[services]` renders (`unit` or `template`,
//! minijinja with the profile and the facts as context), requested like any other
//! domain's units, plus the digests of the files whose change restarts each.

use std::collections::BTreeMap;

use anyhow::{Context, anyhow, bail};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::domain::requests::{file_address, unit_file_path};
use crate::domain::{PlanContext, Requests, UnitRequest, template};
use crate::plan::Address;

/// One service as the profile (or another domain) wants it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DesiredService {
    /// sha256 of the unit file's content (the files domain writes it).
    pub unit_sha256: String,
    /// `systemctl enable` it.
    pub enable: bool,
    /// Keep it running.
    pub start: bool,
    /// Runs to completion when systemd starts it: its run state is systemd's alone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oneshot: bool,
    /// An input (a file it reads, a model) -> the digest it has after this apply; `None`
    /// for a file no domain writes, read by observe. When one differs from the digests
    /// recorded at the last (re)start, it restarts.
    pub triggers: BTreeMap<String, Option<String>>,
    /// Changes its start waits for (its unit file, the files and models it reads).
    pub after: Vec<Address>,
}

impl DesiredService {
    /// A service run from `unit`, enabled and started, with no triggers.
    pub fn new(unit: &[u8]) -> DesiredService {
        DesiredService {
            unit_sha256: hex::encode(Sha256::digest(unit)),
            enable: true,
            start: true,
            oneshot: false,
            triggers: BTreeMap::new(),
            after: Vec::new(),
        }
    }
}

/// The units of the profile's `[services]`, each with its unit file.
pub fn requests(cx: &PlanContext<'_>) -> anyhow::Result<Requests> {
    let profile = &cx.profile.profile;
    let mut out = Requests::default();
    if profile.services.is_empty() {
        return Ok(out);
    }
    let env = template::environment(&cx.profile.templates)?;
    let context = template::context(profile, cx.facts)?;
    for (name, spec) in &profile.services {
        let key = format!("services.{name}");
        let text = match (&spec.unit, &spec.template) {
            (Some(text), None) => env
                .render_str(text, context.clone())
                .map_err(|e| anyhow!("{e:#}"))
                .with_context(|| format!("{key}.unit cannot be rendered"))?,
            (None, Some(t)) => env
                .get_template(t)
                .and_then(|tpl| tpl.render(context.clone()))
                .map_err(|e| anyhow!("{e:#}"))
                .with_context(|| format!("{key}.template {t:?} cannot be rendered"))?,
            _ => bail!("{key}: give exactly one of `unit` or `template`"),
        };
        let mut unit = UnitRequest::new(name.clone(), text.into_bytes(), key);
        unit.enable = spec.enable.unwrap_or(true);
        unit.start = spec.start.unwrap_or(true);
        for path in &spec.restart_on {
            // The digest it will have is known once the domain that writes it has
            // planned (see `desired`); until then, "whatever is there".
            unit.triggers.insert(path.clone(), None);
        }
        out.unit(unit);
    }
    Ok(out)
}

/// Every requested unit, its `restart_on` files resolved against what the domains planned
/// before this one will write.
pub fn desired(cx: &PlanContext<'_>) -> anyhow::Result<BTreeMap<String, DesiredService>> {
    let mut out: BTreeMap<String, DesiredService> = BTreeMap::new();
    let mut by: BTreeMap<&str, &str> = BTreeMap::new();
    for unit in &cx.requests.units {
        if let Some(first) = by.insert(&unit.name, &unit.by) {
            bail!(
                "{}: the unit name {:?} is also taken by {first}; rename one of them",
                unit.by,
                unit.name
            );
        }
        let mut service = DesiredService::new(&unit.unit);
        service.enable = unit.enable;
        service.start = unit.start;
        service.oneshot = unit.oneshot;
        service
            .after
            .push(file_address(&unit_file_path(&unit.name)));
        for (input, digest) in &unit.triggers {
            let planned = cx.planned.get(&file_address(input));
            if planned.is_some() {
                service.after.push(file_address(input));
            }
            service
                .triggers
                .insert(input.clone(), digest.clone().or_else(|| planned.cloned()));
        }
        for a in &unit.after {
            if !service.after.contains(a) {
                service.after.push(a.clone());
            }
        }
        out.insert(unit.name.clone(), service);
    }
    Ok(out)
}
