//! The fleet over real OpenSSH servers in network namespaces: plan and apply three hosts,
//! each with its own profile and root; a second apply changes nothing; `--on @tag`
//! selects; an unreachable host is reported while the others apply; a slow host holds no
//! one else up; and a change that locks the controller out (a managed authorized_keys
//! without its key) is rolled back by the host itself at its deadline.
#![allow(clippy::disallowed_methods)] // runs the sovereign binary and reads what it wrote

mod fleet_support;

use std::process::{Command, Output};

use fleet_support::Fleet;

fn sovereign(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sovereign"))
        .args(["--color", "never"])
        .args(args)
        .env_remove("SOVEREIGN_ROOT")
        .output()
        .expect("run sovereign")
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A fleet file in the harness's folder: every host as root with the harness's key and
/// known_hosts, each with its own root (under the folder) and profile `profiles[i]`.
fn fleet_file(fleet: &Fleet, confirm: &str, hosts: &[(&str, &str)]) -> String {
    let dir = fleet.dir();
    let mut text = format!(
        "parallel = 3\nconfirm_timeout = \"{confirm}\"\nknown_hosts = \"{}\"\n\n[defaults]\nuser = \"root\"\nidentity_file = \"{}\"\n\n",
        fleet.known_hosts().display(),
        fleet.identity_file().display()
    );
    for (i, (profile, tags)) in hosts.iter().enumerate() {
        let h = &fleet.hosts[i];
        let p = dir.join(format!("profile{i}.toml"));
        std::fs::write(&p, profile).unwrap();
        text.push_str(&format!(
            "[hosts.{}]\naddress = \"{}\"\nroot = \"{}\"\nprofile = \"{}\"\ntags = [{tags}]\n\n",
            h.name,
            h.address,
            dir.join(format!("root{i}")).display(),
            p.display()
        ));
    }
    let path = dir.join("fleet.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn motd(fleet: &Fleet, i: usize) -> Option<String> {
    std::fs::read_to_string(fleet.dir().join(format!("root{i}/etc/motd"))).ok()
}

fn file_profile(text: &str) -> String {
    format!("[files.\"/etc/motd\"]\ncontent = \"{text}\\n\"\n")
}

fn results(out: &Output) -> Vec<serde_json::Value> {
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
        .unwrap_or_else(|e| panic!("--json is a list of hosts ({e}):\n{}", said(out)))
}

fn status_of<'a>(results: &'a [serde_json::Value], host: &str) -> &'a str {
    results
        .iter()
        .find(|r| r["host"] == host)
        .and_then(|r| r["status"].as_str())
        .unwrap_or_else(|| panic!("no {host} in {results:?}"))
}

