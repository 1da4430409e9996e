//! `[network.tailscale]`: the node installed from Tailscale's apt repository, its daemon
//! run, and its settings converged on every apply.
//!
//! Resources: the repository's source entry (a file requested from the files domain),
//! `network.keyring:tailscale` (the signing key, fetched over HTTPS at apply and checked
//! against [`KEY_FINGERPRINT`]: these machines cannot reach the repository to ship the
//! key itself), `network.package:tailscale` (apt), the `tailscaled` unit (requested from
//! the services domain) and `network.tailscale:node` (`tailscale up`, `set` or
//! `up --reset`, see [`super::node`]).

use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::domain::requests::{file_address, service_address};
use crate::domain::{FileRequest, PlanContext, Requests, UnitRequest};
use crate::host::fs::Root;
use crate::host::{Cmd, Host};
use crate::plan::{Action, Address, Change, FieldChange};

use super::diff::NetOp;
use super::node::{self, Have, Prefs, Setting, Step, Want};
use super::openpgp;
use super::section::TAILSCALE_DISTRIBUTION;
use super::tailnet;

/// The fingerprint of Tailscale's package signing key, as Tailscale publishes it; a
/// downloaded keyring holding any other primary key is refused.
pub const KEY_FINGERPRINT: &str = "2596A99EAAB33821893C0A79458CA832957F5868";
pub const KEYRING_PATH: &str = "/usr/share/keyrings/tailscale-archive-keyring.gpg";
pub const SOURCE_PATH: &str = "/etc/apt/sources.list.d/tailscale.list";
pub const UNIT: &str = "tailscaled";
const PACKAGE: &str = "tailscale";
const LIST_TEMPLATE: &str = include_str!("../../../templates/tailscale.list.j2");
const UNIT_TEMPLATE: &str = include_str!("../../../templates/tailscaled.service.j2");
/// How long one `tailscale` command may take (`up` waits for the control server).
const TAILSCALE_TIMEOUT: Duration = Duration::from_secs(120);

/// What the profile asks of the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Desired {
    pub want: Want,
    pub install: bool,
    pub distro: String,
    pub release: String,
    /// Where `[network.tailscale]` and its `auth_key_file` were written, for errors.
    #[serde(skip)]
    pub at: String,
    #[serde(skip)]
    pub key_at: String,
}

impl Desired {
    pub fn key_url(&self) -> String {
        format!(
            "https://pkgs.tailscale.com/stable/{}/{}.noarmor.gpg",
            self.distro, self.release
        )
    }
}

pub fn desired(cx: &PlanContext<'_>) -> anyhow::Result<Option<Desired>> {
    use crate::profile::rules::kp;
    let Some(spec) = cx
        .profile
        .profile
        .network
        .as_ref()
        .and_then(|n| n.tailscale.as_ref())
    else {
        return Ok(None);
    };
    let distribution = spec
        .distribution
        .as_deref()
        .unwrap_or(TAILSCALE_DISTRIBUTION);
    let Some((distro, release)) = distribution.split_once(' ') else {
        bail!(
            "{}: distribution {distribution:?} is not \"DISTRO RELEASE\" (\"debian bookworm\")",
            cx.profile
                .place(&kp(&["network", "tailscale", "distribution"]))
        );
    };
    Ok(Some(Desired {
        want: Want::from_spec(spec),
        install: spec.install.unwrap_or(true),
        distro: distro.to_string(),
        release: release.to_string(),
        at: cx.profile.place(&kp(&["network", "tailscale"])),
        key_at: cx
            .profile
            .place(&kp(&["network", "tailscale", "auth_key_file"])),
    }))
}

/// The source entry and the daemon's unit, when sovereign installs the node.
pub fn requests(d: &Desired) -> anyhow::Result<Requests> {
    let mut out = Requests::default();
    if !d.install {
        return Ok(out);
    }
    let list = crate::domain::template::render(
        LIST_TEMPLATE,
        "tailscale.list.j2",
        minijinja::context! { keyring => KEYRING_PATH, distro => d.distro.clone(), release => d.release.clone() },
    )?;
    out.files.push(FileRequest {
        path: SOURCE_PATH.into(),
        content: list.into_bytes(),
        mode: 0o644,
        sensitive: false,
        by: "network.tailscale".into(),
        remove_after: vec![package_address()],
    });
    let unit = crate::domain::template::render(
        UNIT_TEMPLATE,
        "tailscaled.service.j2",
        minijinja::context! {},
    )?;
    let mut request = UnitRequest::new(UNIT, unit.into_bytes(), "network.tailscale");
    request.after = vec![package_address()];
    out.unit(request);
    Ok(out)
}

pub fn package_address() -> Address {
    Address::new("network", "package", PACKAGE)
}

pub fn keyring_address() -> Address {
    Address::new("network", "keyring", "tailscale")
}

