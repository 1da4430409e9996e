//! The rules of `[network]` a schema cannot say: interface names, addresses and CIDRs,
//! unique VNIs, how `local`, `underlay`, `peers` and `group` combine. What depends on the
//! machine (the underlay exists, its MTU leaves room) is plan's to judge.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::profile::diagnostics::Issue;
use crate::profile::rules::{kp, table_at};
use crate::profile::tree::{Entry, quote};

use super::section::{MAX_IFNAME, TAILSCALE_UNDERLAY};

/// Why `name` cannot be a Linux interface name.
pub fn ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_IFNAME {
        return Err(format!(
            "is {} bytes long; an interface name has 1 to {MAX_IFNAME}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err("is not a usable interface name".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!("contains {}", quote(&bad.to_string())));
    }
    Ok(())
}

/// An address with its prefix length (`10.42.0.1/24`).
pub fn cidr(text: &str) -> Result<(IpAddr, u8), String> {
    let (ip, prefix) = text.split_once('/').ok_or_else(|| {
        "has no prefix length (write it as ADDRESS/PREFIX, e.g. \"10.42.0.1/24\")".to_string()
    })?;
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("{} is not an IP address", quote(ip)))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= max)
        .ok_or_else(|| format!("prefix length {} is not 0 to {max}", quote(prefix)))?;
    Ok((ip, prefix))
}

/// A Tailscale host name as `Peer[*].HostName` or the first label of `DNSName` has it.
fn host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

pub fn check(root: &crate::profile::tree::Node, out: &mut Vec<Issue>) {
    tailscale(root, out);
    let Some(segments) = table_at(root, &["network", "vxlan"]) else {
        return;
    };
    let mut vnis: BTreeMap<i64, &str> = BTreeMap::new();
    let mut bridges: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, entry) in segments {
        let here = kp(&["network", "vxlan", name]);
        if let Err(why) = ifname(name) {
            out.push(
                Issue::new(&entry.key_loc, &here, format!("segment name {} {why}", quote(name)))
                    .label("not an interface name")
                    .hint("the segment's name is its VXLAN device's: up to 15 letters, digits, '-', '_' or '.', e.g. [network.vxlan.hunt]"),
            );
        }
        let Some(spec) = entry.node.table() else {
            continue;
        };
        let at = |key: &str| kp(&["network", "vxlan", name, key]);
        if let Some(vni) = spec.get("vni")
            && let Some(n) = vni.node.int()
        {
            if let Some(first) = vnis.insert(n, name) {
                out.push(
                    Issue::new(&vni.node.loc, at("vni"), format!("VNI {n} is also segment {}'s", quote(first)))
                        .label("duplicate VNI")
                        .hint("each segment on a host needs its own VNI: frames of two segments with one VNI would mix"),
                );
            }
        }
        if let Some(bridge) = spec.get("bridge")
            && let Some(b) = bridge.node.str()
        {
            if let Err(why) = ifname(b) {
                out.push(
                    Issue::new(
                        &bridge.node.loc,
                        at("bridge"),
                        format!("bridge name {} {why}", quote(b)),
                    )
                    .label("not an interface name")
                    .hint("up to 15 letters, digits, '-', '_' or '.', e.g. \"br-hunt\""),
                );
            } else if segments.contains_key(b) {
                out.push(
                    Issue::new(
                        &bridge.node.loc,
                        at("bridge"),
                        format!(
                            "bridge {} has the name of a segment's VXLAN device",
                            quote(b)
                        ),
                    )
                    .label("name taken")
                    .hint("give the bridge its own name, e.g. \"br-hunt\""),
                );
            } else if let Some(first) = bridges.insert(b, name) {
                out.push(
                    Issue::new(&bridge.node.loc, at("bridge"), format!("bridge {} is also segment {}'s", quote(b), quote(first)))
                        .label("shared bridge")
                        .hint("a bridge shared by two segments joins them into one network; give each segment its own bridge"),
                );
            }
        }
        segment(name, entry, spec, &at, out);
    }
}

