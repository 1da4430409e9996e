//! The files the VM tests add to Debian's packages in the guest image: a root shell on the
//! virtio console for the harness (the way NixOS's test driver talks to its guests: no
//! network, no agent), the guests' addresses on their private link, the file system
//! table and the journal on the serial console (kept as a log when a check fails).
//!
//! Their text is part of the image's cache key: editing one builds a new image.

pub struct GuestFile {
    pub path: &'static str,
    pub mode: u32,
    pub content: String,
}

/// The harness's shell. `/dev/hvc0` is a terminal: raw and without echo, so what the host
/// writes is read as commands and never comes back as output; bash's own errors go to a
/// file, so it is not interactive (no prompt) and the console carries only replies. The banner tells the host the shell is listening (after every boot).
const VM_SHELL: &str = r#"#!/bin/bash
exec </dev/hvc0 >/dev/hvc0 2>&1
stty raw -echo
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8
echo "vm-shell: ready"
exec /bin/bash --noprofile --norc 2>>/var/log/vm-shell.log
"#;

const VM_SHELL_UNIT: &str = "\
[Unit]
Description=Root shell for the VM tests' harness on the virtio console
Requires=dev-hvc0.device
After=dev-hvc0.device

[Service]
ExecStart=/usr/local/sbin/vm-shell
Restart=always
RestartSec=1s

[Install]
WantedBy=multi-user.target
";

/// Each guest is told apart by its MAC on the private link (the harness sets it); the
/// same image serves both.
fn link(mac: &str, address: &str) -> String {
    format!("[Match]\nMACAddress={mac}\n\n[Network]\nAddress={address}\nLinkLocalAddressing=no\n")
}

/// The host's files reach the guest read-only over 9p: the sovereign binary, the model and
/// the profiles.
const FSTAB: &str = "\
/dev/vda / ext4 rw,errors=remount-ro 0 1
payload /mnt/payload 9p trans=virtio,version=9p2000.L,msize=262144,ro,nofail 0 0
";

/// The journal goes to the serial console too: its log is what a failed check leaves.
const JOURNAL: &str = "\
[Journal]
ForwardToConsole=yes
TTYPath=/dev/ttyS0
MaxLevelConsole=info
";

pub fn all() -> Vec<GuestFile> {
    vec![
        GuestFile {
            path: "/usr/local/sbin/vm-shell",
            mode: 0o755,
            content: VM_SHELL.into(),
        },
        GuestFile {
            path: "/etc/systemd/system/vm-shell.service",
            mode: 0o644,
            content: VM_SHELL_UNIT.into(),
        },
        GuestFile {
            path: "/etc/systemd/network/10-link-a.network",
            mode: 0o644,
            content: link("52:54:00:5e:00:01", "192.168.100.1/24"),
        },
        GuestFile {
            path: "/etc/systemd/network/10-link-b.network",
            mode: 0o644,
            content: link("52:54:00:5e:00:02", "192.168.100.2/24"),
        },
        GuestFile {
            path: "/etc/fstab",
            mode: 0o644,
            content: FSTAB.into(),
        },
        GuestFile {
            path: "/etc/systemd/journald.conf.d/console.conf",
            mode: 0o644,
            content: JOURNAL.into(),
        },
    ]
}
