//! Shared harness of the fleet tests: real OpenSSH servers, one per host, each in a network
//! namespace of its own joined to the root namespace by a veth pair, and reached with the
//! system `ssh` client the way the fleet reaches a machine.
//!
//! A host owns only its network. The filesystem, users, /proc and the hostname are the
//! machine's, so a command run over SSH runs here as root (bash reads root's ~/.bashrc
//! under sshd, PATH included: run binaries by absolute path) and sees only the host's links
//! and addresses.
//!
//! Nothing outside the fleet's temporary folder is configured or read: every sshd runs with
//! a config, host key and authorized keys of its own (never /etc/ssh), and the harness's
//! client runs with `-F none` and a known_hosts file in the folder (never ~/.ssh).
//!
//! Cleanup does not count on PID 1 to reap orphans: on the development machines it does so
//! only every two seconds or so, and in a container it may never, and until then an orphan
//! stays in /proc as a zombie. Each sshd therefore runs in the foreground (`-D`) as this
//! process's child, which reaps it, and is made a child subreaper: a session process whose
//! parent dies first (sshd's privilege-separation monitor exits without reaping a session
//! that was killed) is handed to sshd, whose SIGCHLD handler reaps any child.

#![allow(dead_code)] // each fleet test uses a different part of the harness
#![allow(clippy::disallowed_methods)] // builds its world (namespaces, links, keys, daemons), as a user would

