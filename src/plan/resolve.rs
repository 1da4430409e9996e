//! The resolved profile: a validated profile plus the source of every template it names,
//! so that it is self-contained (generations and saved plans replay it exactly).
//!
//! Template lookup ([`crate::profile::templates`], the one `validate` checks with): for
//! `template = "motd.j2"`, sovereign looks in `templates/` next to the profile file, then
//! in `templates/` of each parent folder up to the filesystem root (so `profiles/x.toml`
//! finds the project's `templates/`). The first match wins. Service
//! units (`services.NAME.template`) are found the same way, and so is the inference
//! daemon's unit template, which falls back to the copy built into the binary.
//!
//! Cards (`[inference.cards.NAME] file = ...`) are read relative to the profile file that
//! declares them (as imports are), and kept by name with the templates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::profile::{Profile, ValidProfile};

/// A profile with its templates loaded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resolved {
    /// The merged, validated profile.
    pub profile: Profile,
    /// The profile file it came from (for messages; empty for the empty profile).
    pub path: PathBuf,
    /// Template name -> source text, for every template the profile names.
    pub templates: BTreeMap<String, String>,
    /// Card name -> the Card file's text, for every `[inference.cards.NAME]`: read once
    /// here, where the profile's files are, so that a plan on another host or of an older
    /// generation writes the Card that was checked.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cards: BTreeMap<String, String>,
    /// Where each value was written (as [`ValidProfile::origins`]), so that a plan-time
    /// error can name the file and line. Not part of the record: a generation replays its
    /// profile without its sources.
    #[serde(skip)]
    pub origins: BTreeMap<String, crate::profile::Origin>,
}

impl Resolved {
    /// Load the templates `valid` names.
    pub fn from_valid(valid: &ValidProfile) -> anyhow::Result<Resolved> {
        let dir = valid
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut templates = BTreeMap::new();
        for (path, spec) in &valid.profile.files {
            if let Some(name) = &spec.template {
                if templates.contains_key(name) {
                    continue;
                }
                let found = find_template(&dir, name).with_context(|| {
                    format!(
                        "{}: files.\"{path}\".template = {name:?}",
                        valid.path.display()
                    )
                })?;
                let text = std::fs::read_to_string(&found)
                    .with_context(|| format!("cannot read template {}", found.display()))?;
                templates.insert(name.clone(), text);
            }
        }
        for (name, spec) in &valid.profile.services {
            if let Some(t) = &spec.template {
                if templates.contains_key(t) {
                    continue;
                }
                let found = find_template(&dir, t).with_context(|| {
                    format!("{}: services.{name}.template = {t:?}", valid.path.display())
                })?;
                let text = std::fs::read_to_string(&found)
                    .with_context(|| format!("cannot read template {}", found.display()))?;
                templates.insert(t.clone(), text);
            }
        }
        // The daemon's unit template: a templates/ folder above the profile may carry its
        // own; otherwise the binary's copy of the project's is used.
        if valid.profile.inference.is_some() {
            let name = crate::profile::INFERENCE_UNIT_TEMPLATE;
            if let Ok(found) = find_template(&dir, name) {
                let text = std::fs::read_to_string(&found)
                    .with_context(|| format!("cannot read template {}", found.display()))?;
                templates.insert(name.to_string(), text);
            }
        }
        let mut cards = BTreeMap::new();
        for (name, spec) in valid.profile.inference.iter().flat_map(|i| &i.cards) {
            let key = crate::profile::rules::kp(&["inference", "cards", name, "file"]);
            let declared_in = valid.origin(&key).map_or(&valid.path, |o| &o.file);
            let path = crate::profile::card_source_path(declared_in, &spec.file);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read card {}", path.display()))?;
            // Checked again as read: what plan writes is a Card the daemon accepts.
            crate::inference::card::parse(&path, &text)
                .map_err(|errors| anyhow::anyhow!("{errors}"))
                .with_context(|| format!("{}: {key}", valid.path.display()))?;
            cards.insert(name.clone(), text);
        }
        Ok(Resolved {
            profile: valid.profile.clone(),
            path: valid.path.clone(),
            templates,
            cards,
            origins: valid.origins.clone(),
        })
    }

    /// Where the value at `key_path` was written, for a plan-time error:
    /// `FILE:LINE:COL: KEY`, or `FILE: KEY` where the place is not known (a profile
    /// replayed from a generation).
    pub fn place(&self, key_path: &str) -> String {
        match self.origins.get(key_path) {
            Some(origin) => format!("{origin}: {key_path}"),
            None if self.path.as_os_str().is_empty() => key_path.to_string(),
            None => format!("{}: {key_path}", self.path.display()),
        }
    }

    /// The empty profile: what "before the first generation" means.
    pub fn empty() -> Resolved {
        Resolved::default()
    }

    /// sha256 of the profile, its templates and its Cards (not of the path it was read
    /// from). A profile without Cards digests as it did before Cards were read.
    pub fn digest(&self) -> String {
        let text = if self.cards.is_empty() {
            serde_json::to_vec(&(&self.profile, &self.templates))
        } else {
            serde_json::to_vec(&(&self.profile, &self.templates, &self.cards))
        }
        .expect("a profile always serializes");
        hex::encode(Sha256::digest(text))
    }
}

/// The one lookup `validate` checks names with ([`crate::profile::templates::find`]).
fn find_template(profile_dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    use crate::profile::templates::{Lookup, find};
    match find(profile_dir, name) {
        Ok(found) => Ok(found),
        Err(why @ Lookup::NotFound(_)) => bail!(
            "template {name:?} {why} (put it in templates/ next to the profile or in the project's templates/)"
        ),
        Err(why) => bail!("{why}"),
    }
}
