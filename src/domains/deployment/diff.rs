//! The models diff: pure. A model is pulled when missing, broken or not the pinned one;
//! one sovereign pulled leaves the cache when dropped, after the daemon stops.

use super::{
    CachedModel, Desired, DesiredModel, Entry, ModelOp, Observed, UNIT_NAME, model_address,
};
use crate::domain::requests::service_address;
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
    for (key, Entry::Model { sha256, .. }) in owned {
        let Some(name) = key.strip_prefix("model:") else {
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
    Ok(out)
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
