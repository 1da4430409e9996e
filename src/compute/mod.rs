//! The inference profile domain (Compute): `[inference]` and `[inference.models.NAME]`
//! become changes.
//!
//! - `inference.model:NAME`: the model pulled into the verified cache (relocated under
//!   `--root`, like a local source path) and checked against its pinned sha256; a model
//!   pinned and already cached under its name is no change.
//! - `inference.file:/etc/sovereign/inference/models.toml`: the per-model options the
//!   daemon reads (`serve --models FILE`), written like a managed file.
//! - the daemon's unit, `sovereign-inference`, is handed to the services domain
//!   ([`service`]), which writes, enables, starts and restarts it like any service; its
//!   start waits for the models and the options file.
//!
//! The health check asks the daemon's `/health` and `/v1/models` for every declared model;
//! where the service cannot be started (no systemd), it is skipped and says so.

pub mod health;
pub mod render;

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::domain::{
    ApplyContext, DiffOptions, Domain, HealthResult, LedgerTx, Owned, PlanContext,
};
use crate::inference::cache::{Cache, MODELS_DIR, Manifest, ModelName, NoProgress, PullRequest};
use crate::plan::{Action, Address, Change, FieldChange};
use crate::services::generated::{self, Have, Ownership};
use crate::services::{DesiredService, service_address};

/// The unit `[inference]` generates.
pub const UNIT_NAME: &str = "sovereign-inference";
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
    /// models.toml (not serialized: its digest stands for it).
    #[serde(skip)]
    pub options_file: Option<Vec<u8>>,
    pub options_sha256: Option<String>,
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
    pub options_file: Have,
}

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// A model sovereign pulled (key `model:NAME`).
    Model { sha256: String, source: String },
    /// A file sovereign generated (key `file:PATH`).
    File { applied_sha256: String },
}

fn model_address(name: &str) -> Address {
    Address::new("inference", "model", name)
}

fn file_address(path: &str) -> Address {
    Address::new("inference", "file", path)
}

/// The files `[inference]` generates, path -> content (empty without `[inference]`).
pub fn generated_files(
    profile: &crate::profile::Profile,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    if let Some(section) = &profile.inference {
        out.insert(MODELS_FILE.to_string(), render::models_toml(section)?);
    }
    Ok(out)
}

/// The daemon's service, for the services domain: its unit, and what its start waits for
/// and restarts on.
pub fn service(cx: &PlanContext<'_>) -> anyhow::Result<Option<(String, DesiredService)>> {
    let Some(section) = &cx.profile.profile.inference else {
        return Ok(None);
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
    let mut s = DesiredService::new(text.into_bytes());
    let options = render::models_toml(section)?;
    s.triggers
        .insert(MODELS_FILE.into(), generated::sha256(options.as_bytes()));
    s.after.push(file_address(MODELS_FILE));
    for (name, m) in &section.models {
        // A new blob under the same name is served only after a restart.
        if let Some(sha) = &m.sha256 {
            s.triggers
                .insert(format!("model:{name}"), sha.to_ascii_lowercase());
        }
        s.after.push(model_address(name));
    }
    Ok(Some((UNIT_NAME.to_string(), s)))
}

impl Domain for Compute {
    type Desired = Desired;
    type Observed = Observed;
    type Entry = Entry;

    const NAME: &'static str = "inference";
    const SECTIONS: &'static [&'static str] = &["inference"];

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
        let options = render::models_toml(section)?.into_bytes();
        Ok(Desired {
            declared: true,
            models,
            options_sha256: Some(generated::sha256(&options)),
            options_file: Some(options),
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
        let options_file = generated::observe(cx.root, MODELS_FILE)?;
        Ok(Observed {
            models,
            options_file,
        })
    }

    fn digests(&self, observed: &Observed) -> BTreeMap<Address, String> {
        let mut out: BTreeMap<Address, String> = observed
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
            .collect();
        out.insert(file_address(MODELS_FILE), observed.options_file.digest());
        out
    }

    fn diff(
        &self,
        desired: &Desired,
        observed: &Observed,
        owned: &Owned<Entry>,
        options: &DiffOptions,
    ) -> Vec<Change> {
        let mut out = Vec::new();
        for (name, want) in &desired.models {
            let have = observed.models.get(name).unwrap_or(&CachedModel::Missing);
            if let Some(c) = model_change(name, want, have) {
                out.push(c);
            }
        }
        for (key, entry) in owned {
            let (Some(name), Entry::Model { sha256, .. }) = (key.strip_prefix("model:"), entry)
            else {
                continue;
            };
            if desired.models.contains_key(name) {
                continue;
            }
            let mut c = Change::new(model_address(name), Action::Delete)
                .field(FieldChange::new("sha256", Some(sha256.clone()), None))
                .reason("the profile no longer declares it; sovereign pulled it, so it leaves the cache");
            // Stop the daemon before its model goes.
            c.depends_on.push(service_address(UNIT_NAME));
            out.push(c);
        }
        let applied = match owned.get(&format!("file:{MODELS_FILE}")) {
            Some(Entry::File { applied_sha256 }) => Some(applied_sha256.as_str()),
            _ => None,
        };
        if let Some(c) = generated::diff(
            file_address(MODELS_FILE),
            MODELS_FILE,
            desired.options_file.as_deref(),
            &observed.options_file,
            Ownership {
                owned: applied.is_some(),
                applied,
            },
            options.allow_destroy,
        ) {
            out.push(c);
        }
        out
    }

    fn apply(
        &self,
        cx: &ApplyContext<'_>,
        desired: &Desired,
        change: &Change,
        ledger: &mut LedgerTx<'_, Entry>,
    ) -> anyhow::Result<()> {
        let name = change.address.name.as_str();
        match (change.address.kind.as_str(), change.action) {
            ("model", Action::Create | Action::Update) => {
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
            ("model", Action::Delete) => {
                let cache = Cache::open(cx.root.path())?;
                let parsed = ModelName::parse(name)?;
                let present = cache.manifests()?.iter().any(|m| m.name == name);
                if present {
                    cache.remove(&parsed)?;
                }
                ledger.forget(&format!("model:{name}"))
            }
            ("file", Action::Create | Action::Update | Action::Adopt) => {
                let (Some(content), Some(sha)) = (&desired.options_file, &desired.options_sha256)
                else {
                    bail!("{name}: [inference] is not in the profile");
                };
                if change.action != Action::Adopt {
                    generated::write(cx.root, name, content, 0o644)?;
                }
                ledger.record_result(
                    &format!("file:{name}"),
                    Entry::File {
                        applied_sha256: sha.clone(),
                    },
                )
            }
            ("file", Action::Delete) => {
                generated::remove(cx.root, name)?;
                ledger.forget(&format!("file:{name}"))
            }
            (kind, action) => bail!(
                "the inference domain has no {} step for {kind:?}",
                action.word()
            ),
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
    Some(c)
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
