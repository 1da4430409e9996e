//! What `[inference]` asks for: its models (with the Cards' adapters given by `source`)
//! and Cards, and the options file, the Card files and the unit it requests from the files
//! and services domains.

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
        let text = card_text(cx, name)?;
        let card = card_json(name, text)?;
        for (model, adapter) in source_adapters(name, &card) {
            // The Card's file names the adapter's blob by its pin, so a new one restarts
            // the daemon through the file's trigger too; the unit waits for the pull.
            if let Some(sha) = &adapter.sha256 {
                unit.triggers
                    .insert(format!("model:{model}"), Some(sha.clone()));
            }
            unit.after.push(model_address(&model));
        }
        let content = daemon_card(name, text, card)?;
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

/// The Card `name`'s JSON, as the user wrote it (keys in their order).
fn card_json(name: &str, text: &str) -> anyhow::Result<serde_json::Value> {
    serde_json::from_str(text).with_context(|| format!("the Card {name:?} is not JSON"))
}

/// Each adapter of the Card `name` given by `source`, as the model apply pulls it under its
/// derived cache name ([`crate::profile::card_adapter_model`]), pinned by the Card's sha256.
fn source_adapters(name: &str, card: &serde_json::Value) -> Vec<(String, DesiredModel)> {
    let adapters = card.get("adapters").and_then(|a| a.as_array());
    adapters
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, adapter)| {
            let source = adapter.get("source")?.as_str()?;
            let model = DesiredModel {
                source: source.to_string(),
                pull_from: source.to_string(),
                sha256: adapter
                    .get("sha256")
                    .and_then(|s| s.as_str())
                    .map(str::to_ascii_lowercase),
                card_adapter: Some(format!(
                    "adapters[{i}] of [inference.cards.{}]",
                    crate::profile::tree::toml_key(name)
                )),
            };
            Some((crate::profile::card_adapter_model(name, i), model))
        })
        .collect()
}

/// The Card file the daemon reads for the Card `name`: the user's text as is, unless an
/// adapter is given by `source` (the daemon serves adapters from the cache only): then the
/// user's JSON, keys in their order, with each such adapter's `source` replaced by
/// `model`, its derived cache name, the model apply pulled it as (its sha256 and scale
/// stay).
fn daemon_card(name: &str, text: &str, mut card: serde_json::Value) -> anyhow::Result<Vec<u8>> {
    let Some(adapters) = card.get_mut("adapters").and_then(|a| a.as_array_mut()) else {
        return Ok(text.as_bytes().to_vec());
    };
    let mut rewritten = false;
    for (i, adapter) in adapters.iter_mut().enumerate() {
        let Some(fields) = adapter.as_object_mut() else {
            continue;
        };
        if !fields.contains_key("source") {
            continue;
        }
        let model = crate::profile::card_adapter_model(name, i);
        *fields = std::mem::take(fields)
            .into_iter()
            .map(|(k, v)| match k.as_str() {
                "source" => (
                    "model".to_string(),
                    serde_json::Value::String(model.clone()),
                ),
                _ => (k, v),
            })
            .collect();
        rewritten = true;
    }
    if !rewritten {
        return Ok(text.as_bytes().to_vec());
    }
    let mut out = serde_json::to_string_pretty(&card)?;
    out.push('\n');
    Ok(out.into_bytes())
}

/// Where a source is pulled from on this machine: a local path is relocated under
/// `--root`, like a file vdev.
fn pull_from(cx: &PlanContext<'_>, source: &str) -> String {
    if source.starts_with('/') {
        cx.root.join(source).to_string_lossy().into_owned()
    } else {
        source.to_string()
    }
}

