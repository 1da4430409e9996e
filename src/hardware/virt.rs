//! Hardware virtualization beyond `/dev/kvm`: whether this machine is itself a guest, and
//! the cached result of booting a real guest under KVM (`sovereign detect --probe-kvm`).
//! On some machines `/dev/kvm` opens but a Linux guest hangs at boot, so the device's
//! existence alone does not say that KVM works.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::host::{Cmd, LineWait, find_program, run_until_line};
use crate::state::StateDir;

/// The outcome of one KVM boot probe, cached in the state directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvmProbe {
    /// Whether the guest printed the marker line on its serial console within the bound.
    pub passed: bool,
    /// What was seen: the marker's line, or why it failed (timeout, qemu's error).
    pub detail: String,
    /// The kernel and initramfs booted.
    pub kernel: String,
    /// The initramfs booted with the kernel.
    pub initrd: String,
    /// The host kernel release the probe ran on: a probe from another kernel is stale.
    pub host_kernel: String,
    /// How long the guest took to reach the marker (or the bound), in seconds.
    pub seconds: f64,
    /// When it ran (RFC 3339, UTC).
    pub at: String,
}

/// The probe's file in the state directory.
pub const PROBE_FILE: &str = "kvm-probe.json";

/// The line the probe waits for by default: Linux prints it on the console when it hands
/// over to the initramfs's `/init`, whatever the initramfs holds, so booting that far
/// proves the CPU, memory and interrupts of the guest work.
pub const DEFAULT_MARKER: &str = "Run /init as init process";

/// How long the probe waits for the marker by default, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;

/// The emulator that boots the guest.
pub const QEMU: &str = "qemu-system-x86_64";

/// Where the running kernel names its release.
const OSRELEASE: &str = "/proc/sys/kernel/osrelease";

/// What to boot and what to wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    /// The guest kernel (canonical path).
    pub kernel: PathBuf,
    /// The guest initramfs (canonical path).
    pub initrd: PathBuf,
    /// A console line containing this means the guest booted.
    pub marker: String,
    /// How long the guest gets to print it.
    pub bound: Duration,
}

impl ProbeSpec {
    /// A probe of `kernel` and `initrd`, which must be readable files (their paths are
    /// made canonical: the cached probe names what was booted, wherever detect ran from).
    pub fn new(
        kernel: &Path,
        initrd: &Path,
        marker: &str,
        bound: Duration,
    ) -> anyhow::Result<ProbeSpec> {
        if marker.is_empty() {
            anyhow::bail!("the probe marker is empty, so any console line would pass");
        }
        Ok(ProbeSpec {
            kernel: boot_file(kernel, "kernel")?,
            initrd: boot_file(initrd, "initramfs")?,
            marker: marker.to_string(),
            bound,
        })
    }
}

fn boot_file(path: &Path, what: &str) -> anyhow::Result<PathBuf> {
    let canonical = std::fs::canonicalize(path)
        .with_context(|| format!("cannot read the guest {what} {}", path.display()))?;
    if !canonical.is_file() {
        anyhow::bail!("the guest {what} {} is not a file", path.display());
    }
    Ok(canonical)
}

/// The running kernel's release (`6.1.0-18-amd64`), or `None` where it cannot be read
/// (not Linux).
pub fn running_kernel() -> Option<String> {
    std::fs::read_to_string(OSRELEASE)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Where the probe is cached: `<state>/kvm-probe.json`.
pub fn probe_path(state: &StateDir) -> PathBuf {
    state.path.join(PROBE_FILE)
}

/// The cached probe, when there is one from the running kernel. A probe from another
/// kernel says nothing about this one, and a file that cannot be read or parsed is as
/// good as none: this never fails, since detection and planning must not.
pub fn load_probe(state: &StateDir) -> Option<KvmProbe> {
    load_probe_for(state, &running_kernel()?)
}

/// The cached probe, when it ran on the kernel release `kernel`.
fn load_probe_for(state: &StateDir, kernel: &str) -> Option<KvmProbe> {
    let path = probe_path(state);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::debug!("ignoring the KVM probe {}: {e}", path.display());
            return None;
        }
    };
    match serde_json::from_slice::<KvmProbe>(&text) {
        Ok(probe) if probe.host_kernel == kernel => Some(probe),
        Ok(probe) => {
            tracing::debug!(
                "ignoring the KVM probe {}: it ran on kernel {}, this is {kernel}",
                path.display(),
                probe.host_kernel
            );
            None
        }
        Err(e) => {
            tracing::warn!(
                "ignoring the KVM probe {}: it is not a probe result ({e}); `sovereign detect --probe-kvm` writes a new one",
                path.display()
            );
            None
        }
    }
}

/// Cache `probe` in the state directory (created when missing), atomically.
pub fn save_probe(state: &StateDir, probe: &KvmProbe) -> anyhow::Result<()> {
    crate::host::fs::ensure_dir(&state.path)?;
    let path = probe_path(state);
    crate::state::write_json(&path, probe)
        .with_context(|| format!("cannot save the KVM probe to {}", path.display()))
}

