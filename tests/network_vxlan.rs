//! The network domain on real kernel networking: network namespaces joined by veth pairs
//! are hosts, each applies its own profile with the `sovereign` binary run inside its
//! namespace (`ip netns exec`; the apply itself speaks netlink), and pings cross the
//! VXLAN overlay. `ip` and `bridge` here only build the test's world and read it back.
//!
//! The Tailscale underlay runs against the stand-in `tailscale` on PATH (no tailscaled can
//! be installed on these machines; see `tailscale_stand_in`), running, with this
//! namespace's veth address as its "Tailscale IP".

#![allow(clippy::disallowed_methods)] // builds namespaces and runs the binary, as a user would

mod tailscale_stand_in;

use tailscale_stand_in::StandIn;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn run(argv: &[&str]) -> Output {
    Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
}

fn must(argv: &[&str]) -> String {
    let out = run(argv);
    assert!(
        out.status.success(),
        "{argv:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A host: a network namespace with a state folder of its own. Dropping it deletes the
/// namespace (and every link in it), whatever the test's outcome.
struct Host {
    ns: String,
    dir: tempfile::TempDir,
}

impl Host {
    fn new(tag: &str) -> Host {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let ns = format!("sv{}-{tag}{n}", std::process::id());
        must(&["ip", "netns", "add", &ns]);
        let host = Host {
            ns,
            dir: tempfile::tempdir().unwrap(),
        };
        host.ip(&["link", "set", "lo", "up"]);
        host
    }

    /// Run `argv` inside the namespace.
    fn exec(&self, argv: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.ns];
        full.extend_from_slice(argv);
        run(&full)
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut argv = vec!["ip"];
        argv.extend_from_slice(args);
        let out = self.exec(&argv);
        assert!(
            out.status.success(),
            "ip {args:?} in {}: {}",
            self.ns,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn has_link(&self, name: &str) -> bool {
        self.exec(&["ip", "link", "show", "dev", name])
            .status
            .success()
    }

    /// The profile file `name` with `text`.
    fn profile(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Run the sovereign binary in the namespace, with `--root` this host's folder and
    /// `path_prefix` put first on PATH (the Tailscale stand-in).
    fn sovereign_with(&self, stand_in: Option<&StandIn>, args: &[&str]) -> Run {
        let env: Vec<String> = match stand_in {
            Some(s) => s
                .env()
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
            None => vec![format!(
                "PATH={}",
                std::env::var("PATH").unwrap_or_default()
            )],
        };
        let root = self.dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let mut argv = vec!["env"];
        argv.extend(env.iter().map(String::as_str));
        argv.extend([
            env!("CARGO_BIN_EXE_sovereign"),
            "--root",
            root.to_str().unwrap(),
            "--color",
            "never",
        ]);
        argv.extend_from_slice(args);
        let out = self.exec(&argv);
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn sovereign(&self, args: &[&str]) -> Run {
        self.sovereign_with(None, args)
    }

    fn apply(&self, profile: &Path) -> Run {
        let r = self.sovereign(&["apply", "--yes", profile.to_str().unwrap()]);
        assert_eq!(r.code, Some(0), "apply in {}: {}", self.ns, r.stderr);
        r
    }

    /// Plan again: nothing may be pending.
    fn assert_converged(&self, profile: &Path) {
        let r = self.sovereign(&["plan", "--detailed-exitcode", profile.to_str().unwrap()]);
        assert_eq!(
            r.code,
            Some(0),
            "a plan after apply has changes:\n{}",
            r.stderr
        );
    }

    fn pings(&self, address: &str) -> bool {
        self.exec(&["ping", "-c", "1", "-W", "2", address])
            .status
            .success()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.ns]);
    }
}

#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Join `a` and `b` with a veth pair named `uplink` on both sides, addressed `a_ip` and
/// `b_ip` (/24).
fn wire(a: &Host, a_ip: &str, b: &Host, b_ip: &str) {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let (va, vb) = (format!("sva{n}"), format!("svb{n}"));
    must(&[
        "ip", "link", "add", &va, "netns", &a.ns, "type", "veth", "peer", "name", &vb, "netns",
        &b.ns,
    ]);
    for (host, dev, ip) in [(a, &va, a_ip), (b, &vb, b_ip)] {
        host.ip(&["link", "set", dev, "name", &format!("up{n}")]);
        host.ip(&["addr", "add", &format!("{ip}/24"), "dev", &format!("up{n}")]);
        host.ip(&["link", "set", &format!("up{n}"), "up"]);
    }
}

/// The name of a host's (first) uplink.
fn uplink(host: &Host) -> String {
    let out = host.ip(&["-o", "link", "show", "type", "veth"]);
    out.split(':')
        .nth(1)
        .expect("a veth link")
        .trim()
        .split('@')
        .next()
        .unwrap()
        .to_string()
}

fn segment(
    name: &str,
    vni: u32,
    underlay: &str,
    local: &str,
    peers: &[&str],
    bridge: Option<&str>,
    address: &str,
) -> String {
    let peers: Vec<String> = peers.iter().map(|p| format!("{p:?}")).collect();
    let bridge = bridge
        .map(|b| format!("bridge = {b:?}\n"))
        .unwrap_or_default();
    format!(
        "[network.vxlan.{name}]\nvni = {vni}\nunderlay = {underlay:?}\nlocal = {local:?}\npeers = [{}]\n{bridge}addresses = [{address:?}]\n\n",
        peers.join(", ")
    )
}

#[test]
fn two_hosts_ping_across_a_segment_and_only_across_their_own() {
    let a = Host::new("a");
    let b = Host::new("b");
    wire(&a, "192.0.2.1", &b, "192.0.2.2");
    let (ua, ub) = (uplink(&a), uplink(&b));

    // hunt joins both hosts; red (A) and blue (B) share a subnet but not a VNI.
    let a_text = segment(
        "hunt",
        4242,
        &ua,
        "192.0.2.1",
        &["192.0.2.2"],
        Some("br-hunt"),
        "10.42.0.1/24",
    ) + &segment(
        "red",
        100,
        &ua,
        "192.0.2.1",
        &["192.0.2.2"],
        None,
        "10.9.0.1/24",
    );
    let b_text = segment(
        "hunt",
        4242,
        &ub,
        "192.0.2.2",
        &["192.0.2.1"],
        Some("br-hunt"),
        "10.42.0.2/24",
    ) + &segment(
        "blue",
        200,
        &ub,
        "192.0.2.2",
        &["192.0.2.1"],
        None,
        "10.9.0.2/24",
    );
    let pa = a.profile("a.toml", &a_text);
    let pb = b.profile("b.toml", &b_text);

    let plan = a.sovereign(&["plan", pa.to_str().unwrap()]);
    assert_eq!(plan.code, Some(0), "{}", plan.stderr);
    for resource in [
        "network.vxlan:hunt",
        "network.bridge:br-hunt",
        "network.port:br-hunt/hunt",
        "network.address:br-hunt/10.42.0.1/24",
        "network.fdb:hunt/192.0.2.2",
        "network.vxlan:red",
    ] {
        assert!(
            plan.stderr.contains(resource),
            "{resource} in:\n{}",
            plan.stderr
        );
    }
    assert!(
        plan.stderr.contains("4789"),
        "the default port is shown:\n{}",
        plan.stderr
    );
    assert!(
        plan.stderr.contains("1450"),
        "the MTU derives from the underlay's 1500:\n{}",
        plan.stderr
    );
    a.apply(&pa);
    b.apply(&pb);
    a.assert_converged(&pa);
    b.assert_converged(&pb);

    // The kernel has what the profile says.
    let details = a.ip(&["-d", "link", "show", "dev", "hunt"]);
    assert!(details.contains("vxlan id 4242"), "{details}");
    assert!(details.contains("dstport 4789"), "{details}");
    assert!(details.contains("nolearning"), "{details}");
    assert!(details.contains("master br-hunt"), "{details}");
    assert!(
        details.contains("alias sovereign:network.vxlan.hunt"),
        "{details}"
    );
    assert!(details.contains("mtu 1450"), "{details}");

    assert!(a.pings("10.42.0.2"), "A reaches B over hunt");
    assert!(b.pings("10.42.0.1"), "B reaches A over hunt");
    assert!(
        !a.pings("10.9.0.2"),
        "red (VNI 100) must not reach blue (VNI 200)"
    );
    assert!(
        !b.pings("10.9.0.1"),
        "blue (VNI 200) must not reach red (VNI 100)"
    );

    // A link sovereign did not make is left alone, whatever happens to the segments, and
    // the plan lists it as such.
    a.ip(&["link", "add", "mine", "type", "bridge"]);
    let listed = a.sovereign(&["plan", pa.to_str().unwrap()]);
    assert!(
        listed.stderr.contains("did not make are left alone") && listed.stderr.contains("mine"),
        "{}",
        listed.stderr
    );

    // A drops B as a peer of hunt: only that forwarding entry goes.
    let a_no_peer = a.profile(
        "a2.toml",
        &(segment(
            "hunt",
            4242,
            &ua,
            "192.0.2.1",
            &[],
            Some("br-hunt"),
            "10.42.0.1/24",
        ) + &segment(
            "red",
            100,
            &ua,
            "192.0.2.1",
            &["192.0.2.2"],
            None,
            "10.9.0.1/24",
        )),
    );
    let plan = a.sovereign(&["plan", "--json", a_no_peer.to_str().unwrap()]);
    let json: serde_json::Value = serde_json::from_str(&plan.stdout).expect(&plan.stderr);
    // The boot unit's systemd step is listed as not applicable here (PID 1 is not
    // systemd); it is not pending.
    let pending: Vec<(String, String)> = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c.get("not_applicable").is_none())
        .map(|c| {
            (
                c["address"].as_str().unwrap().to_string(),
                c["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        pending,
        [(
            "network.fdb:hunt/192.0.2.2".to_string(),
            "delete".to_string()
        )]
    );
    a.apply(&a_no_peer);
    a.assert_converged(&a_no_peer);
    assert!(
        !a.pings("10.42.0.2"),
        "without the peer's entry A cannot reach B"
    );

    // A drops the segment red: its device goes, nothing else.
    let a_no_red = a.profile(
        "a3.toml",
        &segment(
            "hunt",
            4242,
            &ua,
            "192.0.2.1",
            &["192.0.2.2"],
            Some("br-hunt"),
            "10.42.0.1/24",
        ),
    );
    a.apply(&a_no_red);
    a.assert_converged(&a_no_red);
    assert!(!a.has_link("red"));
    assert!(a.has_link("hunt") && a.has_link("br-hunt") && a.has_link("mine") && a.has_link(&ua));
    assert!(a.pings("10.42.0.2"), "the peer is back: A reaches B again");

    // An empty profile deletes every link sovereign made, and only those.
    let empty = a.profile("empty.toml", "");
    a.apply(&empty);
    assert!(!a.has_link("hunt") && !a.has_link("br-hunt"));
    assert!(a.has_link("mine") && a.has_link(&ua));
    a.assert_converged(&empty);
}

#[test]
fn head_end_replication_reaches_two_peers_through_two_zero_entries() {
    let a = Host::new("ha");
    let b = Host::new("hb");
    let c = Host::new("hc");
    // A is wired to B and C through two uplinks on two subnets.
    wire(&a, "198.51.100.1", &b, "198.51.100.2");
    wire(&a, "203.0.113.1", &c, "203.0.113.3");
    let ub = uplink(&b);
    let uc = uplink(&c);
    // A names no underlay device: its local address picks one, and the kernel routes.
    let pa = a.profile(
        "a.toml",
        "[network.vxlan.hunt]\nvni = 77\nlocal = \"198.51.100.1\"\npeers = [\"198.51.100.2\", \"203.0.113.3\"]\naddresses = [\"10.77.0.1/24\"]\n",
    );
    let pb = b.profile(
        "b.toml",
        &segment(
            "hunt",
            77,
            &ub,
            "198.51.100.2",
            &["198.51.100.1"],
            None,
            "10.77.0.2/24",
        ),
    );
    let pc = c.profile(
        "c.toml",
        &segment(
            "hunt",
            77,
            &uc,
            "203.0.113.3",
            &["198.51.100.1"],
            None,
            "10.77.0.3/24",
        ),
    );
    // C reaches A's local address through A's other uplink.
    c.ip(&["route", "add", "198.51.100.0/24", "via", "203.0.113.1"]);
    b.ip(&["route", "add", "203.0.113.0/24", "via", "198.51.100.1"]);
    must(&[
        "ip",
        "netns",
        "exec",
        &a.ns,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ]);
    a.apply(&pa);
    b.apply(&pb);
    c.apply(&pc);
    a.assert_converged(&pa);

    let fdb = String::from_utf8_lossy(&a.exec(&["bridge", "fdb", "show", "dev", "hunt"]).stdout)
        .into_owned();
    let zero: Vec<&str> = fdb
        .lines()
        .filter(|l| l.starts_with("00:00:00:00:00:00"))
        .collect();
    assert_eq!(zero.len(), 2, "two all-zero entries on one device:\n{fdb}");
    assert!(
        fdb.contains("dst 198.51.100.2") && fdb.contains("dst 203.0.113.3"),
        "{fdb}"
    );
    assert!(a.pings("10.77.0.2"), "A reaches B");
    assert!(a.pings("10.77.0.3"), "A reaches C");
}

/// Links live only in the running kernel: a reboot drops them. Apply installs the boot
/// unit that runs `sovereign activate`; here the links are deleted by hand in their place
/// and `activate` makes them again from the current generation, then has nothing to do.
#[test]
fn activate_makes_a_segment_again_once_its_links_are_gone_as_after_a_reboot() {
    let a = Host::new("ra");
    let b = Host::new("rb");
    wire(&a, "192.0.2.1", &b, "192.0.2.2");
    let (ua, ub) = (uplink(&a), uplink(&b));
    let pa = a.profile(
        "a.toml",
        &segment(
            "hunt",
            4242,
            &ua,
            "192.0.2.1",
            &["192.0.2.2"],
            Some("br-hunt"),
            "10.42.0.1/24",
        ),
    );
    let pb = b.profile(
        "b.toml",
        &segment(
            "hunt",
            4242,
            &ub,
            "192.0.2.2",
            &["192.0.2.1"],
            None,
            "10.42.0.2/24",
        ),
    );
    a.apply(&pa);
    b.apply(&pb);
    assert!(a.pings("10.42.0.2"), "A reaches B after apply");

    // The boot unit: written and enabled by apply, never started by it.
    let unit = a
        .dir
        .path()
        .join("root/etc/systemd/system/sovereign-activate.service");
    let text = std::fs::read_to_string(&unit).expect("apply wrote the boot unit");
    let exec = text.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    assert!(exec.ends_with(" activate"), "{exec}");
    assert!(text.contains("After=network-online.target"), "{text}");

    // What a reboot leaves: no bridge, no VXLAN device.
    a.ip(&["link", "del", "br-hunt"]);
    a.ip(&["link", "del", "hunt"]);
    assert!(!a.pings("10.42.0.2"));
    let stale = a.sovereign(&["plan", "--detailed-exitcode", pa.to_str().unwrap()]);
    assert_eq!(stale.code, Some(2), "{}", stale.stderr);

    let r = a.sovereign(&["activate"]);
    assert_eq!(r.code, Some(0), "activate: {}", r.stderr);
    assert!(r.stderr.contains("Activating generation 1"), "{}", r.stderr);
    assert!(a.has_link("hunt") && a.has_link("br-hunt"));
    assert!(a.pings("10.42.0.2"), "A reaches B after activate");
    a.assert_converged(&pa);

    // Nothing left to do: nothing changes and no generation is recorded.
    let again = a.sovereign(&["activate"]);
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert!(
        again.stderr.contains("Nothing to apply"),
        "{}",
        again.stderr
    );
    let gens = a.sovereign(&["generations", "--json"]);
    let count = serde_json::from_str::<serde_json::Value>(&gens.stdout)
        .ok()
        .and_then(|v| v.as_array().map(Vec::len));
    assert_eq!(
        count,
        Some(2),
        "apply and the one activate that changed something:\n{}",
        gens.stdout
    );

    // Without segments the unit goes with them.
    let none = a.profile("none.toml", "[host]\nname = \"ra\"\n");
    a.apply(&none);
    assert!(!unit.exists(), "the boot unit outlived the last segment");
}

#[test]
fn mistakes_machine_facts_reveal_are_plan_errors_with_their_place_and_nothing_is_applied() {
    let a = Host::new("ma");
    let b = Host::new("mb");
    wire(&a, "192.0.2.1", &b, "192.0.2.2");
    let ua = uplink(&a);

    let cases = [
        (
            "[network.vxlan.hunt]\nvni = 1\nunderlay = \"eth9\"\npeers = [\"192.0.2.2\"]\n"
                .to_string(),
            "no network device \"eth9\"",
            "underlay",
        ),
        (
            format!("[network.vxlan.hunt]\nvni = 1\nunderlay = {ua:?}\nmtu = 1500\n"),
            "MTU 1500 does not fit",
            "mtu",
        ),
        (
            "[network.vxlan.hunt]\nvni = 1\nlocal = \"192.0.2.9\"\n".to_string(),
            "192.0.2.9 is not an address of this machine",
            "local",
        ),
    ];
    for (text, message, key) in cases {
        let p = a.profile("bad.toml", &text);
        let r = a.sovereign(&["apply", "--yes", p.to_str().unwrap()]);
        assert_ne!(r.code, Some(0), "{text}");
        assert!(r.stderr.contains(message), "{message} in:\n{}", r.stderr);
        let place = format!("{}:", p.display());
        assert!(
            r.stderr.contains(&place) && r.stderr.contains(&format!("network.vxlan.hunt.{key}")),
            "file:line and key in:\n{}",
            r.stderr
        );
        assert!(!a.has_link("hunt"), "nothing applied for {text}");
    }

    // A link of the segment's name that sovereign did not make is an error, never touched.
    a.ip(&["link", "add", "hunt", "type", "bridge"]);
    let p = a.profile(
        "taken.toml",
        &format!("[network.vxlan.hunt]\nvni = 1\nunderlay = {ua:?}\n"),
    );
    let r = a.sovereign(&["apply", "--yes", p.to_str().unwrap()]);
    assert_ne!(r.code, Some(0));
    assert!(
        r.stderr.contains("sovereign did not create"),
        "{}",
        r.stderr
    );
    assert!(
        a.ip(&["-d", "link", "show", "dev", "hunt"])
            .contains("bridge")
    );
}

#[test]
fn validate_refuses_bad_segments_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[network.vxlan.hunt]\nvni = 0\nlocal = \"192.0.2.1\"\n",
            2,
            "vni",
        ),
        (
            "[network.vxlan.hunt]\nvni = 16777216\nlocal = \"192.0.2.1\"\n",
            2,
            "vni",
        ),
        (
            "[network.vxlan.a]\nvni = 5\nlocal = \"192.0.2.1\"\n[network.vxlan.b]\nvni = 5\nlocal = \"192.0.2.1\"\n",
            5,
            "VNI 5 is also segment",
        ),
        (
            "[network.vxlan.hunt]\nvni = 5\nlocal = \"192.0.2.1\"\naddresses = [\"10.0.0.1/33\"]\n",
            4,
            "prefix length",
        ),
        (
            "[network.vxlan.hunt]\nvni = 5\nlocal = \"192.0.2.1\"\naddresses = [\"10.0.0.1\"]\n",
            4,
            "no prefix length",
        ),
        (
            "[network.vxlan.hunt]\nvni = 5\nlocal = \"192.0.2.1\"\nbridge = \"br-a-very-long-name\"\n",
            4,
            "19 bytes",
        ),
        (
            "[network.vxlan.a-very-long-segment]\nvni = 5\nlocal = \"192.0.2.1\"\n",
            1,
            "interface name",
        ),
        (
            "[network.vxlan.hunt]\nvni = 5\n",
            1,
            "neither `local` nor `underlay`",
        ),
        (
            "[network.vxlan.hunt]\nvni = 5\nunderlay = \"eth0\"\npeers = [\"forge-02\"]\n",
            4,
            "not an IPv4 address",
        ),
        (
            "[network.vxlan.hunt]\nvni = 5\nlocal = \"192.0.2.1\"\ngroup = \"239.1.1.1\"\n",
            4,
            "needs the `underlay` device",
        ),
    ];
    for (text, line, message) in cases {
        let path = dir.path().join("p.toml");
        std::fs::write(&path, text).unwrap();
        let out = run(&[
            env!("CARGO_BIN_EXE_sovereign"),
            "--color",
            "never",
            "validate",
            path.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text}\n{stderr}");
        assert!(stderr.contains(message), "{message} in:\n{stderr}");
        assert!(
            stderr.contains(&format!("{}:{line}:", path.display())),
            "line {line} in:\n{stderr}"
        );
    }
}

/// The stand-in `tailscale` (named as such), for a running node whose "Tailscale IP" is
/// `self_ip`, with the peers given (name, IPv4).
fn tailscale_stand_in(dir: &Path, self_ip: &str, peers: &[(&str, &str)]) -> StandIn {
    let peers: serde_json::Map<String, serde_json::Value> = peers
        .iter()
        .enumerate()
        .map(|(i, (name, ip))| {
            (
                format!("nodekey:{i}"),
                serde_json::json!({
                    "HostName": name,
                    "DNSName": format!("{name}.tailnet-stand-in.ts.net."),
                    "TailscaleIPs": [ip, format!("fd7a:115c:a1e0::{i}")],
                }),
            )
        })
        .collect();
    let mut prefs = tailscale_stand_in::logged_out_prefs();
    prefs["LoggedOut"] = false.into();
    prefs["WantRunning"] = true.into();
    StandIn::new(
        dir,
        serde_json::json!({"state": "Running", "prefs": prefs, "self_ips": [self_ip], "peers": peers}),
    )
}

#[test]
fn over_a_tailscale_stand_in_peers_are_named_by_host_name() {
    let a = Host::new("ta");
    let b = Host::new("tb");
    // The veth addresses play the nodes' Tailscale IPs.
    wire(&a, "100.64.0.1", &b, "100.64.0.2");
    let a_bin = tailscale_stand_in(a.dir.path(), "100.64.0.1", &[("forge-b", "100.64.0.2")]);
    let b_bin = tailscale_stand_in(b.dir.path(), "100.64.0.2", &[("forge-a", "100.64.0.1")]);
    let text = |peer: &str, addr: &str| {
        format!(
            "[network.vxlan.hunt]\nvni = 9\nunderlay = \"tailscale\"\npeers = [{peer:?}]\naddresses = [{addr:?}]\n"
        )
    };

    // A name the tailnet does not know is a plan error naming it; nothing is made.
    let unknown = a.profile("unknown.toml", &text("forge-z", "10.8.0.1/24"));
    let r = a.sovereign_with(Some(&a_bin), &["plan", unknown.to_str().unwrap()]);
    assert_ne!(r.code, Some(0));
    assert!(
        r.stderr.contains("\"forge-z\" is not in this tailnet"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("forge-b"),
        "the known peers are listed:\n{}",
        r.stderr
    );

    let pa = a.profile("a.toml", &text("forge-b", "10.8.0.1/24"));
    let pb = b.profile(
        "b.toml",
        &text("forge-a.tailnet-stand-in.ts.net", "10.8.0.2/24"),
    );
    let plan = a.sovereign_with(Some(&a_bin), &["plan", pa.to_str().unwrap()]);
    assert!(
        plan.stderr.contains("network.fdb:hunt/100.64.0.2"),
        "{}",
        plan.stderr
    );
    assert!(
        plan.stderr.contains("1230"),
        "MTU from Tailscale's 1280:\n{}",
        plan.stderr
    );
    for (host, bin, p) in [(&a, &a_bin, &pa), (&b, &b_bin, &pb)] {
        let r = host.sovereign_with(Some(bin), &["apply", "--yes", p.to_str().unwrap()]);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        let again = host.sovereign_with(
            Some(bin),
            &["plan", "--detailed-exitcode", p.to_str().unwrap()],
        );
        assert_eq!(again.code, Some(0), "{}", again.stderr);
    }
    assert!(
        a.ip(&["-d", "link", "show", "dev", "hunt"])
            .contains("local 100.64.0.1")
    );
    assert!(
        a.pings("10.8.0.2"),
        "A reaches B over the tailnet's addresses"
    );

    // detect reports the interfaces with their MTUs and the node's Tailscale.
    let detect = a.sovereign_with(Some(&a_bin), &["detect", "--json"]);
    let facts: serde_json::Value = serde_json::from_str(&detect.stdout).expect(&detect.stderr);
    let interfaces = facts["interfaces"].as_array().expect("interfaces");
    assert!(
        interfaces
            .iter()
            .any(|i| i["name"] == "hunt" && i["mtu"] == 1230),
        "{interfaces:?}"
    );
    assert_eq!(facts["tailscale"]["state"], "Running");
    assert_eq!(facts["tailscale"]["ipv4"], "100.64.0.1");
}
