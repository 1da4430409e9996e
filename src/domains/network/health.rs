//! After apply: every declared link is up with its addresses, and each segment's bridge
//! has its VXLAN device as a port.

use crate::domain::{ApplyContext, HealthResult};

use super::desired::Desired;

pub fn health(cx: &ApplyContext<'_>, desired: &Desired) -> Vec<HealthResult> {
    if desired.segments.is_empty() {
        return Vec::new();
    }
    let dumped = cx
        .host
        .netlink()
        .and_then(|nl| Ok((nl.links()?, nl.addresses()?)));
    let (links, addresses) = match dumped {
        Ok(d) => d,
        Err(e) => {
            return vec![HealthResult {
                name: "network: links".into(),
                ok: false,
                detail: e.to_string(),
            }];
        }
    };
    let find = |name: &str| links.iter().find(|l| l.name == name);
    desired
        .segments
        .iter()
        .map(|(name, s)| {
            let mut problems = Vec::new();
            let vx = find(name);
            match vx {
                None => problems.push(format!("VXLAN device {name} is missing")),
                Some(l) if !l.up => problems.push(format!("{name} is down")),
                Some(_) => {}
            }
            let target = match &s.bridge {
                Some(bridge) => match find(bridge) {
                    None => {
                        problems.push(format!("bridge {bridge} is missing"));
                        None
                    }
                    Some(br) => {
                        if !br.up {
                            problems.push(format!("bridge {bridge} is down"));
                        }
                        if vx.is_some_and(|v| v.master != Some(br.index)) {
                            problems.push(format!("{name} is not a port of {bridge}"));
                        }
                        Some(br)
                    }
                },
                None => vx,
            };
            if let Some(target) = target {
                for (ip, prefix) in &s.addresses {
                    let present = addresses
                        .iter()
                        .any(|a| a.index == target.index && a.ip == *ip && a.prefix == *prefix);
                    if !present {
                        problems.push(format!("{} lacks {ip}/{prefix}", target.name));
                    }
                }
            }
            HealthResult {
                name: format!("network: segment {name}"),
                ok: problems.is_empty(),
                detail: if problems.is_empty() {
                    format!("{name} up (VNI {})", s.vni)
                } else {
                    problems.join("; ")
                },
            }
        })
        .collect()
}