#[test]
fn three_hosts_plan_apply_converge_and_tags_select() {
    let fleet = Fleet::new(3);
    let f = fleet_file(
        &fleet,
        "20s",
        &[
            (&file_profile("zero"), "\"gpu\""),
            (&file_profile("one"), "\"gpu\""),
            (&file_profile("two"), "\"forge\""),
        ],
    );
    let plan = sovereign(&["plan", "--fleet", &f, "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(2), "{}", said(&plan));
    let text = said(&plan);
    for h in ["host0", "host1", "host2"] {
        assert!(text.contains(&format!("{h}: planned: 1 to add")), "{text}");
    }
    assert!(
        text.contains("+ files.file:/etc/motd"),
        "each host's plan is shown: {text}"
    );
    assert!(motd(&fleet, 0).is_none(), "plan changes nothing");

    let apply = sovereign(&["apply", "--fleet", &f, "--json"]);
    assert_eq!(apply.status.code(), Some(0), "{}", said(&apply));
    let r = results(&apply);
    for h in ["host0", "host1", "host2"] {
        assert_eq!(status_of(&r, h), "ok", "{}", said(&apply));
    }
    assert_eq!(r[0]["changed"], 1);
    assert_eq!(motd(&fleet, 0).as_deref(), Some("zero\n"));
    assert_eq!(motd(&fleet, 1).as_deref(), Some("one\n"));
    assert_eq!(motd(&fleet, 2).as_deref(), Some("two\n"));

    // Confirmed: after the deadline the change is still there.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let again = sovereign(&["apply", "--fleet", &f, "--json"]);
    assert_eq!(again.status.code(), Some(0), "{}", said(&again));
    let r = results(&again);
    for host in &r {
        assert_eq!(
            host["changed"],
            0,
            "a second apply changes nothing: {}",
            said(&again)
        );
        assert_eq!(
            host["shipped_binary"], false,
            "the binary is not sent twice"
        );
    }
    let plan = sovereign(&["plan", "--fleet", &f, "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", said(&plan));

    let tagged = sovereign(&["plan", "--fleet", &f, "--on", "@gpu", "--json"]);
    assert_eq!(tagged.status.code(), Some(0), "{}", said(&tagged));
    let hosts: Vec<String> = results(&tagged)
        .iter()
        .map(|r| r["host"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(hosts, ["host0", "host1"]);
    // Every SSH master the runs opened is closed.
    let masters = Command::new("pgrep")
        .args(["-f", "/tmp/sovfl"])
        .output()
        .unwrap();
    assert!(
        masters.stdout.is_empty(),
        "masters left: {}",
        said(&masters)
    );
    let unknown = sovereign(&["plan", "--fleet", &f, "--on", "@nope"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        said(&unknown).contains("no host has that tag"),
        "{}",
        said(&unknown)
    );
}

#[test]
fn an_unreachable_host_is_reported_and_a_slow_one_holds_no_one_up() {
    let fleet = Fleet::new(3);
    // host0 is slow: a check that takes 6 s after its apply.
    let slow = format!(
        "{}\n[[checks]]\nname = \"slow\"\ncommand = [\"sleep\", \"6\"]\ntimeout = \"20s\"\n",
        file_profile("slow")
    );
    let f = fleet_file(
        &fleet,
        "20s",
        &[
            (&slow, ""),
            (&file_profile("one"), ""),
            (&file_profile("two"), ""),
        ],
    );
    fleet.hosts[2].stop_sshd();
    let apply = sovereign(&["apply", "--fleet", &f]);
    let text = said(&apply);
    assert_eq!(
        apply.status.code(),
        Some(1),
        "an unreachable host fails the run: {text}"
    );
    assert!(text.contains("host2: UNREACHABLE"), "{text}");
    assert!(
        text.contains("host2 : ok=0 changed=0 failed=0 unreachable=1 rolled_back=0"),
        "{text}"
    );
    assert!(text.contains("host1 : ok=1 changed=1"), "{text}");
    assert_eq!(motd(&fleet, 1).as_deref(), Some("one\n"));
    assert_eq!(motd(&fleet, 0).as_deref(), Some("slow\n"));
    // The fast host finished while the slow one was still in its check.
    let done = |h: &str| text.find(&format!("{h}: ok:")).unwrap_or(usize::MAX);
    assert!(
        done("host1") < done("host0"),
        "host1 waited for host0: {text}"
    );
}

#[test]
fn a_change_that_locks_the_controller_out_is_rolled_back_by_the_host() {
    let fleet = Fleet::new(1);
    let dir = fleet.dir();
    // The host's authorized keys are a file its profile manages (its root is the
    // harness's folder): the first profile keeps the controller's key, the second
    // replaces it with another.
    let key = std::fs::read_to_string(dir.join("authorized_keys")).unwrap();
    let keep = format!(
        "[files.\"/authorized_keys\"]\ncontent = \"\"\"\n{}\"\"\"\nmode = \"0600\"\n",
        key
    );
    let lockout = "[files.\"/authorized_keys\"]\ncontent = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMo8BrC6Vq5Zr2qK4tqQ1yVx2cJmVgW9n3Yq8m2Yk1Vb someone-else\\n\"\nmode = \"0600\"\n";
    let write = |profile: &str| {
        let p = dir.join("profile0.toml");
        std::fs::write(&p, profile).unwrap();
        let text = format!(
            "confirm_timeout = \"4s\"\nknown_hosts = \"{}\"\n\n[hosts.host0]\naddress = \"{}\"\nuser = \"root\"\nidentity_file = \"{}\"\nroot = \"{}\"\nprofile = \"{}\"\n",
            fleet.known_hosts().display(),
            fleet.hosts[0].address,
            fleet.identity_file().display(),
            dir.display(),
            p.display()
        );
        let f = dir.join("fleet.toml");
        std::fs::write(&f, text).unwrap();
        f
    };
    let f = write(&keep);
    let first = sovereign(&["apply", "--fleet", f.to_str().unwrap()]);
    assert_eq!(first.status.code(), Some(0), "{}", said(&first));

    let f = write(lockout);
    let locked = sovereign(&["apply", "--fleet", f.to_str().unwrap()]);
    let text = said(&locked);
    assert_eq!(locked.status.code(), Some(1), "{text}");
    assert!(text.contains("not confirmed"), "{text}");
    assert!(
        text.contains("host0 : ok=0 changed=0 failed=0 unreachable=0 rolled_back=1"),
        "{text}"
    );
    // The key is back, so a new connection gets in again.
    assert_eq!(
        std::fs::read_to_string(dir.join("authorized_keys")).unwrap(),
        key
    );
    let out = fleet.ssh(0, "true");
    assert!(out.status.success(), "{}", said(&out));
    let generations = sovereign(&["--root", dir.to_str().unwrap(), "generations"]);
    assert!(
        said(&generations).contains("(rollback to 1)"),
        "{}",
        said(&generations)
    );
}

#[test]
fn max_fail_stops_starting_hosts_and_rollback_all_undoes_the_others() {
    let fleet = Fleet::new(3);
    let f = fleet_file(
        &fleet,
        "20s",
        &[
            (&file_profile("zero"), ""),
            (&file_profile("one"), ""),
            (&file_profile("two"), ""),
        ],
    );
    // One at a time, and the first host is down: once a third of the fleet has failed,
    // no other host is started.
    let serial = std::fs::read_to_string(&f)
        .unwrap()
        .replace("parallel = 3", "parallel = 1");
    std::fs::write(&f, serial).unwrap();
    fleet.hosts[0].stop_sshd();
    let out = sovereign(&["apply", "--fleet", &f, "--max-fail", "30", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let r = results(&out);
    assert_eq!(status_of(&r, "host0"), "unreachable");
    assert_eq!(status_of(&r, "host1"), "skipped");
    assert_eq!(status_of(&r, "host2"), "skipped");
    assert!(motd(&fleet, 1).is_none(), "a skipped host is not touched");

    // All at once with --rollback-all-on-failure: the two that applied are rolled back
    // because the third could not be reached.
    let out = sovereign(&[
        "apply",
        "--fleet",
        &f,
        "--rollback-all-on-failure",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let r = results(&out);
    assert_eq!(status_of(&r, "host0"), "unreachable");
    assert_eq!(status_of(&r, "host1"), "rolled_back", "{}", said(&out));
    assert_eq!(status_of(&r, "host2"), "rolled_back", "{}", said(&out));
    assert!(motd(&fleet, 1).is_none(), "host1's change was undone");
    assert!(motd(&fleet, 2).is_none(), "host2's change was undone");
}
