//! The network domain (the Hunt): `[network.vxlan.NAME]` segments become VXLAN devices,
//! bridges, addresses and forwarding entries, made over netlink
//! ([`crate::host::netlink`]; no `ip` or `bridge` process).
//!
//! Resources: `network.vxlan:NAME` (the VXLAN device), `network.bridge:NAME`,
//! `network.port:BRIDGE/NAME` (the device as the bridge's port),
//! `network.address:DEV/IP/PREFIX` and `network.fdb:NAME/PEER` (an all-zero forwarding
//! entry: head-end replication to one peer). Observed with one dump per kind; the
//! links sovereign made carry the alias `sovereign:network.vxlan.NAME` and only those are
//! ever changed or deleted (see [`diff`]). A segment over Tailscale reads the tailnet
//! with one `tailscale status --json`.

pub mod rules;
pub mod section;
// The domain itself speaks netlink, which only Linux has; the section and its rules
// compile wherever `validate` runs.
#[cfg(target_os = "linux")]
mod apply;
#[cfg(target_os = "linux")]
mod boot;
#[cfg(target_os = "linux")]
mod desired;
#[cfg(target_os = "linux")]
pub mod diff;
#[cfg(target_os = "linux")]
mod domain;
#[cfg(target_os = "linux")]
mod health;
#[cfg(target_os = "linux")]
mod node;
#[cfg(target_os = "linux")]
mod observe;
#[cfg(target_os = "linux")]
mod openpgp;
pub mod tailnet;
#[cfg(target_os = "linux")]
pub mod tailscale;

#[cfg(target_os = "linux")]
pub use domain::{Entry, Network};
