//! The VM tests' guest images, built from Debian's packages only and cached by their
//! inputs.
//!
//! Two stages, each in a folder named after a digest of everything that goes into it, so
//! a run finds a finished stage by name and a change to any input builds a new one:
//! - `zfs-modules-<key>/`: OpenZFS's kernel modules, built by zfs-dkms in a throwaway
//!   chroot against the headers of the kernel the guest boots (Debian ships no prebuilt
//!   modules). This is the slow stage; it changes only with the kernel or zfs-dkms.
//! - `guest-<key>/`: the guest's kernel, its initramfs and an ext4 root image (systemd,
//!   udev, zfsutils, the modules above, and the harness's root shell on the virtio
//!   console).
//!
//! A stage is built in a `.build-*` folder and renamed into place once complete, so an
//! interrupted build never looks like a finished one; stages of other keys are removed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use super::guest_files::{self, GuestFile};
use crate::run_step;

/// Bump to rebuild a stage when its recipe changes in a way its inputs do not show.
const ZFS_RECIPE: &str = "zfs-modules v1";
const GUEST_RECIPE: &str = "guest v1";

/// What the guest runs beyond Debian's essential set: systemd as PID 1 with udev (a pool
/// on a whole disk waits for udev's partition links), the ZFS tools, the network tools
/// the checks use, and the libraries the sovereign binary links (llama.cpp's C++ runtime
/// and OpenMP).
const GUEST_PACKAGES: &[&str] = &[
    "systemd-sysv",
    "udev",
    "kmod",
    "iproute2",
    "iputils-ping",
    "curl",
    "procps",
    "libgomp1",
    "libstdc++6",
];

/// The root image's size: sparse, so only what the guest writes takes space.
const ROOT_SIZE: &str = "3G";

/// A finished guest: boot it with `-kernel`/`-initrd` and the root image as /dev/vda.
pub struct Guest {
    pub dir: PathBuf,
    pub build_seconds: Option<u64>,
}

/// Apt's view of the versions to install, resolved on this machine so the cache key names
/// exactly what the images hold.
struct Versions {
    /// `6.1.0-57-amd64`: the kernel's release, which the modules must match.
    kernel_release: String,
    kernel: String,
    headers: String,
    zfs: String,
}

pub fn ensure(cache: &Path) -> Result<Guest> {
    let v = versions()?;
    let modules = ensure_modules(cache, &v)?;
    ensure_guest(cache, &v, &modules)
}

fn versions() -> Result<Versions> {
    let kernel_pkg = crate::setup::kernel_package()?;
    let kernel_release = kernel_pkg
        .strip_prefix("linux-image-")
        .context("the kernel package is named linux-image-*")?
        .to_string();
    Ok(Versions {
        kernel: candidate(&kernel_pkg)?,
        headers: candidate(&format!("linux-headers-{kernel_release}"))?,
        zfs: candidate("zfs-dkms")?,
        kernel_release,
    })
}

/// The version apt would install of `package` (`apt-cache policy`'s Candidate).
fn candidate(package: &str) -> Result<String> {
    let out = Command::new("apt-cache")
        .args(["policy", package])
        .output()
        .with_context(|| format!("cannot run apt-cache policy {package}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(str::trim);
    match version {
        Some(v) if out.status.success() && v != "(none)" => Ok(v.to_string()),
        _ => bail!(
            "apt knows no installable {package}; the VM tests build their guests from the \
             machine's apt sources (main and contrib): run `cargo xtask setup`, then apt-get update"
        ),
    }
}

fn key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The options every mmdebstrap run shares: the machine's own apt sources (so the guests
/// come from wherever this machine gets its packages), main and contrib, no recommends.
fn mmdebstrap(packages: &[String]) -> Command {
    let mut cmd = Command::new("mmdebstrap");
    cmd.args([
        "--variant=minbase",
        "--components=main,contrib",
        // A mirror pinned to a date serves Release files past their Valid-Until.
        "--aptopt=Acquire::Check-Valid-Until \"false\"",
        "--aptopt=APT::Install-Recommends \"false\"",
    ])
    .arg(format!("--include={}", packages.join(",")));
    cmd
}

/// The host's apt sources, given to mmdebstrap as its mirrors.
fn sources() -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let legacy = Path::new("/etc/apt/sources.list");
    if std::fs::metadata(legacy).is_ok_and(|m| m.len() > 0) {
        found.push(legacy.to_path_buf());
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut files: Vec<PathBuf> = dir
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "sources" || e == "list"))
            .collect();
        files.sort();
        found.extend(files);
    }
    if found.is_empty() {
        bail!("this machine has no apt sources for mmdebstrap to build the VM guests from");
    }
    Ok(found)
}

