//! The inference profile domain (Compute): `[inference]` and `[inference.models.NAME]`
//! become changes.
//!
//! - `inference.model:NAME`: the model pulled into the verified cache (relocated under
//!   `--root`, like a local source path) and checked against its pinned sha256; a model
//!   pinned and already cached under its name is no change.
//! - `/etc/sovereign/inference/models.toml`, the per-model options the daemon reads
//!   (`serve --models FILE`), is requested from the files domain
//!   (`files.file:/etc/sovereign/inference/models.toml`);
//! - the daemon's unit, `sovereign-inference`, is requested from the services domain,
//!   which runs it like any service; its start waits for the models and the options file,
//!   and it restarts when either changes.
//!
//! The health check asks the daemon's `/health` and `/v1/models` for every declared model;
//! where the service cannot be started (no systemd), it is skipped and says so.

pub mod health;
pub mod render;

use std::collections::BTreeMap;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::requests::{file_address, service_address};
use crate::domain::{
    ApplyContext, DiffOptions, Domain, FileRequest, HealthResult, LedgerTx, Owned, PlanContext,
    Requests, UnitRequest,
};
use crate::inference::cache::{Cache, MODELS_DIR, Manifest, ModelName, NoProgress, PullRequest};
use crate::plan::{Action, Address, Change, FieldChange};

/// The unit `[inference]` generates.
pub const UNIT_NAME: &str = crate::profile::INFERENCE_UNIT;
/// Where the per-model options go.
pub const MODELS_FILE: &str = "/etc/sovereign/inference/models.toml";

/// The inference profile domain.
#[derive(Debug, Default, Clone, Copy)]
pub struct Compute;

/// What `[inference]` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Desired {
    /// Whether `[inference]` is declared at all.
    pub declared: bool,
    /// Models keyed by the name clients use.
    pub models: BTreeMap<String, DesiredModel>,
    /// Where the daemon listens, for the health check.
    pub listen: String,
    /// The key file as the profile names it (the key is read only by the health check).
    pub api_key_file: Option<String>,
}

/// One model to have in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DesiredModel {
    /// The source as the profile writes it.
    pub source: String,
    /// Where it is pulled from on this machine (a local path relocated under `--root`).
    pub pull_from: String,
    /// The pinned sha256 (lowercase), if any.
    pub sha256: Option<String>,
}

/// What the cache holds for a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CachedModel {
    Missing,
    Cached {
        sha256: String,
        source: String,
        /// The blob is in the store with the recorded size.
        blob_ok: bool,
    },
}

/// What the machine has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub models: BTreeMap<String, CachedModel>,
}

/// One ledger entry: a model sovereign pulled (key `model:NAME`). The options file and
/// the unit are the files and services domains'.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    Model { sha256: String, source: String },
}

/// What apply does for one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelOp {
    /// Pull the model into the cache under its name (and check its pin).
    Pull,
    /// Remove it from the cache and forget it.
    Remove,
}

