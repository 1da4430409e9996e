//! `cargo xtask setup`: install the Debian packages sovereign needs, idempotently.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Debian packages and why each is needed.
const PACKAGES: &[(&str, &str)] = &[
    ("cmake", "builds llama.cpp"),
    ("clang", "builds llama.cpp's bindings (bindgen)"),
    (
        "libclang-dev",
        "bindgen reads llama.cpp's headers through libclang",
    ),
    ("pkg-config", "finds system libraries for -sys crates"),
    (
        "zfs-fuse",
        "real ZFS pools on file vdevs for the storage domain, its tests and the demo",
    ),
    (
        "util-linux",
        "blkid probes a vdev before a pool is created on it",
    ),
    (
        "e2fsprogs",
        "mkfs.ext4: the storage tests refuse a vdev holding ext4",
    ),
    (
        "libzfslinux-dev",
        "libzetta links libzfs_core, libnvpair and libzfs (Debian contrib)",
    ),
    (
        "iproute2",
        "the network tests make hosts of network namespaces joined by veth pairs",
    ),
    (
        "iputils-ping",
        "the network tests ping across VXLAN segments",
    ),
    (
        "python3",
        "the network tests' stand-in `tailscale` (no tailscaled can run here)",
    ),
    (
        "strace",
        "`cargo xtask bench network` counts netlink requests and processes",
    ),
    (
        "libvirt-daemon-system",
        "the forge tests run VMs under libvirt (libvirtd, virtlogd and their folders)",
    ),
    (
        "libvirt-daemon-driver-qemu",
        "libvirt's qemu driver: the forge tests' guests are qemu domains",
    ),
    (
        "libvirt-clients",
        "virsh: the forge domain and its tests define, start and read VMs",
    ),
    (
        "qemu-system-x86",
        "the forge tests' guests run under qemu (software emulation, no KVM needed)",
    ),
    (
        "mmdebstrap",
        "builds the VM tests' Debian guest images from the machine's apt sources",
    ),
    (
        "busybox-static",
        "the forge tests' guest initramfs is busybox (/bin/busybox, static)",
    ),
    (
        "openssh-server",
        "the fleet tests run real sshd in network namespaces",
    ),
    (
        "openssh-client",
        "the fleet's transport is the system ssh client",
    ),
];

/// Packages that live in Debian's contrib component, off on a fresh machine.
const CONTRIB: &[&str] = &["libzfslinux-dev"];

/// Where the zfs-fuse daemon writes its pid when setup starts it.
const ZFS_FUSE_PIDFILE: &str = "/run/zfs-fuse.pid";

/// Where the forge tests find Debian's kernel package (tests/forge_guest reads it): their
/// guests boot this kernel with its virtio modules. Kept out of the repository (70 MB) and
/// downloaded once.
const KERNEL_CACHE: &str = "/var/cache/sovereign-tests/kernel";

/// The metapackage whose dependency names the current kernel package.
const KERNEL_META: &str = "linux-image-amd64";

/// The KVM device node; on an ordinary Debian machine udev gives it to group kvm, 0660.
const KVM_DEVICE: &str = "/dev/kvm";