pub fn node_address() -> Address {
    Address::new("network", "tailscale", "node")
}

/// What the machine has of the node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub package_installed: bool,
    /// The keyring's primary key fingerprint, or why it is not usable; `None`: absent.
    pub keyring: Option<Result<String, String>>,
    /// The node, where `tailscale` answers.
    pub node: Option<Have>,
    /// Whether the auth key file exists (when the profile names one).
    pub key_file_exists: Option<bool>,
}

/// Observe the package, the keyring and the node; `reading` is this plan's one
/// `tailscale status --json` ([`tailnet::read`]).
pub fn observe(
    root: &Root,
    host: &dyn Host,
    d: &Desired,
    reading: &tailnet::Reading,
) -> anyhow::Result<Observed> {
    let mut out = Observed::default();
    if d.install {
        out.package_installed = crate::host::apt::installed(host, &[PACKAGE]).contains(PACKAGE);
        let path = root.resolve(KEYRING_PATH)?;
        out.keyring = match std::fs::read(&path) {
            Ok(bytes) => Some(openpgp::primary_fingerprint(&bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => Some(Err(format!("cannot read {}: {e}", path.display()))),
        };
    }
    if reading.installed {
        out.node = Some(Have {
            state: reading.state.clone(),
            prefs: read_prefs(host),
        });
    }
    if let Some(file) = &d.want.auth_key_file {
        out.key_file_exists = Some(root.resolve(file)?.is_file());
    }
    Ok(out)
}

/// The node's preferences (`tailscale debug prefs`); the defaults where it does not answer.
fn read_prefs(host: &dyn Host) -> Prefs {
    host.run(&Cmd::new(["tailscale", "debug", "prefs"]).timeout(TAILSCALE_TIMEOUT))
        .ok()
        .filter(|o| o.success())
        .and_then(|o| serde_json::from_slice::<Prefs>(&o.stdout).ok())
        .unwrap_or_default()
}

/// What apply does for the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeOp {
    pub step: Step,
    pub settings: Vec<Setting>,
    pub auth_key_file: Option<String>,
}

pub fn diff(d: &Desired, o: &Observed, changes: &mut Vec<Change>) -> anyhow::Result<()> {
    let mut node_after = Vec::new();
    if d.install {
        let url = d.key_url();
        let good = matches!(&o.keyring, Some(Ok(f)) if f == KEY_FINGERPRINT);
        if !good {
            let before = match &o.keyring {
                None => None,
                Some(Ok(f)) => Some(f.clone()),
                Some(Err(why)) => Some(format!("unusable: {why}")),
            };
            let action = if o.keyring.is_none() {
                Action::Create
            } else {
                Action::Update
            };
            let mut change = Change::new(keyring_address(), action).with_op(NetOp::FetchKeyring {
                url: url.clone(),
                path: KEYRING_PATH.into(),
            });
            change.fields = vec![
                FieldChange::new("path", None, Some(KEYRING_PATH.into())),
                FieldChange::new("source", None, Some(url)),
                FieldChange::new("fingerprint", before, Some(KEY_FINGERPRINT.into())),
            ];
            change.reason = Some(
                "fetched over HTTPS and refused unless its one key has the pinned fingerprint"
                    .into(),
            );
            changes.push(change);
        }
        if !o.package_installed {
            let mut change =
                Change::new(package_address(), Action::Create).with_op(NetOp::InstallPackage {
                    name: PACKAGE.into(),
                });
            change.fields = vec![FieldChange::new("package", None, Some(PACKAGE.into()))];
            change.depends_on = vec![keyring_address(), file_address(SOURCE_PATH)];
            change.reason =
                Some("apt-get update, then apt-get install from Tailscale's repository".into());
            changes.push(change);
        }
        node_after = vec![package_address(), service_address(UNIT)];
    }

    let have = o.node.as_ref();
    let Some((step, settings)) = node::plan(&d.want, have) else {
        return Ok(());
    };
    let needs_login = !matches!(have.map(|h| h.state.as_str()), Some("Running" | "Stopped"));
    let mut change = Change::new(
        node_address(),
        match (&step, have) {
            (_, None) => Action::Create,
            (Step::Reset, _) => Action::Replace,
            _ => Action::Update,
        },
    );
    change.fields = settings
        .iter()
        .map(|s| FieldChange::new(s.key, s.before.clone(), Some(s.after.clone())))
        .collect();
    if step == Step::Up {
        change.fields.push(FieldChange::new(
            "state",
            have.map(|h| h.state.clone()),
            Some("Running".into()),
        ));
    }
    change.depends_on = node_after;
    let uses_key = step != Step::Set && (needs_login || step == Step::Reset);
    match (&d.want.auth_key_file, uses_key) {
        (None, true) if step == Step::Up => {
            change.not_applicable = Some(format!(
                "the node must log in ({}) and [network.tailscale] has no auth_key_file: set auth_key_file to a file holding an auth key, or log in once by hand with `tailscale up`",
                have.map_or("not installed yet", |h| h.state.as_str())
            ));
        }
        (Some(file), true) if o.key_file_exists == Some(false) => bail!(
            "{}: the auth key file {file} does not exist; write the key there (mode 0600) before apply",
            d.key_at
        ),
        _ => {}
    }
    change.reason = Some(match step {
        Step::Up if uses_key => {
            "tailscale up, logging in with the auth key file (passed by path, never its text)"
                .into()
        }
        Step::Up => "tailscale up".into(),
        Step::Set => "tailscale set, for what a running node can change".into(),
        Step::Reset => {
            "tags and the login server change only with tailscale up --reset, given every setting"
                .into()
        }
    });
    let op = NodeOp {
        auth_key_file: if uses_key {
            d.want.auth_key_file.clone()
        } else {
            None
        },
        step,
        settings,
    };
    changes.push(change.with_op(NetOp::Node(op)));
    Ok(())
}

/// Run the node's step. Output is scrubbed of the key's text before it reaches a message.
pub fn apply_node(root: &Root, host: &dyn Host, op: &NodeOp) -> anyhow::Result<()> {
    let key_path = match &op.auth_key_file {
        Some(file) => Some(root.resolve(file)?),
        None => None,
    };
    let secret = match &key_path {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read the auth key file {}", p.display()))?
            .trim()
            .to_string(),
        None => String::new(),
    };
    let argv = node::argv(
        &op.step,
        &op.settings,
        key_path.as_ref().and_then(|p| p.to_str()),
    );
    let out = host.run(&Cmd::new(argv.clone()).timeout(TAILSCALE_TIMEOUT))?;
    if !out.success() {
        let mut said = format!("{} {}", out.stdout_str(), out.stderr_str());
        if !secret.is_empty() {
            said = said.replace(&secret, crate::plan::SENSITIVE);
        }
        bail!("`{}` failed: {}", argv.join(" "), said.trim());
    }
    Ok(())
}

/// Fetch the keyring over HTTPS, refuse it unless its one key has the pinned fingerprint,
/// and write it.
pub fn fetch_keyring(root: &Root, url: &str, path: &str) -> anyhow::Result<()> {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the download runtime")?;
    let bytes = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .https_only(true)
            .build()
            .context("cannot build the HTTP client")?;
        let response = client
            .get(url)
            .send()
            .await
            .with_context(|| format!("cannot fetch {url}"))?
            .error_for_status()
            .with_context(|| format!("cannot fetch {url}"))?;
        let mut body = Vec::new();
        let mut response = response;
        while let Some(chunk) = response
            .chunk()
            .await
            .with_context(|| format!("reading {url}"))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > openpgp::MAX_KEYRING {
                bail!(
                    "{url} is larger than a keyring ({} bytes)",
                    openpgp::MAX_KEYRING
                );
            }
        }
        anyhow::Ok(body)
    })?;
    accept_keyring(root, url, &bytes, path, KEY_FINGERPRINT)
}

