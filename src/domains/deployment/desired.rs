//! What `[inference]` asks for: its models, and the options file and unit it requests from
//! the files and services domains.

use sha2::{Digest, Sha256};

use super::{Desired, DesiredModel, MODELS_FILE, UNIT_NAME, model_address, render};
use crate::domain::requests::{file_address, service_address};
use crate::domain::{FileRequest, PlanContext, Requests, UnitRequest};

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The options file and the daemon's unit, for the files and services domains.
pub fn requests(cx: &PlanContext<'_>) -> anyhow::Result<Requests> {
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
    let text = render::unit(section, template, &cx.exe.to_string_lossy(), MODELS_FILE)?;
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

/// The models of `[inference]`, with where each is pulled from on this machine.
pub fn desired(cx: &PlanContext<'_>) -> anyhow::Result<Desired> {
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
