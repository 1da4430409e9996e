//! The host: the one boundary with side effects.
//!
//! Everything that spawns a process goes through [`Host`]; clippy's
//! `disallowed-methods` (clippy.toml) enforces it and `cargo xtask tidy` checks it.
//! Domains describe what to do, the executor asks the host to do it.

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

#[allow(clippy::disallowed_methods)] // this is the one place allowed to spawn
fn run_process(cmd: &Cmd) -> io::Result<CmdOutput> {
    use std::io::{Read, Write};

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
    // Drain both pipes on their own threads so a chatty child never blocks on a full pipe.
    let mut out = child.stdout.take().expect("stdout was piped");
    let mut err = child.stderr.take().expect("stderr was piped");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        out.read_to_end(&mut buf).map(|_| buf)
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        err.read_to_end(&mut buf).map(|_| buf)
    });
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
    fn a_timeout_kills_the_command() {
        let out = RealHost
            .run(&Cmd::new(["sleep", "5"]).timeout(Duration::from_millis(100)))
            .unwrap();
        assert!(out.timed_out);
        assert!(!out.success());
    }

    #[test]
    fn a_missing_program_is_an_error_naming_it() {
        let err = RealHost
            .run(&Cmd::new(["no-such-program-xyz"]))
            .unwrap_err();
        assert!(err.to_string().contains("no-such-program-xyz"));
    }
}
