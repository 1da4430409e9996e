//! The Forge domain: `[forge]` installs the hypervisor (KVM under libvirt, or Xen) and
//! defines, powers and autostarts the VMs the profile declares, on zvols or image files
//! and on the Hunt's segment bridges.
//!
//! Resources: `forge.packages:kvm|xen` (apt), `forge.daemon:libvirtd`,
//! `forge.network:default` (libvirt's NAT network), `forge.boot:xen` (GRUB's default,
//! reboot required), `forge.image:PATH` (a sparse raw image file) and `forge.vm:NAME`.
//! Each VM's configuration (libvirt domain XML, or xl.cfg) is rendered from templates/forge/
//! and written by the files domain under /etc/sovereign/forge/; libvirt is driven with
//! `virsh` through the host (see ARCHITECTURE.md for why not the C bindings). A defined
//! domain is compared by the fields the profile owns ([`shape`]), read from its inactive
//! XML, never by text.

mod apply;
pub mod desired;
mod diff;
mod domain;
mod health;
pub mod identity;
mod observe;
pub mod rules;
pub mod section;
pub mod shape;

pub use domain::{Entry, Forge};
