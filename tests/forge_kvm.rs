//! The Forge end to end on this machine's real libvirtd and qemu: `sovereign apply` makes a
//! pool and a dataset (zfs-fuse), a VXLAN segment with its bridge, a sparse image on the
//! dataset and a VM that boots Debian's kernel with the test's busybox initramfs from its
//! serial console's marker line. Then the live domain is checked (vCPUs, pinning, memory,
//! the disk and the bridged NIC with the MAC derived from the VM's name), a second apply
//! changes nothing, a vCPU change converges through shutdown, redefine and start, and a
//! VM dropped from the profile stays defined until `--allow-destroy`. KVM where the `auto`
//! rule finds it works, software emulation where it does not (here: always).
#![allow(clippy::disallowed_methods)] // builds its world (a vdev file, a kernel copy), as a user would

mod forge_guest;
mod storage_support;

use std::time::Duration;

use forge_guest::{Cleanup, Libvirt, MARKER, console_log, guest, open_to_qemu, report, virsh};
use storage_support::{BinRun, World};

/// TCG is slow and CI has two cores: a boot takes 5-10 s here, far more on a busy runner.
const BOOT_BOUND: Duration = Duration::from_secs(180);

fn must(run: &BinRun, what: &str) {
    assert_eq!(
        run.code,
        Some(0),
        "{what} failed:\n{}\n{}",
        run.stdout,
        run.stderr
    );
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The live domain's XML (`virsh dumpxml`, not `--inactive`: what runs).
fn live_xml(name: &str) -> String {
    let out = virsh(&["dumpxml", name]);
    assert!(out.status.success(), "dumpxml {name}");
    text(&out)
}

fn profile(pool: &str, segment: &str, bridge: &str, vm: &str, vcpus: u32, pin: &str) -> String {
    format!(
        r#"[storage.pools.{pool}]
vdevs = ["/vdevs/{pool}.img"]
filesystem = {{ mountpoint = "/{pool}" }}

[storage.datasets."{pool}/images"]

[network.vxlan.{segment}]
vni = {vni}
local = "127.0.0.1"
bridge = "{bridge}"

[forge]
hypervisor = "kvm"
accel = "auto"
shutdown_timeout = "3s"

[forge.vms.{vm}]
vcpus = {vcpus}
pin = [{pin}]
memory = "256M"
disks = [{{ dataset = "{pool}/images", file = "{vm}.raw", size = "64M" }}]
networks = ["{segment}"]
kernel = "/guest/vmlinuz"
initrd = "/guest/initrd.cpio"
cmdline = "console=ttyS0 panic=-1 quiet"
autostart = true
"#,
        vni = 4000 + std::process::id() % 1000,
    )
}

#[test]
fn a_vm_on_an_image_and_a_segment_bridge_boots_converges_and_is_kept_until_allowed() {
    let mut world = World::new();
    let _libvirt = Libvirt::start();
    let root = world.dir.path().to_path_buf();
    // libvirt's qemu runs as its own user: the kernel, the initramfs and the image must
    // be reachable from there.
    open_to_qemu(&root);
    std::fs::create_dir_all(root.join("guest")).unwrap();
    let g = guest(&root.join("guest"));
    std::fs::copy(&g.kernel, root.join("guest/vmlinuz")).unwrap();

    let pid = std::process::id();
    let pool = world.pool("forge");
    world.file_vdev(&format!("/vdevs/{pool}.img"), 256);
    let segment = format!("fgx{}", pid % 100_000);
    let bridge = format!("fgb{}", pid % 100_000);
    let vm = format!("sovereign-forge-{pid}");
    let _links = (Cleanup::link(&segment), Cleanup::link(&bridge));
    let _log = Cleanup::path(console_log(&vm));
    let _domain = Cleanup::domain(&vm);

    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pin = if threads > 1 { "1, 0" } else { "0" };
    let p = world.profile_file(
        "forge.toml",
        &profile(&pool, &segment, &bridge, &vm, 2, pin),
    );
    let p = p.to_str().unwrap();

    // Probe KVM with the test's own guest first: `auto` follows the verdict, cached in
    // the root's state folder (here /dev/kvm opens but a guest does not boot under it).
    let kernel = root.join("guest/vmlinuz");
    let initrd = root.join("guest/initrd.cpio");
    let probe = world.bin(&[
        "detect",
        "--json",
        "--probe-kvm",
        kernel.to_str().unwrap(),
        initrd.to_str().unwrap(),
        "--probe-timeout",
        "30",
    ]);
    must(&probe, "detect --probe-kvm");
    let facts: serde_json::Value = serde_json::from_str(&probe.stdout).unwrap();
    let passed = facts["kvm_probe"]["passed"]
        .as_bool()
        .expect("a probe verdict");

    let plan = world.bin(&["plan", p]);
    must(&plan, "plan");
    let said = format!("{}{}", plan.stdout, plan.stderr);
    assert!(
        said.contains("accel = \"auto\" chose"),
        "the plan says how VMs run: {said}"
    );
    let emulated = !said.contains("chose KVM");
    assert_eq!(emulated, !passed, "auto follows the probe: {said}");
    if !passed {
        assert!(
            said.contains("KVM boot probe failed"),
            "and says so: {said}"
        );
    }
    assert!(said.contains(&format!("+ forge.vm:{vm}")), "{said}");
    assert!(
        said.contains(&format!("+ files.file:/etc/sovereign/forge/{vm}.xml")),
        "the domain XML is a managed file: {said}"
    );

    must(&world.bin(&["apply", p, "--yes"]), "first apply");
    let console = forge_guest::wait_for_console(&console_log(&vm), MARKER, BOOT_BOUND).unwrap();
    assert_eq!(report(&console, "cpus"), Some("2"), "{console}");
    let disks = report(&console, "disks").unwrap();
    assert!(disks.split(' ').any(|d| d == "vda"), "{console}");
    assert!(
        report(&console, "disk_sectors")
            .unwrap()
            .contains("vda=131072"),
        "the 64M image is the guest's disk: {console}"
    );
    let nets = report(&console, "nets").unwrap();
    assert!(nets.split(' ').any(|n| n == "eth0"), "{console}");

    let live = live_xml(&vm);
    let domain_type = if emulated { "qemu" } else { "kvm" };
    assert!(
        live.contains(&format!("<domain type='{domain_type}'")),
        "{live}"
    );
    assert!(live.contains("<vcpu placement='static'>2</vcpu>"), "{live}");
    assert!(
        live.contains("<memory unit='KiB'>262144</memory>"),
        "{live}"
    );
    if threads > 1 {
        assert!(live.contains("<vcpupin vcpu='0' cpuset='1'/>"), "{live}");
        assert!(live.contains("<vcpupin vcpu='1' cpuset='0'/>"), "{live}");
        let pins = text(&virsh(&["vcpupin", &vm]));
        let rows: Vec<Vec<&str>> = pins
            .lines()
            .map(|l| l.split_whitespace().collect())
            .filter(|r: &Vec<&str>| r.len() == 2 && r[0].parse::<u32>().is_ok())
            .collect();
        assert_eq!(rows, [vec!["0", "1"], vec!["1", "0"]], "{pins}");
    }
    assert!(
        live.contains(&format!("<source bridge='{bridge}'/>")),
        "{live}"
    );
    let image = root.join(format!("{pool}/images/{vm}.raw"));
    assert!(live.contains(&image.display().to_string()), "{live}");
    // The MAC comes from the VM's name: the guest sees the one the plan showed.
    let mac = sovereign::domains::forge::identity::mac(&vm, 0);
    assert!(live.contains(&mac), "{live}");
    let macs = report(&console, "macs").unwrap_or_default();
    assert!(macs.contains(&mac), "the guest's NIC has {mac}: {console}");

    let again = world.bin(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(
        again.code,
        Some(0),
        "a second plan changes nothing:\n{}{}",
        again.stdout,
        again.stderr
    );

    // One vCPU fewer: the running VM is shut down (forced after 3 s: busybox ignores the
    // ACPI button), redefined and started.
    let one = profile(&pool, &segment, &bridge, &vm, 1, "0");
    let p1 = world.profile_file("forge.toml", &one);
    let p1 = p1.to_str().unwrap();
    let plan = world.bin(&["plan", p1]);
    must(&plan, "plan after the change");
    let said = format!("{}{}", plan.stdout, plan.stderr);
    assert!(said.contains("needs the VM off"), "{said}");
    assert!(said.contains("vcpus: 2 -> 1"), "{said}");
    must(&world.bin(&["apply", p1, "--yes"]), "apply of one vCPU");
    let console = forge_guest::wait_for_console(&console_log(&vm), MARKER, BOOT_BOUND).unwrap();
    assert_eq!(report(&console, "cpus"), Some("1"), "{console}");
    assert!(live_xml(&vm).contains("<vcpu placement='static'>1</vcpu>"));
    let again = world.bin(&["plan", p1, "--detailed-exitcode"]);
    assert_eq!(
        again.code,
        Some(0),
        "converged:\n{}{}",
        again.stdout,
        again.stderr
    );
    let info = text(&virsh(&["dominfo", &vm]));
    assert!(
        info.lines()
            .any(|l| l.starts_with("Autostart:") && l.contains("enable")),
        "{info}"
    );

    // Stopped: shut down (forced after 3 s), still defined, and a plan after it is empty.
    let stopped = format!("{one}state = \"stopped\"\n");
    let p3 = world.profile_file("forge.toml", &stopped);
    let p3 = p3.to_str().unwrap();
    must(
        &world.bin(&["apply", p3, "--yes"]),
        "apply of state = stopped",
    );
    let state = text(&virsh(&["domstate", &vm]));
    assert_eq!(state.trim(), "shut off", "{state}");
    let again = world.bin(&["plan", p3, "--detailed-exitcode"]);
    assert_eq!(
        again.code,
        Some(0),
        "stopped stays stopped:\n{}{}",
        again.stdout,
        again.stderr
    );

    // Dropped from the profile: kept, defined, with its image, until
    // --allow-destroy; then undefined, and the image removed with it.
    let without = one[..one.find("[forge.vms.").unwrap()].to_string();
    let p2 = world.profile_file("forge.toml", &without);
    let p2 = p2.to_str().unwrap();
    let apply = world.bin(&["apply", p2, "--yes"]);
    must(&apply, "apply without the VM");
    let said = format!("{}{}", apply.stdout, apply.stderr);
    assert!(said.contains(&format!("! forge.vm:{vm}")), "{said}");
    let listed = text(&virsh(&["list", "--all", "--name"]));
    assert!(listed.lines().any(|l| l == vm), "kept defined: {listed}");
    assert!(image.exists(), "the image stays");
    must(
        &world.bin(&["apply", p2, "--yes", "--allow-destroy"]),
        "apply --allow-destroy",
    );
    let listed = text(&virsh(&["list", "--all", "--name"]));
    assert!(!listed.lines().any(|l| l == vm), "undefined: {listed}");
    assert!(!image.exists(), "the image goes with --allow-destroy");
}
