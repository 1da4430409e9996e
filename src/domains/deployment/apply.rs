//! Carrying out a models change: pull into the verified cache, or remove from it.

use anyhow::Context;

use super::{Desired, Entry, ModelOp};
use crate::domain::{ApplyContext, LedgerTx};
use crate::inference::cache::{Cache, ModelName, NoProgress, PullRequest};
use crate::plan::Change;

pub fn apply(
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
                .with_context(|| format!("inference.models.{name}: cannot pull {}", want.source))?;
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
