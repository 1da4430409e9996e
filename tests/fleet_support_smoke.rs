//! Self-test of the fleet harness (tests/fleet_support): hosts answer the system ssh client
//! as root on their own addresses, a stopped host refuses within the connect timeout, two
//! fleets at once keep apart, and a dropped fleet (panicking test or not) leaves no
//! namespace, link or process behind.

#![allow(clippy::disallowed_methods)] // runs ssh and reads the machine, as a user would

mod fleet_support;

use fleet_support::{CONNECT_TIMEOUT_S, Fleet};

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what}: {}\nstdout: {}\nstderr: {}",
        out.status,
        stdout(out),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a fleet made, to check once it is gone.
struct Traces {
    namespaces: Vec<String>,
    links: Vec<String>,
    pids: Vec<u32>,
    dir: PathBuf,
}

fn traces(fleet: &Fleet) -> Traces {
    Traces {
        namespaces: fleet.hosts.iter().map(|h| h.namespace.clone()).collect(),
        links: fleet.hosts.iter().map(|h| h.root_link.clone()).collect(),
        pids: fleet.hosts.iter().flat_map(|h| h.processes()).collect(),
        dir: fleet.dir().to_path_buf(),
    }
}

fn assert_gone(t: &Traces) {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let namespaces = stdout(&out);
    for ns in &t.namespaces {
        assert!(
            !namespaces
                .lines()
                .any(|l| l.split_whitespace().next() == Some(ns)),
            "namespace {ns} is left: {namespaces}"
        );
    }
    for link in &t.links {
        assert!(
            !Path::new("/sys/class/net").join(link).exists(),
            "link {link} is left"
        );
    }
    // Gone, not a zombie: /proc/PID disappears only once the process is reaped.
    for pid in &t.pids {
        let proc = PathBuf::from(format!("/proc/{pid}"));
        assert!(
            !proc.exists(),
            "process {pid} is left: {:?}",
            std::fs::read_to_string(proc.join("stat"))
        );
    }
    // Nothing the fleet started, under another pid: no command line names its folder.
    let dir = t.dir.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            assert!(
                !cmdline.contains(&dir),
                "a process still runs from the fleet's folder: {} {cmdline}",
                entry.file_name().to_string_lossy()
            );
        }
    }
    assert!(!t.dir.exists(), "{} is left", t.dir.display());
}

/// root's ~/.ssh as it is: the harness must leave it untouched (even uncreated).
fn root_ssh_folder() -> Option<Vec<(String, std::time::SystemTime)>> {
    let entries = std::fs::read_dir("/root/.ssh").ok()?;
    let mut list: Vec<_> = entries
        .flatten()
        .map(|e| {
            let modified = e.metadata().and_then(|m| m.modified()).unwrap();
            (e.file_name().to_string_lossy().into_owned(), modified)
        })
        .collect();
    list.sort();
    Some(list)
}

