//! What the network domain reads of this node's Tailscale: its backend state (for
//! `[network.tailscale]`) and, for a segment over Tailscale, its IPv4 and the peers' by
//! host name. One `tailscale status --json` per plan, parsed here and nowhere else.

use std::net::{IpAddr, Ipv4Addr};

use serde::Deserialize;

use crate::host::{Cmd, Host};

/// This node's view of its tailnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tailnet {
    /// Logged in and running.
    Up {
        self_ipv4: Ipv4Addr,
        peers: Vec<Peer>,
    },
    /// Not usable now, and why (not installed, not running, `NeedsLogin`).
    Down(String),
}

/// A peer of the tailnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub host_name: String,
    /// The MagicDNS name, without the trailing dot.
    pub dns_name: String,
    pub ipv4: Option<Ipv4Addr>,
}

/// One reading of `tailscale status --json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// Whether the `tailscale` command is installed.
    pub installed: bool,
    /// Its `BackendState` (`Running`, `NeedsLogin`...), or `NotRunning` when the daemon
    /// did not answer.
    pub state: String,
    /// The tailnet as a segment sees it.
    pub tailnet: Tailnet,
}

/// The state recorded when the daemon gives none.
const NOT_RUNNING: &str = "NotRunning";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Status {
    #[serde(default)]
    backend_state: String,
    #[serde(rename = "Self")]
    me: Option<Node>,
    #[serde(default)]
    peer: Option<std::collections::BTreeMap<String, Node>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Node {
    #[serde(default)]
    host_name: String,
    #[serde(rename = "DNSName", default)]
    dns_name: String,
    #[serde(rename = "TailscaleIPs", default)]
    tailscale_ips: Option<Vec<IpAddr>>,
}

fn ipv4(ips: &Option<Vec<IpAddr>>) -> Option<Ipv4Addr> {
    ips.iter().flatten().find_map(|ip| match ip {
        IpAddr::V4(v4) => Some(*v4),
        IpAddr::V6(_) => None,
    })
}

/// Read this node's Tailscale through `tailscale status --json`.
pub fn read(host: &dyn Host) -> Reading {
    let down = |installed: bool, why: String| Reading {
        installed,
        state: NOT_RUNNING.into(),
        tailnet: Tailnet::Down(why),
    };
    if !host.has_program("tailscale") {
        return down(false, "the `tailscale` command is not installed".into());
    }
    let cmd =
        Cmd::new(["tailscale", "status", "--json"]).timeout(std::time::Duration::from_secs(30));
    let out = match host.run(&cmd) {
        Ok(out) => out,
        Err(e) => return down(true, e.to_string()),
    };
    // `status` exits non-zero when the node is logged out but still prints its state.
    match parse(&out.stdout) {
        Ok(reading) => reading,
        Err(_) if !out.success() => down(
            true,
            format!(
                "`tailscale status --json` failed: {}",
                out.stderr_str().trim()
            ),
        ),
        Err(e) => down(true, format!("`tailscale status --json` printed {e}")),
    }
}

/// Parse `tailscale status --json`.
pub fn parse(json: &[u8]) -> Result<Reading, String> {
    let status: Status =
        serde_json::from_slice(json).map_err(|e| format!("what sovereign cannot read: {e}"))?;
    let state = if status.backend_state.is_empty() {
        NOT_RUNNING.to_string()
    } else {
        status.backend_state.clone()
    };
    let reading = |tailnet| Reading {
        installed: true,
        state: state.clone(),
        tailnet,
    };
    if status.backend_state != "Running" {
        return Ok(reading(Tailnet::Down(format!(
            "this node's Tailscale is {} (not Running)",
            if status.backend_state.is_empty() {
                "in an unknown state"
            } else {
                &status.backend_state
            }
        ))));
    }
    let Some(self_ipv4) = status.me.as_ref().and_then(|me| ipv4(&me.tailscale_ips)) else {
        return Ok(reading(Tailnet::Down(
            "this node has no Tailscale IPv4 address".into(),
        )));
    };
    let peers = status
        .peer
        .into_iter()
        .flatten()
        .map(|(_, node)| Peer {
            ipv4: ipv4(&node.tailscale_ips),
            host_name: node.host_name,
            dns_name: node.dns_name.trim_end_matches('.').to_string(),
        })
        .collect();
    Ok(reading(Tailnet::Up { self_ipv4, peers }))
}

impl Tailnet {
    /// The IPv4 of the peer called `name`: its host name, its MagicDNS name, or that
    /// name's first label, compared without case.
    pub fn resolve(&self, name: &str) -> Option<&Peer> {
        let Tailnet::Up { peers, .. } = self else {
            return None;
        };
        let name = name.trim_end_matches('.');
        peers.iter().find(|p| {
            p.host_name.eq_ignore_ascii_case(name)
                || p.dns_name.eq_ignore_ascii_case(name)
                || p.dns_name
                    .split('.')
                    .next()
                    .is_some_and(|label| label.eq_ignore_ascii_case(name))
        })
    }

    /// The names peers can be given by, for an error.
    pub fn known_names(&self) -> Vec<String> {
        match self {
            Tailnet::Up { peers, .. } => peers.iter().map(|p| p.host_name.clone()).collect(),
            Tailnet::Down(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNNING: &str = r#"{
        "Version": "1.76.6",
        "BackendState": "Running",
        "Self": {"HostName": "forge-01", "DNSName": "forge-01.tail1234.ts.net.",
                 "TailscaleIPs": ["100.101.1.1", "fd7a:115c:a1e0::1"]},
        "Peer": {
            "nodekey:aa": {"HostName": "Forge-02", "DNSName": "forge-02.tail1234.ts.net.",
                           "TailscaleIPs": ["100.101.1.2", "fd7a:115c:a1e0::2"]},
            "nodekey:bb": {"HostName": "laptop", "DNSName": "hunt-laptop.tail1234.ts.net.",
                           "TailscaleIPs": ["fd7a:115c:a1e0::3", "100.101.1.3"]}
        }
    }"#;

    #[test]
    fn a_running_node_gives_its_ipv4_and_its_peers() {
        let tailnet = parse(RUNNING.as_bytes()).unwrap().tailnet;
        let Tailnet::Up { self_ipv4, .. } = &tailnet else {
            panic!("{tailnet:?}")
        };
        assert_eq!(*self_ipv4, Ipv4Addr::new(100, 101, 1, 1));
        let by = |n: &str| tailnet.resolve(n).and_then(|p| p.ipv4);
        assert_eq!(by("forge-02"), Some(Ipv4Addr::new(100, 101, 1, 2)));
        assert_eq!(
            by("forge-02.tail1234.ts.net"),
            Some(Ipv4Addr::new(100, 101, 1, 2))
        );
        assert_eq!(by("hunt-laptop"), Some(Ipv4Addr::new(100, 101, 1, 3)));
        assert_eq!(by("laptop"), Some(Ipv4Addr::new(100, 101, 1, 3)));
        assert_eq!(by("nobody"), None);
    }

    #[test]
    fn a_node_that_needs_login_is_down_and_says_so() {
        let tailnet = parse(
            br#"{"BackendState": "NeedsLogin", "Self": {"TailscaleIPs": null}, "Peer": null}"#,
        )
        .unwrap();
        assert_eq!(tailnet.state, "NeedsLogin");
        assert_eq!(
            tailnet.tailnet,
            Tailnet::Down("this node's Tailscale is NeedsLogin (not Running)".into())
        );
        assert!(parse(b"not json").unwrap_err().contains("cannot read"));
    }
}