use std::collections::HashSet;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixSocketAddr, UnixListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The OpenSSH server (Debian's openssh-server). sshd re-executes itself for every
/// connection, so it must be started by absolute path.
const SSHD: &str = "/usr/sbin/sshd";

/// sshd's privilege separation folder. Debian's sshd refuses to start without it ("Missing
/// privilege separation directory"); the service unit creates it, and there is no service
/// manager here, so the harness does.
const PRIVSEP_DIR: &str = "/run/sshd";

/// How many fleets may exist at once on the machine (all processes together). Slot k owns
/// 10.(200+k).0.0/16, carved into one /30 per host.
const SLOTS: u8 = 50;

/// The second octet of slot 0's addresses.
const FIRST_OCTET: u8 = 200;

/// Hosts per fleet: the third octet of a host's addresses is its index.
const MAX_HOSTS: usize = 256;

/// How long a started sshd has to accept a TCP connection.
const SSHD_START: Duration = Duration::from_secs(10);

/// The client's ConnectTimeout, in seconds: how long an unreachable host keeps a test waiting.
pub const CONNECT_TIMEOUT_S: u64 = 5;

/// Names namespaces per Fleet in this process: a namespace is never reused, even when an
/// earlier fleet's could not be deleted.
static FLEETS: AtomicU32 = AtomicU32::new(0);

/// The test's world: `n` hosts, each a network namespace running its own sshd, reachable
/// from the test (the root namespace) as root with the fleet's client key.
///
/// Dropping it, panicking test or not, kills every process in the hosts' namespaces (sshd
/// and its sessions), deletes the namespaces and the root-side links, then the folder.
pub struct Fleet {
    /// The hosts, in the order they were made. Declared first so they drop first: each
    /// host's sshd and links go before its files and before the address slot is freed.
    pub hosts: Vec<SshHost>,
    dir: tempfile::TempDir,
    slot: Slot,
}

impl Fleet {
    /// Build `n` hosts, each with sshd listening on port 22 of its address, and return once
    /// all accept TCP connections. Panics (cleaning up what it made) when any step fails.
    pub fn new(n: usize) -> Fleet {
        assert!(n <= MAX_HOSTS, "a fleet holds at most {MAX_HOSTS} hosts");
        sweep_dead_namespaces();
        let slot = Slot::claim();
        let dir = tempfile::tempdir().expect("a temporary folder for the fleet");
        let path = dir.path().to_path_buf();
        let identity = path.join("id_client");
        must(&[
            "ssh-keygen",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            path_str(&identity),
            "-q",
        ]);
        let public = std::fs::read_to_string(path.join("id_client.pub")).unwrap();
        std::fs::write(path.join("authorized_keys"), public).unwrap();
        std::fs::write(path.join("known_hosts"), "").unwrap();

        let fleet_number = FLEETS.fetch_add(1, Ordering::SeqCst);
        let mut fleet = Fleet {
            hosts: Vec::with_capacity(n),
            dir,
            slot,
        };
        for i in 0..n {
            let host = SshHost {
                name: format!("host{i}"),
                address: format!("10.{}.{i}.2", fleet.slot.octet()),
                namespace: format!("sovfl{}f{fleet_number}h{i}", std::process::id()),
                root_link: format!("flr{}h{i}", fleet.slot.index),
                root_address: format!("10.{}.{i}.1", fleet.slot.octet()),
                ns_link: format!("fln{}h{i}", fleet.slot.index),
                dir: path.join(format!("host{i}")),
                sshd: Mutex::new(None),
            };
            // Owned by the fleet before anything is made, so a failure half-way through
            // still drops (and deletes) what was made.
            fleet.hosts.push(host);
            let host = &fleet.hosts[i];
            host.build(&path.join("authorized_keys"));
            host.start_sshd();
        }
        fleet
    }

    /// The fleet's folder: keys, known_hosts, and one folder per host (its host key,
    /// sshd_config, pid file and sshd log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The client's private key: every host authorizes its public half for root.
    pub fn identity_file(&self) -> PathBuf {
        self.dir.path().join("id_client")
    }

    /// A known_hosts file, empty at first: point the fleet's `known_hosts` here. The
    /// harness's own [`Fleet::ssh`] adds hosts to it (accept-new).
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// The options [`Fleet::ssh`] gives the client, before `root@ADDRESS`: the fleet's key
    /// only, its known_hosts with new hosts accepted, no prompts, a short connect timeout.
    /// `-F none` keeps the user's and the system's ssh_config out (and keeps ssh from
    /// creating ~/.ssh, which it does when no `-F` is given and the folder is missing).
    pub fn ssh_options(&self) -> Vec<String> {
        vec![
            "-F".into(),
            "none".into(),
            "-i".into(),
            path_str(&self.identity_file()).into(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", path_str(&self.known_hosts())),
            "-o".into(),
            "StrictHostKeyChecking=accept-new".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            format!("ConnectTimeout={CONNECT_TIMEOUT_S}"),
        ]
    }

    /// Run `remote_command` on host `host_index` with the system ssh client, as root, the
    /// way a user would (`ssh ... root@ADDRESS CMD`), stdin closed. ssh exits 255 when it
    /// cannot connect or authenticate, else with the remote command's status.
    pub fn ssh(&self, host_index: usize, remote_command: &str) -> Output {
        let host = &self.hosts[host_index];
        Command::new("ssh")
            .args(self.ssh_options())
            .arg(format!("root@{}", host.address))
            .arg(remote_command)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("ssh (openssh-client): {e}"))
    }
}

/// One host: a network namespace holding the ns side of a veth pair (its address, /30)
/// and an sshd listening on that address, port 22.
pub struct SshHost {
    /// The host's name in the fleet: `host0`, `host1`, ...
    pub name: String,
    /// Where sshd listens (port 22), on the namespace's side of the veth pair.
    pub address: String,
    /// The network namespace (`ip netns exec NAMESPACE ...`).
    pub namespace: String,
    /// The veth end in the root namespace, through which the test reaches the host.
    pub root_link: String,
    root_address: String,
    ns_link: String,
    dir: PathBuf,
    /// The running sshd, a child of this process so that it is reaped here: it is stopped
    /// through this handle. Its PidFile (`sshd.pid` in the host's folder) holds the same
    /// pid while it runs; sshd removes it on SIGTERM.
    sshd: Mutex<Option<Child>>,
}

impl SshHost {
    /// Run `argv` inside the host's namespace directly, not over SSH: for a test's own
    /// checks of the host. stdin is closed; output is captured.
    pub fn exec(&self, argv: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", self.namespace.as_str()];
        full.extend_from_slice(argv);
        run(&full)
    }

    /// Take the host down: kill every process in its namespace (SSH sessions, and what
    /// they started, first) and then sshd. Connections are refused until
    /// [`SshHost::start_sshd`]. Does nothing to a host whose sshd is not running.
    pub fn stop_sshd(&self) {
        let listener = lock(&self.sshd).take();
        kill_namespace_processes(&self.namespace, listener.as_ref().map(Child::id));
        if let Some(child) = listener {
            end(child);
        }
        // Anything that raced in while sshd was going (a session it was still forking).
        kill_namespace_processes(&self.namespace, None);
    }

    /// Start sshd in the namespace (`sshd -D -f CONFIG -E LOG`) and wait until it accepts
    /// a TCP connection from the root namespace. Does nothing if it is already running.
    /// Panics with sshd's output and log when it exits or does not listen in time.
    pub fn start_sshd(&self) {
        let mut sshd = lock(&self.sshd);
        if let Some(child) = sshd.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                return;
            }
        }
        std::fs::create_dir_all(PRIVSEP_DIR).expect("creating sshd's privilege separation folder");
        let stderr = std::fs::File::create(self.dir.join("sshd.stderr")).unwrap();
        // `ip netns exec` execs sshd in place (no fork), so the child is sshd itself.
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace, SSHD, "-D", "-f"])
            .arg(self.dir.join("sshd_config"))
            .arg("-E")
            .arg(self.log_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        // The subreaper mark survives both execs (ip's and sshd's), not fork: sshd alone
        // has it, and orphans of its sessions go to it rather than to PID 1.
        // SAFETY: between fork and exec this makes one system call and touches no memory
        // of the parent's.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting sshd in {}: {e}", self.namespace));
        let address: SocketAddr = format!("{}:22", self.address).parse().unwrap();
        let deadline = Instant::now() + SSHD_START;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                drop(sshd);
                panic!(
                    "sshd in {} exited ({status}) before it listened on {address}\n\
                     stderr: {}\nlog:\n{}",
                    self.namespace,
                    read(&self.dir.join("sshd.stderr")),
                    self.sshd_log()
                );
            }
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                *sshd = Some(child);
                return;
            }
            if Instant::now() > deadline {
                *sshd = Some(child); // the host's drop kills it
                drop(sshd);
                panic!(
                    "sshd in {} did not listen on {address} within {SSHD_START:?}\nlog:\n{}",
                    self.namespace,
                    self.sshd_log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The running sshd's pid (in the root namespace), or None while it is stopped.
    pub fn sshd_pid(&self) -> Option<u32> {
        let mut sshd = lock(&self.sshd);
        let child = sshd.as_mut()?;
        match child.try_wait() {
            Ok(None) => Some(child.id()),
            _ => None,
        }
    }

    /// The pids of every live process in the host's namespace: sshd, its sessions and what
    /// they run.
    pub fn processes(&self) -> Vec<u32> {
        namespace_processes(&self.namespace)
            .into_iter()
            .map(|(pid, _)| pid)
            .collect()
    }

    /// sshd's log so far (LogLevel VERBOSE: connections, accepted keys, sessions).
    pub fn sshd_log(&self) -> String {
        read(&self.log_path())
    }

    /// The host's public key, one line as in a `.pub` file (`ssh-ed25519 AAAA... host0`):
    /// for a test that writes a known_hosts entry itself.
    pub fn host_public_key(&self) -> String {
        read(&self.dir.join("host_key.pub")).trim().to_string()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("sshd.log")
    }

    /// Make the host: its folder, host key and sshd_config, its namespace and the veth
    /// pair to it, both ends addressed and up, and lo up inside.
    fn build(&self, authorized_keys: &Path) {
        std::fs::create_dir(&self.dir).unwrap();
        let host_key = self.dir.join("host_key");
        must(&[
            "ssh-keygen",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            &self.name,
            "-f",
            path_str(&host_key),
            "-q",
        ]);
        std::fs::write(
            self.dir.join("sshd_config"),
            sshd_config(
                &self.address,
                &host_key,
                &self.dir.join("sshd.pid"),
                authorized_keys,
            ),
        )
        .unwrap();

        must(&["ip", "netns", "add", &self.namespace]);
        // The peer is made inside the namespace, so only the root side's name must be free
        // in the root namespace (the slot makes it so).
        must(&[
            "ip",
            "link",
            "add",
            &self.root_link,
            "type",
            "veth",
            "peer",
            "name",
            &self.ns_link,
            "netns",
            &self.namespace,
        ]);
        let root_cidr = format!("{}/30", self.root_address);
        let ns_cidr = format!("{}/30", self.address);
        must(&["ip", "addr", "add", &root_cidr, "dev", &self.root_link]);
        must(&["ip", "link", "set", &self.root_link, "up"]);
        let ns = self.namespace.as_str();
        must(&[
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            &ns_cidr,
            "dev",
            &self.ns_link,
        ]);
        must(&["ip", "-n", ns, "link", "set", &self.ns_link, "up"]);
        must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
}

impl Drop for SshHost {
    /// Runs during a panic too: nothing here may panic.
    fn drop(&mut self) {
        self.stop_sshd();
        // Deleting the root side deletes the pair at once; a namespace's own links go only
        // when the kernel gets round to freeing it.
        quiet(&["ip", "link", "del", &self.root_link]);
        quiet(&["ip", "netns", "del", &self.namespace]);
    }
}

/// The sshd_config of one host. Everything sshd reads is named here, so /etc/ssh plays no
/// part.
fn sshd_config(address: &str, host_key: &Path, pid_file: &Path, authorized_keys: &Path) -> String {
    format!(
        "# A fleet test host (tests/fleet_support).\n\
         ListenAddress {address}\n\
         Port 22\n\
         HostKey {host_key}\n\
         PidFile {pid_file}\n\
         AuthorizedKeysFile {authorized_keys}\n\
         # The fleet logs in as root, with its key only.\n\
         PermitRootLogin prohibit-password\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         # No PAM stack: nothing of the machine's login configuration applies.\n\
         UsePAM no\n\
         # The key files live in a temporary folder sshd would judge too open.\n\
         StrictModes no\n\
         # No AcceptEnv: a session's environment is sshd's, whatever the client sends.\n\
         PrintMotd no\n\
         Subsystem sftp internal-sftp\n\
         LogLevel VERBOSE\n",
        host_key = host_key.display(),
        pid_file = pid_file.display(),
        authorized_keys = authorized_keys.display(),
    )
}

/// A fleet's claim on an address range, held for the fleet's life by a bound abstract
/// unix socket: the kernel releases it when the process ends, however it ends, so a
/// claim never outlives its owner and two fleets (in any processes) never share addresses
/// or root-side link names. Abstract names are per network namespace: fleets are made from
/// the root namespace, as the test process runs.
struct Slot {
    index: u8,
    _claim: UnixListener,
}

impl Slot {
    fn claim() -> Slot {
        for index in 0..SLOTS {
            let name = format!("sovereign-fleet-slot-{index}");
            let address = UnixSocketAddr::from_abstract_name(name.as_bytes())
                .expect("an abstract socket name");
            match UnixListener::bind_addr(&address) {
                Ok(claim) => {
                    let slot = Slot {
                        index,
                        _claim: claim,
                    };
                    slot.remove_leftover_links();
                    return slot;
                }
                Err(e) if e.kind() == ErrorKind::AddrInUse => continue,
                Err(e) => panic!("claiming fleet slot {index}: {e}"),
            }
        }
        panic!("all {SLOTS} fleet slots are taken: too many fleets at once")
    }

    fn octet(&self) -> u8 {
        FIRST_OCTET + self.index
    }

    /// Root-side links of this slot that a killed test process left: nobody else can own
    /// them (the slot is ours), and their addresses would shadow ours.
    fn remove_leftover_links(&self) {
        let prefix = format!("flr{}h", self.index);
        let Ok(links) = std::fs::read_dir("/sys/class/net") else {
            return;
        };
        for link in links.flatten() {
            let name = link.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) {
                quiet(&["ip", "link", "del", &name]);
            }
        }
    }
}

/// Delete the namespaces (and kill what runs in them) that a fleet of a test process that
/// no longer exists left behind: a test killed outright never runs its drops.
fn sweep_dead_namespaces() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("sovfl") else {
            continue;
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let Ok(pid) = digits.parse::<u32>() else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        kill_namespace_processes(&name, None);
        quiet(&["ip", "netns", "del", &name]);
    }
}