#[test]
fn three_hosts_answer_over_ssh_and_leave_nothing_behind() {
    let home_ssh = root_ssh_folder();
    let started = Instant::now();
    let fleet = Fleet::new(3);
    eprintln!("Fleet::new(3): {:?}", started.elapsed());

    for (i, host) in fleet.hosts.iter().enumerate() {
        let started = Instant::now();
        let out = fleet.ssh(i, "echo hello-$(hostname)");
        eprintln!("ssh {}: {:?}", host.name, started.elapsed());
        assert_ok(&host.name, &out);
        let greeting = stdout(&out);
        assert!(
            greeting.starts_with("hello-") && greeting.trim().len() > "hello-".len(),
            "{greeting:?}"
        );

        // The session runs as root inside the host's namespace: its address, and no other.
        let out = fleet.ssh(i, "ip -4 -br addr; id -un");
        assert_ok(&host.name, &out);
        let seen = stdout(&out);
        assert!(seen.contains(&format!("{}/30", host.address)), "{seen}");
        for other in fleet.hosts.iter().filter(|h| h.name != host.name) {
            assert!(
                !seen.contains(&other.address),
                "{} sees {}",
                host.name,
                seen
            );
        }
        assert_eq!(seen.lines().last(), Some("root"), "{seen}");

        // The harness's direct view of the host agrees.
        let direct = host.exec(&["ip", "-4", "-br", "addr"]);
        assert_ok("exec", &direct);
        assert!(stdout(&direct).contains(&host.address));
        assert!(host.sshd_log().contains("Accepted publickey for root"));
    }
    let known = std::fs::read_to_string(fleet.known_hosts()).unwrap();
    assert_eq!(known.lines().count(), 3, "{known}");
    assert!(known.contains(&fleet.hosts[0].address), "hashed? {known}");

    // A stopped host refuses, within the connect timeout; the others still answer.
    let stopped_pid = fleet.hosts[1].sshd_pid().expect("sshd runs");
    let pid_file = fleet.dir().join("host1/sshd.pid");
    let recorded = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(recorded.trim(), stopped_pid.to_string());
    fleet.hosts[1].stop_sshd();
    assert_eq!(fleet.hosts[1].sshd_pid(), None);
    assert!(!pid_file.exists(), "sshd removes its pid file on SIGTERM");
    assert!(!Path::new(&format!("/proc/{stopped_pid}")).exists());
    let started = Instant::now();
    let out = fleet.ssh(1, "true");
    let took = started.elapsed();
    eprintln!("ssh to the stopped host failed in {took:?}");
    assert_eq!(out.status.code(), Some(255), "{}", stdout(&out));
    assert!(
        took < Duration::from_secs(CONNECT_TIMEOUT_S + 1),
        "{took:?}"
    );
    for i in [0, 2] {
        assert_ok("a host beside the stopped one", &fleet.ssh(i, "true"));
    }

    // Back up with the same host key: known_hosts still matches.
    let started = Instant::now();
    fleet.hosts[1].start_sshd();
    eprintln!("start_sshd: {:?}", started.elapsed());
    assert_ok("the restarted host", &fleet.ssh(1, "true"));

    // Sessions end shortly after their clients: then only the three sshd remain.
    let deadline = Instant::now() + Duration::from_secs(5);
    let sshd: Vec<u32> = fleet.hosts.iter().filter_map(|h| h.sshd_pid()).collect();
    while fleet.hosts.iter().flat_map(|h| h.processes()).count() > 3 {
        assert!(Instant::now() < deadline, "sessions linger");
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = traces(&fleet);
    assert_eq!(t.pids, sshd, "one sshd per host, nothing else");
    let started = Instant::now();
    drop(fleet);
    eprintln!("drop(Fleet of 3): {:?}", started.elapsed());
    assert_gone(&t);
    assert_eq!(root_ssh_folder(), home_ssh, "~/.ssh changed");
}

#[test]
fn two_fleets_at_once_keep_apart() {
    let a = Fleet::new(1);
    let b = Fleet::new(1);
    assert_ne!(a.hosts[0].address, b.hosts[0].address);
    assert_ne!(a.hosts[0].namespace, b.hosts[0].namespace);
    for fleet in [&a, &b] {
        let out = fleet.ssh(0, "ip -4 -br addr");
        assert_ok("ssh", &out);
        assert!(stdout(&out).contains(&fleet.hosts[0].address));
    }
    let (ta, tb) = (traces(&a), traces(&b));
    drop(a);
    // b is untouched by a's going.
    assert_ok("the other fleet", &b.ssh(0, "true"));
    drop(b);
    assert_gone(&ta);
    assert_gone(&tb);
}

#[test]
fn a_panicking_test_with_a_live_session_leaves_nothing_behind() {
    let mut session = None;
    let mut seen = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let fleet = Fleet::new(1);
        // A session in flight (sshd's session processes and a remote command) when the
        // test fails.
        let mut ssh = Command::new("ssh");
        ssh.args(fleet.ssh_options())
            .arg(format!("root@{}", fleet.hosts[0].address))
            .arg("sleep 300")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        session = Some(ssh.spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(10);
        let running = |name: &str| {
            fleet.hosts[0].processes().iter().any(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim() == name)
            })
        };
        while !running("sleep") {
            assert!(
                Instant::now() < deadline,
                "the remote command did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let t = traces(&fleet);
        eprintln!("processes in the namespace before the panic: {:?}", t.pids);
        seen = Some(t);
        panic!("a deliberate failure, to test the fleet's cleanup");
    }));
    assert!(result.is_err());
    let t = seen.expect("the fleet was built");
    assert_gone(&t);
    // The client sees its connection end.
    let mut session = session.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while session.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "ssh still runs");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_daemon_started_over_ssh_goes_with_its_host() {
    let fleet = Fleet::new(1);
    let host = &fleet.hosts[0];
    let out = fleet.ssh(0, "setsid sleep 300 </dev/null >/dev/null 2>&1 &");
    assert_ok("starting a daemon", &out);
    // Its session is over: the orphan belongs to sshd (the subreaper), not to PID 1.
    let sshd = host.sshd_pid().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let daemon = loop {
        let found = host.processes().into_iter().find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "sleep")
        });
        let session_over = host.processes().len() == 2;
        if let (Some(pid), true) = (found, session_over) {
            break pid;
        }
        assert!(Instant::now() < deadline, "{:?}", host.processes());
        std::thread::sleep(Duration::from_millis(20));
    };
    let stat = std::fs::read_to_string(format!("/proc/{daemon}/stat")).unwrap();
    let parent = stat[stat.rfind(')').unwrap() + 2..]
        .split(' ')
        .nth(1)
        .unwrap();
    assert_eq!(parent, sshd.to_string(), "{stat}");

    let started = Instant::now();
    host.stop_sshd();
    let took = started.elapsed();
    eprintln!("stop_sshd with a daemon running: {took:?}");
    assert!(!Path::new(&format!("/proc/{daemon}")).exists());
    assert!(!Path::new(&format!("/proc/{sshd}")).exists());
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(host.processes().is_empty());
}