/// Boot the guest of `spec` under KVM and say whether it reached the marker. `kvm` is
/// whether `/dev/kvm` exists: without it the probe fails without starting anything.
/// `Err` when the probe cannot run at all: qemu is not installed or cannot be started.
pub fn probe(spec: &ProbeSpec, kvm: bool) -> anyhow::Result<KvmProbe> {
    if !kvm {
        return Ok(verdict(
            spec,
            false,
            "no /dev/kvm: this kernel offers no KVM (no kvm_intel or kvm_amd module, or \
             virtualization is off in the firmware or the hypervisor), so no guest was started"
                .into(),
            Duration::ZERO,
        ));
    }
    let qemu = find_program(QEMU).with_context(|| {
        format!("{QEMU} is not on PATH: install the qemu-system-x86 package (apt install qemu-system-x86) to probe KVM")
    })?;
    probe_with(&qemu, spec)
}

/// [`probe`] with this emulator binary.
fn probe_with(qemu: &Path, spec: &ProbeSpec) -> anyhow::Result<KvmProbe> {
    let cmd = qemu_command(qemu, spec);
    let wait = run_until_line(&cmd, &spec.marker, spec.bound)
        .with_context(|| format!("cannot run {}", qemu.display()))?;
    let (passed, detail) = judge(&wait, spec.bound);
    Ok(verdict(spec, passed, detail, wait.elapsed))
}

/// The qemu command line: the guest's serial console on stdout, nothing else attached,
/// and a guest panic ending qemu (panic=-1 reboots at once, -no-reboot turns that into an
/// exit) rather than leaving it to the bound.
fn qemu_command(qemu: &Path, spec: &ProbeSpec) -> Cmd {
    let mut argv: Vec<std::ffi::OsString> = vec![qemu.into()];
    argv.extend(
        [
            "-accel",
            "kvm",
            "-cpu",
            "host",
            "-m",
            "256",
            "-smp",
            "1",
            "-nographic",
            "-no-reboot",
            "-nodefaults",
            "-serial",
            "stdio",
            "-kernel",
        ]
        .map(Into::into),
    );
    argv.push(spec.kernel.clone().into());
    argv.push("-initrd".into());
    argv.push(spec.initrd.clone().into());
    argv.push("-append".into());
    argv.push("console=ttyS0 panic=-1".into());
    Cmd::new(argv)
}

/// Whether the run passed, and what to say about it.
fn judge(wait: &LineWait, bound: Duration) -> (bool, String) {
    if let Some(line) = &wait.matched {
        return (true, line.trim().to_string());
    }
    let last = match wait.last_line() {
        Some(line) => format!("last console line: {line}"),
        None => "no console output".to_string(),
    };
    if wait.timed_out {
        return (
            false,
            format!(
                "no marker within {}s: the guest hung ({last})",
                bound.as_secs_f64()
            ),
        );
    }
    let how = wait
        .exited
        .map_or_else(|| "ended".to_string(), |s| s.to_string());
    let said: Vec<&str> = wait
        .stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(5)
        .collect();
    let detail = if said.is_empty() {
        format!("qemu exited before the marker ({how}; {last})")
    } else {
        format!("qemu exited before the marker ({how}): {}", said.join("; "))
    };
    (false, detail)
}

fn verdict(spec: &ProbeSpec, passed: bool, detail: String, took: Duration) -> KvmProbe {
    KvmProbe {
        passed,
        detail,
        kernel: spec.kernel.display().to_string(),
        initrd: spec.initrd.display().to_string(),
        host_kernel: running_kernel().unwrap_or_else(|| "unknown".to_string()),
        // Tenths of a second: finer is noise from the machine's load.
        seconds: (took.as_secs_f64() * 10.0).round() / 10.0,
        at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }
}

#[cfg(test)]
mod tests {
    // The tests build their world: a state folder and stand-in emulators.
    #![allow(clippy::disallowed_methods)]

    use super::*;
    use crate::host::fs::Root;

    fn state() -> (tempfile::TempDir, StateDir) {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(&Root::new(dir.path()).unwrap());
        (dir, state)
    }

