//! Desired services: units rendered from the profile (`unit` or `template`, minijinja with
//! the profile and the facts as context) plus the unit `[inference]` generates, and the
//! digests of the files whose change restarts each.

use std::collections::BTreeMap;

use anyhow::{Context, anyhow, bail};
use serde::Serialize;

use super::generated::{self, Have};
use crate::domain::{Domain, PlanContext};
use crate::plan::Address;

/// One service as the profile wants it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DesiredService {
    /// The rendered unit file (not serialized: its digest stands for it).
    #[serde(skip)]
    pub unit: Vec<u8>,
    /// sha256 of `unit`.
    pub unit_sha256: String,
    /// `systemctl enable` it.
    pub enable: bool,
    /// Keep it running.
    pub start: bool,
    /// A file it reads (or another input) -> the digest it will have after this apply;
    /// when one differs from the digests recorded at the last (re)start, it restarts.
    pub triggers: BTreeMap<String, String>,
    /// Changes its start waits for (the models and options file of `[inference]`).
    pub after: Vec<Address>,
}

impl DesiredService {
    pub fn new(unit: impl Into<Vec<u8>>) -> DesiredService {
        let unit = unit.into();
        DesiredService {
            unit_sha256: generated::sha256(&unit),
            unit,
            enable: true,
            start: true,
            triggers: BTreeMap::new(),
            after: Vec::new(),
        }
    }
}

/// Where a service's unit file lives (as the profile's paths are written: logical).
pub fn unit_path(name: &str) -> String {
    format!("/etc/systemd/system/{name}.service")
}

/// Every desired service: the profile's `[services]` and the unit of `[inference]`.
pub fn desired(cx: &PlanContext<'_>) -> anyhow::Result<BTreeMap<String, DesiredService>> {
    let profile = &cx.profile.profile;
    let mut out = BTreeMap::new();
    if !profile.services.is_empty() {
        let env = crate::files::template_environment(&cx.profile.templates)?;
        let mut context = serde_json::to_value(profile)?;
        if let Some(map) = context.as_object_mut() {
            map.insert("facts".into(), serde_json::to_value(cx.facts)?);
        }
        let context = minijinja::Value::from(minijinja::value::Serde(context));
        let mut known: Option<BTreeMap<String, String>> = None;
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
            let mut service = DesiredService::new(text.into_bytes());
            service.enable = spec.enable.unwrap_or(true);
            service.start = spec.start.unwrap_or(true);
            for path in &spec.restart_on {
                let known = match &mut known {
                    Some(k) => k,
                    None => known.insert(planned_files(cx)?),
                };
                let digest = match known.get(path) {
                    Some(d) => d.clone(),
                    None => match generated::observe(cx.root, path)
                        .with_context(|| format!("{key}.restart_on {path:?}"))?
                    {
                        Have::Missing => "missing".into(),
                        Have::Present { sha256, .. } => sha256,
                    },
                };
                service.triggers.insert(path.clone(), digest);
                if cx.profile.profile.files.contains_key(path) {
                    service.after.push(crate::files::address(path));
                }
            }
            out.insert(name.clone(), service);
        }
    }
    if let Some((name, service)) = crate::compute::service(cx)? {
        if out.contains_key(&name) {
            bail!(
                "services.{name}: this name is taken by the unit [inference] generates; rename the service"
            );
        }
        out.insert(name, service);
    }
    Ok(out)
}

/// The content digests this apply gives the files it manages: `[files]` and the files
/// `[inference]` generates. A service naming one restarts when its digest changes.
fn planned_files(cx: &PlanContext<'_>) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out: BTreeMap<String, String> = crate::files::Files
        .desired(cx)?
        .into_iter()
        .map(|(path, f)| (path, f.sha256))
        .collect();
    for (path, content) in crate::compute::generated_files(&cx.profile.profile)? {
        out.insert(path, generated::sha256(content.as_bytes()));
    }
    Ok(out)
}
