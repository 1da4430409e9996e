//! The pure diff: desired segments against the kernel's links, addresses and forwarding
//! entries. Each link, bridge port, address and forwarding entry is its own change.
//!
//! Ownership: sovereign marks every link it creates with the interface alias
//! `sovereign:network.vxlan.SEGMENT` (its bridge: `....SEGMENT.bridge`). An alias,
//! rather than a name prefix, leaves names to the operator, survives a restart of
//! sovereign with no state, and shows in `ip link`. A link without the mark is never
//! changed or deleted: one with a segment's name is an error, the rest are left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use anyhow::bail;

use crate::domain::{DiffOptions, Owned};
use crate::host::netlink::Link;
use crate::plan::{Action, Address, Change, FieldChange};

use super::Entry;
use super::desired::{Desired, DesiredSegment, PeerSpec, Underlay};
use super::observe::Observed;
use super::section::{TAILSCALE_MTU, VXLAN_OVERHEAD};
use super::tailnet::Tailnet;

/// The alias prefix that marks a link as sovereign's.
pub const MARK: &str = "sovereign:network.vxlan.";

pub fn vxlan_mark(segment: &str) -> String {
    format!("{MARK}{segment}")
}

pub fn bridge_mark(segment: &str) -> String {
    format!("{MARK}{segment}.bridge")
}

pub fn is_ours(link: &Link) -> bool {
    link.alias.as_deref().is_some_and(|a| a.starts_with(MARK))
}

/// Sovereign's by its mark, or made by sovereign (recorded before it was created) and
/// left without an alias by an apply killed between creating it and marking it: the
/// kernel takes the alias only in a request after the creation.
pub fn is_owned(link: &Link, owned: &Owned<Entry>) -> bool {
    is_ours(link) || (link.alias.is_none() && owned.contains_key(&link_key(&link.name)))
}

/// The ledger key of a link.
pub fn link_key(name: &str) -> String {
    format!("link:{name}")
}

/// A VXLAN device to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSpec {
    pub name: String,
    pub alias: String,
    pub vni: u32,
    pub local: Option<Ipv4Addr>,
    /// The underlay device's name (its index is looked up when applying).
    pub dev: Option<String>,
    pub port: u16,
    pub group: Option<Ipv4Addr>,
    pub mtu: u32,
}

/// What apply does for one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetOp {
    /// Create the device; for a replace, delete sovereign's link of that name first.
    CreateVxlan(VxlanSpec),
    CreateBridge {
        name: String,
        alias: String,
        mtu: u32,
    },
    /// Set the MTU, bring the link up and (re)write its mark.
    SetLink {
        name: String,
        alias: String,
        mtu: u32,
    },
    Attach {
        port: String,
        bridge: String,
    },
    Detach {
        port: String,
    },
    AddAddress {
        dev: String,
        ip: IpAddr,
        prefix: u8,
    },
    DelAddress {
        dev: String,
        ip: IpAddr,
        prefix: u8,
    },
    AddFlood {
        dev: String,
        dst: Ipv4Addr,
    },
    DelFlood {
        dev: String,
        dst: Ipv4Addr,
    },
    DeleteLink {
        name: String,
    },
    /// Fetch the Tailscale keyring and check its fingerprint.
    FetchKeyring {
        url: String,
        path: String,
    },
    InstallPackage {
        name: String,
    },
    /// Converge the Tailscale node.
    Node(super::tailscale::NodeOp),
}

pub fn link_address(kind: &str, name: &str) -> Address {
    Address::new("network", kind, name)
}

fn address_address(dev: &str, ip: IpAddr, prefix: u8) -> Address {
    Address::new("network", "address", format!("{dev}/{ip}/{prefix}"))
}

fn fdb_address(dev: &str, dst: Ipv4Addr) -> Address {
    Address::new("network", "fdb", format!("{dev}/{dst}"))
}

fn port_address(bridge: &str, port: &str) -> Address {
    Address::new("network", "port", format!("{bridge}/{port}"))
}

fn field(name: &str, before: Option<String>, after: Option<String>) -> FieldChange {
    FieldChange::new(name, before, after)
}

/// A link's state after this plan: made (or remade) by it, so everything attached to it
/// is made too, or kept with its index.
#[derive(Clone, Copy)]
enum State {
    Fresh,
    Kept(u32),
}