    fn sample(host_kernel: &str) -> KvmProbe {
        KvmProbe {
            passed: true,
            detail: "[    1.2] Run /init as init process".into(),
            kernel: "/boot/vmlinuz".into(),
            initrd: "/boot/initrd.img".into(),
            host_kernel: host_kernel.into(),
            seconds: 1.2,
            at: "2025-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn a_saved_probe_loads_on_its_own_kernel_only() {
        let (_dir, state) = state();
        assert_eq!(load_probe_for(&state, "6.1.0-18-amd64"), None, "none saved");
        save_probe(&state, &sample("6.1.0-18-amd64")).unwrap();
        assert_eq!(
            load_probe_for(&state, "6.1.0-18-amd64"),
            Some(sample("6.1.0-18-amd64"))
        );
        assert_eq!(load_probe_for(&state, "6.1.0-25-amd64"), None, "stale");
    }

    #[test]
    fn load_probe_compares_with_the_running_kernel() {
        let Some(running) = running_kernel() else {
            return; // not Linux: nothing runs the probe here
        };
        let (_dir, state) = state();
        save_probe(&state, &sample("0.0.0-another-kernel")).unwrap();
        assert_eq!(load_probe(&state), None);
        save_probe(&state, &sample(&running)).unwrap();
        assert_eq!(load_probe(&state), Some(sample(&running)));
    }

    #[test]
    fn a_corrupt_or_unreadable_probe_is_none() {
        let (_dir, state) = state();
        std::fs::create_dir_all(&state.path).unwrap();
        for text in ["", "{", "[]", "{\"passed\": true}", "\u{0}\u{ff}"] {
            std::fs::write(probe_path(&state), text).unwrap();
            assert_eq!(load_probe_for(&state, "k"), None, "{text:?}");
        }
        // A folder where the file should be cannot be read.
        std::fs::remove_file(probe_path(&state)).unwrap();
        std::fs::create_dir(probe_path(&state)).unwrap();
        assert_eq!(load_probe_for(&state, "k"), None);
    }

    #[test]
    fn without_kvm_the_probe_fails_without_starting_qemu() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec_in(dir.path(), Duration::from_secs(5));
        // Not even the emulator's presence matters.
        let probe = probe(&spec, false).unwrap();
        assert!(!probe.passed);
        assert!(probe.detail.starts_with("no /dev/kvm"), "{}", probe.detail);
        assert_eq!(probe.seconds, 0.0);
        assert_eq!(probe.kernel, spec.kernel.display().to_string());
        assert!(chrono::DateTime::parse_from_rfc3339(&probe.at).is_ok());
    }

    #[test]
    fn a_missing_boot_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = ProbeSpec::new(
            &dir.path().join("nope"),
            dir.path(),
            DEFAULT_MARKER,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("guest kernel"), "{err:#}");
        std::fs::write(dir.path().join("k"), "").unwrap();
        let err = ProbeSpec::new(
            &dir.path().join("k"),
            dir.path(),
            DEFAULT_MARKER,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("is not a file"), "{err:#}");
    }

    fn spec_in(dir: &Path, bound: Duration) -> ProbeSpec {
        std::fs::write(dir.join("kernel"), "").unwrap();
        std::fs::write(dir.join("initrd"), "").unwrap();
        ProbeSpec::new(
            &dir.join("kernel"),
            &dir.join("initrd"),
            DEFAULT_MARKER,
            bound,
        )
        .unwrap()
    }

    /// A stand-in emulator: a shell script that checks it was given the guest's files.
    fn stand_in(dir: &Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("qemu");
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\ncase \"$*\" in *'-accel kvm'*'-kernel {dir}/kernel -initrd {dir}/initrd'*) ;; *) echo \"bad args: $*\" >&2; exit 9;; esac\n{body}\n",
                dir = std::fs::canonicalize(dir).unwrap().display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn the_marker_passes_the_probe() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec_in(dir.path(), Duration::from_secs(20));
        let qemu = stand_in(
            dir.path(),
            "echo 'Linux version 6.1'; printf '[    0.9] Run /init as init process\\r\\n'; sleep 30",
        );
        let probe = probe_with(&qemu, &spec).unwrap();
        assert!(probe.passed, "{probe:?}");
        assert_eq!(probe.detail, "[    0.9] Run /init as init process");
        assert!(probe.seconds < 5.0, "{probe:?}");
    }

    #[test]
    fn a_silent_guest_fails_at_the_bound_naming_its_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec_in(dir.path(), Duration::from_secs(1));
        let qemu = stand_in(
            dir.path(),
            "echo 'smpboot: CPU0: Intel'; echo; exec sleep 30",
        );
        let probe = probe_with(&qemu, &spec).unwrap();
        assert!(!probe.passed);
        assert_eq!(
            probe.detail,
            "no marker within 1s: the guest hung (last console line: smpboot: CPU0: Intel)"
        );
        assert!(probe.seconds >= 1.0, "{probe:?}");
    }

    #[test]
    fn qemu_exiting_first_fails_with_its_error() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec_in(dir.path(), Duration::from_secs(20));
        let qemu = stand_in(
            dir.path(),
            "echo 'qemu-system-x86_64: error: failed to set MSR 0x10a' >&2; exit 1",
        );
        let probe = probe_with(&qemu, &spec).unwrap();
        assert!(!probe.passed);
        assert_eq!(
            probe.detail,
            "qemu exited before the marker (exit status: 1): qemu-system-x86_64: error: failed to set MSR 0x10a"
        );
    }
}
