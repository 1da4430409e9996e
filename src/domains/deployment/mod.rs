//! The inference deployment domain: `[inference]` and `[inference.models.NAME]`
//! become changes.
//!
//! - `inference.model:NAME`: the model pulled into the verified cache (relocated under
//!   `--root`, like a local source path) and checked against its pinned sha256; a model
//!   pinned and already cached under its name is no change. A Card's adapter given by
//!   `source` is one of these models, named `card-CARD-adapter-I`, and the Card the daemon
//!   reads names it so.
//! - `/etc/sovereign/inference/models.toml`, the per-model options the daemon reads
//!   (`serve --models FILE`), is requested from the files domain
//!   (`files.file:/etc/sovereign/inference/models.toml`);
//! - `inference.card:NAME`: a Card the daemon serves; its file is requested from the files
//!   domain (`/etc/sovereign/inference/cards/NAME.json`), and the change itself records the
//!   Card as applied in the ledger, so that the next plan shows what changed in it key by
//!   key (`sampling.temperature: 0.2 -> 0.4`);
//! - the daemon's unit, `sovereign-inference`, is requested from the services domain,
//!   which runs it like any service (`--card NAME=FILE` for each Card); its start waits for
//!   the models, the options file and the Cards, and it restarts when any of them changes.
//!
//! The health check asks the daemon's `/health` and `/v1/models` for every declared model;
//! where the service cannot be started (no systemd), it is skipped and says so.

mod apply;
mod desired;
mod diff;
pub mod health;
mod observe;
pub mod render;
pub mod rules;
pub mod section;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::{
    ApplyContext, DiffOptions, Domain, HealthResult, LedgerTx, Owned, PlanContext, Requests,
};
use crate::plan::{Address, Change};

/// The unit `[inference]` generates.
pub const UNIT_NAME: &str = crate::profile::INFERENCE_UNIT;
/// Where the per-model options go.
pub const MODELS_FILE: &str = crate::profile::INFERENCE_MODELS_FILE;
/// Where the daemon reads a Card.
pub use crate::profile::inference_card_file as card_file;

/// The inference deployment domain.
#[derive(Debug, Default, Clone, Copy)]
pub struct Deployment;

/// What `[inference]` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Desired {
    /// Whether `[inference]` is declared at all.
    pub declared: bool,
    /// Models keyed by the name clients use.
    pub models: BTreeMap<String, DesiredModel>,
    /// Where the daemon listens, for the health check.
    pub listen: String,
    /// The key file as the profile names it (the key is read only by the health check).
    pub api_key_file: Option<String>,
    /// Cards by name, as JSON: what the ledger records once applied.
    pub cards: BTreeMap<String, serde_json::Value>,
}

/// One model to have in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DesiredModel {
    /// The source as the profile writes it.
    pub source: String,
    /// Where it is pulled from on this machine (a local path relocated under `--root`).
    pub pull_from: String,
    /// The pinned sha256 (lowercase), if any.
    pub sha256: Option<String>,
    /// For a Card's adapter given by `source` (pulled under its derived name): where the
    /// profile declares it, e.g. `adapters[0] of [inference.cards.sql]`; `None` for a model of
    /// `[inference.models]`.
    pub card_adapter: Option<String>,
}

/// What the cache holds for a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CachedModel {
    Missing,
    Cached {
        sha256: String,
        source: String,
        /// The blob is in the store with the recorded size.
        blob_ok: bool,
    },
}

/// What the machine has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub models: BTreeMap<String, CachedModel>,
    /// Each Card as last applied (from the ledger: the file itself is the files domain's).
    pub cards: BTreeMap<String, serde_json::Value>,
}

/// One ledger entry: a model sovereign pulled (key `model:NAME`), or a Card as last
/// applied (key `card:NAME`), the before of the next plan's field-level diff. The options
/// file, the Card files and the unit are the files and services domains'.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    Model { sha256: String, source: String },
    Card { card: serde_json::Value },
}

/// What apply does for one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelOp {
    /// Pull the model into the cache under its name (and check its pin).
    Pull,
    /// Remove it from the cache and forget it.
    Remove,
}

/// What apply does for one Card change: the file is the files domain's to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardOp {
    /// Record the Card as applied.
    Record,
    /// Forget it.
    Forget,
}

fn model_address(name: &str) -> Address {
    Address::new("inference", "model", name)
}

fn card_address(name: &str) -> Address {
    Address::new("inference", "card", name)
}

impl Domain for Deployment {
    type Desired = Desired;
    type Observed = Observed;
    type Entry = Entry;

    const NAME: &'static str = "inference";
    const SECTIONS: &'static [&'static str] = &["inference"];

    fn requests(&self, cx: &PlanContext<'_>) -> anyhow::Result<Requests> {
        desired::requests(cx)
    }

    fn desired(&self, cx: &PlanContext<'_>) -> anyhow::Result<Desired> {
        desired::desired(cx)
    }
    fn observe(
        &self,
        cx: &PlanContext<'_>,
        desired: &Desired,
        owned: &Owned<Entry>,
    ) -> anyhow::Result<Observed> {
        observe::observe(cx, desired, owned)
    }
    fn digests(&self, observed: &Observed) -> BTreeMap<Address, String> {
        let models = observed.models.iter().map(|(name, m)| {
            let d = match m {
                CachedModel::Missing => "missing".to_string(),
                CachedModel::Cached {
                    sha256, blob_ok, ..
                } => format!("cached sha256={sha256} blob_ok={blob_ok}"),
            };
            (model_address(name), d)
        });
        let cards = observed.cards.iter().map(|(name, card)| {
            let d = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(card.to_string()));
            (card_address(name), format!("applied sha256={d}"))
        });
        models.chain(cards).collect()
    }

    fn diff(
        &self,
        desired: &Desired,
        observed: &Observed,
        owned: &Owned<Entry>,
        options: &DiffOptions,
    ) -> anyhow::Result<Vec<Change>> {
        diff::diff(desired, observed, owned, options)
    }

    fn apply(
        &self,
        cx: &ApplyContext<'_>,
        desired: &Desired,
        change: &Change,
        ledger: &mut LedgerTx<'_, Entry>,
    ) -> anyhow::Result<()> {
        apply::apply(cx, desired, change, ledger)
    }

    fn health(&self, cx: &ApplyContext<'_>, desired: &Desired) -> Vec<HealthResult> {
        health::check(cx, desired)
    }
}
