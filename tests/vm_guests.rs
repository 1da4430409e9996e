//! `sovereign apply` on fresh Debian 12 guests with the parts this host cannot run: the
//! OpenZFS kernel module (lz4, 1M records, zvols) and systemd as PID 1 (the inference
//! unit's sandbox and credential, restarts). Two guests on a private link each get the
//! portable sovereign binary, a profile and the generated tiny model, and are checked
//! from the host the way a user would check them by hand.
//!
//! Run by `cargo xtask vm-test` (which builds and caches the guest image and the binary);
//! ignored by a plain `cargo test`. See tests/vm_support for the harness.
#![allow(clippy::disallowed_methods)] // writes the guests' payload, as a user would

mod vm_support;

use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};
use vm_support::{Accel, Guest, Inputs, Link, Logs, Spec};

/// A guest under software emulation on a busy two-core machine boots in 20-60 s.
const BOOT: Duration = Duration::from_secs(300);
/// The inference daemon's key: written into each guest's key file, never into a profile.
const KEY: &str = "vm-test-key-4d1c8e";

/// The test's model: generated with a fixed seed, so its digest can be pinned.
fn write_model(dir: &Path) -> String {
    let path = dir.join("tiny.gguf");
    let file = std::fs::File::create(&path).expect("create the model");
    sovereign_gguf::model::write_model(&sovereign_gguf::model::ModelSpec::tiny(42), file)
        .expect("write the model");
    hex::encode(Sha256::digest(
        std::fs::read(&path).expect("read the model"),
    ))
}

/// The payload every guest mounts at /mnt/payload: the binary, the model and profiles.
fn payload(inputs: &Inputs, logs: &Logs) -> (std::path::PathBuf, String) {
    let dir = logs.dir.join("payload");
    std::fs::create_dir_all(&dir).expect("create the payload folder");
    let bin = dir.join("sovereign");
    if std::fs::hard_link(&inputs.sovereign, &bin).is_err() {
        std::fs::copy(&inputs.sovereign, &bin).expect("copy the binary");
    }
    let sha = write_model(&dir);
    (dir, sha)
}

struct Host<'a> {
    name: &'a str,
    underlay: &'a str,
    peer: &'a str,
    segment: &'a str,
}

const A: Host = Host {
    name: "hunt-a",
    underlay: "192.168.100.1",
    peer: "192.168.100.2",
    segment: "10.42.0.1",
};
const B: Host = Host {
    name: "hunt-b",
    underlay: "192.168.100.2",
    peer: "192.168.100.1",
    segment: "10.42.0.2",
};

/// The profile's versions: the first apply, a changed property with a dataset dropped,
/// and one whose daemon cannot start (a port below 1024 under DynamicUser=yes).
#[derive(Clone, Copy, PartialEq)]
enum Version {
    First,
    Second,
    Broken,
}

fn profile(host: &Host, sha: &str, version: Version) -> String {
    let recordsize = if version == Version::First {
        "1M"
    } else {
        "256K"
    };
    let scratch = if version == Version::First {
        "[storage.datasets.\"tank/scratch\"]\nproperties = { recordsize = \"16K\" }\n"
    } else {
        ""
    };
    let listen = if version == Version::Broken {
        "127.0.0.1:81"
    } else {
        "127.0.0.1:8080"
    };
    format!(
        r#"[host]
name = "{name}"

[storage.pools.tank]
vdevs = ["/dev/vdb"]
filesystem = {{ mountpoint = "/tank", compression = "lz4", atime = "off" }}

[storage.datasets."tank/models"]
properties = {{ recordsize = "{recordsize}", compression = "lz4" }}
snapshots = "rolling"

{scratch}
[storage.zvols."tank/vol"]
size = "64M"

[storage.snapshot_policies.rolling]
hourly = 24
daily = 7

[network.vxlan.hunt]
vni = 4242
underlay = "eth0"
local = "{local}"
peers = ["{peer}"]
addresses = ["{segment}/24"]

[inference]
listen = "{listen}"
api_key_file = "/etc/sovereign/api-key"
slots = 1
context = 256

[inference.models.tiny]
source = "/mnt/payload/tiny.gguf"
sha256 = "{sha}"
context = 256
preload = true
"#,
        name = host.name,
        local = host.underlay,
        peer = host.peer,
        segment = host.segment,
    )
}

