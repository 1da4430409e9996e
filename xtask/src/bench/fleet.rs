//! The fleet benchmark: a no-op `sovereign plan --fleet` of 3 and of 20 hosts, side by side
//! with one bare `ssh HOST true` per host (in sequence and all at once) and one local no-op
//! plan of the same profile. The hosts are one OpenSSH server in a network namespace of the
//! benchmark's own, listening on the namespace's addresses (one per host), reached over a
//! veth pair from the root namespace, as root with a generated key (the world of
//! tests/fleet_support, with one sshd in place of one per host). The fleet is applied once first, so every plan is a
//! no-op and the binary is already on the host; a binary this run sent is removed at the end.
//!
//! `cargo xtask bench fleet [--debug] [--no-bashrc] [--sizes 3,20] [--parallel 10,20]
//! [--runs 7]` (root, with openssh-server and openssh-client). Prints Markdown tables for
//! BENCHMARKS.md: the fleet against the bare round trips, and one host's chain step by step.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{median, ms};

/// The OpenSSH server; it re-executes itself for every connection, so it is started by
/// absolute path.
const SSHD: &str = "/usr/sbin/sshd";

/// The fleet's ConnectTimeout (src/fleet/ssh.rs), for the bare round trips.
const CONNECT_TIMEOUT_S: u32 = 10;

/// How long a started sshd has to accept TCP connections on every address.
const SSHD_START: Duration = Duration::from_secs(10);

/// The profile every host runs: one managed file, as the fleet tests' `file_profile`.
const PROFILE: &str = "[files.\"/etc/motd\"]\ncontent = \"fleet bench\\n\"\n";

struct Options {
    debug: bool,
    /// Sessions skip root's ~/.bashrc (see [`sshd_config`]).
    no_bashrc: bool,
    sizes: Vec<usize>,
    parallel: Vec<usize>,
    runs: usize,
}

fn list(flag: &str, value: Option<&String>) -> Result<Vec<usize>> {
    let v = value.with_context(|| format!("{flag} needs a list, e.g. 3,20"))?;
    v.split(',')
        .map(|s| match s.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => bail!("{flag}: {s:?} is not a count of at least 1"),
        })
        .collect()
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        debug: false,
        no_bashrc: false,
        sizes: vec![3, 20],
        parallel: vec![10, 20],
        runs: 7,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--debug" => o.debug = true,
            "--no-bashrc" => o.no_bashrc = true,
            "--sizes" => o.sizes = list("--sizes", it.next())?,
            "--parallel" => o.parallel = list("--parallel", it.next())?,
            "--runs" => {
                let v = it.next().context("--runs needs a number")?;
                o.runs = v
                    .parse()
                    .with_context(|| format!("--runs: {v:?} is not a number"))?;
            }
            other => {
                bail!(
                    "unknown option {other:?}: --debug, --no-bashrc, --sizes N,M, --parallel P,Q, --runs N"
                )
            }
        }
    }
    if o.sizes.iter().any(|&n| n > 250) {
        bail!("--sizes: at most 250 hosts (one /24 of addresses)");
    }
    Ok(o)
}

/// The benchmark's world, removed on drop (on error too): every process in the namespace
/// (sshd's sessions, a host's rollback watcher) and then sshd are killed, the namespace and
/// the veth pair deleted, the folder removed, and the binary this run sent to the host,
/// if it sent one.
struct World {
    ns: String,
    root_link: String,
    dir: PathBuf,
    sshd: Option<Child>,
    shipped: Option<PathBuf>,
}

