//! One host's side of a run, from the controller: its own sovereign (shipped when the
//! host has none of this digest), and the commands a run sends it. The resolved profile
//! goes over stdin, never in arguments; what comes back is JSON on stdout.

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::host::{CmdOutput, Host};

use super::Host as FleetHost;
use super::ssh::{Transport, Unreachable, quote};

/// How long one plan may take on a host.
pub const PLAN_TIMEOUT: Duration = Duration::from_secs(600);
/// How long one apply may take on a host (models are pulled, packages installed).
pub const APPLY_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long the quick steps (the binary check, a confirmation) may take.
pub const QUICK_TIMEOUT: Duration = Duration::from_secs(60);
/// How many lines of a failed host's output the recap shows.
pub const TAIL_LINES: usize = 20;

/// This sovereign binary, as shipped to hosts.
pub struct Binary {
    path: std::path::PathBuf,
    sha256: String,
    /// Its bytes, read only when a host needs them.
    bytes: OnceLock<Result<Vec<u8>, String>>,
}

/// The running binary's digest, cached beside the user's other caches: hashing a 100 MB
/// binary on every run was most of a fleet run's fixed cost (BENCHMARKS.md).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct DigestCache {
    /// The file it is the digest of: device, inode, size, modification time.
    key: (u64, u64, u64, i64, i64),
    sha256: String,
}

/// The running image, whatever happened to its path since it started.
const SELF_EXE: &str = "/proc/self/exe";

fn cache_file() -> Option<std::path::PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cache")))?;
    Some(base.join("sovereign").join("self-digest.json"))
}

impl Binary {
    /// The running binary and its digest (from the cache while the file is the same).
    pub fn current() -> anyhow::Result<Binary> {
        use std::os::unix::fs::MetadataExt;
        let path = std::env::current_exe().context("cannot tell where the sovereign binary is")?;
        let meta =
            std::fs::metadata(SELF_EXE).with_context(|| format!("cannot read {SELF_EXE}"))?;
        let key = (
            meta.dev(),
            meta.ino(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
        );
        let cache = cache_file();
        let cached = cache
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|b| serde_json::from_slice::<DigestCache>(&b).ok())
            .filter(|c| c.key == key);
        let bytes = OnceLock::new();
        let sha256 = match cached {
            Some(c) => c.sha256,
            None => {
                let read = std::fs::read(SELF_EXE)
                    .with_context(|| format!("cannot read {} to ship it", path.display()))?;
                let sha256 = hex::encode(Sha256::digest(&read));
                let _ = bytes.set(Ok(read));
                if let Some(f) = &cache {
                    // A cache that cannot be written only costs the next run the hashing.
                    let record = DigestCache {
                        key,
                        sha256: sha256.clone(),
                    };
                    let _ = f
                        .parent()
                        .map(crate::host::fs::ensure_dir)
                        .transpose()
                        .and_then(|_| crate::state::write_json(f, &record));
                }
                sha256
            }
        };
        Ok(Binary {
            path,
            sha256,
            bytes,
        })
    }

    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Its bytes, checked against the digest hosts know it by.
    fn bytes(&self) -> Result<&[u8], String> {
        self.bytes
            .get_or_init(|| {
                let read = std::fs::read(SELF_EXE)
                    .map_err(|e| format!("cannot read {SELF_EXE} to ship it: {e}"))?;
                if hex::encode(Sha256::digest(&read)) != self.sha256 {
                    return Err(format!(
                        "{} changed since its digest was taken; run the command again",
                        self.path.display()
                    ));
                }
                Ok(read)
            })
            .as_ref()
            .map(Vec::as_slice)
            .map_err(Clone::clone)
    }

    /// Where it lives on a host: named by its digest, so a host that has this one is never
    /// sent it again, and a different one never overwrites a binary a run still uses.
    /// Other versions are removed a day after they were last sent.
    pub fn remote_path(&self) -> String {
        format!("\"$HOME\"/.cache/sovereign/bin/{}", self.file_name())
    }

    /// The file name it has on hosts.
    pub fn file_name(&self) -> String {
        format!("sovereign-{}", &self.sha256[..16])
    }

    pub fn local_path(&self) -> &std::path::Path {
        &self.path
    }
}

/// Why a step failed on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// ssh could not reach it.
    Unreachable(String),
    /// It ran and failed: its exit status and the end of what it said.
    Failed {
        code: Option<i32>,
        tail: Vec<String>,
    },
}

impl From<Unreachable> for Failure {
    fn from(u: Unreachable) -> Failure {
        Failure::Unreachable(u.0)
    }
}

/// One host's connection for a run.
pub struct Remote<'a> {
    pub transport: &'a Transport,
    pub host: &'a FleetHost,
    pub layer: &'a dyn Host,
    pub binary: &'a Binary,
}

