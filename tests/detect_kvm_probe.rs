//! `sovereign detect --probe-kvm KERNEL INITRD`: the probe's verdict in detect's output, its
//! cache in the state folder under --root, and a later detect showing it. A stand-in
//! `qemu-system-x86_64` on PATH (a shell script) takes the emulator's place, so the test
//! says the same on a machine whose KVM boots guests, one whose guests hang, and one
//! without /dev/kvm (where the probe fails before starting anything).

#![allow(clippy::disallowed_methods)] // builds its world and runs the binary, as a user would

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// A temporary root, empty guest boot files, and a folder for stand-in programs.
struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["root", "bin", "guest"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("guest/vmlinuz"), "").unwrap();
        std::fs::write(dir.path().join("guest/initrd.img"), "").unwrap();
        World { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn kernel(&self) -> PathBuf {
        self.dir.path().join("guest/vmlinuz")
    }

    fn initrd(&self) -> PathBuf {
        self.dir.path().join("guest/initrd.img")
    }

    fn cache(&self) -> PathBuf {
        self.root().join("var/lib/sovereign/kvm-probe.json")
    }

    /// Put a stand-in emulator running `body` (sh) first on PATH.
    fn qemu(&self, body: &str) {
        let path = self.dir.path().join("bin/qemu-system-x86_64");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// `sovereign detect --root ROOT ARGS...` with the stand-in folder first on PATH.
    fn detect(&self, args: &[&str]) -> Output {
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        self.detect_with_path(args, &path)
    }

    fn detect_with_path(&self, args: &[&str], path: &str) -> Output {
        Command::new(env!("CARGO_BIN_EXE_sovereign"))
            .arg("detect")
            .arg("--root")
            .arg(self.root())
            .args(args)
            .env("NO_COLOR", "1")
            .env("PATH", path)
            .env_remove("SOVEREIGN_ROOT")
            .env_remove("RUST_LOG")
            .output()
            .expect("run sovereign")
    }

    fn probe_args(&self) -> Vec<String> {
        vec![
            "--probe-kvm".into(),
            self.kernel().display().to_string(),
            self.initrd().display().to_string(),
        ]
    }

    fn probe(&self, extra: &[&str]) -> Output {
        let mut args = self.probe_args();
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.detect(&args)
    }
}

fn kvm() -> bool {
    Path::new("/dev/kvm").exists()
}

fn running_kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap()
        .trim()
        .to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).expect("detect --json prints JSON")
}

#[test]
fn a_failed_probe_is_reported_cached_and_shown_by_the_next_detect() {
    let w = World::new();
    w.qemu("echo 'qemu-system-x86_64: stand-in: cannot load the kernel' >&2; exit 1");
    let out = w.probe(&["--json"]);
    // The probe's verdict is data: detect itself succeeded.
    let facts = json(&out);
    let probe = &facts["kvm_probe"];
    assert_eq!(probe["passed"], false, "{probe}");
    let detail = probe["detail"].as_str().unwrap();
    if kvm() {
        assert_eq!(
            detail,
            "qemu exited before the marker (exit status: 1): qemu-system-x86_64: stand-in: cannot load the kernel"
        );
    } else {
        assert!(
            detail.starts_with("no /dev/kvm: ") && detail.contains("no guest was started"),
            "{detail}"
        );
    }
    let canonical = |p: PathBuf| std::fs::canonicalize(p).unwrap().display().to_string();
    assert_eq!(probe["kernel"], canonical(w.kernel()));
    assert_eq!(probe["initrd"], canonical(w.initrd()));
    assert_eq!(probe["host_kernel"], running_kernel());
    assert!(probe["seconds"].as_f64().unwrap() < 30.0, "{probe}");
    let at = probe["at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(at).is_ok() && at.ends_with('Z'),
        "{at}"
    );

    // Cached in the state folder under --root, exactly as reported.
    let cached: Value = serde_json::from_slice(&std::fs::read(w.cache()).unwrap()).unwrap();
    assert_eq!(&cached, probe);

    // A later detect, without the flag, shows the cached probe.
    let again = json(&w.detect(&["--json"]));
    assert_eq!(&again["kvm_probe"], probe);
    let human = w.detect(&[]);
    assert!(human.status.success(), "{}", stderr(&human));
    assert!(
        stderr(&human).contains(&format!("           kvm probe: failed: {detail}\n")),
        "{}",
        stderr(&human)
    );
}

