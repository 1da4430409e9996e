//! The VM tests' harness: Debian guests under qemu, driven from the host the way NixOS's
//! test driver drives its guests, without networking or an agent.
//!
//! `cargo xtask vm-test` builds the guest image (xtask/src/vm/) and a portable sovereign
//! binary, then runs the ignored tests of tests/vm_guests.rs with their paths in the
//! environment. A guest boots Debian's kernel with the image as a copy-on-write root
//! (qemu's `snapshot=on`: the image is never written; a guest reboot keeps the changes, a
//! new qemu starts clean). Its image starts a root shell on a virtio console that qemu
//! hands to a Unix socket here; a command goes as one line carrying the script in base64
//! and comes back as `@@<seq> <status> <base64 output> @@`.
//!
//! Every command and its output is written to `<logs>/<guest>-shell.log`, the serial
//! console (kernel, systemd and the journal) to `<logs>/<guest>-console.log`; the run's
//! log folder is removed when the test passes and kept, and named, when it fails.

#![allow(dead_code)] // the smoke test uses part of the harness
#![allow(clippy::disallowed_methods)] // starts qemu and writes its logs, as a user would

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// The environment `cargo xtask vm-test` sets.
pub const IMAGE_ENV: &str = "SOVEREIGN_VM_IMAGE";
pub const BIN_ENV: &str = "SOVEREIGN_VM_BIN";
pub const LOGS_ENV: &str = "SOVEREIGN_VM_LOGS";

/// What the guests boot and run, from `cargo xtask vm-test`.
pub struct Inputs {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub root: PathBuf,
    /// The sovereign binary built for a CPU level qemu's emulation has.
    pub sovereign: PathBuf,
    pub logs: PathBuf,
}

impl Inputs {
    pub fn from_env() -> Inputs {
        let var = |name: &str| {
            std::env::var_os(name).map(PathBuf::from).unwrap_or_else(|| {
                panic!("{name} is not set: the VM tests run through `cargo xtask vm-test`, which builds their guest image and binary")
            })
        };
        let image = var(IMAGE_ENV);
        let inputs = Inputs {
            kernel: image.join("vmlinuz"),
            initrd: image.join("initrd.img"),
            root: image.join("root.raw"),
            sovereign: var(BIN_ENV),
            logs: var(LOGS_ENV),
        };
        for p in [
            &inputs.kernel,
            &inputs.initrd,
            &inputs.root,
            &inputs.sovereign,
        ] {
            assert!(
                p.exists(),
                "{} is missing: run `cargo xtask vm-test`",
                p.display()
            );
        }
        inputs
    }
}

/// How the guests run: KVM where a guest really boots under it, software emulation
/// otherwise. Decided by sovereign's own probe (`detect --probe-kvm`), which boots the
/// guest's kernel under KVM and waits for it to reach its initramfs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn probe(inputs: &Inputs) -> (Accel, String) {
        let state = tempfile::tempdir().expect("temp dir");
        let out = Command::new(env!("CARGO_BIN_EXE_sovereign"))
            .arg("--root")
            .arg(state.path())
            .args(["detect", "--json", "--probe-timeout", "30", "--probe-kvm"])
            .arg(&inputs.kernel)
            .arg(&inputs.initrd)
            .stdin(Stdio::null())
            .output()
            .expect("run sovereign detect");
        let facts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "detect --json printed no JSON ({e}):\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let probe = &facts["kvm_probe"];
        let detail = probe["detail"].as_str().unwrap_or("no probe").to_string();
        if probe["passed"].as_bool() == Some(true) {
            (Accel::Kvm, detail)
        } else {
            (Accel::Tcg, detail)
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// The run's log folder: removed when the run passes, kept (and named) when it fails.
pub struct Logs {
    pub dir: PathBuf,
    passed: bool,
}

impl Logs {
    pub fn new(inputs: &Inputs, test: &str) -> Logs {
        let dir = inputs.logs.join(test);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the log folder");
        Logs { dir, passed: false }
    }

    pub fn passed(mut self) {
        self.passed = true;
    }
}

impl Drop for Logs {
    fn drop(&mut self) {
        if self.passed {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!(
                "vm-test: the guests' console logs and every command's output are kept in {}",
                self.dir.display()
            );
        }
    }
}

/// The private link between two guests: qemu's socket network backend over UDP on
/// loopback, each guest bound to its own port and sending to the other's (no bridge, no
/// root, and no order in which the two must start).
#[derive(Clone, Copy)]
pub struct Link {
    pub local: u16,
    pub remote: u16,
}

impl Link {
    /// The two ends of a new link.
    pub fn pair() -> (Link, Link) {
        let (a, b) = (free_port(), free_port());
        (
            Link {
                local: a,
                remote: b,
            },
            Link {
                local: b,
                remote: a,
            },
        )
    }
}

/// One guest's shape.
pub struct Spec<'a> {
    pub name: &'a str,
    /// Its MAC on the private link; the image gives each known MAC its address.
    pub mac: &'a str,
    pub link: Link,
    /// The extra virtio disk (/dev/vdb), a sparse file of this many MiB.
    pub disk_mib: u64,
    pub memory_mib: u64,
    /// Shared read-only at /mnt/payload over 9p.
    pub payload: &'a Path,
}

