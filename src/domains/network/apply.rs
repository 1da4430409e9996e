//! Carry out one change over netlink. Links are looked up by name at the moment of the
//! step (indexes change when a link is made again); a link without sovereign's mark is
//! never changed or deleted, whatever the plan said.

use anyhow::{Context, bail};

use crate::domain::{ApplyContext, LedgerTx, Owned};
use crate::host::netlink::{Netlink, NewVxlan, Vxlan};
use crate::plan::{Action, Change};

use super::Entry;
use super::desired::Desired;
use super::diff::{NetOp, is_owned, link_key};
use super::tailscale;

pub fn apply(
    cx: &ApplyContext<'_>,
    _desired: &Desired,
    change: &Change,
    ledger: &mut LedgerTx<'_, Entry>,
) -> anyhow::Result<()> {
    let op: &NetOp = change.op()?;
    // The Tailscale steps speak to apt, HTTPS and the tailscale CLI, not to netlink.
    match op {
        NetOp::FetchKeyring { url, path } => return tailscale::fetch_keyring(cx.root, url, path),
        NetOp::InstallPackage { name } => return crate::host::apt::install(cx.host, &[name]),
        NetOp::Node(node) => return tailscale::apply_node(cx.root, cx.host, node),
        _ => {}
    }
    let nl = cx.host.netlink()?;
    let owned = ledger.entries().clone();
    let ours = |name: &str| find_ours(&nl, &owned, name);
    let delete_ours = |name: &str| remove_ours(&nl, &owned, name);
    match op {
        NetOp::CreateVxlan(spec) => {
            ledger.record(
                &link_key(&spec.name),
                Entry::Link {
                    kind: "vxlan".into(),
                },
            )?;
            if change.action == Action::Replace {
                delete_ours(&spec.name)?;
            }
            let dev = match &spec.dev {
                Some(name) => Some(index(&nl, name)?),
                None => None,
            };
            nl.add_vxlan(&NewVxlan {
                name: spec.name.clone(),
                alias: spec.alias.clone(),
                vxlan: Vxlan {
                    vni: spec.vni,
                    local: spec.local,
                    dev,
                    port: spec.port,
                    group: spec.group,
                    learning: false,
                },
                mtu: spec.mtu,
            })?;
        }
        NetOp::CreateBridge { name, alias, mtu } => {
            ledger.record(
                &link_key(name),
                Entry::Link {
                    kind: "bridge".into(),
                },
            )?;
            if change.action == Action::Replace {
                delete_ours(name)?;
            }
            nl.add_bridge(name, alias, *mtu)?;
        }
        NetOp::SetLink { name, alias, mtu } => {
            let link = ours(name)?;
            nl.set_mtu_up(link, *mtu)?;
            nl.set_alias(name, alias)?;
        }
        NetOp::Attach { port, bridge } => {
            let port = ours(port)?;
            let bridge = ours(bridge)?;
            nl.set_master(port, bridge)?;
        }
        NetOp::Detach { port } => {
            let port = ours(port)?;
            nl.set_nomaster(port)?;
        }
        NetOp::AddAddress { dev, ip, prefix } => {
            let link = ours(dev)?;
            nl.add_address(link, *ip, *prefix)?;
        }
        NetOp::DelAddress { dev, ip, prefix } => {
            let link = ours(dev)?;
            nl.del_address(&crate::host::netlink::Addr {
                index: link,
                ip: *ip,
                prefix: *prefix,
            })?;
        }
        NetOp::AddFlood { dev, dst } => {
            let link = ours(dev)?;
            nl.add_flood(link, (*dst).into())?;
        }
        NetOp::DelFlood { dev, dst } => {
            let link = ours(dev)?;
            nl.del_flood(link, (*dst).into())?;
        }
        NetOp::DeleteLink { name } => {
            delete_ours(name)?;
            ledger.forget(&link_key(name))?;
        }
        NetOp::FetchKeyring { .. } | NetOp::InstallPackage { .. } | NetOp::Node(_) => {
            bail!("{op:?} is a Tailscale step, carried out above")
        }
    }
    Ok(())
}

fn index(nl: &Netlink, name: &str) -> anyhow::Result<u32> {
    nl.link(name)?.map(|l| l.index).with_context(|| {
        format!("no network device {name:?} (it was there when the plan was made)")
    })
}

/// The index of sovereign's link `name`; an error when it is missing or not sovereign's.
fn find_ours(nl: &Netlink, owned: &Owned<Entry>, name: &str) -> anyhow::Result<u32> {
    let Some(link) = nl.link(name)? else {
        bail!("link {name:?} is missing");
    };
    if !is_owned(&link, owned) {
        bail!("link {name:?} is not sovereign's (it has no sovereign alias): left alone");
    }
    Ok(link.index)
}

/// Delete sovereign's link `name` if it exists.
fn remove_ours(nl: &Netlink, owned: &Owned<Entry>, name: &str) -> anyhow::Result<()> {
    if let Some(link) = nl.link(name)? {
        if !is_owned(&link, owned) {
            bail!("link {name:?} is not sovereign's (it has no sovereign alias): left alone");
        }
        nl.del_link(link.index)?;
    }
    Ok(())
}