pub fn run() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !installed(name))
        .collect();
    if missing.is_empty() {
        eprintln!("setup: all {} system packages present", PACKAGES.len());
        prepare_forge_tests()?;
        return start_zfs();
    }
    if !is_root() {
        bail!(
            "setup needs root to install {}: run it as root (or: sudo apt-get install {})",
            missing.join(", "),
            missing.join(" ")
        );
    }
    if missing.iter().any(|m| CONTRIB.contains(m)) {
        enable_contrib()?;
    }
    eprintln!("setup: installing {}", missing.join(", "));
    apt(&["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&missing);
    apt(&args)?;
    prepare_forge_tests()?;
    start_zfs()
}

/// What the forge tests need beyond packages: the kernel their guests boot, and a
/// /dev/kvm that libvirt judges the same way each time it looks.
fn prepare_forge_tests() -> Result<()> {
    fetch_test_kernel()?;
    kvm_as_udev_leaves_it()
}

/// Download the kernel package the forge tests boot into [`KERNEL_CACHE`], once: nothing is
/// done while a `linux-image-*.deb` is there. The download lands in a folder of its own and
/// is moved in afterwards, so an interrupted one never looks like a finished one.
fn fetch_test_kernel() -> Result<()> {
    let cache = Path::new(KERNEL_CACHE);
    if let Some(deb) = cached_kernel(cache) {
        eprintln!("setup: the forge tests' kernel is {}", deb.display());
        return Ok(());
    }
    if !is_root() {
        bail!(
            "setup needs root to download the forge tests' kernel into {KERNEL_CACHE}: \
             run `cargo xtask setup` as root"
        );
    }
    let package = match kernel_package() {
        Ok(p) => p,
        Err(_) => {
            // A fresh machine may not have read its package lists yet.
            apt(&["update", "-q"])?;
            kernel_package()?
        }
    };
    let partial = cache.join(".download");
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("cannot remove {}", partial.display()))?;
    }
    std::fs::create_dir_all(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    eprintln!("setup: downloading {package} (the forge tests' kernel) into {KERNEL_CACHE}");
    // As root, apt would hand the download to the unprivileged _apt user, who cannot write
    // into a root-owned folder; it then warns and goes on unsandboxed. Say so up front.
    apt_in(
        &partial,
        &["-q", "-o", "APT::Sandbox::User=root", "download", &package],
    )?;
    let Some(deb) = cached_kernel(&partial) else {
        bail!(
            "apt-get download {package} left no linux-image-*.deb in {}",
            partial.display()
        );
    };
    let name = deb.file_name().expect("a file found by name");
    let dest = cache.join(name);
    std::fs::rename(&deb, &dest)
        .with_context(|| format!("cannot move {} to {}", deb.display(), dest.display()))?;
    std::fs::remove_dir_all(&partial)
        .with_context(|| format!("cannot remove {}", partial.display()))?;
    eprintln!("setup: the forge tests' kernel is {}", dest.display());
    Ok(())
}

/// Give a root-only /dev/kvm (a machine without udev) to group kvm, mode 0660, as udev
/// would. libvirt 9 probes qemu's capabilities with KVM enabled, then asks whether its
/// qemu user (libvirt-qemu, group kvm) may open /dev/kvm; when the answers differ it
/// throws its capabilities cache away on every lookup, and every `virsh define` re-probes
/// qemu (30-50 s each on two cores). The forge tests' guests still run under software
/// emulation (domain type 'qemu'); this only makes libvirt's answers agree.
fn kvm_as_udev_leaves_it() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(KVM_DEVICE) else {
        return Ok(()); // no KVM at all: libvirt's probe and its check agree
    };
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "{KVM_DEVICE} is root-only (mode {:o}; no udev set it up) and changing it needs root: \
             run `cargo xtask setup` as root",
            mode & 0o7777
        );
    }
    eprintln!(
        "setup: {KVM_DEVICE} is root-only (no udev here): giving it to group kvm, mode 0660, \
         so libvirt keeps its qemu capabilities cache"
    );
    let status = Command::new("chgrp")
        .args(["kvm", KVM_DEVICE])
        .status()
        .context("cannot run chgrp")?;
    if !status.success() {
        bail!(
            "chgrp kvm {KVM_DEVICE} failed ({status}); is there a kvm group (libvirt-daemon-system)?"
        );
    }
    std::fs::set_permissions(KVM_DEVICE, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("cannot chmod 0660 {KVM_DEVICE}"))
}

/// The newest `linux-image-*.deb` in `dir` (by name), if any.
fn cached_kernel(dir: &Path) -> Option<PathBuf> {
    let mut debs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_kernel_deb)
        })
        .collect();
    debs.sort();
    debs.pop()
}

fn is_kernel_deb(name: &str) -> bool {
    name.starts_with("linux-image-") && name.ends_with(".deb")
}