/// Kill every live process in namespace `ns` but `spare` (sshd, kept alive to reap the
/// others), leaves of the process tree first so that each has a parent to reap it. With a
/// `spare`, wait until each killed process is reaped (gone from /proc, not a zombie);
/// without one (a dead test's leftovers) the orphans are PID 1's to reap, and only their
/// death is waited for. Gives up after a few seconds.
fn kill_namespace_processes(ns: &str, spare: Option<u32>) {
    let start = Instant::now();
    let mut killed: HashSet<u32> = HashSet::new();
    loop {
        let procs: Vec<(u32, u32)> = namespace_processes(ns)
            .into_iter()
            .filter(|(pid, _)| Some(*pid) != spare)
            .collect();
        let waited = start.elapsed();
        if spare.is_some() {
            killed.retain(|pid| Path::new(&format!("/proc/{pid}")).exists());
        } else {
            killed.clear();
        }
        if (procs.is_empty() && killed.is_empty()) || waited > Duration::from_secs(5) {
            return;
        }
        let parents: HashSet<u32> = procs.iter().map(|(_, parent)| *parent).collect();
        let targets: Vec<u32> = procs
            .iter()
            .map(|(pid, _)| *pid)
            // Past the first seconds (a parent that does not reap), everything at once.
            .filter(|pid| waited > Duration::from_secs(3) || !parents.contains(pid))
            .collect();
        signal("KILL", &targets);
        killed.extend(targets);
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The live processes in namespace `ns`, as (pid, parent pid); zombies excluded.
fn namespace_processes(ns: &str) -> Vec<(u32, u32)> {
    let Some(out) = quiet(&["ip", "netns", "pids", ns]) else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.trim().parse::<u32>().ok())
        .filter_map(|pid| parent_of(pid).map(|parent| (pid, parent)))
        .collect()
}

/// The parent of a live process, from /proc/PID/stat (`pid (comm) state ppid ...`; comm
/// may hold spaces and parentheses, so read after the last `)`). None for a zombie or a
/// process already gone.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.next()?.parse().ok()
}

/// Stop sshd: SIGTERM (it closes its sockets and removes its pid file), SIGKILL if it
/// lingers, and reap it.
fn end(mut child: Child) {
    signal("TERM", &[child.id()]);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn signal(name: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let mut argv = vec!["kill".to_string(), format!("-{name}")];
    argv.extend(pids.iter().map(u32::to_string));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    quiet(&argv); // a process that ended meanwhile is no error
}

/// The lock, even if a panicking test poisoned it: cleanup must still run.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn run(argv: &[&str]) -> Output {
    Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
}

/// Run `argv`; panics with its stderr when it fails.
fn must(argv: &[&str]) -> Output {
    let out = run(argv);
    assert!(
        out.status.success(),
        "{argv:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run `argv` for cleanup: never panics, output discarded by the caller if unneeded.
fn quiet(argv: &[&str]) -> Option<Output> {
    Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}
