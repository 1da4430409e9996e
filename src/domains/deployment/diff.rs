//! The models and Cards diff: pure. A model is pulled when missing, broken or not the
//! pinned one; one sovereign pulled leaves the cache when dropped, after the daemon stops.
//! A Card is compared with the Card as last applied, key path by key path.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{
    CachedModel, CardOp, Desired, DesiredModel, Entry, ModelOp, Observed, UNIT_NAME, card_address,
    card_file, model_address,
};
use crate::domain::requests::{file_address, service_address};
use crate::domain::{DiffOptions, Owned};
use crate::plan::{Action, Change, FieldChange};

pub fn diff(
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
    for (key, entry) in owned {
        let (Some(name), Entry::Model { sha256, .. }) = (key.strip_prefix("model:"), entry) else {
            continue;
        };
        if desired.models.contains_key(name) {
            continue;
        }
        let mut c = Change::new(model_address(name), Action::Delete)
            .field(FieldChange::new("sha256", Some(sha256.clone()), None))
            .reason(
                "the profile no longer declares it; sovereign pulled it, so it leaves the cache",
            )
            .with_op(ModelOp::Remove);
        // Stop the daemon before its model goes.
        c.depends_on.push(service_address(UNIT_NAME));
        out.push(c);
    }
    for (name, want) in &desired.cards {
        if let Some(c) = card_change(name, observed.cards.get(name), Some(want)) {
            out.push(c);
        }
    }
    for (name, have) in &observed.cards {
        if !desired.cards.contains_key(name) {
            out.extend(card_change(name, Some(have), None));
        }
    }
    Ok(out)
}

/// A Card created, updated or removed: one field per key path whose value differs (the
/// Card's text, diffed line by line, is its file's change in the files domain).
fn card_change(name: &str, have: Option<&Value>, want: Option<&Value>) -> Option<Change> {
    let action = match (have, want) {
        (None, Some(_)) => Action::Create,
        (Some(a), Some(b)) if a != b => Action::Update,
        (Some(_), None) => Action::Delete,
        _ => return None,
    };
    let mut c = Change::new(card_address(name), action);
    c.fields = card_fields(have, want);
    Some(if want.is_some() {
        // Recorded once its file is written.
        c.depends_on.push(file_address(&card_file(name)));
        c.with_op(CardOp::Record)
    } else {
        c.reason("the profile no longer declares it: the daemon stops serving it")
            .with_op(CardOp::Forget)
    })
}

/// One [`FieldChange`] per key path (`sampling.temperature`, `adapters[0].scale`) whose
/// value differs between two Cards, in key path order.
pub fn card_fields(before: Option<&Value>, after: Option<&Value>) -> Vec<FieldChange> {
    let mut old = BTreeMap::new();
    let mut new = BTreeMap::new();
    if let Some(v) = before {
        leaves(v, String::new(), &mut old);
    }
    if let Some(v) = after {
        leaves(v, String::new(), &mut new);
    }
    let mut paths: Vec<&String> = old.keys().chain(new.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter(|p| old.get(*p) != new.get(*p))
        .map(|p| {
            FieldChange::new(
                p,
                old.get(p).map(|v| shown(v)),
                new.get(p).map(|v| shown(v)),
            )
        })
        .collect()
}

/// Every scalar (and empty object or array) of `value` by key path.
fn leaves<'v>(value: &'v Value, path: String, out: &mut BTreeMap<String, &'v Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                leaves(v, p, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                leaves(v, format!("{path}[{i}]"), out);
            }
        }
        _ => {
            out.insert(path, value);
        }
    }
}

/// A value as the plan shows it: JSON, except text too long for one line of a plan (a
/// prompt, a grammar, a template), shown by size and digest.
fn shown(v: &Value) -> String {
    const LONGEST: usize = 60;
    match v {
        Value::String(s) if s.chars().count() > LONGEST => format!(
            "({} bytes, sha256 {})",
            s.len(),
            &hex::encode(Sha256::digest(s.as_bytes()))[..12]
        ),
        other => other.to_string(),
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
    if let Some(card) = &want.card_adapter {
        c = c.reason(format!("pulled for {card}, given there by source"));
    }
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
            card_adapter: None,
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
    fn a_changed_card_shows_each_changed_key_path() {
        let before = serde_json::json!({
            "base": {"model": "tiny", "sha256": "aa"},
            "system": "Answer with one query.",
            "sampling": {"temperature": 0.2, "stop": [";"]},
            "adapters": [{"model": "lora", "scale": 0.8}],
        });
        let mut after = before.clone();
        after["sampling"]["temperature"] = 0.4.into();
        after["sampling"]["stop"] = serde_json::json!([";", "\n\n"]);
        after["system"] = "x".repeat(80).into();
        after["adapters"][0]["scale"] = 1.into();
        after["context"] = 2048.into();
        let c = card_change("sql", Some(&before), Some(&after)).unwrap();
        assert_eq!(c.action, Action::Update);
        assert_eq!(c.address.to_string(), "inference.card:sql");
        let fields: Vec<String> = c
            .fields
            .iter()
            .map(|f| {
                format!(
                    "{}: {} -> {}",
                    f.name,
                    f.before.as_deref().unwrap_or("(none)"),
                    f.after.as_deref().unwrap_or("(none)")
                )
            })
            .collect();
        assert_eq!(
            fields,
            [
                "adapters[0].scale: 0.8 -> 1",
                "context: (none) -> 2048",
                "sampling.stop[1]: (none) -> \"\\n\\n\"",
                "sampling.temperature: 0.2 -> 0.4",
                "system: \"Answer with one query.\" -> (80 bytes, sha256 d929cdeea7e6)",
            ]
        );
        assert!(card_change("sql", Some(&after), Some(&after)).is_none());
        let gone = card_change("sql", Some(&after), None).unwrap();
        assert_eq!(gone.action, Action::Delete);
        assert!(gone.fields.iter().all(|f| f.after.is_none()));
        let new = card_change("sql", None, Some(&before)).unwrap();
        assert_eq!(new.action, Action::Create);
        assert_eq!(
            new.depends_on,
            [file_address("/etc/sovereign/inference/cards/sql.json")]
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
