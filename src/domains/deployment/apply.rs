//! Carrying out a models change: pull into the verified cache, or remove from it; and a
//! Card change: record the Card as applied (its file is written by the files domain).

use anyhow::Context;

use super::{CardOp, Desired, Entry, ModelOp};
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
    if change.address.kind == "card" {
        return match change.op::<CardOp>()? {
            CardOp::Record => {
                let card = desired
                    .cards
                    .get(name)
                    .with_context(|| format!("card {name:?} is not in the profile"))?;
                ledger.record_result(&format!("card:{name}"), Entry::Card { card: card.clone() })
            }
            CardOp::Forget => ledger.forget(&format!("card:{name}")),
        };
    }
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
                .with_context(|| {
                    let what = match &want.card_adapter {
                        Some(adapter) => format!("{adapter} (as the model {name:?})"),
                        None => format!("inference.models.{name}"),
                    };
                    format!("{what}: cannot pull {}", want.source)
                })?;
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
