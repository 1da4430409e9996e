//! Saved plans (`plan -o FILE`, `apply FILE`): a plan pinned to what it was made from.
//!
//! The file carries the format and tool versions, the profile's path and digest, the
//! digest of the desired state (rendered templates included), the digest of the observed
//! state of every resource the plan covers, and the plan itself. `apply FILE` re-plans
//! the same profile and refuses the saved plan as stale, naming every difference, unless
//! all of them match; then the fresh plan is exactly the saved one and runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::Planned;
use crate::plan::{Action, Address, FORMAT_VERSION, Plan};

/// The `kind` a saved plan file declares.
pub const KIND: &str = "sovereign-plan";

/// A plan file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPlan {
    /// Always [`KIND`]: tells a plan file from a profile.
    pub kind: String,
    /// [`FORMAT_VERSION`] of this file.
    pub format_version: u32,
    /// The sovereign version that wrote it.
    pub tool_version: String,
    /// The profile it was made from (absolute).
    pub profile_path: PathBuf,
    /// sha256 of the resolved profile (templates included).
    pub profile_digest: String,
    /// sha256 of every domain's desired state (rendered content included).
    pub desired_digest: String,
    /// Whether the plan was made with `--allow-destroy`.
    pub allow_destroy: bool,
    /// Digest of the observed state of every resource the plan covers.
    pub observed: BTreeMap<Address, String>,
    /// The plan.
    pub plan: Plan,
}

impl SavedPlan {
    pub fn new(planned: &Planned) -> SavedPlan {
        SavedPlan {
            kind: KIND.into(),
            format_version: FORMAT_VERSION,
            tool_version: env!("CARGO_PKG_VERSION").into(),
            profile_path: std::fs::canonicalize(&planned.profile.path)
                .unwrap_or_else(|_| planned.profile.path.clone()),
            profile_digest: planned.profile_digest.clone(),
            desired_digest: planned.desired_digest.clone(),
            allow_destroy: planned.options.allow_destroy,
            observed: planned.observed.clone(),
            plan: planned.plan.clone(),
        }
    }

    /// Read `path` if it is a saved plan; `Ok(None)` when it is something else (a profile).
    pub fn read(path: &Path) -> anyhow::Result<Option<SavedPlan>> {
        let text =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&text) else {
            return Ok(None);
        };
        if value.get("kind").and_then(|k| k.as_str()) != Some(KIND) {
            return Ok(None);
        }
        let version = value.get("format_version").and_then(|v| v.as_u64());
        if version != Some(u64::from(FORMAT_VERSION)) {
            bail!(
                "{}: plan format version {version:?}; this sovereign reads version {FORMAT_VERSION}: make the plan again with this sovereign",
                path.display()
            );
        }
        let saved: SavedPlan = serde_json::from_value(value)
            .with_context(|| format!("{} is not a valid saved plan", path.display()))?;
        Ok(Some(saved))
    }

    /// Why this saved plan no longer matches a fresh plan of the same profile; empty
    /// when it still holds.
    pub fn staleness(&self, fresh: &Planned) -> Vec<String> {
        let mut why = Vec::new();
        let tool = env!("CARGO_PKG_VERSION");
        if self.tool_version != tool {
            why.push(format!(
                "it was made by sovereign {} and this is {tool}",
                self.tool_version
            ));
        }
        if self.profile_digest != fresh.profile_digest {
            why.push(format!(
                "the profile {} (or a template it uses) changed",
                self.profile_path.display()
            ));
        } else if self.desired_digest != fresh.desired_digest {
            why.push(
                "the desired state changed (the detected facts or a user or group id differ)"
                    .into(),
            );
        }
        for (address, digest) in &self.observed {
            match fresh.observed.get(address) {
                None => why.push(format!("{address} is no longer covered by the plan")),
                Some(now) if now != digest => {
                    why.push(format!("{address} changed on the machine since the plan"))
                }
                Some(_) => {}
            }
        }
        for address in fresh.observed.keys() {
            if !self.observed.contains_key(address) {
                why.push(format!("{address} is new since the plan"));
            }
        }
        let steps = |p: &Plan| -> Vec<(Address, Action)> {
            p.changes
                .iter()
                .map(|c| (c.address.clone(), c.action))
                .collect()
        };
        if why.is_empty() && steps(&self.plan) != steps(&fresh.plan) {
            why.push("the changes differ from the saved ones".into());
        }
        why
    }
}