fn write_profiles(dir: &Path, host: &Host, sha: &str) {
    for (version, tag) in [
        (Version::First, "1"),
        (Version::Second, "2"),
        (Version::Broken, "broken"),
    ] {
        std::fs::write(
            dir.join(format!("{}-{tag}.toml", host.name)),
            profile(host, sha, version),
        )
        .expect("write a profile");
    }
}

/// Put the binary and the key in place: what an operator does before the first apply.
fn prepare(g: &mut Guest) {
    g.succeed(&format!(
        "install -m 0755 /mnt/payload/sovereign /usr/local/bin/sovereign
         install -d -m 0755 /etc/sovereign
         printf %s {KEY} > /etc/sovereign/api-key && chmod 0600 /etc/sovereign/api-key
         sovereign --version"
    ));
}

/// `curl` a chat completion; the HTTP status and the body.
fn chat(g: &mut Guest, key: Option<&str>) -> (u16, String) {
    let auth = key.map_or(String::new(), |k| format!("-H 'Authorization: Bearer {k}'"));
    let out = g.succeed(&format!(
        "curl -sS -m 120 -o /tmp/chat.json -w '%{{http_code}}' {auth} \
         -H 'Content-Type: application/json' \
         -d '{{\"model\":\"tiny\",\"messages\":[{{\"role\":\"user\",\"content\":\"hello\"}}],\"max_tokens\":4}}' \
         http://127.0.0.1:8080/v1/chat/completions; echo; cat /tmp/chat.json"
    ));
    let (status, body) = out.split_once('\n').unwrap_or((&out, ""));
    (
        status
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("curl printed {out:?}")),
        body.to_string(),
    )
}

fn answers_with_the_key_only(g: &mut Guest) {
    let (status, body) = chat(g, Some(KEY));
    assert_eq!(status, 200, "{}: chat with the key: {body}", g.name);
    let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON answer");
    assert!(
        v["choices"][0]["message"]["content"].is_string(),
        "{}: {body}",
        g.name
    );
    assert_eq!(chat(g, None).0, 401, "{}: chat without a key", g.name);
    assert_eq!(
        chat(g, Some("wrong")).0,
        401,
        "{}: chat with a wrong key",
        g.name
    );
}

fn main_pid(g: &mut Guest) -> u32 {
    let pid = g.unit_property("sovereign-inference.service", "MainPID");
    pid.parse().unwrap_or_else(|_| panic!("MainPID {pid:?}"))
}

/// The daemon is up and answering its health endpoint.
fn wait_for_daemon(g: &mut Guest) {
    g.wait_for_unit("sovereign-inference.service", Duration::from_secs(180));
    g.wait_until_succeeds(
        "curl -sf -m 10 http://127.0.0.1:8080/health",
        Duration::from_secs(180),
    );
}

fn zget(g: &mut Guest, property: &str, dataset: &str) -> String {
    g.succeed(&format!("zfs get -H -o value {property} {dataset}"))
        .trim()
        .to_string()
}

fn generations(g: &mut Guest) -> Vec<serde_json::Value> {
    let out = g.succeed("sovereign generations --json");
    let v: serde_json::Value = serde_json::from_str(&out).expect("generations --json");
    v.as_array()
        .cloned()
        .or_else(|| v["generations"].as_array().cloned())
        .unwrap_or_else(|| panic!("generations --json: {out}"))
}

/// Run `f` on both guests at once (each guest has its own processor).
fn both(a: &mut Guest, b: &mut Guest, f: impl Fn(&mut Guest) + Sync) {
    std::thread::scope(|s| {
        let fa = &f;
        let ta = s.spawn(move || fa(a));
        f(b);
        if let Err(panic) = ta.join() {
            std::panic::resume_unwind(panic);
        }
    });
}

