//! What `[inference]` asks for: its models and Cards, and the options file, the Card files
//! and the unit it requests from the files and services domains.

use sha2::{Digest, Sha256};

use anyhow::Context;

use super::{Desired, DesiredModel, MODELS_FILE, UNIT_NAME, card_file, model_address, render};
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
    for name in section.cards.keys() {
        let path = card_file(name);
        let content = card_text(cx, name)?.as_bytes().to_vec();
        // The daemon reads its Cards at start: a changed Card is served after a restart.
        unit.triggers.insert(path.clone(), Some(sha256(&content)));
        unit.after.push(file_address(&path));
        out.files.push(FileRequest {
            path,
            content,
            mode: 0o644,
            sensitive: false,
            by: format!("inference.cards.{}", crate::profile::tree::toml_key(name)),
            remove_after: vec![service_address(UNIT_NAME)],
        });
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

/// The text of the Card `name`, as the resolved profile carries it.
fn card_text<'a>(cx: &'a PlanContext<'_>, name: &str) -> anyhow::Result<&'a String> {
    cx.profile.cards.get(name).with_context(|| {
        format!(
            "{}: the Card file was not read with the profile",
            cx.profile.place(&crate::profile::rules::kp(&[
                "inference",
                "cards",
                name,
                "file"
            ]))
        )
    })
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
    let cards = section
        .cards
        .keys()
        .map(|name| {
            let card = serde_json::from_str(card_text(cx, name)?)
                .with_context(|| format!("the Card {name:?} is not JSON"))?;
            Ok((name.clone(), card))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Desired {
        declared: true,
        models,
        listen: section
            .listen
            .clone()
            .unwrap_or_else(|| render::DEFAULT_LISTEN.into()),
        api_key_file: section.api_key_file.clone(),
        cards,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::resolve::Resolved;
    use crate::profile::{CardSpec, Inference, Profile};

    /// What `requests` asks for a profile with one Card, of `text`.
    fn requests_with_card(text: &str) -> Requests {
        let mut section = Inference::default();
        section.cards.insert(
            "sql".into(),
            CardSpec {
                file: "cards/sql.json".into(),
            },
        );
        let profile = Resolved {
            profile: Profile {
                inference: Some(section),
                ..Profile::default()
            },
            cards: [("sql".to_string(), text.to_string())].into(),
            ..Resolved::default()
        };
        let root = crate::host::fs::Root::new(std::path::Path::new("/")).unwrap();
        let cx = PlanContext {
            profile: &profile,
            facts: &Default::default(),
            root: &root,
            host: &crate::host::RealHost,
            exe: std::path::Path::new("/usr/local/bin/sovereign"),
            requests: &Requests::default(),
            planned: &Default::default(),
        };
        requests(&cx).unwrap()
    }

    #[test]
    fn a_card_is_a_file_the_unit_serves_waits_for_and_restarts_on() {
        let text = "{\"base\": {\"model\": \"tiny\", \"sha256\": \"00\"}}\n";
        let r = requests_with_card(text);
        let path = "/etc/sovereign/inference/cards/sql.json";
        let file = r.files.iter().find(|f| f.path == path).unwrap();
        assert_eq!(file.content, text.as_bytes());
        assert_eq!(file.mode, 0o644);
        assert_eq!(file.remove_after, [service_address(UNIT_NAME)]);
        let unit = &r.units[0];
        assert_eq!(unit.triggers[path], Some(sha256(text.as_bytes())));
        assert!(unit.after.contains(&file_address(path)));
        let unit_text = String::from_utf8(unit.unit.clone()).unwrap();
        assert!(
            unit_text.contains(&format!(" --card sql={path}\n")),
            "{unit_text}"
        );
        // Another Card text is another trigger digest: the daemon restarts on it.
        let other = requests_with_card("{\"base\": {\"model\": \"tiny\", \"sha256\": \"01\"}}\n");
        assert_ne!(other.units[0].triggers[path], unit.triggers[path]);
    }
}
