//! The network domain behind the one interface.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::{
    ApplyContext, DiffOptions, Domain, HealthResult, LedgerTx, Owned, PlanContext,
};
use crate::plan::{Address, Change};

use super::desired::{self, Desired};
use super::observe::{self, Observed};
use super::{apply, diff, health};

/// The network domain.
#[derive(Debug, Default, Clone, Copy)]
pub struct Network;

/// One ledger entry: a link sovereign made (key `link:NAME`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    Link {
        /// `vxlan` or `bridge`.
        #[serde(rename = "link_kind")]
        kind: String,
    },
}

impl Domain for Network {
    type Desired = Desired;
    type Observed = Observed;
    type Entry = Entry;

    const NAME: &'static str = "network";
    const SECTIONS: &'static [&'static str] = &["network"];

    fn requests(&self, cx: &PlanContext<'_>) -> anyhow::Result<crate::domain::Requests> {
        let mut out = match super::tailscale::desired(cx)? {
            Some(ts) => super::tailscale::requests(&ts)?,
            None => crate::domain::Requests::default(),
        };
        super::boot::requests(cx, &mut out)?;
        Ok(out)
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
        // One digest per link sovereign made or a segment names, with its addresses and
        // forwarding entries: a saved plan is stale when any of them moved.
        let mut out: BTreeMap<Address, String> = observed
            .links
            .iter()
            .filter(|l| diff::is_ours(l))
            .map(|l| {
                let mut addrs: Vec<_> = observed
                    .addresses_of(l.index)
                    .map(|a| format!("{}/{}", a.ip, a.prefix))
                    .collect();
                addrs.sort();
                let mut fdb: Vec<_> = observed
                    .fdb_of(l.index)
                    .filter(|f| f.mac == [0; 6])
                    .map(|f| format!("{:?}", f.dst))
                    .collect();
                fdb.sort();
                let kind = l.kind.as_deref().unwrap_or("link");
                let master = l
                    .master
                    .and_then(|m| observed.link_by_index(m))
                    .map(|m| m.name.as_str());
                (
                    diff::link_address(kind, &l.name),
                    format!(
                        "{:?} mtu={} up={} master={master:?} addrs={addrs:?} fdb={fdb:?}",
                        l.vxlan, l.mtu, l.up
                    ),
                )
            })
            .collect();
        if let Some(ts) = &observed.tailscale {
            out.insert(
                super::tailscale::node_address(),
                format!("{:?} {:?} {:?}", ts.node, ts.package_installed, ts.keyring),
            );
        }
        out
    }

    fn unmanaged(&self, desired: &Desired, observed: &Observed) -> Vec<String> {
        let mut others: Vec<&str> = observed
            .links
            .iter()
            .filter(|l| !diff::is_ours(l) && !desired.segments.contains_key(&l.name))
            .map(|l| l.name.as_str())
            .collect();
        if others.is_empty() {
            return Vec::new();
        }
        others.sort_unstable();
        vec![format!(
            "network: {} links sovereign did not make are left alone: {}",
            others.len(),
            others.join(", ")
        )]
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
        health::health(cx, desired)
    }
}
