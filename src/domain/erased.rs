//! The object-safe face of [`Domain`]: what the registry holds and the engine calls.
//!
//! The typed desired state and ledger entries travel inside [`DomainPlan`] as `Any`, so the
//! engine handles every domain alike while each domain keeps its own types.

use std::any::Any;
use std::collections::BTreeMap;

use anyhow::Context;
use sha2::{Digest, Sha256};

use super::{
    ApplyContext, DiffOptions, Domain, HealthResult, LedgerTx, Owned, PlanContext, Requests,
};
use crate::host::fs::Root;
use crate::plan::{Address, Change};

/// Where ledger writes go: the engine journals them (fsynced) and keeps them for the
/// state file.
pub trait LedgerSink {
    /// Record `entry` under `key` in the domain's ledger section, or drop it when `None`;
    /// durable on return when `sync`, otherwise with the end of the step.
    fn write(
        &mut self,
        key: &str,
        entry: Option<serde_json::Value>,
        sync: bool,
    ) -> anyhow::Result<()>;
}

/// One domain's part of a plan, with the typed state apply needs.
pub struct DomainPlan {
    /// The domain's name.
    pub name: &'static str,
    /// The changes, in the domain's order.
    pub changes: Vec<Change>,
    /// Digests of the observed state of every resource covered.
    pub digests: BTreeMap<Address, String>,
    /// The digests its resources will have after apply ([`Domain::planned`]).
    pub planned: BTreeMap<Address, String>,
    /// sha256 of the serialized desired state: pins a saved plan to what it would write.
    pub desired_digest: String,
    /// The diff options the plan was made with (verification re-diffs with them).
    pub options: DiffOptions,
    /// What the domain leaves alone on the machine ([`Domain::unmanaged`]).
    pub unmanaged: Vec<String>,
    /// `(Desired, Owned<Entry>)` of the domain's types.
    state: Box<dyn Any + Send + Sync>,
}

/// The registry's view of a domain. Implemented for every [`Domain`] by [`erase`].
pub trait AnyDomain: Send + Sync {
    fn name(&self) -> &'static str;
    fn sections(&self) -> &'static [&'static str];

    /// What it asks of the other domains.
    fn requests(&self, cx: &PlanContext<'_>) -> anyhow::Result<Requests>;

    /// desired + observe + digests + diff.
    fn plan(
        &self,
        cx: &PlanContext<'_>,
        owned: Option<&serde_json::Value>,
        options: DiffOptions,
    ) -> anyhow::Result<DomainPlan>;

    /// Apply one change of this domain's plan; ledger writes go to `sink`.
    fn apply(
        &self,
        cx: &ApplyContext<'_>,
        plan: &mut DomainPlan,
        change: &Change,
        sink: &mut dyn LedgerSink,
    ) -> anyhow::Result<()>;

    /// Re-observe and re-diff; each applied address still pending is an inconsistency.
    fn verify(
        &self,
        cx: &PlanContext<'_>,
        plan: &DomainPlan,
        applied: &[Address],
    ) -> anyhow::Result<Vec<String>>;

    fn health(&self, cx: &ApplyContext<'_>, plan: &DomainPlan) -> Vec<HealthResult>;

    /// Clean up after one of its steps a killed apply left in progress.
    fn recover(&self, root: &Root, address: &Address) -> anyhow::Result<Vec<String>>;

    /// The domain's ledger section as it stands now, for the state file.
    fn owned_json(&self, plan: &DomainPlan) -> anyhow::Result<serde_json::Value>;
}

/// Wrap a typed domain for the registry.
pub fn erase<D: Domain>(domain: D) -> Box<dyn AnyDomain> {
    Box::new(Erased(domain))
}

struct Erased<D>(D);

type State<D> = (<D as Domain>::Desired, Owned<<D as Domain>::Entry>);

fn state<D: Domain>(plan: &DomainPlan) -> &State<D> {
    plan.state
        .downcast_ref::<State<D>>()
        .expect("a DomainPlan is only handed back to the domain that made it")
}

impl<D: Domain> AnyDomain for Erased<D> {
    fn name(&self) -> &'static str {
        D::NAME
    }

    fn sections(&self) -> &'static [&'static str] {
        D::SECTIONS
    }

    fn requests(&self, cx: &PlanContext<'_>) -> anyhow::Result<Requests> {
        self.0.requests(cx)
    }

    fn plan(
        &self,
        cx: &PlanContext<'_>,
        owned: Option<&serde_json::Value>,
        options: DiffOptions,
    ) -> anyhow::Result<DomainPlan> {
        let owned: Owned<D::Entry> = match owned {
            Some(v) => serde_json::from_value(v.clone()).with_context(|| {
                format!("the state's ledger section {:?} cannot be read", D::NAME)
            })?,
            None => Owned::new(),
        };
        let desired = self.0.desired(cx)?;
        let observed = self.0.observe(cx, &desired, &owned)?;
        let digests = self.0.digests(&observed);
        let changes = self.0.diff(&desired, &observed, &owned, &options)?;
        let unmanaged = self.0.unmanaged(&desired, &observed);
        let planned = self.0.planned(&desired);
        let desired_digest = hex::encode(Sha256::digest(serde_json::to_vec(&desired)?));
        Ok(DomainPlan {
            name: D::NAME,
            changes,
            digests,
            planned,
            desired_digest,
            options,
            unmanaged,
            state: Box::new((desired, owned)),
        })
    }

    fn apply(
        &self,
        cx: &ApplyContext<'_>,
        plan: &mut DomainPlan,
        change: &Change,
        sink: &mut dyn LedgerSink,
    ) -> anyhow::Result<()> {
        let (desired, owned) = plan
            .state
            .downcast_mut::<State<D>>()
            .expect("a DomainPlan is only handed back to the domain that made it");
        let mut tx = LedgerTx::new(owned, sink);
        self.0.apply(cx, desired, change, &mut tx)
    }

    fn verify(
        &self,
        cx: &PlanContext<'_>,
        plan: &DomainPlan,
        applied: &[Address],
    ) -> anyhow::Result<Vec<String>> {
        let (desired, owned) = state::<D>(plan);
        let observed = self.0.observe(cx, desired, owned)?;
        let again = self.0.diff(desired, &observed, owned, &plan.options)?;
        Ok(again
            .iter()
            .filter(|c| c.is_pending() && applied.contains(&c.address))
            .map(|c| {
                format!(
                    "inconsistent result after apply: {} still needs {} ({})",
                    c.address,
                    c.action.word(),
                    c.fields
                        .iter()
                        .map(|f| f.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
            .collect())
    }

    fn health(&self, cx: &ApplyContext<'_>, plan: &DomainPlan) -> Vec<HealthResult> {
        self.0.health(cx, &state::<D>(plan).0)
    }

    fn recover(&self, root: &Root, address: &Address) -> anyhow::Result<Vec<String>> {
        self.0.recover(root, address)
    }

    fn owned_json(&self, plan: &DomainPlan) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::to_value(&state::<D>(plan).1)?)
    }
}
