//! Observation: one netlink dump each of links, addresses and bridge forwarding entries,
//! and the tailnet when a segment runs over it. Nothing at all when the profile declares
//! no segment and sovereign owns no link.

use std::collections::HashMap;

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
    /// Lookups by link name and index (built by [`Observed::reindex`]): a plan over
    /// hundreds of links stays linear.
    by_name: HashMap<String, usize>,
    by_index: HashMap<u32, usize>,
    addrs_of: HashMap<u32, Vec<usize>>,
    fdb_of: HashMap<u32, Vec<usize>>,
}

impl Observed {
    /// What the kernel reported, with its lookups built.
    pub fn new(links: Vec<Link>, addresses: Vec<Addr>, fdb: Vec<Fdb>) -> Observed {
        Observed {
            links,
            addresses,
            fdb,
            ..Observed::default()
        }
        .reindex()
    }

    /// Build the lookups; call after filling `links`, `addresses` and `fdb`.
    pub fn reindex(mut self) -> Self {
        self.by_name = self
            .links
            .iter()
            .enumerate()
            .map(|(i, l)| (l.name.clone(), i))
            .collect();
        self.by_index = self
            .links
            .iter()
            .enumerate()
            .map(|(i, l)| (l.index, i))
            .collect();
        self.addrs_of.clear();
        for (i, a) in self.addresses.iter().enumerate() {
            self.addrs_of.entry(a.index).or_default().push(i);
        }
        self.fdb_of.clear();
        for (i, f) in self.fdb.iter().enumerate() {
            self.fdb_of.entry(f.index).or_default().push(i);
        }
        self
    }

    pub fn link(&self, name: &str) -> Option<&Link> {
        self.by_name.get(name).map(|i| &self.links[*i])
    }

    pub fn link_by_index(&self, index: u32) -> Option<&Link> {
        self.by_index.get(&index).map(|i| &self.links[*i])
    }

    /// The addresses on link `index`.
    pub fn addresses_of(&self, index: u32) -> impl Iterator<Item = &Addr> {
        self.addrs_of
            .get(&index)
            .into_iter()
            .flatten()
            .map(|i| &self.addresses[*i])
    }

    /// The forwarding entries of link `index`.
    pub fn fdb_of(&self, index: u32) -> impl Iterator<Item = &Fdb> {
        self.fdb_of
            .get(&index)
            .into_iter()
            .flatten()
            .map(|i| &self.fdb[*i])
    }
}

pub fn observe(
    cx: &PlanContext<'_>,
    desired: &Desired,
    owned: &Owned<Entry>,
) -> anyhow::Result<Observed> {
    let mut out = Observed::default();
    // One `tailscale status --json` serves both the node and the segments over it.
    if desired.tailscale.is_some() || desired.needs_tailnet() {
        let reading = tailnet::read(cx.host);
        if let Some(ts) = &desired.tailscale {
            out.tailscale = Some(super::tailscale::observe(cx.root, cx.host, ts, &reading)?);
        }
        if desired.needs_tailnet() {
            out.tailnet = Some(reading.tailnet);
        }
    }
    if desired.segments.is_empty() && owned.is_empty() {
        return Ok(out);
    }
    let netlink = cx.host.netlink()?;
    out.links = netlink.links()?;
    out.addresses = netlink.addresses()?;
    out.fdb = netlink.fdb()?;
    Ok(out.reindex())
}