/// The models of `[inference]`, with where each is pulled from on this machine, and the
/// Cards' adapters given by `source`, pulled as models under their derived names.
pub fn desired(cx: &PlanContext<'_>) -> anyhow::Result<Desired> {
    let Some(section) = &cx.profile.profile.inference else {
        return Ok(Desired::default());
    };
    let mut models: std::collections::BTreeMap<_, _> = section
        .models
        .iter()
        .map(|(name, m)| {
            let model = DesiredModel {
                source: m.source.clone(),
                pull_from: pull_from(cx, &m.source),
                sha256: m.sha256.as_ref().map(|s| s.to_ascii_lowercase()),
                card_adapter: None,
            };
            (name.clone(), model)
        })
        .collect();
    let mut cards = std::collections::BTreeMap::new();
    for name in section.cards.keys() {
        let card = card_json(name, card_text(cx, name)?)?;
        for (derived, mut model) in source_adapters(name, &card) {
            model.pull_from = pull_from(cx, &model.source);
            if models.contains_key(&derived) {
                // validate refuses this; a profile that skipped it must not pull two
                // files under one name.
                anyhow::bail!(
                    "{} pulls its adapter as {derived:?}, which another model of [inference] also names",
                    model.card_adapter.as_deref().unwrap_or_default()
                );
            }
            models.insert(derived, model);
        }
        // The user's Card, not the daemon's: the plan diffs what the user wrote.
        cards.insert(name.clone(), card);
    }
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

    #[test]
    fn a_card_adapter_given_by_source_is_named_by_its_cache_name_for_the_daemon() {
        let pin = "AB".repeat(32);
        let text = format!(
            "{{\"system\": \"x\", \"base\": {{\"model\": \"tiny\", \"sha256\": \"00\"}},\n \"adapters\": [{{\"model\": \"kept\"}}, {{\"scale\": 0.5, \"source\": \"/srv/a.gguf\", \"sha256\": \"{pin}\"}}]}}"
        );
        let r = requests_with_card(&text);
        let path = "/etc/sovereign/inference/cards/sql.json";
        let file = r.files.iter().find(|f| f.path == path).unwrap();
        let written: serde_json::Value = serde_json::from_slice(&file.content).unwrap();
        // Only the adapter given by source changes; keys keep the user's order.
        let keys: Vec<&String> = written.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["system", "base", "adapters"]);
        assert_eq!(
            written["adapters"],
            serde_json::json!([
                {"model": "kept"},
                {"scale": 0.5, "model": "card-sql-adapter-1", "sha256": pin},
            ])
        );
        let adapter_keys: Vec<&String> =
            written["adapters"][1].as_object().unwrap().keys().collect();
        assert_eq!(adapter_keys, ["scale", "model", "sha256"]);
        // The daemon starts after the pull and restarts on a new blob.
        let unit = &r.units[0];
        assert!(unit.after.contains(&model_address("card-sql-adapter-1")));
        assert_eq!(
            unit.triggers["model:card-sql-adapter-1"],
            Some(pin.to_ascii_lowercase())
        );
        assert_eq!(unit.triggers[path], Some(sha256(&file.content)));
    }

    #[test]
    fn a_card_adapter_given_by_source_is_a_model_pinned_by_the_card() {
        let card = serde_json::json!({
            "base": {"model": "tiny", "sha256": "00"},
            "adapters": [{"model": "kept"}, {"source": "https://example.org/a.gguf", "sha256": "AA"}],
        });
        let models = source_adapters("chat:7b", &card);
        assert_eq!(models.len(), 1);
        let (name, model) = &models[0];
        assert_eq!(name, "card-chat:7b-adapter-1");
        assert!(crate::inference::cache::ModelName::parse(name).is_ok());
        assert_eq!(model.source, "https://example.org/a.gguf");
        assert_eq!(model.sha256.as_deref(), Some("aa"));
        assert_eq!(
            model.card_adapter.as_deref(),
            Some("adapters[1] of [inference.cards.\"chat:7b\"]")
        );
        // A Card without one is written as the user wrote it, byte for byte.
        let text = "{\"base\": {\"model\": \"tiny\", \"sha256\": \"00\"},   \"adapters\": [{\"model\": \"kept\"}]}";
        let card = serde_json::from_str(text).unwrap();
        assert_eq!(daemon_card("sql", text, card).unwrap(), text.as_bytes());
    }
}
