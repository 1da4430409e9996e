//! `sovereign detect` on recorded machines (tests/fixtures/hardware): one per archetype,
//! unknown GPUs, and a machine without nvidia-smi; plus `detect --expect PROFILE`.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use sovereign::hardware::{self, Source};
use sovereign::host::RealHost;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hardware")
        .join(name)
}

fn sovereign(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sovereign"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("SOVEREIGN_ROOT")
        .output()
        .expect("run sovereign")
}

fn detect(name: &str, extra: &[&str]) -> Output {
    let dir = fixture(name);
    let mut args = vec!["detect", "--facts-from", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    sovereign(&args)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Whether stderr says `needle`, whatever the line wrapping of the error reporter: both
/// sides are compared without whitespace and box-drawing margins.
fn says(out: &Output, needle: &str) -> bool {
    let squash = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_whitespace() && *c != '│')
            .collect()
    };
    squash(&stderr(out)).contains(&squash(needle))
}

fn json(name: &str) -> Value {
    let out = detect(name, &["--json"]);
    assert!(out.status.success(), "{name}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("detect --json prints JSON")
}

const FIXTURES: [(&str, &str); 9] = [
    ("rtx-3060", "rtx-3060"),
    ("rtx-3090", "rtx-3090"),
    ("2x-rtx-3090", "2x-rtx-3090"),
    ("rtx-4090", "rtx-4090"),
    ("rtx-4090-no-nvidia-smi", "rtx-4090"),
    ("m2-ultra", "m2-ultra"),
    ("cpu-only", "cpu-only"),
    ("unknown-rtx-a6000", "unknown"),
    ("unknown-rtx-3090-ti", "unknown"),
];

#[test]
fn every_recorded_machine_gets_its_archetype() {
    for (name, expected) in FIXTURES {
        let facts = hardware::detect_in(&RealHost, &Source::Fixture(fixture(name)))
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(facts.archetype, expected, "{name}");
        assert_eq!(
            facts.archetype_detail.as_ref().map(|a| a.id.as_str()),
            (expected != "unknown").then_some(expected),
            "{name}"
        );
        // Facts travel inside saved plans: they read back as they were written.
        let json = serde_json::to_string(&facts).unwrap();
        let back: hardware::Facts = serde_json::from_str(&json).unwrap();
        assert_eq!(back, facts, "{name}");
        // Two readings of one machine agree once the volatile ones are left out.
        let stable = facts.stable();
        assert!(stable.volatile.is_empty() && stable.memory.available_bytes.is_none());
        assert_eq!(stable.archetype, facts.archetype);
    }
    // The database covers every archetype with a recorded machine.
    for id in hardware::archetype_ids() {
        assert!(
            FIXTURES.iter().any(|(_, a)| *a == id),
            "no fixture for {id}"
        );
    }
}

#[test]
fn detect_text_and_json_snapshots() {
    for (name, _) in FIXTURES {
        let out = detect(name, &[]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "human output goes to stderr only");
        insta::assert_snapshot!(format!("detect_text_{name}"), stderr(&out));
        let out = detect(name, &["--json"]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        insta::assert_snapshot!(
            format!("detect_json_{name}"),
            String::from_utf8(out.stdout).unwrap()
        );
    }
}

#[test]
fn json_has_the_documented_keys() {
    let v = json("rtx-4090");
    for key in [
        "cpu",
        "memory",
        "gpus",
        "archetype",
        "archetype_detail",
        "volatile",
    ] {
        assert!(v.get(key).is_some(), "missing key {key}: {v}");
    }
    assert_eq!(v["cpu"]["cores"], 16);
    assert_eq!(v["cpu"]["threads"], 32);
    assert_eq!(v["cpu"]["virtualization"], "svm");
    assert_eq!(v["volatile"], serde_json::json!(["memory.available_bytes"]));
    let gpu = &v["gpus"][0];
    assert_eq!(gpu["pci_address"], "0000:01:00.0");
    assert_eq!(gpu["vendor_id"], "0x10de");
    assert_eq!(gpu["device_id"], "0x2684");
    assert_eq!(gpu["vram_bytes"], 24564u64 << 20);
    assert_eq!(gpu["driver_version"], "550.54.14");
    // The HDMI audio function and the integrated Radeon are not GPUs of interest.
    assert_eq!(v["gpus"].as_array().unwrap().len(), 1);
    assert_eq!(v["archetype_detail"]["memory_bandwidth_gbps"], 1008);
    assert_eq!(
        v["archetype_detail"]["throughput"][0]["tokens_per_second"],
        serde_json::json!({"low": 52, "high": 65})
    );
}

#[test]
fn an_unknown_gpu_is_reported_by_name_and_vram_without_a_guess() {
    let v = json("unknown-rtx-a6000");
    assert_eq!(v["archetype"], "unknown");
    assert_eq!(v["archetype_detail"], Value::Null);
    assert_eq!(v["gpus"][0]["name"], "NVIDIA RTX A6000");
    assert_eq!(v["gpus"][0]["device_id"], "0x2230");
    assert_eq!(v["gpus"][0]["vram_bytes"], 49140u64 << 20);
}

#[test]
fn without_nvidia_smi_the_ids_still_match_and_a_note_says_what_is_missing() {
    let v = json("rtx-4090-no-nvidia-smi");
    assert_eq!(v["archetype"], "rtx-4090");
    assert_eq!(v["gpus"][0]["device_id"], "0x2684");
    assert_eq!(v["gpus"][0]["name"], Value::Null);
    assert_eq!(v["gpus"][0]["vram_bytes"], Value::Null);
    assert!(
        v["notes"][0]
            .as_str()
            .unwrap()
            .contains("nvidia-smi is not installed")
    );
}

#[test]
fn apple_silicon_comes_from_sysctl() {
    let v = json("m2-ultra");
    assert_eq!(v["apple_chip"], "Apple M2 Ultra");
    assert_eq!(v["cpu"]["performance_cores"], 16);
    assert_eq!(v["memory"]["total_bytes"], 192u64 << 30);
    assert_eq!(v["gpus"][0]["unified_memory"], true);
}

/// A copy of a fixture in a temporary folder, to break one file of it.
fn broken_copy(from: &str, edit: impl FnOnce(&Path)) -> tempfile::TempDir {
    fn copy(src: &Path, dst: &Path) {
        std::fs::create_dir_all(dst).unwrap();
        for e in std::fs::read_dir(src).unwrap() {
            let e = e.unwrap();
            let to = dst.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy(&e.path(), &to);
            } else {
                std::fs::copy(e.path(), &to).unwrap();
            }
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    copy(&fixture(from), tmp.path());
    edit(tmp.path());
    tmp
}

#[test]
fn unreadable_inputs_are_errors_naming_the_file_or_line() {
    let tmp = broken_copy("rtx-4090", |d| {
        std::fs::write(
            d.join("nvidia-smi.csv"),
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver\n",
        )
        .unwrap()
    });
    let out = sovereign(&["detect", "--facts-from", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(says(&out, "nvidia-smi output line 1 has 1 fields"), "{err}");

    let tmp = broken_copy("cpu-only", |d| {
        std::fs::remove_file(d.join("proc/cpuinfo")).unwrap()
    });
    let out = sovereign(&["detect", "--facts-from", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        says(&out, "cannot read") && says(&out, "proc/cpuinfo"),
        "{err}"
    );

    let out = sovereign(&["detect", "--facts-from", "/no/such/machine"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(says(&out, "/no/such/machine"), "{}", stderr(&out));
}

fn profile(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("profile.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn expect_matching_the_machine_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let p = profile(
        tmp.path(),
        "[host]\nname = \"forge-01\"\nexpect = \"rtx-4090\"\n",
    );
    let out = detect("rtx-4090", &["--expect", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        says(&out, "this machine is \"rtx-4090\", as"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn expect_of_another_archetype_exits_1_naming_both() {
    let tmp = tempfile::tempdir().unwrap();
    let p = profile(tmp.path(), "[host]\nexpect = \"rtx-4090\"\n");
    let out = detect("2x-rtx-3090", &["--expect", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        says(&out, "this machine is \"2x-rtx-3090\", but") && says(&out, "expects \"rtx-4090\""),
        "{err}"
    );
    assert!(says(&out, "profile.toml"), "names the profile: {err}");

    // The JSON still comes out, with the verdict.
    let out = detect(
        "unknown-rtx-a6000",
        &["--json", "--expect", p.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["expect"]["archetype"], "rtx-4090");
    assert_eq!(v["expect"]["matches"], false);
    assert!(
        says(&out, "this machine is \"unknown\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn expect_of_an_unknown_archetype_lists_the_known_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let p = profile(tmp.path(), "[host]\nexpect = \"rtx-4009\"\n");
    let out = detect("rtx-4090", &["--expect", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        says(&out, "unknown hardware archetype \"rtx-4009\""),
        "{err}"
    );
    assert!(says(&out, "did you mean \"rtx-4090\""), "{err}");
    let known = hardware::archetype_ids().join(", ");
    assert!(says(&out, &format!("known archetypes: {known}")), "{err}");
}

#[test]
fn expect_needs_a_profile_that_sets_it() {
    let tmp = tempfile::tempdir().unwrap();
    let p = profile(tmp.path(), "[host]\nname = \"forge-01\"\n");
    let out = detect("cpu-only", &["--expect", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(says(&out, "sets no host.expect"), "{}", stderr(&out));
}

#[test]
fn every_example_profile_expects_the_recorded_machine_of_its_archetype() {
    let profiles = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    for (file, machine) in [
        ("rtx4090.toml", "rtx-4090"),
        ("2x3090.toml", "2x-rtx-3090"),
        ("m2-ultra.toml", "m2-ultra"),
        ("rtx3060.toml", "rtx-3060"),
    ] {
        let p = profiles.join(file);
        let out = detect(machine, &["--expect", p.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{file}: {}", stderr(&out));
        let out = detect("cpu-only", &["--expect", p.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{file} on a CPU-only machine");
    }
}

#[test]
fn help_shows_examples_and_hides_the_test_option() {
    let out = sovereign(&["detect", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Examples:") && help.contains("--expect"),
        "{help}"
    );
    assert!(!help.contains("facts-from"), "{help}");
}