fn apply(g: &mut Guest, file: &str, flags: &str) -> (i32, String) {
    g.run(
        &format!("sovereign --color never apply /mnt/payload/{file} --yes {flags}"),
        Duration::from_secs(900),
    )
}

#[test]
#[ignore = "boots Debian guests under qemu: run `cargo xtask vm-test`"]
fn two_guests_apply_zfs_vxlan_and_the_inference_unit_and_survive_restarts_rollback_and_reboot() {
    let inputs = Inputs::from_env();
    let logs = Logs::new(&inputs, "two_guests");
    let (accel, why) = Accel::probe(&inputs);
    eprintln!("vm-test: guests run under {accel:?} (KVM probe: {why})");
    let (dir, sha) = payload(&inputs, &logs);
    write_profiles(&dir, &A, &sha);
    write_profiles(&dir, &B, &sha);

    let (link_a, link_b) = Link::pair();
    let spec = |host: &'static Host, mac, link| Spec {
        name: host.name,
        mac,
        link,
        disk_mib: 512,
        memory_mib: 1536,
        payload: &dir,
    };
    let mut a = Guest::start(
        &spec(&A, "52:54:00:5e:00:01", link_a),
        &inputs,
        accel,
        &logs,
    );
    let mut b = Guest::start(
        &spec(&B, "52:54:00:5e:00:02", link_b),
        &inputs,
        accel,
        &logs,
    );
    a.wait_ready(BOOT);
    b.wait_ready(BOOT);
    both(&mut a, &mut b, prepare);

    // 1. The first apply, on both guests at once.
    both(&mut a, &mut b, |g| {
        let file = format!("{}-1.toml", g.name);
        g.succeed(&format!("sovereign validate /mnt/payload/{file}"));
        let (rc, out) = apply(g, &file, "");
        assert_eq!(rc, 0, "{}: the first apply failed:\n{out}", g.name);
    });

    // 2. Real OpenZFS: properties zfs-fuse cannot take, a zvol with its device node, the
    //    snapshot policy.
    for g in [&mut a, &mut b] {
        assert_eq!(
            g.succeed("zpool list -H -o health tank").trim(),
            "ONLINE",
            "{}",
            g.name
        );
        assert_eq!(zget(g, "compression", "tank/models"), "lz4");
        assert_eq!(zget(g, "recordsize", "tank/models"), "1M");
        assert_eq!(zget(g, "recordsize", "tank/scratch"), "16K");
        assert_eq!(zget(g, "volsize", "tank/vol"), "64M");
        assert_eq!(g.succeed("findmnt -n -o FSTYPE /tank/models").trim(), "zfs");
        g.wait_until_succeeds("test -b /dev/zvol/tank/vol", Duration::from_secs(60));
    }
    let name = "hunt-a-1.toml";
    a.succeed(&format!("sovereign snapshot /mnt/payload/{name}"));
    let snaps = a.succeed("zfs list -H -t snapshot -o name -r tank/models");
    assert!(
        snaps.lines().any(|l| l.starts_with("tank/models@")),
        "the snapshot policy took no snapshot of tank/models:\n{snaps}"
    );

    // 3. The VXLAN segment carries a ping both ways.
    a.succeed("ip -d link show hunt | grep -q 'vxlan id 4242'");
    a.succeed("ping -c 3 -W 5 10.42.0.2");
    b.succeed("ping -c 3 -W 5 10.42.0.1");

    // 4. The inference unit: enabled, active, sandboxed, the key as a credential.
    for g in [&mut a, &mut b] {
        wait_for_daemon(g);
        assert_eq!(
            g.succeed("systemctl is-enabled sovereign-inference.service")
                .trim(),
            "enabled"
        );
        assert_eq!(
            g.unit_property("sovereign-inference.service", "DynamicUser"),
            "yes"
        );
        let pid = main_pid(g);
        let uid: u32 = g
            .succeed(&format!("stat -c %u /proc/{pid}"))
            .trim()
            .parse()
            .expect("a uid");
        assert!(
            (61184..=65519).contains(&uid),
            "{}: the daemon runs as uid {uid}, not a dynamic user",
            g.name
        );
        // The key reaches the daemon as a systemd credential: its unit says so, and the
        // daemon's environment names the folder systemd mounted it in.
        g.succeed(
            "systemctl cat sovereign-inference.service | grep -qx 'LoadCredential=api-key:/etc/sovereign/api-key'",
        );
        g.succeed(&format!(
            "dir=$(tr '\\0' '\\n' </proc/{pid}/environ | sed -n 's/^CREDENTIALS_DIRECTORY=//p')
             test -n \"$dir\" && test \"$(cat \"$dir/api-key\")\" = {KEY}"
        ));
        g.succeed(&format!(
            "! tr '\\0' ' ' </proc/{pid}/cmdline | grep -q {KEY}
             ! grep -rq {KEY} /etc/systemd/system/sovereign-inference.service /etc/sovereign/inference"
        ));
        answers_with_the_key_only(g);
    }

    // 5. A restart of the unit, then a kill -9 of its process (Restart=on-failure).
    let before = main_pid(&mut a);
    a.succeed("systemctl restart sovereign-inference.service");
    wait_for_daemon(&mut a);
    let restarted = main_pid(&mut a);
    assert_ne!(before, restarted, "the restart kept the same process");
    answers_with_the_key_only(&mut a);
    a.succeed(&format!("kill -9 {restarted}"));
    a.wait_until_succeeds(
        &format!(
            "pid=$(systemctl show -p MainPID --value sovereign-inference.service); \
             test \"$pid\" != 0 && test \"$pid\" != {restarted}"
        ),
        Duration::from_secs(120),
    );
    wait_for_daemon(&mut a);
    assert_ne!(
        a.unit_property("sovereign-inference.service", "NRestarts"),
        "0",
        "systemd did not count the restart after kill -9"
    );
    answers_with_the_key_only(&mut a);

    // 6. A second apply changes nothing.
    both(&mut a, &mut b, |g| {
        let file = format!("{}-1.toml", g.name);
        let (rc, out) = g.run(
            &format!("sovereign --color never plan --detailed-exitcode /mnt/payload/{file}"),
            Duration::from_secs(600),
        );
        assert_eq!(
            rc, 0,
            "{}: the plan after apply is not empty:\n{out}",
            g.name
        );
        let (rc, out) = apply(g, &file, "");
        assert_eq!(rc, 0, "{}: {out}", g.name);
        assert!(out.contains("No changes"), "{}: {out}", g.name);
        // Nothing is held back either: the pool's devices match as OpenZFS lists them.
        assert!(!out.contains("Kept"), "{}: {out}", g.name);
    });
    assert_eq!(
        generations(&mut a).len(),
        1,
        "a no-op apply recorded a generation"
    );

    // 7. A changed property takes the pre-apply snapshot; a dropped dataset is kept until
    //    --allow-destroy; rollback returns to generation 1.
    let (rc, out) = apply(&mut a, "hunt-a-2.toml", "");
    assert_eq!(rc, 0, "{out}");
    assert_eq!(zget(&mut a, "recordsize", "tank/models"), "256K");
    a.succeed("zfs list -H -t snapshot tank/models@sovereign-pre-2");
    a.succeed("zfs list -H tank/scratch");
    let (rc, out) = a.run(
        "sovereign --color never rollback --yes",
        Duration::from_secs(900),
    );
    assert_eq!(rc, 0, "rollback: {out}");
    assert_eq!(zget(&mut a, "recordsize", "tank/models"), "1M");
    let (rc, out) = apply(&mut a, "hunt-a-2.toml", "--allow-destroy");
    assert_eq!(rc, 0, "{out}");
    a.fail("zfs list -H tank/scratch");
    assert_eq!(zget(&mut a, "recordsize", "tank/models"), "256K");
    let (rc, out) = apply(&mut b, "hunt-b-2.toml", "--allow-destroy");
    assert_eq!(rc, 0, "{out}");

    // 8. A reboot brings the pool, the segment and the service back as declared.
    both(&mut a, &mut b, |g| g.reboot(BOOT));
    for g in [&mut a, &mut b] {
        assert_eq!(g.succeed("zpool list -H -o health tank").trim(), "ONLINE");
        assert_eq!(zget(g, "recordsize", "tank/models"), "256K");
        assert_eq!(zget(g, "mounted", "tank/models"), "yes");
        wait_for_daemon(g);
        answers_with_the_key_only(g);
    }
    for g in [&mut a, &mut b] {
        // The segment's links are made again at boot by the unit apply enabled.
        g.wait_until_succeeds(
            "test \"$(systemctl show -p Result --value sovereign-activate.service)\" = success \
             && test \"$(systemctl show -p ExecMainStatus --value sovereign-activate.service)\" = 0 \
             && test \"$(systemctl show -p ExecMainStartTimestampMonotonic --value sovereign-activate.service)\" != 0",
            Duration::from_secs(180),
        );
        g.succeed("ip -d link show hunt | grep -q 'vxlan id 4242'");
    }
    a.wait_until_succeeds("ping -c 1 -W 5 10.42.0.2", Duration::from_secs(60));
    b.succeed("ping -c 3 -W 5 10.42.0.1");
    both(&mut a, &mut b, |g| {
        let file = format!("{}-2.toml", g.name);
        let (rc, out) = g.run(
            &format!("sovereign --color never plan --detailed-exitcode /mnt/payload/{file}"),
            Duration::from_secs(600),
        );
        assert_eq!(
            rc, 0,
            "{}: after the reboot the plan is not empty:\n{out}",
            g.name
        );
        assert!(!out.contains("Kept"), "{}: {out}", g.name);
    });

    // 9. An apply whose health check fails is rolled back on real systemd: the daemon may
    //    not bind a port below 1024 as a dynamic user.
    let (rc, out) = apply(&mut a, "hunt-a-broken.toml", "");
    assert_eq!(
        rc, 3,
        "the broken apply should exit 3 (rolled back):\n{out}"
    );
    a.succeed(
        "grep -q -- '--listen 127.0.0.1:8080' /etc/systemd/system/sovereign-inference.service",
    );
    wait_for_daemon(&mut a);
    answers_with_the_key_only(&mut a);
    let last = generations(&mut a).last().cloned().expect("a generation");
    assert_eq!(last["outcome"], "rolled_back", "{last}");

    logs.passed();
}

