//! The host: the one boundary with side effects.
//!
//! Everything that spawns a process goes through [`Host`]; clippy's
//! `disallowed-methods` (clippy.toml) enforces it and `cargo xtask tidy` checks it.
//! Domains describe what to do, the executor asks the host to do it.

pub mod apt;
pub mod fs;
#[cfg(target_os = "linux")]
pub mod netlink;
pub mod users;

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// A command to run: argv, not a shell string, so nothing is ever re-parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cmd {
    pub argv: Vec<OsString>,
    pub stdin: Option<Vec<u8>>,
    pub env: Vec<(OsString, OsString)>,
    pub cwd: Option<PathBuf>,
    /// Kill the process if it runs longer than this.
    pub timeout: Option<Duration>,
    /// Keep at most this many bytes of each of stdout and stderr (the rest is read and
    /// dropped, so the process never blocks): for output from another machine, which
    /// must not fill this one's memory.
    pub output_limit: Option<usize>,
}

impl Cmd {
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Cmd {
            argv: argv.into_iter().map(Into::into).collect(),
            ..Cmd::default()
        }
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    pub fn output_limit(mut self, bytes: usize) -> Self {
        self.output_limit = Some(bytes);
        self
    }

    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    /// The command line for messages (`zfs get -H -p ...`).
    pub fn display(&self) -> String {
        self.argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What a finished command left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdOutput {
    /// The exit code; `None` when killed by a signal or by the timeout.
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub timed_out: bool,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// The side-effect boundary. The real host runs things; tests of pure logic may
/// substitute a recording one.
pub trait Host: Send + Sync {
    /// Run a command to completion. `Err` means it could not be started.
    fn run(&self, cmd: &Cmd) -> io::Result<CmdOutput>;

    /// Whether `program` is on PATH.
    fn has_program(&self, program: &str) -> bool;

    /// A netlink connection in this process's network namespace: links, addresses and
    /// forwarding entries are read and changed through it.
    #[cfg(target_os = "linux")]
    fn netlink(&self) -> io::Result<netlink::Netlink> {
        netlink::Netlink::open()
    }

    /// Whether PID 1 is systemd, as sd_booted(3) tells it: `/run/systemd/system` is a
    /// folder. Where it is not, `systemctl` has nobody to talk to.
    fn systemd_booted(&self) -> bool {
        std::path::Path::new("/run/systemd/system").is_dir()
    }
}

/// The real machine.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealHost;

impl Host for RealHost {
    fn run(&self, cmd: &Cmd) -> io::Result<CmdOutput> {
        run_process(cmd)
    }

    fn has_program(&self, program: &str) -> bool {
        find_program(program).is_some()
    }
}

/// Why systemd steps cannot run here, or `None` when they can: PID 1 is not systemd,
/// `--root` puts the unit files where the running systemd does not read them, or there is
/// no `systemctl`.
pub fn systemd_unusable(root: &fs::Root, host: &dyn Host) -> Option<String> {
    if !host.systemd_booted() {
        return Some("PID 1 is not systemd".into());
    }
    if root.path() != std::path::Path::new("/") {
        return Some(format!(
            "the unit files are written under --root {}, which the running systemd does not read",
            root.path().display()
        ));
    }
    if !host.has_program("systemctl") {
        return Some("systemctl is not installed".into());
    }
    None
}

/// Locate a program on PATH.
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// What [`run_until_line`] saw of a process it stopped (or that stopped by itself).
#[derive(Debug)]
pub struct LineWait {
    /// The process id it ran under (reaped by the time this is returned).
    pub pid: u32,
    /// The first stdout line containing the marker, when one came within the bound.
    pub matched: Option<String>,
    /// Every stdout line read, up to and including the marker's, without line endings
    /// (invalid UTF-8 replaced).
    pub lines: Vec<String>,
    /// What the process wrote on stderr (at most [`LINE_WAIT_STDERR_LIMIT`] bytes).
    pub stderr: String,
    /// How the process ended when it exited by itself before the marker and the bound;
    /// `None` when it was killed.
    pub exited: Option<std::process::ExitStatus>,
    /// The bound passed before the marker came and the process was killed.
    pub timed_out: bool,
    /// From the start until the marker, the exit or the bound.
    pub elapsed: Duration,
}

impl LineWait {
    /// The last non-empty stdout line, if any.
    pub fn last_line(&self) -> Option<&str> {
        self.lines
            .iter()
            .rev()
            .map(|l| l.trim())
            .find(|l| !l.is_empty())
    }
}

/// Start `cmd` in a session of its own with no terminal and its standard streams on
/// /dev/null, and do not wait for it: it outlives this process and the SSH session that
/// started it (a hang-up of the session does not reach it). Returns its pid.
#[allow(clippy::disallowed_methods)] // the host layer is the one place allowed to spawn
pub fn spawn_detached(cmd: &Cmd) -> io::Result<u32> {
    use std::os::unix::process::CommandExt;
    let (program, args) = cmd
        .argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let mut command = std::process::Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in &cmd.env {
        command.env(k, v);
    }
    if let Some(dir) = &cmd.cwd {
        command.current_dir(dir);
    }
    // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn()?;
    Ok(child.id())
}

/// How much of stderr [`run_until_line`] keeps: a process that loops on an error must not
/// fill memory before the bound.
pub const LINE_WAIT_STDERR_LIMIT: usize = 64 * 1024;

/// Run `cmd` until a line of its stdout contains `marker`, it exits, or `bound` passes,
/// whichever comes first; then kill it (when still running) and reap it. Stdout is read
/// line by line as it streams, so a process that would run forever (a booted guest) is
/// stopped as soon as it has said what was awaited. `cmd.timeout` is not used: `bound` is
/// the limit. `Err` means the process could not be started or waited for.
///
/// Only the process itself is killed: a child it started that holds the pipes open is
/// left to finish on its own, and is not waited for.
pub fn run_until_line(cmd: &Cmd, marker: &str, bound: Duration) -> io::Result<LineWait> {
    use std::io::{BufRead, Read};
    use std::sync::mpsc::{self, RecvTimeoutError};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    let mut child = spawn(cmd)?;
    let pid = child.id();
    let start = Instant::now();
    let deadline = start + bound;

    // Lines travel to this thread through a channel so that waiting for the next one can
    // time out; the reader blocks in read, which a bound cannot interrupt.
    let out = child.stdout.take().expect("stdout was piped");
    let (line_tx, line_rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut reader = io::BufReader::new(out);
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if line_tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    // Stderr is gathered as it comes, so what was written is there even when a
    // grandchild keeps the pipe open after the process is gone.
    let err = child.stderr.take().expect("stderr was piped");
    let stderr_buf = Arc::new(Mutex::new(Vec::new()));
    let (err_done_tx, err_done_rx) = mpsc::channel::<()>();
    {
        let buf = Arc::clone(&stderr_buf);
        std::thread::spawn(move || {
            let mut err = err;
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut chunk) {
                let mut buf = buf.lock().unwrap_or_else(|p| p.into_inner());
                let room = LINE_WAIT_STDERR_LIMIT.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..n.min(room)]);
            }
            let _ = err_done_tx.send(());
        });
    }

    let mut lines = Vec::new();
    let mut matched = None;
    let mut exited = None;
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match line_rx.recv_timeout(left) {
            Ok(raw) => {
                let line = String::from_utf8_lossy(&raw)
                    .trim_end_matches(['\n', '\r'])
                    .to_string();
                let hit = line.contains(marker);
                lines.push(line);
                if hit {
                    matched = lines.last().cloned();
                    break;
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                timed_out = true;
                break;
            }
            // Stdout closed: the process is ending (or closed it and runs on, which the
            // bound still covers).
            Err(RecvTimeoutError::Disconnected) => {
                loop {
                    if let Some(status) = child.try_wait()? {
                        exited = Some(status);
                        break;
                    }
                    if Instant::now() >= deadline {
                        timed_out = true;
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                break;
            }
        }
    }
    let elapsed = start.elapsed();
    if exited.is_none() {
        // It may have exited by itself a moment ago; killing a process that is already
        // gone is not an error worth reporting.
        let _ = child.kill();
        child.wait()?;
    }
    // Give the stderr reader a moment to see the end of the pipe; a grandchild holding it
    // open must not hold this up.
    let _ = err_done_rx.recv_timeout(Duration::from_millis(500));
    let stderr = {
        let buf = stderr_buf.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&buf).into_owned()
    };
    Ok(LineWait {
        pid,
        matched,
        lines,
        stderr,
        exited,
        timed_out,
        elapsed,
    })
}

/// Start `cmd` with stdout and stderr piped, stdin piped and fed when it has input (null
/// otherwise).
#[allow(clippy::disallowed_methods)] // this is the one place allowed to spawn
fn spawn(cmd: &Cmd) -> io::Result<std::process::Child> {
    use std::io::Write;

    let (program, args) = cmd
        .argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let mut command = std::process::Command::new(program);
    command
        .args(args)
        .stdin(if cmd.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in &cmd.env {
        command.env(k, v);
    }
    if let Some(dir) = &cmd.cwd {
        command.current_dir(dir);
    }
    let mut child = command
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run `{}`: {e}", cmd.display())))?;
    if let Some(input) = &cmd.stdin {
        let mut stdin = child.stdin.take().expect("stdin was piped");
        let input = input.clone();
        std::thread::spawn(move || stdin.write_all(&input));
    }
    Ok(child)
}

/// Read `r` to its end, keeping the first `limit` bytes.
fn read_bounded(r: &mut impl std::io::Read, limit: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let n = match r.read(&mut chunk) {
            Ok(0) => return Ok(buf),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let room = limit.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..n.min(room)]);
    }
}

fn run_process(cmd: &Cmd) -> io::Result<CmdOutput> {
    let mut child = spawn(cmd)?;
    // Drain both pipes on their own threads so a chatty child never blocks on a full pipe.
    let mut out = child.stdout.take().expect("stdout was piped");
    let mut err = child.stderr.take().expect("stderr was piped");
    let limit = cmd.output_limit.unwrap_or(usize::MAX);
    let out_reader = std::thread::spawn(move || read_bounded(&mut out, limit));
    let err_reader = std::thread::spawn(move || read_bounded(&mut err, limit));
    let mut timed_out = false;
    let status = match cmd.timeout {
        None => child.wait()?,
        Some(limit) => {
            let start = std::time::Instant::now();
            loop {
                if let Some(status) = child.try_wait()? {
                    break status;
                }
                if start.elapsed() >= limit {
                    timed_out = true;
                    child.kill()?;
                    break child.wait()?;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    };
    let stdout = out_reader.join().expect("reader thread")?;
    let stderr = err_reader.join().expect("reader thread")?;
    Ok(CmdOutput {
        code: if timed_out { None } else { status.code() },
        stdout,
        stderr,
        timed_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_a_command_and_captures_output() {
        let out = RealHost
            .run(&Cmd::new(["sh", "-c", "echo out; echo err >&2; exit 3"]))
            .unwrap();
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout_str(), "out\n");
        assert_eq!(out.stderr_str(), "err\n");
    }

    #[test]
    fn output_beyond_the_limit_is_dropped_and_the_command_still_finishes() {
        let out = RealHost
            .run(
                &Cmd::new(["sh", "-c", "head -c 1000000 /dev/zero; echo done >&2"])
                    .output_limit(1000),
            )
            .unwrap();
        assert!(out.success());
        assert_eq!(out.stdout.len(), 1000);
        assert_eq!(out.stderr_str(), "done\n");
    }

    #[test]
    fn a_timeout_kills_the_command() {
        let out = RealHost
            .run(&Cmd::new(["sleep", "5"]).timeout(Duration::from_millis(100)))
            .unwrap();
        assert!(out.timed_out);
        assert!(!out.success());
    }

    #[test]
    fn run_until_line_stops_the_process_at_the_marker() {
        let start = std::time::Instant::now();
        let wait = run_until_line(
            &Cmd::new(["sh", "-c", "echo a; echo MARK; sleep 30"]),
            "MARK",
            Duration::from_secs(20),
        )
        .unwrap();
        assert!(start.elapsed() < Duration::from_secs(5), "{wait:?}");
        assert_eq!(wait.matched.as_deref(), Some("MARK"));
        assert_eq!(wait.lines, ["a", "MARK"]);
        assert!(!wait.timed_out && wait.exited.is_none(), "{wait:?}");
        assert!(!alive(wait.pid), "the process was killed and reaped");
    }

    #[test]
    fn run_until_line_kills_the_process_at_the_bound() {
        let start = std::time::Instant::now();
        let wait =
            run_until_line(&Cmd::new(["sleep", "30"]), "MARK", Duration::from_secs(1)).unwrap();
        let took = start.elapsed();
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(5),
            "{took:?}"
        );
        assert!(wait.timed_out && wait.matched.is_none() && wait.exited.is_none());
        assert!(wait.elapsed >= Duration::from_secs(1));
        assert!(!alive(wait.pid));
    }

    #[test]
    fn run_until_line_reports_a_process_that_exits_first() {
        let wait = run_until_line(
            &Cmd::new([
                "sh",
                "-c",
                "printf 'one\\r\\ntwo\\n'; echo broke >&2; exit 3",
            ]),
            "MARK",
            Duration::from_secs(20),
        )
        .unwrap();
        assert_eq!(wait.exited.and_then(|s| s.code()), Some(3), "{wait:?}");
        assert!(!wait.timed_out && wait.matched.is_none());
        assert_eq!(wait.lines, ["one", "two"], "line endings are dropped");
        assert_eq!(wait.last_line(), Some("two"));
        assert_eq!(wait.stderr, "broke\n");
    }

    /// Whether a process with this id exists (a zombie counts).
    fn alive(pid: u32) -> bool {
        // SAFETY: signal 0 only checks that the process exists; nothing is sent.
        unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
    }

    #[test]
    fn a_missing_program_is_an_error_naming_it() {
        let err = RealHost
            .run(&Cmd::new(["no-such-program-xyz"]))
            .unwrap_err();
        assert!(err.to_string().contains("no-such-program-xyz"));
    }
}