fn ensure_modules(cache: &Path, v: &Versions) -> Result<PathBuf> {
    let key = key(&[ZFS_RECIPE, &v.kernel_release, &v.headers, &v.zfs]);
    let done = cache.join(format!("zfs-modules-{key}"));
    if done.join("zfs.ko").exists() {
        eprintln!("vm-test: OpenZFS modules cached in {}", done.display());
        return Ok(done);
    }
    prune(cache, "zfs-modules-")?;
    let build = fresh(cache, ".build-zfs-modules")?;
    let chroot = build.join("chroot");
    let release = &v.kernel_release;
    eprintln!(
        "vm-test: building OpenZFS {} modules for {release} with zfs-dkms (the slow stage)",
        v.zfs
    );
    let started = Instant::now();
    let mut cmd = mmdebstrap(&[
        "build-essential".into(),
        "dkms".into(),
        format!("linux-headers-{release}={}", v.headers),
        format!("zfs-dkms={}", v.zfs),
    ]);
    // zfs-dkms builds for every kernel with headers when it is configured; build it here
    // if that did not happen (a dkms that only builds for the running kernel).
    let upstream = v.zfs.split('-').next().unwrap_or(&v.zfs);
    cmd.arg(format!(
        "--customize-hook=test -f \"$1/lib/modules/{release}/updates/dkms/zfs.ko\" || \
         chroot \"$1\" dkms install -m zfs -v {upstream} -k {release}"
    ));
    cmd.arg("bookworm").arg(&chroot).args(sources()?);
    run_step(cmd)?;
    let built = chroot.join(format!("lib/modules/{release}/updates/dkms"));
    let out = build.join("modules");
    std::fs::create_dir_all(&out)?;
    let mut count = 0;
    for entry in std::fs::read_dir(&built)
        .with_context(|| format!("zfs-dkms left no modules in {}", built.display()))?
    {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "ko") {
            std::fs::copy(&path, out.join(path.file_name().expect("a file")))?;
            count += 1;
        }
    }
    if !out.join("zfs.ko").exists() {
        bail!(
            "zfs-dkms built {count} modules but no zfs.ko in {}",
            built.display()
        );
    }
    std::fs::remove_dir_all(&chroot)?;
    std::fs::rename(&out, &done)?;
    std::fs::remove_dir_all(&build)?;
    eprintln!(
        "vm-test: built {count} OpenZFS modules in {} s",
        started.elapsed().as_secs()
    );
    Ok(done)
}