#[test]
#[ignore = "boots a Debian guest under qemu: run `cargo xtask vm-test --smoke`"]
fn smoke_one_guest_applies_a_pool_and_the_inference_unit() {
    let inputs = Inputs::from_env();
    let logs = Logs::new(&inputs, "smoke");
    let (accel, why) = Accel::probe(&inputs);
    eprintln!("vm-test: the guest runs under {accel:?} (KVM probe: {why})");
    let (dir, sha) = payload(&inputs, &logs);
    write_profiles(&dir, &A, &sha);
    let mut a = Guest::start(
        &Spec {
            name: A.name,
            mac: "52:54:00:5e:00:01",
            link: Link::pair().0,
            disk_mib: 512,
            memory_mib: 1536,
            payload: &dir,
        },
        &inputs,
        accel,
        &logs,
    );
    a.wait_ready(BOOT);
    prepare(&mut a);
    let (rc, out) = apply(&mut a, "hunt-a-1.toml", "");
    assert_eq!(rc, 0, "{out}");
    assert_eq!(zget(&mut a, "compression", "tank/models"), "lz4");
    assert_eq!(zget(&mut a, "recordsize", "tank/models"), "1M");
    wait_for_daemon(&mut a);
    answers_with_the_key_only(&mut a);
    logs.passed();
}
