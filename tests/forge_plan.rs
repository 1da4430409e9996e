//! `sovereign plan` with a `[forge]` section, on this machine's facts and without running
//! anything: what depends on the machine (CPUs to pin to, memory, the boot files, whether
//! KVM can run) is a plan-time error naming the key's file:line, and a Xen profile plans
//! its packages, a boot entry change marked as needing a reboot, and its VMs as waiting
//! for that reboot.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::process::{Command, Output};

fn sovereign(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sovereign"))
        .args(["--color", "never"])
        .args(args)
        .env_remove("NO_COLOR")
        .output()
        .expect("run sovereign")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A profile in `dir` with one VM whose body is `vm`, under `[forge]` `forge`.
fn profile(dir: &Path, forge: &str, vm: &str) -> String {
    let path = dir.join("forge.toml");
    std::fs::write(
        &path,
        format!("[forge]\n{forge}\n\n[forge.vms.probe]\n{vm}\n"),
    )
    .unwrap();
    path.display().to_string()
}

fn plan(dir: &Path, profile: &str, extra: &[&str]) -> Output {
    let root = dir.join("root");
    let mut args = vec!["plan", profile, "--root", root.to_str().unwrap()];
    args.extend(extra);
    sovereign(&args)
}

/// The change at `addr` in a plan's JSON; panics showing the plan when there is none.
fn change_at<'a>(plan: &'a serde_json::Value, addr: &str) -> &'a serde_json::Value {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == addr)
        .unwrap_or_else(|| panic!("no {addr} in {plan:#}"))
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[test]
fn pinning_to_a_cpu_the_host_lacks_is_refused_at_plan_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = 4096;
    let p = profile(
        dir.path(),
        "hypervisor = \"kvm\"\naccel = \"tcg\"",
        &format!("vcpus = 2\nmemory = \"64M\"\npin = [0, {missing}]"),
    );
    let out = plan(dir.path(), &p, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("forge.toml:8:"),
        "names the line of pin: {said}"
    );
    assert!(
        said.contains(&format!("host CPU {missing} does not exist")),
        "{said}"
    );
    assert!(said.contains("this machine has"), "{said}");
    // Every CPU the machine has is accepted.
    let all: Vec<String> = (0..threads()).map(|c| c.to_string()).collect();
    let p = profile(
        dir.path(),
        "hypervisor = \"kvm\"\naccel = \"tcg\"\nuri = \"test:///default\"",
        &format!("vcpus = 2\nmemory = \"64M\"\npin = [{}]", all.join(", ")),
    );
    let out = plan(dir.path(), &p, &[]);
    assert!(!text(&out).contains("does not exist"), "{}", text(&out));
}

#[test]
fn memory_above_the_hosts_and_a_missing_kernel_are_refused_at_plan() {
    let dir = tempfile::tempdir().unwrap();
    let p = profile(
        dir.path(),
        "hypervisor = \"kvm\"\naccel = \"tcg\"",
        "vcpus = 1\nmemory = \"64T\"",
    );
    let out = plan(dir.path(), &p, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("forge.toml:7:") && said.contains("forge.vms.probe.memory"),
        "{said}"
    );
    assert!(said.contains("more than this machine's"), "{said}");

    let p = profile(
        dir.path(),
        "hypervisor = \"kvm\"\naccel = \"tcg\"",
        "vcpus = 1\nmemory = \"64M\"\nkernel = \"/boot/guest-vmlinuz\"",
    );
    let out = plan(dir.path(), &p, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("forge.vms.probe.kernel"), "{said}");
    assert!(
        said.contains("guest-vmlinuz does not exist") && said.contains("relocated under --root"),
        "{said}"
    );
}

#[test]
fn kvm_where_it_cannot_run_is_a_plan_error_and_auto_says_what_it_chose() {
    let dir = tempfile::tempdir().unwrap();
    let p = profile(
        dir.path(),
        "hypervisor = \"kvm\"\naccel = \"auto\"\nuri = \"test:///default\"",
        "vcpus = 1\nmemory = \"64M\"",
    );
    let out = plan(dir.path(), &p, &[]);
    let said = text(&out);
    assert!(out.status.code() != Some(1), "{said}");
    assert!(
        said.contains("accel = \"auto\" chose"),
        "the plan says which: {said}"
    );
    let chose_kvm = said.contains("chose KVM");
    let p = profile(
        dir.path(),
        "hypervisor = \"kvm\"\naccel = \"kvm\"\nuri = \"test:///default\"",
        "vcpus = 1\nmemory = \"64M\"",
    );
    let out = plan(dir.path(), &p, &[]);
    if chose_kvm {
        assert_ne!(out.status.code(), Some(1), "{}", text(&out));
    } else {
        // Where auto falls back to emulation, asking for KVM is an error with the reason.
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let said = text(&out);
        assert!(said.contains("KVM cannot run here"), "{said}");
        assert!(said.contains("forge.toml:3:"), "names accel's line: {said}");
    }
}