impl Drop for World {
    fn drop(&mut self) {
        let sshd = self.sshd.take();
        let spare = sshd.as_ref().map(Child::id);
        let others: Vec<u32> = namespace_pids(&self.ns)
            .into_iter()
            .filter(|p| Some(*p) != spare)
            .collect();
        signal("KILL", &others);
        if let Some(mut child) = sshd {
            signal("TERM", &[child.id()]);
            let deadline = Instant::now() + Duration::from_secs(2);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        signal("KILL", &namespace_pids(&self.ns));
        quiet(Command::new("ip").args(["link", "del", &self.root_link]));
        quiet(Command::new("ip").args(["netns", "del", &self.ns]));
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(binary) = &self.shipped {
            let _ = std::fs::remove_file(binary);
        }
    }
}

impl World {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Wait (up to 10 s) until sshd is alone in the namespace: the hosts' rollback
    /// watchers of the apply have ended and no session is left over.
    fn settle(&self) {
        let Some(sshd) = self.sshd.as_ref().map(Child::id) else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && namespace_pids(&self.ns).iter().any(|&p| p != sshd) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The live pids whose network namespace is `ns`.
fn namespace_pids(ns: &str) -> Vec<u32> {
    let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn signal(name: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let mut cmd = Command::new("kill");
    cmd.arg(format!("-{name}"))
        .args(pids.iter().map(u32::to_string));
    quiet(&mut cmd);
}

/// Run a cleanup step: its failure (a thing already gone) is no error.
fn quiet(cmd: &mut Command) {
    let _ = cmd.stdin(Stdio::null()).output();
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

fn must(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({}): {}", out.status, said(&out));
    }
    Ok(out)
}

fn time(cmd: &mut Command) -> Result<Duration> {
    let start = Instant::now();
    must(cmd)?;
    Ok(start.elapsed())
}

fn text(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not UTF-8", p.display()))
}

/// One sshd as the fleet tests' harness configures it. It listens on the namespace's
/// wildcard address, so on every host's address there (sshd takes at most 16
/// `ListenAddress` lines). `MaxStartups` is raised from its default (10:30:100, which drops
/// a share of the connections beyond 10 that have not authenticated yet): here one server
/// takes every host's connection at once.
///
/// A command sent over SSH runs as `bash -c COMMAND`, and bash, started by sshd as a
/// top-level shell, reads root's ~/.bashrc first: whatever that costs (on a development
/// machine with pyenv, a good part of a session) every session pays. With `no_bashrc`,
/// sshd sets SHLVL=1 in each session, so bash counts itself nested and skips ~/.bashrc,
/// leaving ssh's own cost.
fn sshd_config(dir: &Path, no_bashrc: bool) -> String {
    let rc = if no_bashrc { "SetEnv SHLVL=1\n" } else { "" };
    format!(
        "# The fleet benchmark's hosts (xtask/src/bench/fleet.rs).\n\
         ListenAddress 0.0.0.0\n\
         Port 22\n\
         HostKey {dir}/host_key\n\
         PidFile {dir}/sshd.pid\n\
         AuthorizedKeysFile {dir}/authorized_keys\n\
         PermitRootLogin prohibit-password\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UsePAM no\n\
         StrictModes no\n\
         PrintMotd no\n\
         MaxStartups 200\n\
         Subsystem sftp internal-sftp\n\
         LogLevel VERBOSE\n\
         {rc}",
        dir = dir.display()
    )
}

/// Make the world for up to `hosts` hosts: keys, the namespace and veth pair, the addresses,
/// sshd, a known_hosts file that already knows every address.
fn build(hosts: usize, no_bashrc: bool) -> Result<(World, Vec<String>)> {
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("svbfleet{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let ns = format!("svbfl{pid}");
    let mut world = World {
        ns: ns.clone(),
        root_link: format!("svbf{pid}r"),
        dir: dir.clone(),
        sshd: None,
        shipped: None,
    };
    let ns_link = format!("svbf{pid}n");
    // 198.18.0.0/15 is set aside for benchmarks (RFC 2544); a /24 per run, by pid.
    let net = format!("198.18.{}", pid % 256);
    for (key, comment) in [("id_client", "client"), ("host_key", "host")] {
        must(Command::new("ssh-keygen").args([
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            comment,
            "-q",
            "-f",
            text(&world.path(key))?,
        ]))?;
    }
    std::fs::copy(world.path("id_client.pub"), world.path("authorized_keys"))?;
    let addresses: Vec<String> = (0..hosts).map(|i| format!("{net}.{}", i + 2)).collect();
    let host_key = std::fs::read_to_string(world.path("host_key.pub"))?;
    let host_key = host_key
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    std::fs::write(
        world.path("known_hosts"),
        addresses
            .iter()
            .map(|a| format!("{a} {host_key}\n"))
            .collect::<String>(),
    )?;
    std::fs::write(world.path("sshd_config"), sshd_config(&dir, no_bashrc))?;

    must(Command::new("ip").args(["netns", "add", &ns]))?;
    must(Command::new("ip").args([
        "link",
        "add",
        &world.root_link,
        "type",
        "veth",
        "peer",
        "name",
        &ns_link,
        "netns",
        &ns,
    ]))?;
    must(Command::new("ip").args([
        "addr",
        "add",
        &format!("{net}.1/24"),
        "dev",
        &world.root_link,
    ]))?;
    must(Command::new("ip").args(["link", "set", &world.root_link, "up"]))?;
    for a in &addresses {
        must(Command::new("ip").args([
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{a}/24"),
            "dev",
            &ns_link,
        ]))?;
    }
    must(Command::new("ip").args(["-n", &ns, "link", "set", &ns_link, "up"]))?;
    must(Command::new("ip").args(["-n", &ns, "link", "set", "lo", "up"]))?;

    // sshd's privilege separation folder: Debian's sshd will not start without it.
    std::fs::create_dir_all("/run/sshd")?;
    let stderr = std::fs::File::create(world.path("sshd.stderr"))?;
    // `ip netns exec` execs sshd in place: the child is sshd itself.
    let child = Command::new("ip")
        .args(["netns", "exec", &ns, SSHD, "-D", "-f"])
        .arg(world.path("sshd_config"))
        .arg("-E")
        .arg(world.path("sshd.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .context("cannot start sshd")?;
    world.sshd = Some(child);
    let deadline = Instant::now() + SSHD_START;
    for a in &addresses {
        let address: SocketAddr = format!("{a}:22").parse()?;
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            let exited = world
                .sshd
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                bail!(
                    "sshd did not listen on {address}\nstderr: {}\nlog:\n{}",
                    std::fs::read_to_string(world.path("sshd.stderr")).unwrap_or_default(),
                    std::fs::read_to_string(world.path("sshd.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok((world, addresses))
}

/// `ssh` with the options the fleet gives it (src/fleet/ssh.rs), up to the destination.
/// `shared`: through a master at `ctl-%C` in the world's folder, opened by the first
/// command and kept 60 s, as the fleet's steps go; otherwise a connection of its own, as
/// the fleet's confirmation. Like the fleet, no `-F none`: ssh reads the user's and the
/// system's configuration.
fn ssh_options(world: &World, shared: bool) -> Result<Command> {
    let mut c = Command::new("ssh");
    c.args([
        "-o",
        "BatchMode=yes",
        "-o",
        &format!("ConnectTimeout={CONNECT_TIMEOUT_S}"),
        "-o",
        "StrictHostKeyChecking=accept-new",
        "-o",
        "ServerAliveInterval=5",
        "-o",
        "ServerAliveCountMax=3",
        "-o",
        &format!("UserKnownHostsFile={}", text(&world.path("known_hosts"))?),
    ]);
    if shared {
        c.args([
            "-o",
            "ControlMaster=auto",
            "-o",
            &format!("ControlPath={}", text(&world.path("ctl-%C"))?),
            "-o",
            "ControlPersist=60",
        ]);
    } else {
        c.args(["-o", "ControlMaster=no", "-o", "ControlPath=none"]);
    }
    c.args([
        "-i",
        text(&world.path("id_client"))?,
        "-o",
        "IdentitiesOnly=yes",
    ])
    .stdin(Stdio::null());
    Ok(c)
}

/// `ssh ... root@ADDRESS -- COMMAND`, on a connection of its own unless `shared`.
fn ssh(world: &World, address: &str, command: &str, shared: bool) -> Result<Command> {
    let mut c = ssh_options(world, shared)?;
    c.args([&format!("root@{address}"), "--", command]);
    Ok(c)
}

/// Every host's `ssh HOST true`, one after the other.
fn sequential(world: &World, addresses: &[String]) -> Result<Duration> {
    let start = Instant::now();
    for a in addresses {
        must(&mut ssh(world, a, "true", false)?)?;
    }
    Ok(start.elapsed())
}

/// Every host's `ssh HOST true`, all started at once, then all waited for.
fn parallel(world: &World, addresses: &[String]) -> Result<Duration> {
    let start = Instant::now();
    let children = addresses
        .iter()
        .map(|a| {
            ssh(world, a, "true", false)?
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("cannot start ssh")
        })
        .collect::<Result<Vec<_>>>()?;
    let mut failed = Vec::new();
    for (child, a) in children.into_iter().zip(addresses) {
        let out = child.wait_with_output()?;
        if !out.status.success() {
            failed.push(format!("{a}: {}", said(&out)));
        }
    }
    let took = start.elapsed();
    if !failed.is_empty() {
        bail!("ssh HOST true failed: {}", failed.join("; "));
    }
    Ok(took)
}

/// A fleet file of the first `n` hosts, `parallel` at once, each with a root of its own.
fn fleet_file(world: &World, addresses: &[String], n: usize, parallel: usize) -> Result<PathBuf> {
    let mut s = format!(
        "parallel = {parallel}\nknown_hosts = \"{}\"\n\n[defaults]\nuser = \"root\"\nidentity_file = \"{}\"\nprofile = \"{}\"\n\n",
        text(&world.path("known_hosts"))?,
        text(&world.path("id_client"))?,
        text(&world.path("profile.toml"))?,
    );
    for (i, a) in addresses.iter().take(n).enumerate() {
        s.push_str(&format!(
            "[hosts.h{i:03}]\naddress = \"{a}\"\nroot = \"{}\"\n\n",
            text(&world.path(&format!("root{i}")))?
        ));
    }
    let path = world.path(&format!("fleet-{n}-{parallel}.toml"));
    std::fs::write(&path, s)?;
    Ok(path)
}

fn sovereign(bin: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.args(["--color", "never"])
        .args(args)
        .env_remove("SOVEREIGN_ROOT")
        .stdin(Stdio::null());
    c
}

/// `sha256sum FILE`, the hex digest.
pub(super) fn sha256(file: &Path) -> Result<String> {
    let out = must(Command::new("sha256sum").arg(file))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let digest = text.split_whitespace().next().unwrap_or("");
    if digest.len() != 64 {
        bail!("sha256sum {}: {text:?}", file.display());
    }
    Ok(digest.to_string())
}

struct Row {
    hosts: usize,
    parallel: usize,
    fleet: Duration,
    sequential: Duration,
    parallel_ssh: Duration,
}

/// The chain of one host, step by step.
struct Steps {
    /// A fleet of one host that refuses the connection: the controller alone.
    controller: Duration,
    /// The binary's size in bytes.
    size: u64,
    bare: Duration,
    session: Duration,
    local_plan: Duration,
    remote_plan: Duration,
    fleet: Duration,
}

pub fn run(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    let bin = super::sovereign_binary(o.debug, false)?;
    let max = o.sizes.iter().copied().max().unwrap_or(1);
    eprintln!("bench fleet: one sshd on {max} addresses");
    let (mut world, addresses) = build(max, o.no_bashrc)?;
    std::fs::write(world.path("profile.toml"), PROFILE)?;
    let profile = world.path("profile.toml");
    let local_root = world.path("local");
    let (profile_s, local_s) = (text(&profile)?, text(&local_root)?);

    // The binary the fleet sends lands in the remote user's ~/.cache/sovereign/bin, named
    // by digest (src/fleet/remote.rs); one this run sends goes when the world does.
    let home = must(&mut ssh(
        &world,
        &addresses[0],
        "printf %s \"$HOME\"",
        false,
    )?)?;
    let shipped = shipped_path(&String::from_utf8_lossy(&home.stdout), &bin)?;
    if !shipped.exists() {
        world.shipped = Some(shipped.clone());
    }

    // Apply once, every host and locally, so that each plan is a no-op.
    eprintln!("bench fleet: applying {max} hosts once");
    let all = fleet_file(&world, &addresses, max, max)?;
    must(&mut sovereign(&bin, &["apply", "--fleet", text(&all)?]))?;
    must(&mut sovereign(
        &bin,
        &["--root", local_s, "-q", "apply", "--yes", profile_s],
    ))?;
    world.settle();
    let plan_is_noop = |fleet: &Path| -> Result<Duration> {
        let mut c = sovereign(
            &bin,
            &["plan", "--fleet", text(fleet)?, "--detailed-exitcode"],
        );
        let start = Instant::now();
        let out = c.output()?;
        let took = start.elapsed();
        if out.status.code() != Some(0) {
            bail!(
                "the fleet's plan is not a no-op ({}): {}",
                out.status,
                said(&out)
            );
        }
        Ok(took)
    };

    let local_plan = median(o.runs, || {
        time(&mut sovereign(
            &bin,
            &[
                "--root",
                local_s,
                "-q",
                "plan",
                "--detailed-exitcode",
                profile_s,
            ],
        ))
    })?;

    // One host, step by step: a bare round trip, one more session over an open master,
    // the plan the host runs (its sovereign started over that master), and the fleet of one.
    eprintln!("bench fleet: one host, step by step");
    let a0 = addresses[0].as_str();
    let bare = median(o.runs, || time(&mut ssh(&world, a0, "true", false)?))?;
    must(&mut ssh(&world, a0, "true", true)?)?;
    let session = median(o.runs, || time(&mut ssh(&world, a0, "true", true)?))?;
    let remote_command = format!(
        "{} --color never --root {} -q plan --detailed-exitcode {profile_s}",
        text(&shipped)?,
        text(&world.path("root0"))?
    );
    let remote_plan = median(o.runs, || {
        time(&mut ssh(&world, a0, &remote_command, true)?)
    })?;
    let mut exit = ssh_options(&world, true)?;
    exit.args(["-O", "exit", &format!("root@{a0}")]);
    quiet(&mut exit);
    let one = fleet_file(&world, &addresses, 1, 1)?;
    let fleet_one = median(o.runs, || plan_is_noop(&one))?;
    // The controller alone: the same fleet of one, but its port refuses the connection,
    // so the run is the controller's start and one ssh that fails at once.
    let refused = world.path("fleet-refused.toml");
    std::fs::write(
        &refused,
        std::fs::read_to_string(&one)?.replace("address = ", "port = 1\naddress = "),
    )?;
    let controller = median(o.runs, || {
        let mut c = sovereign(&bin, &["plan", "--fleet", text(&refused)?]);
        let start = Instant::now();
        let out = c.output()?;
        let took = start.elapsed();
        if out.status.code() != Some(1) || !said(&out).contains("UNREACHABLE") {
            bail!(
                "a refused host is not reported unreachable ({}): {}",
                out.status,
                said(&out)
            );
        }
        Ok(took)
    })?;
    let steps = Steps {
        controller,
        size: std::fs::metadata(&bin)?.len(),
        bare,
        session,
        local_plan,
        remote_plan,
        fleet: fleet_one,
    };

    let mut rows: Vec<Row> = Vec::new();
    let mut seen = BTreeSet::new();
    for &n in &o.sizes {
        for &p in &o.parallel {
            // Past n, more workers change nothing: the pool is clamped to the hosts.
            if !seen.insert((n, p.min(n))) {
                continue;
            }
            eprintln!("bench fleet: {n} hosts, parallel = {p}");
            let hosts = &addresses[..n];
            let f = fleet_file(&world, &addresses, n, p)?;
            // The fleet and the bare round trips all at once, taken in turn, so that a
            // change in the machine's load falls on both.
            let (fleet, par) =
                interleaved(o.runs, || plan_is_noop(&f), || parallel(&world, hosts))?;
            // In sequence they do not depend on `parallel`: once per count of hosts.
            let seq = match rows.iter().find(|r| r.hosts == n) {
                Some(r) => r.sequential,
                None => median(o.runs, || sequential(&world, hosts))?,
            };
            rows.push(Row {
                hosts: n,
                parallel: p,
                fleet,
                sequential: seq,
                parallel_ssh: par,
            });
        }
    }
    drop(world);
    report(&o, &rows, &steps);
    Ok(())
}

/// The medians of `a` and `b` over `runs` runs each, taken in turn.
fn interleaved(
    runs: usize,
    mut a: impl FnMut() -> Result<Duration>,
    mut b: impl FnMut() -> Result<Duration>,
) -> Result<(Duration, Duration)> {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(1) {
        x.push(a()?);
        y.push(b()?);
    }
    let mid = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    Ok((mid(x), mid(y)))
}

/// Where the host keeps this binary (src/fleet/remote.rs `Binary::remote_path`).
fn shipped_path(home: &str, bin: &Path) -> Result<PathBuf> {
    Ok(Path::new(home)
        .join(".cache/sovereign/bin")
        .join(format!("sovereign-{}", &sha256(bin)?[..16])))
}

fn report(o: &Options, rows: &[Row], s: &Steps) {
    let f = |d: Duration| d.as_secs_f64();
    println!(
        "Build: {}; median of {} runs; one sshd in a network namespace, one address per host, \
         over a veth pair; every `ssh` with the fleet's options; {}.\n",
        if o.debug { "debug" } else { "release" },
        o.runs,
        if o.no_bashrc {
            "sessions skip root's ~/.bashrc (`--no-bashrc`)"
        } else {
            "each session's bash reads root's ~/.bashrc"
        }
    );
    println!(
        "| hosts | parallel | fleet no-op plan ms | per host ms | `ssh HOST true` in sequence ms | `ssh HOST true` all at once ms | local no-op plan ms | fleet / (all at once + local plan) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.2}x |",
            r.hosts,
            r.parallel,
            ms(r.fleet),
            ms(r.fleet / r.hosts as u32),
            ms(r.sequential),
            ms(r.parallel_ssh),
            ms(s.local_plan),
            f(r.fleet) / (f(r.parallel_ssh) + f(s.local_plan))
        );
    }
    // Marginal cost per host between the smallest and the largest fleet of each `parallel`.
    for p in o.parallel.iter().collect::<BTreeSet<_>>() {
        let of_p: Vec<&Row> = rows
            .iter()
            .filter(|r| r.parallel.min(r.hosts) == (*p).min(r.hosts))
            .collect();
        if let (Some(lo), Some(hi)) = (
            of_p.iter().min_by_key(|r| r.hosts),
            of_p.iter().max_by_key(|r| r.hosts),
        ) && hi.hosts > lo.hosts
        {
            let extra = (hi.hosts - lo.hosts) as f64;
            println!(
                "\nFrom {} to {} hosts with parallel = {p}: each more host adds {:.1} ms to the fleet's plan, {:.1} ms to the bare round trips all at once.",
                lo.hosts,
                hi.hosts,
                (f(hi.fleet) - f(lo.fleet)) * 1000.0 / extra,
                (f(hi.parallel_ssh) - f(lo.parallel_ssh)) * 1000.0 / extra,
            );
        }
    }
    let chain = s.bare + s.remote_plan;
    println!("\nOne host, step by step:\n");
    println!("| step | ms |");
    println!("|---|---:|");
    println!(
        "| `ssh HOST true`: connect, authenticate, one session | {} |",
        ms(s.bare)
    );
    println!(
        "| one more session over an open master (`ssh HOST true`) | {} |",
        ms(s.session)
    );
    println!(
        "| the host's no-op plan over that master (`ssh HOST sovereign plan`) | {} |",
        ms(s.remote_plan)
    );
    println!("| local no-op plan | {} |", ms(s.local_plan));
    println!(
        "| the fleet's chain: connect with the binary check (as `ssh HOST true`), then the plan over the master | {} |",
        ms(chain)
    );
    println!(
        "| the controller alone: a fleet of 1 host that refuses the connection (start, its {} MB binary's digest (cached), load the profile, one ssh that fails) | {} |",
        s.size / 1_000_000,
        ms(s.controller)
    );
    println!("| sum: chain + controller | {} |", ms(chain + s.controller));
    println!("| fleet no-op plan of 1 host | {} |", ms(s.fleet));
    println!(
        "| the rest: closing the master, the worker, the recap | {} |",
        ms(s.fleet.saturating_sub(chain + s.controller))
    );
}
