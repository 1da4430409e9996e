//! The services domain: `[services.NAME]` entries (and the unit `[inference]` generates)
//! become systemd units.
//!
//! Two resources per service:
//! - `services.unit:NAME`: the unit file `/etc/systemd/system/NAME.service`, rendered from
//!   `unit` or `template`, written under the root like a managed file (it applies on any
//!   machine);
//! - `services.service:NAME`: what systemd does with it: daemon-reload, enable, start, and
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
pub mod generated;
pub mod systemctl;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::{
    ApplyContext, DiffOptions, Domain, HealthResult, LedgerTx, Owned, PlanContext,
};
use crate::plan::{Address, Change};

pub use desired::{DesiredService, unit_path};
pub use generated::Have;
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
    /// The unit file of every desired or owned service.
    pub units: BTreeMap<String, Have>,
    /// What systemd says of each (empty where systemd cannot be asked).
    pub states: BTreeMap<String, UnitState>,
}

/// One ledger entry of the services domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// A unit file sovereign wrote (key `unit:NAME`).
    Unit {
        /// sha256 of the content it wrote.
        applied_sha256: String,
    },
    /// A service sovereign enabled or started (key `service:NAME`).
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

pub fn unit_key(name: &str) -> String {
    format!("unit:{name}")
}

pub fn service_key(name: &str) -> String {
    format!("service:{name}")
}

pub fn unit_address(name: &str) -> Address {
    Address::new("services", "unit", name)
}

pub fn service_address(name: &str) -> Address {
    Address::new("services", "service", name)
}

impl Domain for Services {
    type Desired = Desired;
    type Observed = Observed;
    type Entry = Entry;

    const NAME: &'static str = "services";
    const SECTIONS: &'static [&'static str] = &["services"];

    fn desired(&self, cx: &PlanContext<'_>) -> anyhow::Result<Desired> {
        desired::desired(cx)
    }

    fn observe(
        &self,
        cx: &PlanContext<'_>,
        desired: &Desired,
        owned: &Owned<Entry>,
    ) -> anyhow::Result<Observed> {
        let mut names: Vec<&str> = desired.keys().map(String::as_str).collect();
        for key in owned.keys() {
            if let Some(name) = key
                .strip_prefix("unit:")
                .or_else(|| key.strip_prefix("service:"))
            {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        let mut units = BTreeMap::new();
        for name in &names {
            let have = generated::observe(cx.root, &unit_path(name))
                .map_err(|e| e.context(format!("services.{name}: cannot observe its unit file")))?;
            units.insert(name.to_string(), have);
        }
        let unusable = systemctl::unusable(cx.root, cx.host);
        let states = match unusable {
            Some(_) => BTreeMap::new(),
            None => systemctl::show(cx.host, &names)?,
        };
        Ok(Observed {
            unusable,
            units,
            states,
        })
    }

    fn digests(&self, observed: &Observed) -> BTreeMap<Address, String> {
        let mut out: BTreeMap<Address, String> = observed
            .units
            .iter()
            .map(|(name, have)| (unit_address(name), have.digest()))
            .collect();
        for (name, s) in &observed.states {
            out.insert(
                service_address(name),
                format!(
                    "load={} active={} enabled={}",
                    s.load, s.active, s.unit_file
                ),
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
    ) -> Vec<Change> {
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
        apply::health(cx, desired)
    }
}