/// What a segment resolves to on this machine.
struct Resolved {
    local: Option<Ipv4Addr>,
    dev: Option<String>,
    mtu: u32,
    /// (address, how it was written)
    peers: Vec<(Ipv4Addr, String)>,
}

pub fn diff(
    desired: &Desired,
    observed: &Observed,
    owned: &Owned<Entry>,
    _options: &DiffOptions,
) -> anyhow::Result<Vec<Change>> {
    let mut wanted: BTreeSet<&str> = BTreeSet::new();
    for (name, segment) in &desired.segments {
        wanted.insert(name);
        if let Some(bridge) = &segment.bridge {
            wanted.insert(bridge);
        }
    }
    // Deletions first: a segment renamed with its VNI kept must lose its old device
    // before the kernel lets the new one take the VNI.
    let mut changes = Vec::new();
    let mut deleted = Vec::new();
    for link in observed
        .links
        .iter()
        .filter(|l| is_owned(l, owned) && !wanted.contains(l.name.as_str()))
    {
        let kind = if link.kind.as_deref() == Some("bridge") {
            "bridge"
        } else {
            "vxlan"
        };
        let address = link_address(kind, &link.name);
        let mut change = Change::new(address.clone(), Action::Delete).with_op(NetOp::DeleteLink {
            name: link.name.clone(),
        });
        change.fields = link_fields(link, observed)
            .into_iter()
            .map(|(k, v)| field(k, Some(v), None))
            .collect();
        change.reason = Some("no segment of the profile declares it (links hold no data)".into());
        deleted.push(address);
        changes.push(change);
    }
    for (name, segment) in &desired.segments {
        segment_changes(name, segment, observed, owned, &deleted, &mut changes)?;
    }
    if let Some(ts) = &desired.tailscale {
        let none = super::tailscale::Observed::default();
        super::tailscale::diff(
            ts,
            observed.tailscale.as_ref().unwrap_or(&none),
            &mut changes,
        )?;
    }
    Ok(changes)
}

/// A link's fields as a plan shows them.
fn link_fields(link: &Link, observed: &Observed) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(v) = &link.vxlan {
        out.push(("vni", v.vni.to_string()));
        if let Some(local) = v.local.filter(|ip| !ip.is_unspecified()) {
            out.push(("local", local.to_string()));
        }
        if let Some(dev) = v.dev.and_then(|i| observed.link_by_index(i)) {
            out.push(("underlay", dev.name.clone()));
        }
        out.push(("port", v.port.to_string()));
        if let Some(group) = v.group.filter(|ip| !ip.is_unspecified()) {
            out.push(("group", group.to_string()));
        }
        out.push(("learning", if v.learning { "on" } else { "off" }.into()));
    }
    out.push(("mtu", link.mtu.to_string()));
    out.push(("state", if link.up { "up" } else { "down" }.into()));
    out
}

fn spec_fields(spec: &VxlanSpec) -> Vec<(&'static str, String)> {
    let mut out = vec![("vni", spec.vni.to_string())];
    if let Some(local) = spec.local {
        out.push(("local", local.to_string()));
    }
    if let Some(dev) = &spec.dev {
        out.push(("underlay", dev.clone()));
    }
    out.push(("port", spec.port.to_string()));
    if let Some(group) = spec.group {
        out.push(("group", group.to_string()));
    }
    out.push(("learning", "off".into()));
    out.push(("mtu", spec.mtu.to_string()));
    out.push(("state", "up".into()));
    out
}