fn segment(
    name: &str,
    entry: &Entry,
    spec: &indexmap::IndexMap<String, Entry>,
    at: &dyn Fn(&str) -> String,
    out: &mut Vec<Issue>,
) {
    let underlay = spec
        .get("underlay")
        .and_then(|e| e.node.str().map(|s| (e, s)));
    let over_tailscale = underlay.is_some_and(|(_, u)| u == TAILSCALE_UNDERLAY);
    let mut local_ip = None;
    if let Some(local) = spec.get("local")
        && let Some(text) = local.node.str()
    {
        match text.parse::<Ipv4Addr>() {
            Ok(ip) if over_tailscale => {
                local_ip = Some(ip);
                out.push(
                    Issue::new(&local.node.loc, at("local"), "`local` is set but the underlay is \"tailscale\", which gives this node's Tailscale address")
                        .label("comes from Tailscale")
                        .hint("leave `local` out over Tailscale"),
                );
            }
            Ok(ip) if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() => out.push(
                Issue::new(&local.node.loc, at("local"), format!("local address {} is not a host's address", quote(text)))
                    .label("not a unicast address")
                    .hint("the IPv4 address this host has on the underlay, e.g. \"192.168.1.10\""),
            ),
            Ok(ip) => local_ip = Some(ip),
            Err(_) => out.push(
                Issue::new(&local.node.loc, at("local"), format!("local address {} is not an IPv4 address", quote(text)))
                    .label("not an IPv4 address")
                    .hint("the IPv4 address this host has on the underlay, e.g. \"192.168.1.10\" (VXLAN over IPv6 is not supported yet)"),
            ),
        }
    }
    if let Some((entry, u)) = underlay
        && u != TAILSCALE_UNDERLAY
        && let Err(why) = ifname(u)
    {
        out.push(
            Issue::new(
                &entry.node.loc,
                at("underlay"),
                format!("underlay {} {why}", quote(u)),
            )
            .label("not an interface name")
            .hint("a network device of this host (\"eth0\") or \"tailscale\""),
        );
    }
    if spec.get("local").is_none() && underlay.is_none() {
        out.push(
            Issue::new(&entry.key_loc, kp(&["network", "vxlan", name]), format!("segment {} has neither `local` nor `underlay`", quote(name)))
                .label("no underlay")
                .hint("set local = \"ADDRESS\" (this host's IPv4 on the underlay) or underlay = \"DEVICE\" (or \"tailscale\")"),
        );
    }

    let mut seen = BTreeMap::new();
    let peers = spec.get("peers").and_then(|e| e.node.array());
    for peer in peers.into_iter().flatten() {
        let Some(text) = peer.str() else { continue };
        match text.parse::<Ipv4Addr>() {
            Ok(ip) if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() => out.push(
                Issue::new(
                    &peer.loc,
                    at("peers"),
                    format!("peer {} is not a host's address", quote(text)),
                )
                .label("not a unicast address")
                .hint("list the other ends' IPv4 addresses; for multicast use `group` instead"),
            ),
            Ok(ip) if Some(ip) == local_ip => out.push(
                Issue::new(
                    &peer.loc,
                    at("peers"),
                    format!("peer {} is this host's own `local` address", quote(text)),
                )
                .label("this host")
                .hint("list only the other ends of the segment"),
            ),
            Ok(_) => {}
            Err(_) if over_tailscale && host_name(text) => {}
            Err(_) => out.push(
                Issue::new(
                    &peer.loc,
                    at("peers"),
                    format!("peer {} is not an IPv4 address", quote(text)),
                )
                .label("not an IPv4 address")
                .hint(if over_tailscale {
                    "an IPv4 address or a Tailscale host name"
                } else {
                    "an IPv4 address (host names are resolved only with underlay = \"tailscale\")"
                }),
            ),
        }
        if seen.insert(text.to_string(), ()).is_some() {
            out.push(
                Issue::new(
                    &peer.loc,
                    at("peers"),
                    format!("peer {} is listed twice", quote(text)),
                )
                .label("duplicate peer")
                .hint("list each other end once"),
            );
        }
    }

    if let Some(group) = spec.get("group")
        && let Some(text) = group.node.str()
    {
        match text.parse::<Ipv4Addr>() {
            Ok(ip) if ip.is_multicast() => {}
            _ => out.push(
                Issue::new(
                    &group.node.loc,
                    at("group"),
                    format!("group {} is not an IPv4 multicast address", quote(text)),
                )
                .label("not multicast")
                .hint("a group in 224.0.0.0/4, e.g. \"239.1.1.1\""),
            ),
        }
        if peers.is_some_and(|p| !p.is_empty()) {
            out.push(
                Issue::new(
                    &group.node.loc,
                    at("group"),
                    "a segment has `peers` or a multicast `group`, not both",
                )
                .label("peers and group")
                .hint("remove one: peers for unicast replication, group for multicast"),
            );
        }
        if over_tailscale {
            out.push(
                Issue::new(
                    &group.node.loc,
                    at("group"),
                    "Tailscale carries no multicast: a segment over it needs `peers`",
                )
                .label("no multicast over Tailscale")
                .hint("list the peers' Tailscale host names instead"),
            );
        } else if underlay.is_none() {
            out.push(
                Issue::new(
                    &group.node.loc,
                    at("group"),
                    "a multicast `group` needs the `underlay` device to join it on",
                )
                .label("no underlay device")
                .hint("set underlay = \"DEVICE\", e.g. \"eth0\""),
            );
        }
    }

    let mut addresses = BTreeMap::new();
    for address in spec
        .get("addresses")
        .and_then(|e| e.node.array())
        .into_iter()
        .flatten()
    {
        let Some(text) = address.str() else { continue };
        match cidr(text) {
            Ok(parsed) => {
                if addresses.insert(parsed.0, ()).is_some() {
                    out.push(
                        Issue::new(
                            &address.loc,
                            at("addresses"),
                            format!("address {} is listed twice", quote(text)),
                        )
                        .label("duplicate address")
                        .hint("list each address once"),
                    );
                }
            }
            Err(why) => out.push(
                Issue::new(
                    &address.loc,
                    at("addresses"),
                    format!("address {} {why}", quote(text)),
                )
                .label("not a CIDR address")
                .hint("an address with its prefix length, e.g. \"10.42.0.1/24\""),
            ),
        }
    }
}

