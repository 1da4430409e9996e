//! Shared harness of the forge tests: a guest that boots in seconds under libvirt's qemu
//! driver (software emulation), the libvirt daemons to run it, guards that undo what a
//! test made, and a reader of the guest's serial console.
//!
//! The guest is Debian's own kernel (downloaded by `cargo xtask setup`) with an
//! initramfs built here: busybox, the virtio modules, and an `/init` that reports on the
//! console what the guest sees (disks, network links, processors, memory), so that a test
//! checks a VM's declared shape from inside it.

#![allow(dead_code)] // each test file uses a different part of the harness
#![allow(clippy::disallowed_methods)] // builds its world (files, daemons, links), as a user would

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The line `/init` prints last, once every report line is out: a test waits for it.
pub const MARKER: &str = "SOVEREIGN-GUEST-UP";

/// The libvirt connection every forge test uses: the system qemu driver (root).
pub const URI: &str = "qemu:///system";

/// Where `cargo xtask setup` downloads the kernel package (xtask/src/setup.rs).
const KERNEL_CACHE: &str = "/var/cache/sovereign-tests/kernel";

/// The guest's modules, by file name: the virtio PCI transport, its disk and its network
/// driver with the failover pair virtio_net needs. Debian builds them as modules, so the
/// initramfs carries them; `/init` loads them in passes, in place of modprobe.
const MODULES: &[&str] = &[
    "virtio.ko",
    "virtio_ring.ko",
    "virtio_pci_legacy_dev.ko",
    "virtio_pci_modern_dev.ko",
    "virtio_pci.ko",
    "virtio_blk.ko",
    "failover.ko",
    "net_failover.ko",
    "virtio_net.ko",
];

/// The members of the kernel package the cache keeps: the kernel and every virtio module
/// (a few MB; the whole package unpacks to 400 MB).
const KEEP: &[&str] = &["./boot/vmlinuz-*", "*virtio*", "*failover*"];

/// busybox-static's program: the initramfs's only executable.
const BUSYBOX: &str = "/bin/busybox";

