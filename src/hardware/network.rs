//! The network facts the network domain uses: interfaces with their MTUs (sysfs) and,
//! where `tailscale` is installed, this node's Tailscale state and IPv4.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// One network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    pub mtu: u32,
}

/// This node's Tailscale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tailscale {
    /// Its backend state: `Running`, `NeedsLogin`, `Stopped`, or `NotRunning` when the
    /// daemon does not answer.
    pub state: String,
    /// Its Tailscale IPv4 when running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<String>,
}

/// The interfaces under `class_net` (`/sys/class/net`), by name; none where it is absent.
pub fn scan_interfaces(class_net: &Path) -> Vec<Interface> {
    let Ok(entries) = std::fs::read_dir(class_net) else {
        return Vec::new();
    };
    let mut out: Vec<Interface> = entries
        .flatten()
        .filter_map(|e| {
            let mtu = std::fs::read_to_string(e.path().join("mtu")).ok()?;
            Some(Interface {
                name: e.file_name().to_string_lossy().into_owned(),
                mtu: mtu.trim().parse().ok()?,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Add the network facts of this machine to `facts`.
pub fn fill(facts: &mut super::Facts, host: &dyn crate::host::Host) {
    facts.interfaces = scan_interfaces(Path::new("/sys/class/net"));
    facts.tailscale = tailscale(host);
    if facts.tailscale.is_some() {
        facts.volatile.push("tailscale".into());
    }
}

/// This node's Tailscale, or `None` where `tailscale` is not installed.
pub fn tailscale(host: &dyn crate::host::Host) -> Option<Tailscale> {
    use crate::domains::network::tailnet::{self, Tailnet};
    let reading = tailnet::read(host);
    if !reading.installed {
        return None;
    }
    Some(Tailscale {
        ipv4: match reading.tailnet {
            Tailnet::Up { self_ipv4, .. } => Some(self_ipv4.to_string()),
            Tailnet::Down(_) => None,
        },
        state: reading.state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods)] // builds the sysfs fixture it reads
    fn interfaces_are_read_with_their_mtu_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        for (name, mtu) in [("eth0", "1500\n"), ("lo", "65536\n"), ("broken", "x\n")] {
            let d = dir.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("mtu"), mtu).unwrap();
        }
        let found = scan_interfaces(dir.path());
        assert_eq!(
            found,
            [
                Interface {
                    name: "eth0".into(),
                    mtu: 1500
                },
                Interface {
                    name: "lo".into(),
                    mtu: 65536
                },
            ]
        );
        assert!(scan_interfaces(&dir.path().join("absent")).is_empty());
    }
}