/// The versioned kernel package [`KERNEL_META`] depends on (`linux-image-6.1.0-NN-amd64`),
/// as `apt-cache depends` names it.
pub(crate) fn kernel_package() -> Result<String> {
    let out = Command::new("apt-cache")
        .args(["depends", KERNEL_META])
        .output()
        .with_context(|| format!("cannot run apt-cache depends {KERNEL_META}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match kernel_dependency(&text) {
        Some(name) if out.status.success() => Ok(name.to_string()),
        _ => bail!(
            "apt-cache depends {KERNEL_META} names no linux-image package ({}); \
             is Debian's main component in the apt sources? try apt-get update",
            out.status
        ),
    }
}

/// `  Depends: linux-image-6.1.0-57-amd64` -> `linux-image-6.1.0-57-amd64`.
fn kernel_dependency(depends: &str) -> Option<&str> {
    depends.lines().find_map(|line| {
        let name = line.trim().strip_prefix("Depends:")?.trim();
        name.starts_with("linux-image-").then_some(name)
    })
}

/// Add `contrib` to the machine's existing Debian entries (deb822 `Components:` lines in
/// /etc/apt/sources.list.d/*.sources, or legacy `deb` lines in /etc/apt/sources.list).
/// Only entries that already carry `main` are touched; no mirror address is ever written.
fn enable_contrib() -> Result<()> {
    let mut changed = Vec::new();
    let dir = std::path::Path::new("/etc/apt/sources.list.d");
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "sources"))
    {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if let Some(new) = add_contrib_deb822(&text) {
            std::fs::write(path, new)
                .with_context(|| format!("cannot write {}", path.display()))?;
            changed.push(path.display().to_string());
        }
    }
    let legacy = std::path::Path::new("/etc/apt/sources.list");
    if let Ok(text) = std::fs::read_to_string(legacy)
        && let Some(new) = add_contrib_legacy(&text)
    {
        std::fs::write(legacy, new)
            .with_context(|| format!("cannot write {}", legacy.display()))?;
        changed.push(legacy.display().to_string());
    }
    if changed.is_empty() {
        eprintln!("setup: Debian's contrib component is already enabled");
    } else {
        eprintln!(
            "setup: enabled Debian's contrib component in {}",
            changed.join(", ")
        );
    }
    Ok(())
}

/// `Components: main` -> `Components: main contrib`; `None` when nothing changes.
fn add_contrib_deb822(text: &str) -> Option<String> {
    let mut changed = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| match line.strip_prefix("Components:") {
            Some(rest) => {
                let words: Vec<&str> = rest.split_whitespace().collect();
                if words.contains(&"main") && !words.contains(&"contrib") {
                    changed = true;
                    format!("{line} contrib")
                } else {
                    line.to_string()
                }
            }
            None => line.to_string(),
        })
        .collect();
    changed.then(|| lines.join("\n") + if text.ends_with('\n') { "\n" } else { "" })
}

/// `deb URI SUITE main` -> `deb URI SUITE main contrib`; `None` when nothing changes.
fn add_contrib_legacy(text: &str) -> Option<String> {
    let mut changed = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let is_entry = matches!(words.first(), Some(&"deb") | Some(&"deb-src"));
            if is_entry && words.contains(&"main") && !words.contains(&"contrib") {
                changed = true;
                format!("{line} contrib")
            } else {
                line.to_string()
            }
        })
        .collect();
    changed.then(|| lines.join("\n") + if text.ends_with('\n') { "\n" } else { "" })
}

