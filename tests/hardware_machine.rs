//! `sovereign detect` on the machine the tests run on, and its nvidia-smi path driven by
//! stand-in nvidia-smi scripts on PATH (no NVIDIA driver can run here).
#![allow(clippy::disallowed_methods)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn detect_json(path_prefix: Option<&Path>) -> (Output, Value) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sovereign"));
    cmd.args(["detect", "--json"]).env("NO_COLOR", "1");
    if let Some(dir) = path_prefix {
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{path}", dir.display()));
    }
    let out = cmd.output().expect("run sovereign");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = serde_json::from_slice(&out.stdout).expect("detect --json prints JSON");
    (out, v)
}

/// NVIDIA display devices this machine's sysfs shows, read independently of the detector.
fn nvidia_display_devices() -> usize {
    let Ok(entries) = std::fs::read_dir("/sys/bus/pci/devices") else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            let read = |f: &str| std::fs::read_to_string(e.path().join(f)).unwrap_or_default();
            read("vendor").trim() == "0x10de" && read("class").trim().starts_with("0x03")
        })
        .count()
}

#[test]
fn this_machine_is_detected_with_real_counts() {
    let (_, v) = detect_json(None);
    let cores = v["cpu"]["cores"].as_u64().unwrap();
    let threads = v["cpu"]["threads"].as_u64().unwrap();
    assert!(cores > 0 && threads >= cores, "{v}");
    let online = std::thread::available_parallelism().unwrap().get() as u64;
    assert!(
        threads >= online,
        "threads {threads} < {online} CPUs online"
    );
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|r| r.trim_start_matches([' ', '\t', ':']).trim());
    if let Some(model) = model {
        assert_eq!(v["cpu"]["model"], model);
    }
    assert!(v["memory"]["total_bytes"].as_u64().unwrap() > 0);
    assert_eq!(v["kvm"], Path::new("/dev/kvm").exists(), "{v}");
    assert!(v["gpus"].as_array().unwrap().len() >= nvidia_display_devices());
    let nvidia_smi = sovereign::host::find_program("nvidia-smi").is_some();
    if nvidia_display_devices() > 0 {
        assert_ne!(v["archetype"], "cpu-only", "{v}");
    } else if !nvidia_smi {
        assert_eq!(v["archetype"], "cpu-only", "{v}");
        assert_eq!(v["gpus"], serde_json::json!([]), "{v}");
    }
}

fn stand_in_nvidia_smi(script: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nvidia-smi");
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn stand_in_nvidia_smi_output_is_read_through_the_host() {
    // A card at an address no real machine uses: it joins whatever sysfs shows, so the
    // machine can match no archetype.
    let dir = stand_in_nvidia_smi(
        r#"[ "$1" = "--query-gpu=pci.bus_id,name,memory.total,driver_version" ] || exit 2
[ "$2" = "--format=csv,noheader,nounits" ] || exit 2
echo "00000000:FF:1F.7, Stand-in GPU, 16384, 999.1""#,
    );
    let (_, v) = detect_json(Some(dir.path()));
    let gpus = v["gpus"].as_array().unwrap();
    let stand_in = gpus
        .iter()
        .find(|g| g["name"] == "Stand-in GPU")
        .unwrap_or_else(|| panic!("no stand-in GPU in {v}"));
    assert_eq!(stand_in["pci_address"], "0000:ff:1f.7");
    assert_eq!(stand_in["vram_bytes"], 16384u64 << 20);
    assert_eq!(stand_in["driver_version"], "999.1");
    assert_eq!(v["archetype"], "unknown");
}

#[test]
fn a_failing_stand_in_nvidia_smi_becomes_a_note_not_an_error() {
    let dir = stand_in_nvidia_smi(
        "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\"; exit 9",
    );
    let (_, v) = detect_json(Some(dir.path()));
    let notes = v["notes"].as_array().expect("a note");
    assert!(
        notes
            .iter()
            .any(|n| n.as_str().unwrap().contains("NVIDIA-SMI has failed")),
        "{v}"
    );
}
