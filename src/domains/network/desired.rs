//! Desired state: each segment of `[network.vxlan]`, parsed, from the profile alone.
//! What depends on the machine (the underlay's MTU, the tailnet's addresses) is left for
//! diff to resolve against what observe read.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use anyhow::Context;
use serde::Serialize;

use crate::domain::PlanContext;
use crate::profile::rules::kp;

use super::rules::cidr;
use super::section::{Segment, TAILSCALE_UNDERLAY};

/// What the profile asks of the network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Desired {
    /// Segments keyed by name (the VXLAN device's name).
    pub segments: BTreeMap<String, DesiredSegment>,
    /// The Tailscale node, when `[network.tailscale]` is declared.
    pub tailscale: Option<super::tailscale::Desired>,
}

impl Desired {
    /// Whether a segment runs over Tailscale, so that observe asks the tailnet.
    pub fn needs_tailnet(&self) -> bool {
        self.segments
            .values()
            .any(|s| s.underlay == Underlay::Tailscale)
    }
}

/// One segment, its values parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DesiredSegment {
    pub vni: u32,
    pub local: Option<Ipv4Addr>,
    pub underlay: Underlay,
    pub peers: Vec<PeerSpec>,
    pub group: Option<Ipv4Addr>,
    pub port: u16,
    pub mtu: Option<u32>,
    pub bridge: Option<String>,
    pub addresses: Vec<(IpAddr, u8)>,
    /// Where the segment was written (`FILE:LINE:COL: network.vxlan.NAME`), for errors.
    #[serde(skip)]
    pub at: String,
    /// Where its `underlay`, `mtu` and `peers` were written.
    #[serde(skip)]
    pub at_key: BTreeMap<&'static str, String>,
}

impl DesiredSegment {
    /// Where `key` of this segment was written, for an error.
    pub fn place(&self, key: &str) -> &str {
        self.at_key.get(key).map_or(&self.at, String::as_str)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Underlay {
    /// Only `local` names it: the device holding that address.
    Unset,
    Device(String),
    Tailscale,
}

/// A peer as written: an address, or a Tailscale host name resolved at plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerSpec {
    Ip(Ipv4Addr),
    Name(String),
}

pub fn desired(cx: &PlanContext<'_>) -> anyhow::Result<Desired> {
    let mut out = Desired::default();
    let Some(network) = &cx.profile.profile.network else {
        return Ok(out);
    };
    out.tailscale = super::tailscale::desired(cx)?;
    for (name, segment) in &network.vxlan {
        let at = |key: &str| cx.profile.place(&kp(&["network", "vxlan", name, key]));
        let here = cx.profile.place(&kp(&["network", "vxlan", name]));
        let mut parsed = parse(segment).with_context(|| here.clone())?;
        parsed.at = here;
        for key in ["underlay", "local", "mtu", "peers"] {
            parsed.at_key.insert(key, at(key));
        }
        out.segments.insert(name.clone(), parsed);
    }
    Ok(out)
}

/// The segment's values, parsed (validate has checked them; a profile replayed from a
/// generation is checked again here).
fn parse(s: &Segment) -> anyhow::Result<DesiredSegment> {
    let ip4 = |what: &str, text: &str| -> anyhow::Result<Ipv4Addr> {
        text.parse()
            .with_context(|| format!("{what} {text:?} is not an IPv4 address"))
    };
    let local = s.local.as_deref().map(|t| ip4("local", t)).transpose()?;
    let underlay = match s.underlay.as_deref() {
        None => Underlay::Unset,
        Some(TAILSCALE_UNDERLAY) => Underlay::Tailscale,
        Some(device) => Underlay::Device(device.to_string()),
    };
    let peers = s
        .peers
        .iter()
        .map(|p| match p.parse::<Ipv4Addr>() {
            Ok(ip) => Ok(PeerSpec::Ip(ip)),
            Err(_) if underlay == Underlay::Tailscale => Ok(PeerSpec::Name(p.clone())),
            Err(_) => ip4("peer", p).map(PeerSpec::Ip),
        })
        .collect::<anyhow::Result<_>>()?;
    let group = s.group.as_deref().map(|t| ip4("group", t)).transpose()?;
    let addresses = s
        .addresses
        .iter()
        .map(|a| cidr(a).map_err(|why| anyhow::anyhow!("address {a:?} {why}")))
        .collect::<anyhow::Result<_>>()?;
    Ok(DesiredSegment {
        vni: s.vni,
        local,
        underlay,
        peers,
        group,
        port: s.port(),
        mtu: s.mtu,
        bridge: s.bridge.clone(),
        addresses,
        at: String::new(),
        at_key: BTreeMap::new(),
    })
}
