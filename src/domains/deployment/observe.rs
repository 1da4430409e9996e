//! Observing the model cache: each desired or owned model's manifest and blob, read
//! without opening the store (opening creates its folders, and observing changes nothing).
//! A Card's before is what the ledger recorded when it was last applied: its file is the
//! files domain's to observe (a hand edit there is that domain's drift).

use std::collections::BTreeMap;

use super::{CachedModel, Desired, Entry, Observed};
use crate::domain::{Owned, PlanContext};
use crate::inference::cache::{MODELS_DIR, Manifest};

pub fn observe(
    cx: &PlanContext<'_>,
    desired: &Desired,
    owned: &Owned<Entry>,
) -> anyhow::Result<Observed> {
    let dir = cx.root.path().join(MODELS_DIR);
    let mut names: Vec<&str> = desired.models.keys().map(String::as_str).collect();
    names.extend(owned.keys().filter_map(|k| k.strip_prefix("model:")));
    let cards = owned
        .iter()
        .filter_map(|(key, entry)| match (key.strip_prefix("card:"), entry) {
            (Some(name), Entry::Card { card }) => Some((name.to_string(), card.clone())),
            _ => None,
        })
        .collect();
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
    Ok(Observed { models, cards })
}
