//! The services domain: `[services.NAME]` entries (and the unit `[inference]` generates)
//! become systemd units.
//!
//! Every unit, its own and those other domains request ([`crate::domain::Requests`]), is
//! one resource, `services.service:NAME`. Its unit file `/etc/systemd/system/NAME.service`
//! is requested from the files domain (`files.file:/etc/systemd/system/NAME.service`,
//! written under the root like any managed file, with the same ownership and backups; it
//! applies on any machine), and the service is what systemd does with it: daemon-reload, enable, start, and
//!   restart when the unit or a file in `restart_on` changed since sovereign last started
//!   it; stop and disable when the profile drops it. Observed with one `systemctl show`.
//!
//! Where systemd cannot be used (PID 1 is not systemd, or `--root` puts the units where
//! the running systemd does not look), the service changes are still planned, saying
//! what they would do, and marked not applicable: never pending, skipped by apply, and
//! their health checks are skipped and say so.

mod apply;
mod desired;
mod diff;
mod health;
mod observe;
pub mod rules;
pub mod section;
pub mod systemctl;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::requests::service_address;
use crate::domain::{
    ApplyContext, DiffOptions, Domain, HealthResult, LedgerTx, Owned, PlanContext, Requests,
};
use crate::plan::{Address, Change};

pub use desired::DesiredService;
pub use diff::ServiceOp;
pub use systemctl::UnitState;

/// The services domain.
#[derive(Debug, Default, Clone, Copy)]
pub struct Services;

/// Desired services keyed by name (without ".service").
pub type Desired = BTreeMap<String, DesiredService>;

/// What the machine has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Why systemd steps cannot run here; `None` when they can.
    pub unusable: Option<String>,
    /// What systemd says of each desired or owned service (empty where systemd cannot be
    /// asked).
    pub states: BTreeMap<String, UnitState>,
    /// The digest now of each file a service restarts on that no domain writes
    /// (`missing` when absent).
    pub inputs: BTreeMap<String, String>,
    /// The digest now of each desired service's unit file (`None`: there is none).
    pub unit_files: BTreeMap<String, Option<String>>,
}

/// One ledger entry of the services domain: a service sovereign enabled or started (key
/// `service:NAME`). Its unit file is the files domain's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    Service {
        /// sha256 of the unit it last (re)started the service with.
        unit_sha256: String,
        /// The digests of the files in `restart_on` at that time.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        triggers: BTreeMap<String, String>,
        enabled: bool,
        started: bool,
    },
}

pub fn service_key(name: &str) -> String {
    format!("service:{name}")
}

impl Domain for Services {
    type Desired = Desired;
    type Observed = Observed;
    type Entry = Entry;

    const NAME: &'static str = "services";
    const SECTIONS: &'static [&'static str] = &["services"];

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
        let mut out: BTreeMap<Address, String> = observed
            .states
            .iter()
            .map(|(name, s)| {
                let d = format!(
                    "load={} active={} enabled={}",
                    s.load, s.active, s.unit_file
                );
                (service_address(name), d)
            })
            .collect();
        for (path, digest) in &observed.inputs {
            out.insert(
                Address::new("services", "input", path.clone()),
                digest.clone(),
            );
        }
        out
    }

    fn diff(
        &self,
        desired: &Desired,
        observed: &Observed,
        owned: &Owned<Entry>,
        options: &DiffOptions,
    ) -> anyhow::Result<Vec<Change>> {
        Ok(diff::diff(desired, observed, owned, options))
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
        health::health(cx, desired)
    }
}