/// The last `n` non-empty lines of a command's output, stderr after stdout.
pub fn tail(out: &CmdOutput, n: usize) -> Vec<String> {
    let text = format!("{}\n{}", out.stdout_str(), out.stderr_str());
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

impl Remote<'_> {
    /// `sovereign [--root R] ARGS` on the host, as one shell command line.
    fn sovereign(&self, args: &[&str]) -> String {
        let mut line = format!("{} --color never", self.binary.remote_path());
        if let Some(root) = &self.host.root {
            line.push_str(&format!(" --root {}", quote(root)));
        }
        for a in args {
            line.push(' ');
            line.push_str(&quote(a));
        }
        line
    }

    /// Run the host's sovereign with `args` and `stdin`; its output when it succeeded.
    fn call(
        &self,
        args: &[&str],
        stdin: Option<Vec<u8>>,
        timeout: Duration,
        shared: bool,
    ) -> Result<CmdOutput, Failure> {
        let out = self.transport.run(
            self.layer,
            self.host,
            &self.sovereign(args),
            stdin,
            timeout,
            shared,
        )?;
        if out.success() {
            Ok(out)
        } else {
            Err(Failure::Failed {
                code: out.code,
                tail: tail(&out, TAIL_LINES),
            })
        }
    }

    /// Make sure the host has this binary; `true` when it was sent.
    pub fn ensure_binary(&self) -> Result<bool, Failure> {
        let path = self.binary.remote_path();
        let probe = format!("test -x {path} && echo present || echo absent");
        let out = self
            .transport
            .run(self.layer, self.host, &probe, None, QUICK_TIMEOUT, true)?;
        if out.stdout_str().trim() == "present" {
            return Ok(false);
        }
        // Written beside its final name and renamed, so a cut transfer never leaves a
        // binary that looks complete; never over one already there (a run in progress
        // may be executing it, and its digest-named copy is the same file anyway).
        let upload = format!(
            "mkdir -p \"$HOME\"/.cache/sovereign/bin && cat > {path}.part.$$ && chmod 755 {path}.part.$$ && mv -n {path}.part.$$ {path}; rm -f {path}.part.$$; find \"$HOME\"/.cache/sovereign/bin -name 'sovereign-*' ! -name {name} -mmin +1440 -delete 2>/dev/null; test -x {path}",
            name = self.binary.file_name()
        );
        let bytes = self.binary.bytes().map_err(|why| Failure::Failed {
            code: None,
            tail: vec![why],
        })?;
        let out = self.transport.run(
            self.layer,
            self.host,
            &upload,
            Some(bytes.to_vec()),
            APPLY_TIMEOUT,
            true,
        )?;
        if !out.success() {
            return Err(Failure::Failed {
                code: out.code,
                tail: tail(&out, TAIL_LINES),
            });
        }
        Ok(true)
    }

    /// `sovereign plan` of `resolved` (a resolved profile as JSON) on the host.
    pub fn plan(&self, resolved: &[u8], allow_destroy: bool) -> Result<serde_json::Value, Failure> {
        let mut args = vec!["plan", "--resolved", "-", "--json"];
        if allow_destroy {
            args.push("--allow-destroy");
        }
        let out = self.call(&args, Some(resolved.to_vec()), PLAN_TIMEOUT, true)?;
        serde_json::from_slice(&out.stdout).map_err(|e| Failure::Failed {
            code: out.code,
            tail: vec![format!("the host's plan is not JSON: {e}")],
        })
    }

    /// `sovereign apply` of `resolved` with a confirmation deadline: what it printed
    /// (the armed watcher's token, the apply report), or why it failed. A cut connection
    /// after the watcher was armed is not an error here: the caller confirms or not.
    pub fn apply(
        &self,
        resolved: &[u8],
        allow_destroy: bool,
        confirm_within: Duration,
    ) -> Result<Applied, Failure> {
        let secs = format!("{}s", confirm_within.as_secs().max(1));
        let mut args = vec![
            "apply",
            "--resolved",
            "-",
            "--yes",
            "--json",
            "--confirm-within",
            secs.as_str(),
        ];
        if allow_destroy {
            args.push("--allow-destroy");
        }
        let out = self.transport.run_raw(
            self.layer,
            self.host,
            &self.sovereign(&args),
            Some(resolved.to_vec()),
            APPLY_TIMEOUT,
            true,
        )?;
        let cut = super::ssh::unreachable(&out, APPLY_TIMEOUT).map(|u| u.0);
        let mut applied = Applied {
            token: None,
            report: None,
            code: if cut.is_some() { None } else { out.code },
            cut,
            tail: tail(&out, TAIL_LINES),
        };
        let text = out.stdout_str();
        for value in serde_json::Deserializer::from_str(&text).into_iter::<serde_json::Value>() {
            let Ok(value) = value else { break };
            if let Some(token) = value.get("armed").and_then(|a| a["token"].as_str()) {
                applied.token = Some(token.to_string());
            } else if value.get("generation").is_some() {
                applied.report = Some(value);
            }
        }
        Ok(applied)
    }

    /// Confirm the apply over a connection of its own (never the master opened before
    /// the change: the change must leave the host reachable anew).
    pub fn confirm(&self, token: &str) -> Result<(), Failure> {
        let token = Some(format!("{token}\n").into_bytes());
        self.call(&["confirm", "-"], token, QUICK_TIMEOUT, false)
            .map(drop)
    }

    /// What became of an armed apply: "confirmed", "rolled_back", "armed" (still waiting)
    /// or "unknown".
    pub fn status(&self, token: &str) -> Result<String, Failure> {
        let token = Some(format!("{token}\n").into_bytes());
        let out = self.call(&["confirm", "--status", "-"], token, QUICK_TIMEOUT, false)?;
        Ok(out.stdout_str().trim().to_string())
    }

    /// Undo the host's generation `generation` (`--rollback-all-on-failure`): back to the
    /// last succeeded one before it, or to the state before the first.
    pub fn rollback(&self, generation: u64) -> Result<(), Failure> {
        let before = generation.to_string();
        self.call(
            &["rollback", "--before", &before, "--yes"],
            None,
            APPLY_TIMEOUT,
            true,
        )
        .map(drop)
    }
}

/// What a host's apply printed.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The armed watcher's token; none when nothing was to apply.
    pub token: Option<String>,
    /// The apply report (`apply --json`).
    pub report: Option<serde_json::Value>,
    /// The remote apply's exit status; none when the connection was cut.
    pub code: Option<i32>,
    /// Why the connection was cut, if it was.
    pub cut: Option<String>,
    /// The end of what it said.
    pub tail: Vec<String>,
}