/// `[network.tailscale]`: an absolute key file, tags and routes in the shapes Tailscale
/// takes, a login server URL, a distribution of two words.
fn tailscale(root: &crate::profile::tree::Node, out: &mut Vec<Issue>) {
    let Some(spec) = table_at(root, &["network", "tailscale"]) else {
        return;
    };
    let at = |key: &str| kp(&["network", "tailscale", key]);
    if let Some(e) = spec.get("auth_key_file")
        && let Some(path) = e.node.str()
        && let Err(why) = crate::profile::rules::absolute_normalized(path)
    {
        out.push(
            Issue::new(&e.node.loc, at("auth_key_file"), format!("auth_key_file {} {why}", quote(path)))
                .label("not an absolute path")
                .hint("the absolute path of a file holding the auth key, e.g. \"/etc/sovereign/tailscale.key\""),
        );
    }
    for tag in spec
        .get("advertise_tags")
        .and_then(|e| e.node.array())
        .into_iter()
        .flatten()
    {
        let Some(text) = tag.str() else { continue };
        let name = text.strip_prefix("tag:").unwrap_or("");
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            out.push(
                Issue::new(
                    &tag.loc,
                    at("advertise_tags"),
                    format!("tag {} is not an ACL tag", quote(text)),
                )
                .label("not a tag")
                .hint(
                    "a tag is \"tag:\" and a name of letters, digits and '-', e.g. \"tag:forge\"",
                ),
            );
        }
    }
    for route in spec
        .get("advertise_routes")
        .and_then(|e| e.node.array())
        .into_iter()
        .flatten()
    {
        let Some(text) = route.str() else { continue };
        if let Err(why) = cidr(text) {
            out.push(
                Issue::new(&route.loc, at("advertise_routes"), format!("route {} {why}", quote(text)))
                    .label("not a CIDR route")
                    .hint("a subnet with its prefix length, e.g. \"10.42.0.0/24\" (offer 0.0.0.0/0 with advertise_exit_node)"),
            );
        }
    }
    if let Some(e) = spec.get("login_server")
        && let Some(url) = e.node.str()
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        out.push(
            Issue::new(
                &e.node.loc,
                at("login_server"),
                format!("login_server {} is not an http(s) URL", quote(url)),
            )
            .label("not a URL")
            .hint("the coordination server's URL, e.g. \"https://headscale.example.org\""),
        );
    }
    if let Some(e) = spec.get("distribution")
        && let Some(text) = e.node.str()
        && text.split(' ').filter(|w| !w.is_empty()).count() != 2
    {
        out.push(
            Issue::new(
                &e.node.loc,
                at("distribution"),
                format!("distribution {} is not \"DISTRO RELEASE\"", quote(text)),
            )
            .label("not a distribution")
            .hint(
                "as Tailscale names its repositories, e.g. \"debian bookworm\" or \"ubuntu noble\"",
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_the_kernel() {
        assert!(ifname("hunt").is_ok());
        assert!(ifname("br-hunt.10").is_ok());
        assert!(ifname("a-name-too-long").is_ok()); // 15 bytes
        assert!(ifname("a-name-too-long1").unwrap_err().contains("16 bytes"));
        assert!(ifname("").is_err());
        assert!(ifname("..").is_err());
        assert!(ifname("br hunt").unwrap_err().contains("\" \""));
        assert!(ifname("br/hunt").is_err());
    }

    #[test]
    fn cidrs_need_a_prefix_in_range() {
        assert_eq!(
            cidr("10.42.0.1/24").unwrap(),
            ("10.42.0.1".parse().unwrap(), 24)
        );
        assert_eq!(cidr("fd00::1/64").unwrap().1, 64);
        assert!(cidr("10.42.0.1").unwrap_err().contains("no prefix length"));
        assert!(cidr("10.42.0.1/33").unwrap_err().contains("0 to 32"));
        assert!(
            cidr("10.42.0.300/24")
                .unwrap_err()
                .contains("not an IP address")
        );
        assert!(cidr("fd00::1/129").is_err());
    }
}