#[test]
fn a_xen_profile_plans_packages_a_reboot_and_vms_that_wait_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = profile(
        dir.path(),
        "hypervisor = \"xen\"",
        "vcpus = 2\nmemory = \"512M\"\npin = [0]",
    );
    let out = plan(dir.path(), &p, &["--json"]);
    assert_ne!(out.status.code(), Some(1), "{}", text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let find = |addr: &str| change_at(&plan, addr);
    let boot = find("forge.boot:xen");
    assert_eq!(boot["flags"]["reboot"], true, "{boot:#}");
    let cfg = find("files.file:/etc/sovereign/forge/probe.cfg");
    assert!(
        cfg["diff"].as_str().unwrap().contains("vcpus = 2"),
        "{cfg:#}"
    );
    let vm = find("forge.vm:probe");
    assert!(
        vm["not_applicable"]
            .as_str()
            .unwrap()
            .contains("reboot into Xen's boot entry"),
        "{vm:#}"
    );
    if !Path::new("/usr/lib/xen-common").exists() {
        let packages = find("forge.packages:xen");
        assert!(
            packages.to_string().contains("xen-system-amd64"),
            "{packages:#}"
        );
    }
    let human = text(&plan_human(dir.path(), &p));
    assert!(human.contains("needs reboot"), "{human}");
}

fn plan_human(dir: &Path, profile: &str) -> Output {
    plan(dir, profile, &[])
}

#[test]
fn where_libvirt_does_not_answer_plan_shows_the_daemon_and_every_vm_to_create() {
    let dir = tempfile::tempdir().unwrap();
    let p = profile(
        dir.path(),
        "hypervisor = \"kvm\"\naccel = \"tcg\"\nuri = \"qemu+unix:///system?socket=/nonexistent/libvirt-sock\"",
        "vcpus = 1\nmemory = \"64M\"\nstate = \"stopped\"",
    );
    let out = plan(dir.path(), &p, &["--json"]);
    assert_ne!(out.status.code(), Some(1), "{}", text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let find = |addr: &str| change_at(&plan, addr);
    let daemon = find("forge.daemon:libvirtd");
    assert_eq!(daemon["action"], "create", "{daemon:#}");
    assert!(
        daemon["reason"]
            .as_str()
            .unwrap()
            .contains("does not answer"),
        "{daemon:#}"
    );
    let vm = find("forge.vm:probe");
    assert_eq!(vm["action"], "create", "{vm:#}");
    let deps = vm["depends_on"].to_string();
    assert!(deps.contains("forge.daemon:libvirtd"), "{vm:#}");
    assert!(
        deps.contains("files.file:/etc/sovereign/forge/probe.xml"),
        "{vm:#}"
    );
}

#[test]
fn huge_pages_the_host_has_not_reserved_are_a_plan_error() {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let free: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("HugePages_Free:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    if free > 0 {
        return; // this host has huge pages reserved: the refusal cannot be shown here
    }
    let dir = tempfile::tempdir().unwrap();
    let p = profile(
        dir.path(),
        "hypervisor = \"kvm\"\naccel = \"tcg\"\nuri = \"qemu+unix:///system?socket=/nonexistent/libvirt-sock\"",
        "vcpus = 1\nmemory = \"64M\"\nhugepages = true",
    );
    let out = plan(dir.path(), &p, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("forge.toml:6:") && said.contains("forge.vms.probe"),
        "names the VM: {said}"
    );
    assert!(said.contains("free huge pages"), "{said}");
    assert!(said.contains("vm.nr_hugepages"), "says what to do: {said}");
}

#[test]
fn where_libvirt_does_not_answer_and_pid_1_is_not_systemd_apply_does_the_rest() {
    if Path::new("/run/systemd/system").is_dir() {
        return; // with systemd, apply starts libvirtd instead: not this machine's case
    }
    let dir = tempfile::tempdir().unwrap();
    let p = profile(
        dir.path(),
        "hypervisor = \"kvm\"\naccel = \"tcg\"\ninstall = false\nuri = \"qemu+unix:///system?socket=/nonexistent/libvirt-sock\"",
        "vcpus = 1\nmemory = \"64M\"",
    );
    let root = dir.path().join("root");
    let out = sovereign(&["apply", &p, "--root", root.to_str().unwrap(), "--yes"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains("skipped (not applicable: libvirt does not answer"),
        "{said}"
    );
    assert!(
        root.join("etc/sovereign/forge/probe.xml").is_file(),
        "the domain XML is written: {said}"
    );
}
