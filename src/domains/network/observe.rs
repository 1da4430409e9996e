//! Observation: one netlink dump each of links, addresses and bridge forwarding entries,
//! and the tailnet when a segment runs over it. Nothing at all when the profile declares
//! no segment and sovereign owns no link.

use crate::domain::{Owned, PlanContext};
use crate::host::netlink::{Addr, Fdb, Link};

use super::Entry;
use super::desired::Desired;
use super::tailnet::{self, Tailnet};

/// What the kernel has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub links: Vec<Link>,
    pub addresses: Vec<Addr>,
    pub fdb: Vec<Fdb>,
    /// The tailnet, read only when a segment runs over it.
    pub tailnet: Option<Tailnet>,
    /// The Tailscale node, package and keyring, when `[network.tailscale]` is declared.
    pub tailscale: Option<super::tailscale::Observed>,
}

impl Observed {
    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }

    pub fn link_by_index(&self, index: u32) -> Option<&Link> {
        self.links.iter().find(|l| l.index == index)
    }
}

pub fn observe(
    cx: &PlanContext<'_>,
    desired: &Desired,
    owned: &Owned<Entry>,
) -> anyhow::Result<Observed> {
    let mut out = Observed::default();
    if let Some(ts) = &desired.tailscale {
        out.tailscale = Some(super::tailscale::observe(cx.root, cx.host, ts)?);
    }
    if desired.segments.is_empty() && owned.is_empty() {
        return Ok(out);
    }
    let netlink = cx.host.netlink()?;
    out.links = netlink.links()?;
    out.addresses = netlink.addresses()?;
    out.fdb = netlink.fdb()?;
    if desired.needs_tailnet() {
        out.tailnet = Some(tailnet::observe(cx.host));
    }
    Ok(out)
}