/// Field-level before -> after between two field lists, in the order of `after`.
fn compare(
    before: &[(&'static str, String)],
    after: &[(&'static str, String)],
) -> Vec<FieldChange> {
    let get = |list: &[(&'static str, String)], k: &str| {
        list.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    };
    let mut names: Vec<&'static str> = after.iter().map(|(n, _)| *n).collect();
    for (n, _) in before {
        if !names.contains(n) {
            names.push(n);
        }
    }
    names
        .into_iter()
        .filter_map(|n| {
            let (b, a) = (get(before, n), get(after, n));
            (b != a).then(|| field(n, b, a))
        })
        .collect()
}

fn resolve(
    name: &str,
    s: &DesiredSegment,
    observed: &Observed,
) -> anyhow::Result<Result<Resolved, String>> {
    let (local, dev, underlay_mtu, underlay_name) = match &s.underlay {
        Underlay::Device(device) => {
            let Some(link) = observed.link(device) else {
                let mut names: Vec<&str> = observed.links.iter().map(|l| l.name.as_str()).collect();
                names.sort_unstable();
                bail!(
                    "{}: no network device {device:?} on this machine (it has {}); name the device the segment's packets leave by",
                    s.place("underlay"),
                    names.join(", ")
                );
            };
            (s.local, Some(device.clone()), link.mtu, device.clone())
        }
        Underlay::Tailscale => match &observed.tailnet {
            Some(Tailnet::Up { self_ipv4, .. }) => (
                Some(*self_ipv4),
                None,
                TAILSCALE_MTU,
                "Tailscale's interface".to_string(),
            ),
            Some(Tailnet::Down(why)) => {
                return Ok(Err(format!(
                    "segment {name} runs over Tailscale, which is not up here ({why}); it is made by the first apply after the node is up"
                )));
            }
            None => return Ok(Err("the tailnet was not observed".into())),
        },
        Underlay::Unset => {
            let Some(local) = s.local else {
                bail!("{}: set `local` or `underlay`", s.at);
            };
            let holder = observed
                .addresses
                .iter()
                .find(|a| a.ip == IpAddr::V4(local))
                .and_then(|a| observed.link_by_index(a.index));
            let Some(link) = holder else {
                bail!(
                    "{}: {local} is not an address of this machine, so no packet of the segment could leave from it; use this host's address on the underlay",
                    s.place("local")
                );
            };
            (Some(local), None, link.mtu, link.name.clone())
        }
    };
    let room = underlay_mtu.saturating_sub(VXLAN_OVERHEAD);
    let mtu = match s.mtu {
        Some(mtu) if mtu > room => bail!(
            "{}: MTU {mtu} does not fit: the underlay ({underlay_name}) has MTU {underlay_mtu} and VXLAN adds {VXLAN_OVERHEAD} bytes, so the segment can carry at most {room}; lower `mtu` or leave it out",
            s.place("mtu")
        ),
        Some(mtu) => mtu,
        None if room < 68 => bail!(
            "{}: the underlay ({underlay_name}) has MTU {underlay_mtu}, too small to carry VXLAN (it adds {VXLAN_OVERHEAD} bytes)",
            s.place("underlay")
        ),
        None => room,
    };
    let mut peers = Vec::new();
    for peer in &s.peers {
        match peer {
            PeerSpec::Ip(ip) => peers.push((*ip, ip.to_string())),
            PeerSpec::Name(host) => {
                let tailnet = observed
                    .tailnet
                    .as_ref()
                    .expect("observed for a Tailscale underlay");
                let Some(found) = tailnet.resolve(host) else {
                    let mut known = tailnet.known_names();
                    known.sort_unstable();
                    bail!(
                        "{}: Tailscale host {host:?} is not in this tailnet (its peers: {}); name a peer by its Tailscale host name or address",
                        s.place("peers"),
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    );
                };
                let Some(ip) = found.ipv4 else {
                    bail!(
                        "{}: Tailscale host {host:?} has no IPv4 address",
                        s.place("peers")
                    );
                };
                peers.push((ip, format!("{host} ({ip})")));
            }
        }
    }
    Ok(Ok(Resolved {
        local,
        dev,
        mtu,
        peers,
    }))
}

fn segment_changes(
    name: &str,
    s: &DesiredSegment,
    observed: &Observed,
    owned: &Owned<Entry>,
    deleted: &[Address],
    changes: &mut Vec<Change>,
) -> anyhow::Result<()> {
    let vx_address = link_address("vxlan", name);
    let resolved = match resolve(name, s, observed)? {
        Ok(r) => r,
        Err(why) => {
            if observed.link(name).is_none() {
                let mut change = Change::new(vx_address, Action::Create);
                change.fields = vec![field("vni", None, Some(s.vni.to_string()))];
                change.not_applicable = Some(why);
                changes.push(change);
            }
            return Ok(());
        }
    };
    let spec = VxlanSpec {
        name: name.to_string(),
        alias: vxlan_mark(name),
        vni: s.vni,
        local: resolved.local,
        dev: resolved.dev.clone(),
        port: s.port,
        group: s.group,
        mtu: resolved.mtu,
    };
    let want = spec_fields(&spec);

    // The VXLAN device.
    let vx_state = match observed.link(name) {
        None => {
            let mut change = Change::new(vx_address.clone(), Action::Create)
                .with_op(NetOp::CreateVxlan(spec.clone()));
            change.fields = want
                .iter()
                .map(|(k, v)| field(k, None, Some(v.clone())))
                .collect();
            change.depends_on = deleted.to_vec();
            changes.push(change);
            State::Fresh
        }
        Some(link) if !is_owned(link, owned) => bail!(
            "{}: a link named {name:?} exists ({}) that sovereign did not create; rename the segment or remove that link yourself",
            s.at,
            link.kind.as_deref().unwrap_or("a device")
        ),
        Some(link) => {
            let have = link_fields(link, observed);
            let fixed = |list: &[(&'static str, String)]| -> Vec<(&'static str, String)> {
                list.iter()
                    .filter(|(k, _)| !matches!(*k, "mtu" | "state"))
                    .cloned()
                    .collect()
            };
            if link.kind.as_deref() != Some("vxlan") || fixed(&have) != fixed(&want) {
                let mut change = Change::new(vx_address.clone(), Action::Replace)
                    .with_op(NetOp::CreateVxlan(spec.clone()));
                change.fields = compare(&have, &want);
                change.reason = Some("these attributes cannot change on a live VXLAN device: it is deleted and made again (links hold no data)".into());
                change.depends_on = deleted.to_vec();
                changes.push(change);
                State::Fresh
            } else {
                let mut fields = compare(&have, &want);
                fields.extend(mark_field(link, &spec.alias));
                if !fields.is_empty() {
                    let mut change =
                        Change::new(vx_address.clone(), Action::Update).with_op(NetOp::SetLink {
                            name: name.to_string(),
                            alias: spec.alias.clone(),
                            mtu: spec.mtu,
                        });
                    change.fields = fields;
                    changes.push(change);
                }
                State::Kept(link.index)
            }
        }
    };

    // Its bridge and the port that joins them.
    let mut target = (name.to_string(), vx_address.clone(), vx_state);
    if let Some(bridge) = &s.bridge {
        let br_address = link_address("bridge", bridge);
        let want_br = vec![("mtu", spec.mtu.to_string()), ("state", "up".to_string())];
        let br_state = match observed.link(bridge) {
            None => {
                let mut change =
                    Change::new(br_address.clone(), Action::Create).with_op(NetOp::CreateBridge {
                        name: bridge.clone(),
                        alias: bridge_mark(name),
                        mtu: spec.mtu,
                    });
                change.fields = want_br
                    .iter()
                    .map(|(k, v)| field(k, None, Some(v.clone())))
                    .collect();
                change.depends_on = deleted.to_vec();
                changes.push(change);
                State::Fresh
            }
            Some(link) if !is_owned(link, owned) => bail!(
                "{}: a link named {bridge:?} exists ({}) that sovereign did not create; name another bridge or remove that link yourself",
                s.place("bridge"),
                link.kind.as_deref().unwrap_or("a device")
            ),
            Some(link) if link.kind.as_deref() != Some("bridge") => {
                let mut change =
                    Change::new(br_address.clone(), Action::Replace).with_op(NetOp::CreateBridge {
                        name: bridge.clone(),
                        alias: bridge_mark(name),
                        mtu: spec.mtu,
                    });
                change.fields = compare(&link_fields(link, observed), &want_br);
                changes.push(change);
                State::Fresh
            }
            Some(link) => {
                let mut fields = compare(&link_fields(link, observed), &want_br);
                fields.extend(mark_field(link, &bridge_mark(name)));
                if !fields.is_empty() {
                    let mut change =
                        Change::new(br_address.clone(), Action::Update).with_op(NetOp::SetLink {
                            name: bridge.clone(),
                            alias: bridge_mark(name),
                            mtu: spec.mtu,
                        });
                    change.fields = fields;
                    changes.push(change);
                }
                State::Kept(link.index)
            }
        };
        let attached = match (vx_state, br_state) {
            (State::Kept(_), State::Kept(br)) => {
                observed.link(name).and_then(|l| l.master) == Some(br)
            }
            _ => false,
        };
        if !attached {
            let before = match vx_state {
                State::Kept(_) => observed
                    .link(name)
                    .and_then(|l| l.master)
                    .and_then(|m| observed.link_by_index(m))
                    .map(|m| m.name.clone()),
                State::Fresh => None,
            };
            let action = if matches!(vx_state, State::Kept(_)) {
                Action::Update
            } else {
                Action::Create
            };
            let mut change =
                Change::new(port_address(bridge, name), action).with_op(NetOp::Attach {
                    port: name.to_string(),
                    bridge: bridge.clone(),
                });
            change.fields = vec![field("master", before, Some(bridge.clone()))];
            change.depends_on = vec![vx_address.clone(), br_address.clone()];
            changes.push(change);
        }
        target = (bridge.clone(), br_address, br_state);
    } else if let State::Kept(_) = vx_state
        && let Some(master) = observed
            .link(name)
            .and_then(|l| l.master)
            .and_then(|m| observed.link_by_index(m))
    {
        // The profile dropped the bridge: detach from it, unless it is being deleted anyway.
        if !deleted.iter().any(|a| a.name == master.name) {
            let mut change = Change::new(port_address(&master.name, name), Action::Delete).with_op(
                NetOp::Detach {
                    port: name.to_string(),
                },
            );
            change.fields = vec![field("master", Some(master.name.clone()), None)];
            changes.push(change);
        }
    }

    // Addresses: the segment's on its target, none on the VXLAN device behind a bridge.
    let want_addrs: BTreeSet<(IpAddr, u8)> = s.addresses.iter().copied().collect();
    let mut links = vec![(target.0.clone(), target.1.clone(), target.2, want_addrs)];
    if s.bridge.is_some() {
        links.push((
            name.to_string(),
            vx_address.clone(),
            vx_state,
            BTreeSet::new(),
        ));
    }
    for (dev, link_addr, state, want) in links {
        let have: BTreeSet<(IpAddr, u8)> = match state {
            State::Kept(index) => observed
                .addresses_of(index)
                .filter(|a| !is_link_local(a.ip))
                .map(|a| (a.ip, a.prefix))
                .collect(),
            State::Fresh => BTreeSet::new(),
        };
        for (ip, prefix) in want.difference(&have) {
            let mut change = Change::new(address_address(&dev, *ip, *prefix), Action::Create)
                .with_op(NetOp::AddAddress {
                    dev: dev.clone(),
                    ip: *ip,
                    prefix: *prefix,
                });
            change.fields = vec![field("address", None, Some(format!("{ip}/{prefix}")))];
            change.depends_on = vec![link_addr.clone()];
            changes.push(change);
        }
        for (ip, prefix) in have.difference(&want) {
            let mut change = Change::new(address_address(&dev, *ip, *prefix), Action::Delete)
                .with_op(NetOp::DelAddress {
                    dev: dev.clone(),
                    ip: *ip,
                    prefix: *prefix,
                });
            change.fields = vec![field("address", Some(format!("{ip}/{prefix}")), None)];
            changes.push(change);
        }
    }

    // Forwarding entries: one all-zero entry per peer (head-end replication).
    let have: BTreeSet<Ipv4Addr> = match vx_state {
        State::Kept(index) => observed
            .fdb_of(index)
            .filter(|f| f.mac == [0; 6])
            .filter_map(|f| match f.dst {
                Some(IpAddr::V4(ip)) if Some(ip) != s.group => Some(ip),
                _ => None,
            })
            .collect(),
        State::Fresh => BTreeSet::new(),
    };
    let want: BTreeMap<Ipv4Addr, &str> = resolved
        .peers
        .iter()
        .map(|(ip, label)| (*ip, label.as_str()))
        .collect();
    for (ip, label) in &want {
        if have.contains(ip) {
            continue;
        }
        let mut change =
            Change::new(fdb_address(name, *ip), Action::Create).with_op(NetOp::AddFlood {
                dev: name.to_string(),
                dst: *ip,
            });
        change.fields = vec![
            field("mac", None, Some("00:00:00:00:00:00".into())),
            field("peer", None, Some((*label).to_string())),
        ];
        change.depends_on = vec![vx_address.clone()];
        changes.push(change);
    }
    for ip in have.iter().filter(|ip| !want.contains_key(ip)) {
        let mut change =
            Change::new(fdb_address(name, *ip), Action::Delete).with_op(NetOp::DelFlood {
                dev: name.to_string(),
                dst: *ip,
            });
        change.fields = vec![
            field("mac", Some("00:00:00:00:00:00".into()), None),
            field("peer", Some(ip.to_string()), None),
        ];
        changes.push(change);
    }
    Ok(())
}

/// The alias as a field, when the link lacks its mark.
fn mark_field(link: &Link, mark: &str) -> Option<FieldChange> {
    (link.alias.as_deref() != Some(mark))
        .then(|| field("alias", link.alias.clone(), Some(mark.to_string())))
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
        IpAddr::V4(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::netlink::{Addr, Fdb, Vxlan};

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn segment(peers: &[&str]) -> DesiredSegment {
        DesiredSegment {
            vni: 42,
            local: Some(ip("192.0.2.1")),
            underlay: Underlay::Device("eth0".into()),
            peers: peers.iter().map(|p| PeerSpec::Ip(ip(p))).collect(),
            group: None,
            port: 4789,
            mtu: None,
            bridge: Some("br-hunt".into()),
            addresses: vec![("10.42.0.1".parse().unwrap(), 24)],
            at: "p.toml:1:1: network.vxlan.hunt".into(),
            at_key: BTreeMap::from([("mtu", "p.toml:4:7: network.vxlan.hunt.mtu".to_string())]),
        }
    }

    fn desired(s: DesiredSegment) -> Desired {
        Desired {
            segments: BTreeMap::from([("hunt".to_string(), s)]),
            tailscale: None,
        }
    }

    fn link(index: u32, name: &str, kind: Option<&str>, alias: Option<&str>) -> Link {
        Link {
            index,
            name: name.into(),
            kind: kind.map(str::to_string),
            alias: alias.map(str::to_string),
            mtu: 1500,
            up: true,
            master: None,
            vxlan: None,
        }
    }

    /// The machine after a converged apply of `segment(peers)`.
    fn converged(peers: &[&str]) -> Observed {
        let mut vx = link(
            3,
            "hunt",
            Some("vxlan"),
            Some("sovereign:network.vxlan.hunt"),
        );
        vx.mtu = 1450;
        vx.master = Some(4);
        vx.vxlan = Some(Vxlan {
            vni: 42,
            local: Some(ip("192.0.2.1")),
            dev: Some(2),
            port: 4789,
            group: None,
            learning: false,
        });
        let mut br = link(
            4,
            "br-hunt",
            Some("bridge"),
            Some("sovereign:network.vxlan.hunt.bridge"),
        );
        br.mtu = 1450;
        Observed::new(
            vec![
                link(1, "lo", None, None),
                link(2, "eth0", None, None),
                vx,
                br,
            ],
            vec![
                Addr {
                    index: 2,
                    ip: "192.0.2.1".parse().unwrap(),
                    prefix: 24,
                },
                Addr {
                    index: 4,
                    ip: "10.42.0.1".parse().unwrap(),
                    prefix: 24,
                },
                Addr {
                    index: 4,
                    ip: "fe80::1".parse().unwrap(),
                    prefix: 64,
                },
            ],
            peers
                .iter()
                .map(|p| Fdb {
                    index: 3,
                    mac: [0; 6],
                    dst: Some(IpAddr::V4(ip(p))),
                })
                .chain([Fdb {
                    index: 3,
                    mac: [2, 0, 0, 0, 0, 1],
                    dst: None,
                }])
                .collect(),
        )
    }

    fn run(d: &Desired, o: &Observed) -> anyhow::Result<Vec<(String, Action)>> {
        let o = o.clone().reindex();
        Ok(diff(d, &o, &Owned::new(), &DiffOptions::default())?
            .into_iter()
            .map(|c| (c.address.to_string(), c.action))
            .collect())
    }

    #[test]
    fn a_fresh_segment_is_each_link_port_address_and_entry() {
        let mut fresh = converged(&[]);
        fresh.links.truncate(2);
        fresh.addresses.truncate(1);
        fresh.fdb.clear();
        let fresh = fresh.reindex();
        let d = desired(segment(&["192.0.2.2", "192.0.2.3"]));
        let changes = diff(&d, &fresh, &Owned::new(), &DiffOptions::default()).unwrap();
        let got: Vec<(String, Action)> = changes
            .iter()
            .map(|c| (c.address.to_string(), c.action))
            .collect();
        assert_eq!(
            got,
            [
                ("network.vxlan:hunt".to_string(), Action::Create),
                ("network.bridge:br-hunt".to_string(), Action::Create),
                ("network.port:br-hunt/hunt".to_string(), Action::Create),
                (
                    "network.address:br-hunt/10.42.0.1/24".to_string(),
                    Action::Create
                ),
                ("network.fdb:hunt/192.0.2.2".to_string(), Action::Create),
                ("network.fdb:hunt/192.0.2.3".to_string(), Action::Create),
            ]
        );
        let vx = &changes[0];
        let mtu = vx.fields.iter().find(|f| f.name == "mtu").unwrap();
        assert_eq!(
            mtu.after.as_deref(),
            Some("1450"),
            "the underlay's 1500 minus 50"
        );
        assert_eq!(
            changes[2].depends_on,
            [
                link_address("vxlan", "hunt"),
                link_address("bridge", "br-hunt")
            ]
        );
        assert!(
            matches!(changes[4].op::<NetOp>().unwrap(), NetOp::AddFlood { dst, .. } if *dst == ip("192.0.2.2"))
        );
    }

    #[test]
    fn a_converged_machine_has_no_change_and_a_dropped_peer_only_its_entry() {
        let d = desired(segment(&["192.0.2.2", "192.0.2.3"]));
        assert_eq!(
            run(&d, &converged(&["192.0.2.2", "192.0.2.3"])).unwrap(),
            []
        );
        let fewer = desired(segment(&["192.0.2.2"]));
        assert_eq!(
            run(&fewer, &converged(&["192.0.2.2", "192.0.2.3"])).unwrap(),
            [("network.fdb:hunt/192.0.2.3".to_string(), Action::Delete)]
        );
    }

    #[test]
    fn a_new_vni_replaces_the_device_and_remakes_what_hangs_on_it() {
        let mut s = segment(&["192.0.2.2"]);
        s.vni = 43;
        let changes = diff(
            &desired(s),
            &converged(&["192.0.2.2"]),
            &Owned::new(),
            &DiffOptions::default(),
        )
        .unwrap();
        assert_eq!(changes[0].action, Action::Replace);
        assert_eq!(
            changes[0].fields,
            [FieldChange::new(
                "vni",
                Some("42".into()),
                Some("43".into())
            )]
        );
        let rest: Vec<String> = changes[1..]
            .iter()
            .map(|c| format!("{} {:?}", c.address, c.action))
            .collect();
        assert_eq!(
            rest,
            [
                "network.port:br-hunt/hunt Create",
                "network.fdb:hunt/192.0.2.2 Create"
            ]
        );
    }

    #[test]
    fn only_marked_links_are_deleted_and_an_unmarked_namesake_is_an_error() {
        let mut o = converged(&["192.0.2.2"]);
        o.links.push(link(
            9,
            "old",
            Some("vxlan"),
            Some("sovereign:network.vxlan.old"),
        ));
        o.links
            .push(link(10, "mine", Some("bridge"), Some("the operator's")));
        let d = desired(segment(&["192.0.2.2"]));
        assert_eq!(
            run(&d, &o).unwrap(),
            [("network.vxlan:old".to_string(), Action::Delete)]
        );

        let mut taken = converged(&[]);
        taken.links[2].alias = None;
        let taken = taken.reindex();
        let err = run(&d, &taken).unwrap_err().to_string();
        assert!(
            err.contains("p.toml:1:1: network.vxlan.hunt")
                && err.contains("sovereign did not create"),
            "{err}"
        );
        // ...unless the ledger says sovereign made it and a crash left it unmarked.
        let owned = Owned::from([(
            link_key("hunt"),
            Entry::Link {
                kind: "vxlan".into(),
            },
        )]);
        let changes = diff(&d, &taken, &owned, &DiffOptions::default()).unwrap();
        assert!(
            changes
                .iter()
                .any(|c| c.address == link_address("vxlan", "hunt")
                    && c.fields.iter().any(|f| f.name == "alias"))
        );
    }

    #[test]
    fn an_mtu_the_underlay_cannot_carry_names_its_place() {
        let mut s = segment(&[]);
        s.mtu = Some(1451);
        let err = run(&desired(s), &converged(&[])).unwrap_err().to_string();
        assert!(
            err.starts_with("p.toml:4:7: network.vxlan.hunt.mtu: MTU 1451 does not fit"),
            "{err}"
        );
        assert!(err.contains("at most 1450"), "{err}");
    }
}