fn model_address(name: &str) -> Address {
    Address::new("inference", "model", name)
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The options file and the daemon's unit, for the files and services domains.
fn requests(cx: &PlanContext<'_>) -> anyhow::Result<Requests> {
    let mut out = Requests::default();
    let Some(section) = &cx.profile.profile.inference else {
        return Ok(out);
    };
    let template = cx
        .profile
        .templates
        .get(render::UNIT_TEMPLATE)
        .map(String::as_str)
        .unwrap_or(render::UNIT_TEMPLATE_TEXT);
    let exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .context("cannot tell where the sovereign binary is (the unit runs it)")?;
    let text = render::unit(section, template, &exe.to_string_lossy(), MODELS_FILE)?;
    let options = render::models_toml(section)?.into_bytes();
    let mut unit = UnitRequest::new(UNIT_NAME, text.into_bytes(), "inference");
    unit.triggers
        .insert(MODELS_FILE.into(), Some(sha256(&options)));
    unit.after.push(file_address(MODELS_FILE));
    for (name, m) in &section.models {
        // A new blob under the same name is served only after a restart.
        if let Some(sha) = &m.sha256 {
            unit.triggers
                .insert(format!("model:{name}"), Some(sha.to_ascii_lowercase()));
        }
        unit.after.push(model_address(name));
    }
    out.files.push(FileRequest {
        path: MODELS_FILE.into(),
        content: options,
        mode: 0o644,
        sensitive: false,
        by: "inference".into(),
        remove_after: vec![service_address(UNIT_NAME)],
    });
    out.unit(unit);
    Ok(out)
}

impl Domain for Compute {
    type Desired = Desired;
    type Observed = Observed;
    type Entry = Entry;

    const NAME: &'static str = "inference";
    const SECTIONS: &'static [&'static str] = &["inference"];

    fn requests(&self, cx: &PlanContext<'_>) -> anyhow::Result<Requests> {
        requests(cx)
    }

    fn desired(&self, cx: &PlanContext<'_>) -> anyhow::Result<Desired> {
        let Some(section) = &cx.profile.profile.inference else {
            return Ok(Desired::default());
        };
        let models = section
            .models
            .iter()
            .map(|(name, m)| {
                let pull_from = if m.source.starts_with('/') {
                    cx.root.join(&m.source).to_string_lossy().into_owned()
                } else {
                    m.source.clone()
                };
                let model = DesiredModel {
                    source: m.source.clone(),
                    pull_from,
                    sha256: m.sha256.as_ref().map(|s| s.to_ascii_lowercase()),
                };
                (name.clone(), model)
            })
            .collect();
        Ok(Desired {
            declared: true,
            models,
            listen: section
                .listen
                .clone()
                .unwrap_or_else(|| render::DEFAULT_LISTEN.into()),
            api_key_file: section.api_key_file.clone(),
        })
    }

    fn observe(
        &self,
        cx: &PlanContext<'_>,
        desired: &Desired,
        owned: &Owned<Entry>,
    ) -> anyhow::Result<Observed> {
        let dir = cx.root.path().join(MODELS_DIR);
        let mut names: Vec<&str> = desired.models.keys().map(String::as_str).collect();
        names.extend(owned.keys().filter_map(|k| k.strip_prefix("model:")));
        let mut models = BTreeMap::new();
        for name in names {
            // Read the store without opening it: opening creates its folders, and
            // observing changes nothing.
            let manifest = dir.join("manifests").join(format!("{name}.json"));
            let cached = if manifest.is_file() {
                let m = Manifest::read(&manifest)?;
                let blob = dir.join("blobs").join(format!("sha256-{}", m.sha256));
                let blob_ok = std::fs::metadata(&blob).is_ok_and(|b| b.len() == m.size);
                CachedModel::Cached {
                    sha256: m.sha256,
                    source: m.source,
                    blob_ok,
                }
            } else {
                CachedModel::Missing
            };
            models.insert(name.to_string(), cached);
        }
        Ok(Observed { models })
    }

    fn digests(&self, observed: &Observed) -> BTreeMap<Address, String> {
        observed
            .models
            .iter()
            .map(|(name, m)| {
                let d = match m {
                    CachedModel::Missing => "missing".to_string(),
                    CachedModel::Cached {
                        sha256, blob_ok, ..
                    } => format!("cached sha256={sha256} blob_ok={blob_ok}"),
                };
                (model_address(name), d)
            })
            .collect()
    }

    fn diff(
        &self,
        desired: &Desired,
        observed: &Observed,
        owned: &Owned<Entry>,
        _options: &DiffOptions,
    ) -> anyhow::Result<Vec<Change>> {
        let mut out = Vec::new();
        for (name, want) in &desired.models {
            let have = observed.models.get(name).unwrap_or(&CachedModel::Missing);
            if let Some(c) = model_change(name, want, have) {
                out.push(c);
            }
        }
        for (key, Entry::Model { sha256, .. }) in owned {
            let Some(name) = key.strip_prefix("model:") else {
                continue;
            };
            if desired.models.contains_key(name) {
                continue;
            }
            let mut c = Change::new(model_address(name), Action::Delete)
                .field(FieldChange::new("sha256", Some(sha256.clone()), None))
                .reason("the profile no longer declares it; sovereign pulled it, so it leaves the cache")
                .with_op(ModelOp::Remove);
            // Stop the daemon before its model goes.
            c.depends_on.push(service_address(UNIT_NAME));
            out.push(c);
        }
        Ok(out)
    }

    fn apply(
        &self,
        cx: &ApplyContext<'_>,
        desired: &Desired,
        change: &Change,
        ledger: &mut LedgerTx<'_, Entry>,
    ) -> anyhow::Result<()> {
        let name = change.address.name.as_str();
        match change.op::<ModelOp>()? {
            ModelOp::Pull => {
                let want = desired
                    .models
                    .get(name)
                    .with_context(|| format!("model {name:?} is not in the profile"))?;
                let cache = Cache::open(cx.root.path())?;
                let outcome = cache
                    .pull(
                        &PullRequest {
                            source: want.pull_from.clone(),
                            sha256: want.sha256.clone(),
                            name: Some(ModelName::parse(name)?),
                        },
                        &NoProgress,
                    )
                    .with_context(|| {
                        format!("inference.models.{name}: cannot pull {}", want.source)
                    })?;
                ledger.record_result(
                    &format!("model:{name}"),
                    Entry::Model {
                        sha256: outcome.sha256,
                        source: want.source.clone(),
                    },
                )
            }
            ModelOp::Remove => {
                let cache = Cache::open(cx.root.path())?;
                let parsed = ModelName::parse(name)?;
                let present = cache.manifests()?.iter().any(|m| m.name == name);
                if present {
                    cache.remove(&parsed)?;
                }
                ledger.forget(&format!("model:{name}"))
            }
        }
    }

    fn health(&self, cx: &ApplyContext<'_>, desired: &Desired) -> Vec<HealthResult> {
        health::check(cx, desired)
    }
}

