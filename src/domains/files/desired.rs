//! Desired files: content and templates rendered from the profile and the facts, and the
//! files other domains request. Owner and group stay names here: resolving them reads the
//! machine, so observe does it.

use anyhow::{Context, anyhow, bail};
use minijinja::Environment;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Desired;
use crate::domain::{FileRequest, template};
use crate::hardware::Facts;
use crate::plan::Address;
use crate::plan::resolve::Resolved;

/// The file mode when the profile gives none.
pub const DEFAULT_MODE: u32 = 0o644;

/// One file as the profile wants it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DesiredFile {
    /// The rendered content (not serialized: the digest stands for it).
    #[serde(skip)]
    pub content: Vec<u8>,
    /// sha256 of `content`.
    pub sha256: String,
    /// Permission bits, exact.
    pub mode: u32,
    /// The owner and group as the profile names them; `None`: the user sovereign runs as.
    pub owner: Option<String>,
    pub group: Option<String>,
    /// Hide the content in plans.
    pub sensitive: bool,
    /// Another domain asked for it (`inference`, `services.web`); `None` for `[files]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// Changes that must run before it is removed (recorded in the ledger when written).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove_after: Vec<Address>,
}

impl DesiredFile {
    /// A file owned by the user sovereign runs as.
    pub fn new(content: impl Into<Vec<u8>>, mode: u32) -> Self {
        let content = content.into();
        DesiredFile {
            sha256: hex::encode(Sha256::digest(&content)),
            content,
            mode,
            owner: None,
            group: None,
            sensitive: false,
            requested_by: None,
            remove_after: Vec::new(),
        }
    }
}

/// Every `[files]` entry of the profile rendered, and every file other domains request.
pub fn desired(
    profile: &Resolved,
    facts: &Facts,
    requests: &[FileRequest],
) -> anyhow::Result<Desired> {
    let mut out = profile_files(profile, facts)?;
    if requests.is_empty() {
        return Ok(out);
    }
    for r in requests {
        if !r.path.starts_with('/') {
            bail!("{}: asks for {:?}, which is not absolute", r.by, r.path);
        }
        if let Some(other) = out.get(&r.path) {
            let first = match &other.requested_by {
                Some(by) => by.clone(),
                None => format!("files.\"{}\"", r.path),
            };
            bail!(
                "{first} and {} both write {}: one file has one owner; drop the [files] entry, or rename what {} writes",
                r.by,
                r.path,
                r.by
            );
        }
        let mut file = DesiredFile::new(r.content.clone(), r.mode);
        file.sensitive = r.sensitive;
        file.requested_by = Some(r.by.clone());
        file.remove_after = r.remove_after.clone();
        out.insert(r.path.clone(), file);
    }
    Ok(out)
}

fn profile_files(profile: &Resolved, facts: &Facts) -> anyhow::Result<Desired> {
    let files = &profile.profile.files;
    if files.is_empty() {
        return Ok(Desired::new());
    }
    let env = template::environment(&profile.templates)?;
    let context = template::context(&profile.profile, facts)?;

    let mut out = Desired::new();
    for (path, spec) in files {
        let key = format!("files.\"{path}\"");
        if !path.starts_with('/') {
            bail!("{key}: the path must be absolute (it is relocated under --root)");
        }
        let content = match (&spec.content, &spec.template) {
            (Some(text), None) => render_str(&env, text, &context)
                .with_context(|| format!("{key}.content cannot be rendered"))?,
            (None, Some(name)) => env
                .get_template(name)
                .and_then(|t| t.render(context.clone()))
                .map_err(|e| anyhow!("{e:#}"))
                .with_context(|| format!("{key}.template {name:?} cannot be rendered"))?,
            (Some(_), Some(_)) => bail!("{key}: give either `content` or `template`, not both"),
            (None, None) => bail!("{key}: give `content` or `template`"),
        };
        let mode = spec.mode.map(|m| m.0).unwrap_or(DEFAULT_MODE);
        let mut file = DesiredFile::new(content.into_bytes(), mode);
        file.owner = spec.owner.clone();
        file.group = spec.group.clone();
        file.sensitive = spec.sensitive;
        out.insert(path.clone(), file);
    }
    Ok(out)
}

/// Render inline content; text with no template syntax is taken as is (the common case,
/// and it keeps planning thousands of files cheap).
fn render_str(
    env: &Environment<'_>,
    text: &str,
    context: &minijinja::Value,
) -> anyhow::Result<String> {
    if !text.contains("{{") && !text.contains("{%") && !text.contains("{#") {
        return Ok(text.to_string());
    }
    env.render_str(text, context.clone())
        .map_err(|e| anyhow!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{FileSpec, Profile};

    fn profile(files: &[(&str, FileSpec)]) -> Resolved {
        let mut p = Profile {
            host: Some(crate::profile::Host {
                name: Some("forge".into()),
                expect: None,
            }),
            ..Profile::default()
        };
        for (k, v) in files {
            p.files.insert((*k).to_string(), v.clone());
        }
        Resolved {
            profile: p,
            ..Resolved::default()
        }
    }

    #[test]
    fn content_is_rendered_with_the_profile_and_facts() {
        let spec = FileSpec {
            content: Some("{{ host.name }} on {{ facts.archetype }}\n".into()),
            ..FileSpec::default()
        };
        let facts = Facts {
            archetype: "cpu-only".into(),
            ..Facts::default()
        };
        let d = desired(&profile(&[("/etc/motd", spec)]), &facts, &[]).unwrap();
        assert_eq!(d["/etc/motd"].content, b"forge on cpu-only\n");
        assert_eq!(d["/etc/motd"].mode, DEFAULT_MODE);
    }

    #[test]
    fn an_undefined_variable_is_an_error_naming_the_key() {
        let spec = FileSpec {
            content: Some("{{ host.nmae }}".into()),
            ..FileSpec::default()
        };
        let err = desired(&profile(&[("/etc/motd", spec)]), &Facts::default(), &[]).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("files.\"/etc/motd\".content"), "{text}");
        assert!(text.contains("undefined"), "{text}");
    }

    #[test]
    fn owner_and_group_stay_names_for_observe_to_resolve() {
        let spec = FileSpec {
            content: Some("x".into()),
            owner: Some("no-such-user-sovereign".into()),
            ..FileSpec::default()
        };
        let d = desired(&profile(&[("/etc/x", spec)]), &Facts::default(), &[]).unwrap();
        assert_eq!(d["/etc/x"].owner.as_deref(), Some("no-such-user-sovereign"));
        assert_eq!(d["/etc/x"].group, None);
    }
}