fn ensure_guest(cache: &Path, v: &Versions, modules: &Path) -> Result<Guest> {
    let files = guest_files::all();
    let recipe: String = files
        .iter()
        .map(|f| format!("{}:{:o}:{}\n", f.path, f.mode, f.content))
        .collect();
    let packages = GUEST_PACKAGES.join(",");
    let modules_name = modules
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let key = key(&[
        GUEST_RECIPE,
        &v.kernel_release,
        &v.kernel,
        &v.zfs,
        &packages,
        &recipe,
        &modules_name,
    ]);
    let done = cache.join(format!("guest-{key}"));
    if done.join("root.raw").exists() {
        eprintln!("vm-test: guest image cached in {}", done.display());
        return Ok(Guest {
            dir: done,
            build_seconds: None,
        });
    }
    prune(cache, "guest-")?;
    let build = fresh(cache, ".build-guest")?;
    let rootfs = build.join("rootfs");
    let release = &v.kernel_release;
    eprintln!("vm-test: building the guest image (Debian bookworm, kernel {release})");
    let started = Instant::now();
    let mut packages: Vec<String> = GUEST_PACKAGES.iter().map(|p| p.to_string()).collect();
    packages.push(format!("linux-image-{release}={}", v.kernel));
    packages.push(format!("zfsutils-linux={}", v.zfs));
    let mut cmd = mmdebstrap(&packages);
    cmd.arg("bookworm").arg(&rootfs).args(sources()?);
    run_step(cmd)?;
    install_modules(&rootfs, release, modules)?;
    for file in &files {
        write_guest_file(&rootfs, file)?;
    }
    in_chroot(
        &rootfs,
        &[
            "systemctl",
            "enable",
            "vm-shell.service",
            "systemd-networkd.service",
        ],
    )?;
    // systemd starts a getty on every virtio console it finds; this one is the harness's.
    in_chroot(&rootfs, &["systemctl", "mask", "serial-getty@hvc0.service"])?;
    // The kernel command line names each guest; a hostname file would win over it.
    let _ = std::fs::remove_file(rootfs.join("etc/hostname"));
    std::fs::copy(
        rootfs.join(format!("boot/vmlinuz-{release}")),
        build.join("vmlinuz"),
    )
    .context("the guest has no kernel in /boot")?;
    std::fs::copy(
        rootfs.join(format!("boot/initrd.img-{release}")),
        build.join("initrd.img"),
    )
    .context("the guest has no initramfs in /boot")?;
    // mke2fs copies the tree into the new file system itself: no loop device, no mount.
    let mut mkfs = Command::new("mkfs.ext4");
    mkfs.args(["-q", "-F", "-L", "vm-root", "-d"])
        .arg(&rootfs)
        .arg(build.join("root.raw.partial"))
        .arg(ROOT_SIZE);
    run_step(mkfs)?;
    std::fs::rename(build.join("root.raw.partial"), build.join("root.raw"))?;
    std::fs::write(build.join("kernel-release"), release)?;
    std::fs::remove_dir_all(&rootfs)?;
    std::fs::rename(&build, &done)?;
    let secs = started.elapsed().as_secs();
    eprintln!(
        "vm-test: built the guest image in {secs} s: {}",
        done.display()
    );
    Ok(Guest {
        dir: done,
        build_seconds: Some(secs),
    })
}

/// The modules go where dkms would install them, and depmod indexes them for modprobe.
fn install_modules(rootfs: &Path, release: &str, modules: &Path) -> Result<()> {
    let dest = rootfs.join(format!("lib/modules/{release}/updates/dkms"));
    std::fs::create_dir_all(&dest)?;
    for entry in std::fs::read_dir(modules)? {
        let path = entry?.path();
        std::fs::copy(&path, dest.join(path.file_name().expect("a file")))?;
    }
    in_chroot(rootfs, &["depmod", release])
}

fn write_guest_file(rootfs: &Path, file: &GuestFile) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = rootfs.join(file.path.trim_start_matches('/'));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, &file.content)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(file.mode))?;
    Ok(())
}

fn in_chroot(rootfs: &Path, argv: &[&str]) -> Result<()> {
    let mut cmd = Command::new("chroot");
    cmd.arg(rootfs).args(argv);
    run_step(cmd)
}

/// An empty build folder: whatever an interrupted build left there is removed first.
fn fresh(cache: &Path, name: &str) -> Result<PathBuf> {
    let dir = cache.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Remove the finished stages of other keys: only the current ones are ever used again.
fn prune(cache: &Path, prefix: &str) -> Result<()> {
    let Ok(dir) = std::fs::read_dir(cache) else {
        return Ok(());
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with(prefix) {
            eprintln!("vm-test: removing the outdated {}", entry.path().display());
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}
