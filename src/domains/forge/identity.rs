//! A VM's identity derived from its name alone: its UUID and its NICs' MAC addresses.
//! Redefining a VM (or defining it on a rebuilt host from the same profile) gives it the
//! same identity, so DHCP leases, firewall rules and the guest's own idea of its
//! hardware never drift.

use sha2::{Digest, Sha256};

fn digest(parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"sovereign-forge");
    for p in parts {
        h.update([0]);
        h.update(p.as_bytes());
    }
    h.finalize().into()
}

/// An RFC 9562 version 8 (name-based, custom hash) UUID from the VM's name.
pub fn uuid(vm: &str) -> String {
    let mut b = digest(&["uuid", vm]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(&b[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The MAC of the VM's NIC number `index`: under QEMU's 52:54:00 prefix (locally
/// administered, unicast).
pub fn mac(vm: &str, index: usize) -> String {
    let b = digest(&["mac", vm, &index.to_string()]);
    format!("52:54:00:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_depends_on_the_name_only() {
        assert_eq!(uuid("hunt"), uuid("hunt"));
        assert_ne!(uuid("hunt"), uuid("forge"));
        let u = uuid("hunt");
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "8", "version 8");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "RFC variant");
        assert_eq!(mac("hunt", 0), mac("hunt", 0));
        assert_ne!(mac("hunt", 0), mac("hunt", 1));
        assert!(mac("hunt", 0).starts_with("52:54:00:"));
    }
}