/// The guest's PID 1. Busybox's applets are linked into /bin first so the script reads
/// like any shell script. The kernel gave it /dev/console (a node in the archive); the
/// output goes there again after devtmpfs covers /dev, then to the serial port
/// (`console=ttyS0`). Without modinfo or modules.dep, loading every module in passes
/// until none is left settles their order (a module loads once its dependencies have).
/// `@MARKER@` becomes [`MARKER`].
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
for pass in 1 2 3 4 5 6 7 8 9; do
    for m in /mods/*.ko; do
        [ -e "$m" ] && insmod "$m" 2>/dev/null && rm "$m"
    done
done
for m in /mods/*.ko; do
    [ -e "$m" ] && echo "GUEST not_loaded: $m"
done
echo "GUEST disks: $(ls /sys/block | tr '\n' ' ')"
echo "GUEST nets: $(ls /sys/class/net | tr '\n' ' ')"
echo "GUEST cpus: $(grep -c ^processor /proc/cpuinfo)"
echo "GUEST mem_kb: $(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
sectors=""
for d in /sys/block/*; do sectors="$sectors$(basename $d)=$(cat $d/size) "; done
echo "GUEST disk_sectors: $sectors"
macs=""
for n in /sys/class/net/*; do macs="$macs$(basename $n)=$(cat $n/address) "; done
echo "GUEST macs: $macs"
echo @MARKER@
while true; do sleep 3600; done
"#;

/// A bootable guest: Debian's kernel and an initramfs whose `/init` reports on the serial
/// console and then prints [`MARKER`].
#[derive(Debug, Clone)]
pub struct Guest {
    /// The kernel image, in the shared cache (never copied: tests only read it).
    pub kernel: PathBuf,
    /// The initramfs (newc cpio, uncompressed), in the test's own folder.
    pub initrd: PathBuf,
    /// The kernel's release (`6.1.0-NN-amd64`): the modules were built for it.
    pub release: String,
}

/// Build a guest into `dir`: the kernel comes from the cache (unpacked once per kernel
/// package), the initramfs is written to `dir/initrd.cpio`.
///
/// libvirt's qemu runs as `libvirt-qemu`, which must reach the kernel, the initramfs and
/// any disk the test puts beside it: `dir` is opened to others (0755; tempfile makes it
/// 0700) and every folder above it must already let others through.
pub fn guest(dir: &Path) -> Guest {
    let unpacked = unpacked_kernel();
    let release = only_entry(&unpacked.join("lib/modules"));
    let kernel = unpacked.join(format!("boot/vmlinuz-{release}"));
    assert!(
        kernel.is_file(),
        "{} is missing; remove {} and run the test again",
        kernel.display(),
        unpacked.display()
    );
    assert_reachable(&kernel);
    let mut archive = Cpio::default();
    for folder in ["bin", "dev", "proc", "sys", "mods"] {
        archive.dir(folder);
    }
    // The kernel opens /dev/console for PID 1 before anything mounts devtmpfs.
    archive.char_device("dev/console", 5, 1);
    let busybox = std::fs::read(BUSYBOX)
        .unwrap_or_else(|e| panic!("cannot read {BUSYBOX} ({e}): run `cargo xtask setup`"));
    archive.file("bin/busybox", 0o755, &busybox);
    let init = INIT.replace("@MARKER@", MARKER);
    archive.file("init", 0o755, init.as_bytes());
    let modules = unpacked.join("lib/modules").join(&release).join("kernel");
    for name in MODULES {
        let path = find_file(&modules, name).unwrap_or_else(|| {
            panic!(
                "the kernel package has no {name} under {}",
                modules.display()
            )
        });
        let bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        archive.file(&format!("mods/{name}"), 0o644, &bytes);
    }
    open_to_qemu(dir);
    let initrd = dir.join("initrd.cpio");
    std::fs::write(&initrd, archive.finish())
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", initrd.display()));
    std::fs::set_permissions(&initrd, std::fs::Permissions::from_mode(0o644))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", initrd.display()));
    Guest {
        kernel,
        initrd,
        release,
    }
}

/// Let libvirt's qemu (user `libvirt-qemu`) into `dir`: 0755 on `dir`, and a panic naming
/// the first folder above it that others cannot pass through.
pub fn open_to_qemu(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", dir.display()));
    assert_reachable(dir);
}

/// Panic naming the first folder that keeps others (libvirt-qemu) from reaching `path`.
fn assert_reachable(path: &Path) {
    let absolute = std::fs::canonicalize(path)
        .unwrap_or_else(|e| panic!("cannot resolve {}: {e}", path.display()));
    for above in absolute.ancestors().skip(1) {
        let mode = std::fs::metadata(above)
            .unwrap_or_else(|e| panic!("cannot stat {}: {e}", above.display()))
            .permissions()
            .mode();
        assert!(
            mode & 0o001 != 0,
            "{} (mode {:o}) keeps libvirt-qemu from reaching {}; put the test's files elsewhere",
            above.display(),
            mode & 0o7777,
            path.display()
        );
    }
}

/// The newest kernel package in the cache, unpacked (its kept members) next to it in
/// `<deb>.d/`. The unpacking goes to a temporary folder that is then renamed, so tests
/// running side by side (threads or processes) either find the finished folder or race to
/// a rename only one wins; the loser's copy is dropped.
fn unpacked_kernel() -> PathBuf {
    let cache = Path::new(KERNEL_CACHE);
    let deb = newest_kernel_deb(cache).unwrap_or_else(|| {
        panic!(
            "no linux-image-*.deb in {KERNEL_CACHE}: run `cargo xtask setup` (as root) to download \
             the kernel the forge tests boot"
        )
    });
    let name = deb
        .file_name()
        .expect("a file found by name")
        .to_string_lossy();
    let done = cache.join(format!("{name}.d"));
    if done.is_dir() {
        return done;
    }
    let tmp = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(cache)
        .unwrap_or_else(|e| panic!("cannot make a folder in {KERNEL_CACHE}: {e}"));
    extract(&deb, tmp.path());
    // tempfile made it 0700: libvirt-qemu must read the kernel inside.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", tmp.path().display()));
    match std::fs::rename(tmp.path(), &done) {
        Ok(()) => {
            // Renamed away: nothing is left for the guard to remove.
            let _kept = tmp.keep();
        }
        Err(e) => assert!(
            done.is_dir(),
            "cannot rename {} to {}: {e}",
            tmp.path().display(),
            done.display()
        ),
    }
    done
}

/// `dpkg-deb --fsys-tarfile DEB | tar -x -C DEST KEEP...`: only the members the guests use.
fn extract(deb: &Path, dest: &Path) {
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run dpkg-deb --fsys-tarfile {}: {e}", deb.display()));
    let tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(dest)
        .arg("--wildcards")
        .args(KEEP)
        .stdin(dpkg.stdout.take().expect("piped stdout"))
        .status()
        .unwrap_or_else(|e| panic!("cannot run tar: {e}"));
    let dpkg = dpkg.wait().expect("dpkg-deb runs");
    assert!(
        dpkg.success() && tar.success(),
        "unpacking {} failed (dpkg-deb {dpkg}, tar {tar}); is it a whole download? remove it and \
         run `cargo xtask setup`",
        deb.display()
    );
}

/// The newest `linux-image-*.deb` in `dir` (by name), if any; the same rule as setup's.
fn newest_kernel_deb(dir: &Path) -> Option<PathBuf> {
    let mut debs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("linux-image-") && n.ends_with(".deb"))
        })
        .collect();
    debs.sort();
    debs.pop()
}

/// The name of the one entry in `dir` (the kernel release under lib/modules).
fn only_entry(dir: &Path) -> String {
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    match names.as_slice() {
        [one] => one.clone(),
        _ => panic!("{} holds {names:?}, not one kernel release", dir.display()),
    }
}

/// The first file called `name` below `dir`, depth first.
fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    entries.iter().find_map(|path| {
        if path.is_dir() {
            find_file(path, name)
        } else {
            (path.file_name().is_some_and(|n| n == name)).then(|| path.clone())
        }
    })
}

/// A newc ("070701") cpio archive built in memory: the format the kernel unpacks as an
/// initramfs. Each entry is a 110-byte ASCII header (thirteen 8-digit hex fields), the
/// name with its NUL, padding to 4 bytes, the data, padding to 4 bytes; a `TRAILER!!!`
/// entry ends it. Owners are root; times are zero, so the same inputs give the same bytes.
#[derive(Default)]
struct Cpio {
    /// The archive so far.
    bytes: Vec<u8>,
    /// The next inode number: the kernel links entries that share one as hard links.
    next_ino: u32,
}

impl Cpio {
    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040_755, (0, 0), &[]);
    }

    fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100_000 | perm, (0, 0), data);
    }

    fn char_device(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, 0o020_600, (major, minor), &[]);
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.next_ino += 1;
        let size = u32::try_from(data.len()).expect("an initramfs member under 4 GiB");
        let namesize = u32::try_from(name.len() + 1).expect("a short name");
        let nlink = if mode & 0o170_000 == 0o040_000 { 2 } else { 1 };
        let fields = [
            self.next_ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            size,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            namesize,
            0, // check (unused by newc)
        ];
        write!(self.bytes, "070701").expect("writing to memory");
        for field in fields {
            write!(self.bytes, "{field:08X}").expect("writing to memory");
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while self.bytes.len() % 4 != 0 {
            self.bytes.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.bytes
    }
}

/// The libvirt daemons for the forge tests. A daemon that already answers is used and left
/// running; otherwise the missing daemons are started and stopped again when the last
/// `Libvirt` of the test binary is dropped. Declare it before the [`Cleanup`] guards so
/// that they run (destroying domains) while libvirtd still answers.
pub struct Libvirt {
    /// Shared by the tests of one binary that run at once, so they neither start a
    /// second libvirtd nor stop the one another test still uses.
    _daemons: Arc<Daemons>,
}

/// The daemons this process started (pids), stopped on drop.
struct Daemons {
    /// In start order; stopped in reverse (libvirtd before virtlogd).
    started: Vec<(&'static str, u32)>,
    /// Holds the pidfiles of the daemons started here.
    _pidfiles: Option<tempfile::TempDir>,
}

/// The live `Daemons`, if any test of this binary holds a `Libvirt`.
static DAEMONS: Mutex<Weak<Daemons>> = Mutex::new(Weak::new());

impl Libvirt {
    /// Make sure [`URI`] answers, starting `virtlogd` and `libvirtd` where they are not
    /// running, and wait (up to 20 s) until `virsh` connects.
    pub fn start() -> Libvirt {
        warn_of_root_only_kvm();
        let mut shared = DAEMONS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(daemons) = shared.upgrade() {
            return Libvirt { _daemons: daemons };
        }
        let daemons = Arc::new(start_daemons());
        *shared = Arc::downgrade(&daemons);
        Libvirt { _daemons: daemons }
    }
}

/// A root-only /dev/kvm (no udev) makes libvirt re-probe qemu on every `virsh define`
/// (30-50 s each); `cargo xtask setup` gives it to group kvm as udev would.
fn warn_of_root_only_kvm() {
    if let Ok(meta) = std::fs::metadata("/dev/kvm")
        && meta.permissions().mode() & 0o077 == 0
    {
        eprintln!(
            "forge_guest: /dev/kvm is root-only, so libvirt re-probes qemu on every define \
             (slow); run `cargo xtask setup` to give it to group kvm"
        );
    }
}

/// Whether the libvirt connection answers.
fn libvirt_answers() -> bool {
    virsh(&["version"]).status.success()
}

fn start_daemons() -> Daemons {
    if libvirt_answers() {
        return Daemons {
            started: Vec::new(),
            _pidfiles: None,
        };
    }
    assert!(
        Path::new("/var/log/libvirt").is_dir(),
        "/var/log/libvirt is missing: run `cargo xtask setup` (libvirt-daemon-system)"
    );
    let pidfiles = tempfile::Builder::new()
        .prefix("sovereign-libvirt-")
        .tempdir()
        .expect("temp dir");
    let mut started = Vec::new();
    for daemon in ["virtlogd", "libvirtd"] {
        if running(daemon) {
            continue;
        }
        let pidfile = pidfiles.path().join(format!("{daemon}.pid"));
        let status = Command::new(daemon)
            .arg("-d")
            .arg("--pid-file")
            .arg(&pidfile)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("cannot run {daemon} ({e}): run `cargo xtask setup`"));
        assert!(status.success(), "{daemon} -d failed ({status})");
        started.push((daemon, wait_for_pidfile(&pidfile)));
    }
    // Built before waiting, so a timeout's panic still stops what was started.
    let daemons = Daemons {
        started,
        _pidfiles: Some(pidfiles),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !libvirt_answers() {
        assert!(
            Instant::now() < deadline,
            "libvirt does not answer on {URI} 20 s after starting {:?}; see \
             /var/log/libvirt/libvirtd.log",
            daemons.started
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    daemons
}

/// A daemon writes its pidfile after it forks away; wait (up to 10 s) for the number.
fn wait_for_pidfile(pidfile: &Path) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = std::fs::read_to_string(pidfile)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            pidfile.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether a live (not zombie) process called `name` runs on this machine.
fn running(name: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        stat_is_live(&stat, name)
    })
}

/// `/proc/PID/stat` reads `PID (COMM) STATE ...`: live when COMM is `name` and the state is
/// neither zombie nor dead (PID 1 here may never reap a daemon's remains).
fn stat_is_live(stat: &str, name: &str) -> bool {
    let Some((head, tail)) = stat.rsplit_once(')') else {
        return false;
    };
    let comm = head.split_once('(').map(|(_, c)| c).unwrap_or("");
    let state = tail.trim_start().chars().next().unwrap_or('X');
    comm == name && !matches!(state, 'Z' | 'X')
}

/// Whether process `pid` still runs as `name`.
fn pid_is(pid: u32, name: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| stat_is_live(&s, name))
}

impl Drop for Daemons {
    fn drop(&mut self) {
        for (name, pid) in self.started.iter().rev() {
            stop(name, *pid);
        }
    }
}

/// SIGTERM, up to 10 s for the process to go, then SIGKILL.
fn stop(name: &str, pid: u32) {
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    if !pid_is(pid, name) {
        return;
    }
    // SAFETY: kill(2) with a pid this process started and checked just above.
    unsafe { libc::kill(raw, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid_is(pid, name) {
        if Instant::now() >= deadline {
            // SAFETY: as above; the process ignored SIGTERM for 10 s.
            unsafe { libc::kill(raw, libc::SIGKILL) };
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `virsh -c URI ARGS...`, its output whatever the status (messages in English).
pub fn virsh(args: &[&str]) -> Output {
    Command::new("virsh")
        .arg("-c")
        .arg(URI)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run virsh ({e}): run `cargo xtask setup`"))
}

/// Undoes one thing a test made, when dropped: also while the test panics, so a failed
/// test leaves no VM, file or link behind. Guards drop in reverse order of declaration:
/// declare the link's guard before the domain's, the domain's last.
pub struct Cleanup {
    /// What to undo.
    what: Undo,
}

enum Undo {
    Domain(String),
    Path(PathBuf),
    Link(String),
}

impl Cleanup {
    /// `virsh destroy` and `virsh undefine --nvram` the domain `name` (either may find
    /// nothing to do), and remove libvirt's qemu log of it.
    pub fn domain(name: impl Into<String>) -> Cleanup {
        Cleanup {
            what: Undo::Domain(name.into()),
        }
    }

    /// Remove the file `path` (the console log), if it is there.
    pub fn path(path: impl Into<PathBuf>) -> Cleanup {
        Cleanup {
            what: Undo::Path(path.into()),
        }
    }

    /// `ip link del` the link `name` (a test's bridge), if it is there.
    pub fn link(name: impl Into<String>) -> Cleanup {
        Cleanup {
            what: Undo::Link(name.into()),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Errors are ignored on purpose: the thing may never have been made, and a guard
        // that panicked while the test unwinds would abort the whole test binary.
        match &self.what {
            Undo::Domain(name) => {
                virsh(&["destroy", name]);
                virsh(&["undefine", "--nvram", name]);
                // libvirt keeps its own log of the domain's qemu after undefine; a failed
                // test shows its end first (qemu's own errors land there, not on the
                // console).
                let qemu_log = PathBuf::from(format!("/var/log/libvirt/qemu/{name}.log"));
                if std::thread::panicking() {
                    let text = std::fs::read_to_string(&qemu_log).unwrap_or_default();
                    let lines: Vec<&str> = text.lines().collect();
                    eprintln!(
                        "{} ends:\n{}",
                        qemu_log.display(),
                        lines[lines.len().saturating_sub(20)..].join("\n")
                    );
                }
                let _ignored = std::fs::remove_file(qemu_log);
            }
            Undo::Path(path) => {
                let _ignored = std::fs::remove_file(path);
            }
            Undo::Link(name) => {
                let _ignored = Command::new("ip")
                    .args(["link", "del", name])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// The serial console log of the libvirt domain `domain`; the forge domain renders this
/// path into `<serial><log file=.../>` (virtlogd writes it, truncated at each start).
pub fn console_log(domain: &str) -> PathBuf {
    PathBuf::from(format!("/var/log/libvirt/qemu/{domain}-console.log"))
}

/// Poll `log` until a line holds `marker`; the whole text then, or after `bound` an error
/// with the end of what the console said (what a failed boot shows).
pub fn wait_for_console(log: &Path, marker: &str, bound: Duration) -> Result<String, String> {
    let deadline = Instant::now() + bound;
    loop {
        let bytes = std::fs::read(log).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if text.lines().any(|l| l.contains(marker)) {
            return Ok(text);
        }
        if Instant::now() >= deadline {
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            return Err(format!(
                "no line with {marker:?} in {} after {bound:?}; it ends:\n{tail}",
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The value of the guest's report line `GUEST <key>: <value>` in console text, trimmed.
pub fn report<'a>(console: &'a str, key: &str) -> Option<&'a str> {
    let prefix = format!("GUEST {key}:");
    console.lines().find_map(|line| {
        let at = line.find(&prefix)?;
        Some(line[at + prefix.len()..].trim())
    })
}