#[test]
fn a_probe_from_another_kernel_or_a_corrupt_cache_is_not_shown() {
    let w = World::new();
    w.qemu("exit 1");
    json(&w.probe(&["--json"]));
    let mut cached: Value = serde_json::from_slice(&std::fs::read(w.cache()).unwrap()).unwrap();
    cached["host_kernel"] = "0.0.0-another-kernel".into();
    std::fs::write(w.cache(), cached.to_string()).unwrap();
    let facts = json(&w.detect(&["--json"]));
    assert!(facts.get("kvm_probe").is_none(), "stale: {facts}");

    std::fs::write(w.cache(), "{ not json").unwrap();
    let out = w.detect(&["--json"]);
    let facts = json(&out);
    assert!(facts.get("kvm_probe").is_none(), "corrupt: {facts}");
    assert!(stderr(&out).contains("kvm-probe.json"), "{}", stderr(&out));
}

#[test]
fn a_guest_reaching_the_marker_passes_and_a_silent_one_hangs() {
    if !kvm() {
        // Without /dev/kvm nothing is started; the first test covers that verdict.
        return;
    }
    let w = World::new();
    w.qemu(
        "echo 'Linux version 6.1.0'; printf '[    0.91] Run /init as init process\\r\\n'; exec sleep 30",
    );
    let out = w.probe(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stderr(&out);
    let kernel = std::fs::canonicalize(w.kernel()).unwrap();
    assert!(
        text.contains("           kvm probe: passed in ")
            && text.contains(&format!(" s ({})\n", kernel.display())),
        "{text}"
    );

    w.qemu("echo 'smpboot: CPU0: stand-in'; exec sleep 30");
    let start = std::time::Instant::now();
    let facts = json(&w.probe(&["--probe-timeout", "1", "--json"]));
    assert!(start.elapsed().as_secs() < 20, "the bound stops the guest");
    assert_eq!(
        facts["kvm_probe"]["detail"],
        "no marker within 1s: the guest hung (last console line: smpboot: CPU0: stand-in)"
    );

    // The marker is the user's to choose.
    w.qemu("echo 'custom ready line'; exec sleep 30");
    let facts = json(&w.probe(&["--probe-marker", "ready", "--json"]));
    assert_eq!(facts["kvm_probe"]["passed"], true);
    assert_eq!(facts["kvm_probe"]["detail"], "custom ready line");
}

#[test]
fn without_qemu_the_probe_is_an_error_saying_what_to_install() {
    if !kvm() {
        // Without /dev/kvm the probe fails before looking for qemu (first test).
        return;
    }
    let w = World::new();
    let empty = w.dir.path().join("bin");
    let args = w.probe_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = w.detect_with_path(&args, empty.to_str().unwrap());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        text.contains("qemu-system-x86_64") && text.contains("qemu-system-x86 package"),
        "{text}"
    );
    assert!(!w.cache().exists(), "nothing ran, nothing is cached");
}

#[test]
fn bad_probe_arguments_are_refused_before_anything_runs() {
    let w = World::new();
    let missing = w.dir.path().join("guest/missing");
    let out = w.detect(&[
        "--probe-kvm",
        missing.to_str().unwrap(),
        w.initrd().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("guest/missing"), "{}", stderr(&out));
    assert!(!w.cache().exists());

    // The probe's options need the probe; a zero bound is no bound.
    let out = w.detect(&["--probe-timeout", "5"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let mut args = w.probe_args();
    args.extend(["--probe-timeout".to_string(), "0".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(w.detect(&args).status.code(), Some(2));
}

#[test]
fn help_explains_the_probe_and_its_exit_status() {
    let out = Command::new(env!("CARGO_BIN_EXE_sovereign"))
        .args(["detect", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--probe-kvm <KERNEL> <INITRD>",
        "--probe-marker <TEXT>",
        "[default: \"Run /init as init process\"]",
        "--probe-timeout <SECONDS>",
        "A failed KVM probe still",
        "exits 0",
    ] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
}