/// A running guest and its shell.
pub struct Guest {
    pub name: String,
    child: Child,
    shell: UnixStream,
    pending: Vec<u8>,
    transcript: std::fs::File,
    seq: u64,
    pub console: PathBuf,
}

impl Guest {
    pub fn start(spec: &Spec, inputs: &Inputs, accel: Accel, logs: &Logs) -> Guest {
        let dir = &logs.dir;
        let disk = dir.join(format!("{}-disk.raw", spec.name));
        std::fs::File::create(&disk)
            .and_then(|f| f.set_len(spec.disk_mib << 20))
            .expect("create the guest's disk");
        let socket = dir.join(format!("{}-shell.sock", spec.name));
        let console = dir.join(format!("{}-console.log", spec.name));
        let netdev = format!(
            "socket,id=link,udp=127.0.0.1:{},localaddr=127.0.0.1:{}",
            spec.link.remote, spec.link.local
        );
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-accel", accel.flag(), "-cpu", "max", "-smp", "1"])
            .args(["-nographic", "-nodefaults"])
            .args(["-no-user-config", "-m", &spec.memory_mib.to_string()])
            .arg("-kernel")
            .arg(&inputs.kernel)
            .arg("-initrd")
            .arg(&inputs.initrd)
            .arg("-append")
            .arg(format!(
                "console=ttyS0 root=/dev/vda rw net.ifnames=0 systemd.hostname={} panic=-1",
                spec.name
            ))
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-chardev")
            .arg(format!(
                "socket,id=shell,path={},server=on,wait=off",
                socket.display()
            ))
            .args([
                "-device",
                "virtio-serial-pci",
                "-device",
                "virtconsole,chardev=shell",
            ])
            .arg("-drive")
            .arg(format!(
                "file={},format=raw,if=virtio,snapshot=on",
                inputs.root.display()
            ))
            .arg("-drive")
            .arg(format!(
                "file={},format=raw,if=virtio,cache=unsafe",
                disk.display()
            ))
            .arg("-virtfs")
            .arg(format!(
                "local,path={},mount_tag=payload,security_model=none,readonly=on",
                spec.payload.display()
            ))
            .args(["-netdev", &netdev])
            .arg("-device")
            .arg(format!("virtio-net-pci,netdev=link,mac={}", spec.mac))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.join(format!("{}-qemu.log", spec.name)))
                    .expect("qemu's log"),
            );
        let mut child = cmd.spawn().expect("start qemu-system-x86_64");
        let shell = connect(&socket, &mut child, spec.name);
        let transcript = std::fs::File::create(dir.join(format!("{}-shell.log", spec.name)))
            .expect("the shell's log");
        Guest {
            name: spec.name.to_string(),
            child,
            shell,
            pending: Vec::new(),
            transcript,
            seq: 0,
            console,
        }
    }

    fn note(&mut self, text: &str) {
        let _ = writeln!(self.transcript, "{text}");
    }

    /// Read from the shell until `found` sees what it wants in the unread bytes; it
    /// returns how many bytes it used and its value.
    fn read_until<T>(
        &mut self,
        within: Duration,
        what: &str,
        mut found: impl FnMut(&[u8]) -> Option<(usize, T)>,
    ) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some((used, value)) = found(&self.pending) {
                self.pending.drain(..used);
                return value;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.note(&format!("!! timed out after {within:?} waiting for {what}"));
                panic!(
                    "{}: {what} did not come within {within:?}; the console log is {}",
                    self.name,
                    self.console.display()
                );
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{}: qemu exited ({status}) while waiting for {what}; the console log is {}",
                    self.name,
                    self.console.display()
                );
            }
            self.shell
                .set_read_timeout(Some(left.min(Duration::from_millis(500))))
                .expect("set a read timeout");
            let mut buf = [0u8; 65536];
            match self.shell.read(&mut buf) {
                Ok(0) => panic!("{}: the shell's socket closed", self.name),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("{}: reading the shell: {e}", self.name),
            }
        }
    }

    /// Wait for the shell's banner: the guest has booted far enough to take commands.
    pub fn wait_ready(&mut self, within: Duration) {
        let started = Instant::now();
        const BANNER: &[u8] = b"vm-shell: ready\n";
        self.read_until(within, "the shell's banner (boot)", |buf| {
            find(buf, BANNER).map(|at| (at + BANNER.len(), ()))
        });
        self.note(&format!(
            "== booted in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
    }

    /// Run a bash script as root in the guest: its exit status and its output (stdout and
    /// stderr together).
    pub fn run(&mut self, script: &str, within: Duration) -> (i32, String) {
        self.seq += 1;
        let seq = self.seq;
        self.note(&format!("$ {script}"));
        let started = Instant::now();
        let line = format!(
            "echo {} | base64 -d >/tmp/vm-cmd; bash /tmp/vm-cmd >/tmp/vm-out 2>&1 </dev/null; \
             rc=$?; echo \"@@{seq} $rc $(base64 -w0 </tmp/vm-out) @@\"\n",
            B64.encode(script)
        );
        self.shell
            .write_all(line.as_bytes())
            .unwrap_or_else(|e| panic!("{}: writing to the shell: {e}", self.name));
        let head = format!("@@{seq} ");
        let (rc, output) = self.read_until(within, &format!("the reply to {script:?}"), |buf| {
            let at = find(buf, head.as_bytes())?;
            let rest = &buf[at + head.len()..];
            let end = find(rest, b" @@\n")?;
            let reply = std::str::from_utf8(&rest[..end]).ok()?;
            let (rc, data) = reply.split_once(' ').unwrap_or((reply, ""));
            let rc: i32 = rc.parse().ok()?;
            let output = String::from_utf8_lossy(&B64.decode(data.trim()).ok()?).into_owned();
            Some((at + head.len() + end + 4, (rc, output)))
        });
        self.note(&format!(
            "-> status {rc} after {:.1} s\n{output}",
            started.elapsed().as_secs_f64()
        ));
        (rc, output)
    }

    /// Run a script that must succeed; its output.
    pub fn succeed(&mut self, script: &str) -> String {
        self.succeed_within(script, Duration::from_secs(600))
    }

    pub fn succeed_within(&mut self, script: &str, within: Duration) -> String {
        let (rc, out) = self.run(script, within);
        assert_eq!(rc, 0, "{}: `{script}` exited {rc}:\n{out}", self.name);
        out
    }

    /// Run a script that must fail; its status and output.
    pub fn fail(&mut self, script: &str) -> (i32, String) {
        let (rc, out) = self.run(script, Duration::from_secs(600));
        assert_ne!(
            rc, 0,
            "{}: `{script}` should have failed:\n{out}",
            self.name
        );
        (rc, out)
    }

    /// Retry a script once a second until it succeeds; its output.
    pub fn wait_until_succeeds(&mut self, script: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let (rc, out) = self.run(script, within);
            if rc == 0 {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "{}: `{script}` still failing after {within:?}:\n{out}",
                self.name
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// One property of a unit, as `systemctl show` reports it.
    pub fn unit_property(&mut self, unit: &str, property: &str) -> String {
        self.succeed(&format!(
            "systemctl show --property={property} --value -- {unit}"
        ))
        .trim()
        .to_string()
    }

    /// Wait until a unit is active; a unit that fails meanwhile fails the test at once,
    /// with its status and journal.
    pub fn wait_for_unit(&mut self, unit: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let state = self.unit_property(unit, "ActiveState");
            if state == "active" {
                return;
            }
            if state == "failed" || Instant::now() >= deadline {
                let (_, status) = self.run(
                    &format!("systemctl status --no-pager -l {unit}; journalctl -b --no-pager -n 60 -u {unit}"),
                    Duration::from_secs(60),
                );
                panic!(
                    "{}: {unit} is {state}, not active (waited {within:?}):\n{status}",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Reboot through systemd and wait until the shell is back.
    pub fn reboot(&mut self, within: Duration) {
        self.note("$ systemctl reboot");
        self.shell
            .write_all(b"systemctl reboot\n")
            .expect("write to the shell");
        self.pending.clear();
        self.wait_ready(within);
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connect to the shell's socket once qemu has made it.
fn connect(socket: &Path, child: &mut Child, name: &str) -> UnixStream {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = UnixStream::connect(socket) {
            return s;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{name}: qemu exited at start ({status}); see its log beside {}",
                socket.display()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{name}: qemu made no shell socket at {} within 30 s",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A loopback UDP port nobody uses now, for the guests' link.
fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}
