//! The transport: the system OpenSSH client, so a user's `~/.ssh/config` (Include, Match,
//! ProxyJump, agents, FIDO keys, certificates) keeps working. One ControlMaster per host
//! carries every step of a run (one handshake per host, not per command); the masters live
//! in a private folder with short hashed socket names (`%C`; a Unix socket path is limited
//! to 108 bytes) and are closed, and the folder removed, when the run ends.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::host::{Cmd, CmdOutput, Host};

use super::{Fleet, Host as FleetHost, StrictHostKeys};

/// How long ssh may take to connect before the host counts as unreachable.
pub const CONNECT_TIMEOUT_SECS: u32 = 10;
/// How long an idle master waits before it closes itself: the run closes it explicitly,
/// this only bounds a master whose run was killed.
const CONTROL_PERSIST_SECS: u32 = 60;

/// The most a host's command may print (each of stdout and stderr) that the controller
/// keeps: a plan of thousands of changes fits many times over.
pub const OUTPUT_LIMIT: usize = 64 * 1024 * 1024;

/// The masters of one run.
pub struct Transport {
    dir: tempfile::TempDir,
    strict: StrictHostKeys,
    known_hosts: Option<PathBuf>,
}

/// Why a command did not run on the host: ssh could not reach it (exit 255).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable(pub String);

impl Transport {
    /// A run's transport; the control sockets' folder is private (0700).
    pub fn new(fleet: &Fleet) -> std::io::Result<Transport> {
        let dir = tempfile::Builder::new()
            .prefix("sovfl")
            .tempdir_in("/tmp")?;
        Ok(Transport {
            dir,
            strict: fleet.strict_host_keys,
            known_hosts: fleet.known_hosts.clone(),
        })
    }

    fn control_path(&self) -> PathBuf {
        self.dir.path().join("%C")
    }

    /// The ssh options every connection to `host` uses. `shared` goes through the host's
    /// master; otherwise a connection of its own (a confirmation must prove that a new
    /// connection still reaches the host, not reuse one opened before the change).
    fn args(&self, host: &FleetHost, shared: bool) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            format!("ConnectTimeout={CONNECT_TIMEOUT_SECS}"),
            "-o".into(),
            format!(
                "StrictHostKeyChecking={}",
                match self.strict {
                    StrictHostKeys::Yes => "yes",
                    StrictHostKeys::AcceptNew => "accept-new",
                }
            ),
            "-o".into(),
            "ServerAliveInterval=5".into(),
            "-o".into(),
            "ServerAliveCountMax=3".into(),
        ];
        if let Some(k) = &self.known_hosts {
            a.push("-o".into());
            a.push(format!("UserKnownHostsFile={}", k.display()));
        }
        if shared {
            a.extend([
                "-o".into(),
                "ControlMaster=auto".into(),
                "-o".into(),
                format!("ControlPath={}", self.control_path().display()),
                "-o".into(),
                format!("ControlPersist={CONTROL_PERSIST_SECS}"),
            ]);
        } else {
            a.extend([
                "-o".into(),
                "ControlMaster=no".into(),
                "-o".into(),
                "ControlPath=none".into(),
            ]);
        }
        if let Some(port) = host.port {
            a.push("-p".into());
            a.push(port.to_string());
        }
        if let Some(id) = &host.identity_file {
            a.push("-i".into());
            a.push(id.display().to_string());
            a.push("-o".into());
            a.push("IdentitiesOnly=yes".into());
        }
        a.push(destination(host));
        a
    }

    /// Run `command` (one shell command line, as ssh sends it) on `host`, with `stdin`;
    /// everything it left, whether or not ssh reached the host (what a command printed
    /// before its connection was cut is there too).
    pub fn run_raw(
        &self,
        host_layer: &dyn Host,
        host: &FleetHost,
        command: &str,
        stdin: Option<Vec<u8>>,
        timeout: Duration,
        shared: bool,
    ) -> Result<CmdOutput, Unreachable> {
        let mut argv = vec!["ssh".to_string()];
        argv.extend(self.args(host, shared));
        argv.push("--".into());
        argv.push(command.to_string());
        // What a host says is read, not trusted: a runaway or hostile one must not fill
        // the controller's memory.
        let mut cmd = Cmd::new(argv).timeout(timeout).output_limit(OUTPUT_LIMIT);
        if let Some(input) = stdin {
            cmd = cmd.stdin(input);
        }
        host_layer
            .run(&cmd)
            .map_err(|e| Unreachable(format!("cannot run ssh: {e}")))
    }

    /// Run `command` on `host`; `Err` when ssh did not reach it (or it did not answer in
    /// time), else the remote command's output and status.
    pub fn run(
        &self,
        host_layer: &dyn Host,
        host: &FleetHost,
        command: &str,
        stdin: Option<Vec<u8>>,
        timeout: Duration,
        shared: bool,
    ) -> Result<CmdOutput, Unreachable> {
        let out = self.run_raw(host_layer, host, command, stdin, timeout, shared)?;
        match unreachable(&out, timeout) {
            Some(why) => Err(why),
            None => Ok(out),
        }
    }
}

/// Why ssh did not reach the host, from what it left; `None` when the remote command ran.
pub fn unreachable(out: &CmdOutput, timeout: Duration) -> Option<Unreachable> {
    {
        if out.timed_out {
            return Some(Unreachable(format!(
                "no answer within {} s",
                timeout.as_secs()
            )));
        }
        // ssh exits 255 for its own errors (refused, timed out, host key, auth); the
        // remote command's own status otherwise.
        if out.code == Some(255) {
            let said = out.stderr_str();
            let line = said
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("ssh failed")
                .trim()
                .to_string();
            return Some(Unreachable(line));
        }
        None
    }
}

impl Transport {
    /// Close `host`'s master, if it has one.
    pub fn close(&self, host_layer: &dyn Host, host: &FleetHost) {
        let mut argv = vec!["ssh".to_string()];
        argv.extend([
            "-o".into(),
            format!("ControlPath={}", self.control_path().display()),
            "-O".into(),
            "exit".into(),
        ]);
        if let Some(port) = host.port {
            argv.push("-p".into());
            argv.push(port.to_string());
        }
        argv.push(destination(host));
        let _ = host_layer.run(&Cmd::new(argv).timeout(Duration::from_secs(10)));
    }

    /// The folder holding the control sockets.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// `user@address`, or the address alone (ssh's configuration picks the user).
fn destination(host: &FleetHost) -> String {
    match &host.user {
        Some(u) => format!("{u}@{}", host.address),
        None => host.address.clone(),
    }
}

/// Quote `word` for the remote shell (single quotes; a quote inside becomes `'\''`).
pub fn quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-=:@%+,".contains(&b))
    {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_reach_the_remote_shell_unchanged() {
        assert_eq!(quote("/var/lib/x"), "/var/lib/x");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("$(reboot)"), "'$(reboot)'");
    }
}