/// Write `bytes` (fetched from `url`) to the keyring `path` if its one primary key has
/// the fingerprint `pinned`; otherwise refuse and write nothing.
fn accept_keyring(
    root: &Root,
    url: &str,
    bytes: &[u8],
    path: &str,
    pinned: &str,
) -> anyhow::Result<()> {
    let found = openpgp::primary_fingerprint(bytes)
        .map_err(|why| anyhow::anyhow!("{url}: {why}; nothing was written"))?;
    if found != pinned {
        bail!("{url} holds key {found}, not the pinned {pinned}: refused, nothing was written");
    }
    let real = root.resolve(path)?;
    if let Some(dir) = real.parent() {
        // /usr/share/keyrings exists on every Debian; made only under a test --root.
        crate::host::fs::ensure_dir(dir)?;
    }
    crate::host::fs::write_atomic(&real, bytes, 0o644, None)
        .with_context(|| format!("cannot write {}", real.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = include_bytes!("testdata/one-key.gpg");
    const KEY_FPR: &str = "51BB8CC71C057A8F1CE618A0F1C7D816DCDEC9F7";

    #[test]
    fn a_keyring_is_written_only_with_the_pinned_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        let err = accept_keyring(&root, "https://x/k.gpg", KEY, KEYRING_PATH, KEY_FINGERPRINT)
            .unwrap_err()
            .to_string();
        assert!(err.contains(KEY_FPR) && err.contains("refused"), "{err}");
        assert!(!root.join(KEYRING_PATH).exists(), "nothing written");
        accept_keyring(&root, "https://x/k.gpg", KEY, KEYRING_PATH, KEY_FPR).unwrap();
        assert_eq!(std::fs::read(root.join(KEYRING_PATH)).unwrap(), KEY);
    }
}