fn model_change(name: &str, want: &DesiredModel, have: &CachedModel) -> Option<Change> {
    let (action, before) = match have {
        CachedModel::Missing => (Action::Create, None),
        CachedModel::Cached {
            sha256,
            source,
            blob_ok,
        } => {
            let current = match &want.sha256 {
                Some(pin) => pin == sha256,
                None => *source == want.pull_from,
            };
            if current && *blob_ok {
                return None;
            }
            (Action::Update, Some(sha256.clone()))
        }
    };
    let mut c = Change::new(model_address(name), action)
        .field(FieldChange::new("source", None, Some(want.source.clone())))
        .field(FieldChange::new(
            "sha256",
            before,
            Some(
                want.sha256
                    .clone()
                    .unwrap_or_else(|| "(not pinned: whatever the source holds)".into()),
            ),
        ));
    if let CachedModel::Cached { blob_ok: false, .. } = have {
        c = c.reason("its blob is missing or has the wrong size; pulled again");
    }
    Some(c.with_op(ModelOp::Pull))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(pin: Option<&str>) -> DesiredModel {
        DesiredModel {
            source: "/m/tiny.gguf".into(),
            pull_from: "/r/m/tiny.gguf".into(),
            sha256: pin.map(str::to_string),
        }
    }

    #[test]
    fn a_pinned_model_already_cached_is_no_change() {
        let have = CachedModel::Cached {
            sha256: "aa".into(),
            source: "https://elsewhere/tiny.gguf".into(),
            blob_ok: true,
        };
        assert!(model_change("tiny", &want(Some("aa")), &have).is_none());
        let other = model_change("tiny", &want(Some("bb")), &have).unwrap();
        assert_eq!(other.action, Action::Update);
    }

    #[test]
    fn a_missing_or_broken_model_is_pulled() {
        let c = model_change("tiny", &want(Some("aa")), &CachedModel::Missing).unwrap();
        assert_eq!(c.action, Action::Create);
        let broken = CachedModel::Cached {
            sha256: "aa".into(),
            source: "/r/m/tiny.gguf".into(),
            blob_ok: false,
        };
        assert_eq!(
            model_change("tiny", &want(Some("aa")), &broken)
                .unwrap()
                .action,
            Action::Update
        );
    }

    #[test]
    fn an_unpinned_model_is_current_when_it_came_from_the_same_source() {
        let have = CachedModel::Cached {
            sha256: "aa".into(),
            source: "/r/m/tiny.gguf".into(),
            blob_ok: true,
        };
        assert!(model_change("tiny", &want(None), &have).is_none());
    }
}