/// Whether ZFS answers (`zpool list` exits 0, "no pools available" included).
fn zfs_answers() -> bool {
    Command::new("zpool")
        .args(["list", "-H"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Start the zfs-fuse daemon when no ZFS answers; it keeps running after setup.
fn start_zfs() -> Result<()> {
    if zfs_answers() {
        eprintln!("setup: ZFS answers");
        return Ok(());
    }
    if !is_root() {
        bail!(
            "no ZFS answers and starting the zfs-fuse daemon needs root: run `cargo xtask setup` as root"
        );
    }
    clear_stale_pidfile()?;
    eprintln!(
        "setup: starting the zfs-fuse daemon (zfs-fuse -p {ZFS_FUSE_PIDFILE} --no-kstat-mount)"
    );
    let status = Command::new("zfs-fuse")
        .args(["-p", ZFS_FUSE_PIDFILE, "--no-kstat-mount"])
        .status()
        .context("cannot run zfs-fuse (is the zfs-fuse package installed?)")?;
    if !status.success() {
        bail!(
            "zfs-fuse -p {ZFS_FUSE_PIDFILE} --no-kstat-mount failed ({status}); is /dev/fuse present?"
        );
    }
    if wait_for_zfs() {
        return Ok(());
    }
    bail!("started zfs-fuse, but `zpool list` still does not answer after 5 s")
}

/// The daemon forks and opens its socket shortly after it starts.
fn wait_for_zfs() -> bool {
    for _ in 0..50 {
        if zfs_answers() {
            eprintln!("setup: ZFS answers (zfs-fuse)");
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

/// `/proc/PID/stat` reads `PID (COMM) STATE ...`; a zombie (`Z`) or dead (`X`) daemon
/// that left its pidfile behind counts as gone.
fn is_live_zfs_fuse(stat: &str) -> bool {
    let Some((head, tail)) = stat.rsplit_once(')') else {
        return false;
    };
    let comm = head.split_once('(').map(|(_, c)| c).unwrap_or("");
    let state = tail.trim_start().chars().next().unwrap_or('X');
    comm == "zfs-fuse" && !matches!(state, 'Z' | 'X')
}

/// zfs-fuse refuses to start, silently and with exit 1, while its pidfile exists, even
/// when the daemon that wrote it is long gone (killed with the session that started
/// it, say). A pidfile naming no live zfs-fuse is removed; a live one is left alone.
fn clear_stale_pidfile() -> Result<()> {
    let Ok(text) = std::fs::read_to_string(ZFS_FUSE_PIDFILE) else {
        return Ok(());
    };
    let live = text
        .trim()
        .parse::<u32>()
        .ok()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .is_some_and(|stat| is_live_zfs_fuse(&stat));
    if live && wait_for_zfs() {
        return Ok(());
    }
    if live {
        bail!(
            "zfs-fuse is running (pid {}, {ZFS_FUSE_PIDFILE}) but `zpool list` does not answer; \
             stop it (kill {}) and run `cargo xtask setup` again",
            text.trim(),
            text.trim()
        );
    }
    eprintln!(
        "setup: removing the stale {ZFS_FUSE_PIDFILE} (pid {} is no running zfs-fuse)",
        text.trim()
    );
    std::fs::remove_file(ZFS_FUSE_PIDFILE)
        .with_context(|| format!("cannot remove the stale {ZFS_FUSE_PIDFILE}"))
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", package])
        .output()
        .map(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains("install ok installed")
        })
        .unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn apt(args: &[&str]) -> Result<()> {
    apt_in(Path::new("."), args)
}

/// `apt-get ARGS` run in `dir` (`apt-get download` saves into the working folder).
fn apt_in(dir: &Path, args: &[&str]) -> Result<()> {
    let status = Command::new("apt-get")
        .args(args)
        .current_dir(dir)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .with_context(|| format!("cannot run apt-get {}", args.join(" ")))?;
    if !status.success() {
        bail!("apt-get {} failed ({status})", args.join(" "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contrib_is_added_to_debian_entries_only_once() {
        let deb822 = "Types: deb\nURIs: http://deb.example/debian\nSuites: bookworm\nComponents: main\n\nTypes: deb\nComponents: main contrib\n";
        let new = add_contrib_deb822(deb822).unwrap();
        assert_eq!(new.matches("contrib").count(), 2);
        assert!(new.contains("Components: main contrib\n\n"));
        assert_eq!(add_contrib_deb822(&new), None, "idempotent");
        let legacy = "# comment main\ndeb http://deb.example/debian bookworm main\n";
        let new = add_contrib_legacy(legacy).unwrap();
        assert!(new.ends_with("bookworm main contrib\n") && new.starts_with("# comment main\n"));
        assert_eq!(add_contrib_legacy(&new), None);
    }

    #[test]
    fn the_kernel_package_is_the_metapackages_linux_image_dependency() {
        let depends = "linux-image-amd64\n  Depends: linux-image-6.1.0-57-amd64\n";
        assert_eq!(
            kernel_dependency(depends),
            Some("linux-image-6.1.0-57-amd64")
        );
        assert_eq!(
            kernel_dependency("linux-image-amd64\n  Depends: <x>\n"),
            None
        );
        assert!(is_kernel_deb(
            "linux-image-6.1.0-57-amd64_6.1.158-1_amd64.deb"
        ));
        assert!(!is_kernel_deb(
            "linux-image-6.1.0-57-amd64_6.1.158-1_amd64.deb.part"
        ));
    }

    #[test]
    fn only_a_running_zfs_fuse_keeps_its_pidfile() {
        assert!(is_live_zfs_fuse("17404 (zfs-fuse) S 1 17403 17403 0 -1"));
        assert!(!is_live_zfs_fuse("17247 (zfs-fuse) Z 1 17246 17246 0 -1"));
        assert!(!is_live_zfs_fuse("17404 (bash) S 1 17403 17403 0 -1"));
        assert!(!is_live_zfs_fuse("garbage"));
    }
}
