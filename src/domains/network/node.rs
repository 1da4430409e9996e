//! The Tailscale node: its settings as the profile wants them and as `tailscale debug
//! prefs` reports them, and the one command that converges one to the other.
//!
//! What `tailscale set` can change on a running node, it changes (hostname, routes, DNS,
//! SSH, exit node). Tags and the login server only `up` takes, and `up` refuses to run
//! unless every non-default setting is repeated, so those go through `up --reset` with the
//! full set. A node that must log in runs `up` with `--auth-key=file:PATH`, so the key
//! never appears in an argument list.

use serde::{Deserialize, Serialize};

use super::section::TailscaleSpec;

/// The settings the profile manages (`None`: left as the node has them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Want {
    pub hostname: Option<String>,
    pub tags: Option<Vec<String>>,
    pub routes: Option<Vec<String>>,
    pub accept_routes: Option<bool>,
    pub accept_dns: Option<bool>,
    pub ssh: Option<bool>,
    pub exit_node_offer: Option<bool>,
    pub exit_node: Option<String>,
    pub login_server: Option<String>,
    /// The auth key file as the profile writes it (relocated under `--root` to use).
    pub auth_key_file: Option<String>,
}

impl Want {
    pub fn from_spec(spec: &TailscaleSpec) -> Want {
        let sorted = |v: &Option<Vec<String>>| {
            v.clone().map(|mut v| {
                v.sort();
                v.dedup();
                v
            })
        };
        Want {
            hostname: spec.hostname.clone(),
            tags: sorted(&spec.advertise_tags),
            routes: sorted(&spec.advertise_routes),
            accept_routes: spec.accept_routes,
            accept_dns: spec.accept_dns,
            ssh: spec.ssh,
            exit_node_offer: spec.advertise_exit_node,
            exit_node: spec.exit_node.clone(),
            login_server: spec.login_server.clone(),
            auth_key_file: spec.auth_key_file.clone(),
        }
    }
}

/// The node's preferences, from `tailscale debug prefs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Prefs {
    #[serde(rename = "ControlURL", default)]
    pub control_url: String,
    #[serde(default)]
    pub route_all: bool,
    #[serde(rename = "CorpDNS", default)]
    pub corp_dns: bool,
    #[serde(rename = "RunSSH", default)]
    pub run_ssh: bool,
    #[serde(default)]
    pub want_running: bool,
    #[serde(default)]
    pub logged_out: bool,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub advertise_tags: Option<Vec<String>>,
    #[serde(default)]
    pub advertise_routes: Option<Vec<String>>,
    #[serde(rename = "ExitNodeIP", default)]
    pub exit_node_ip: String,
    #[serde(rename = "ExitNodeID", default)]
    pub exit_node_id: String,
}

/// The routes that mean "exit node" when advertised.
const EXIT_ROUTES: [&str; 2] = ["0.0.0.0/0", "::/0"];

/// The node as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Have {
    /// `BackendState` of `tailscale status --json`: `Running`, `NeedsLogin`, `Stopped`...
    pub state: String,
    pub prefs: Prefs,
}

impl Have {
    fn routes(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .prefs
            .advertise_routes
            .iter()
            .flatten()
            .filter(|r| !EXIT_ROUTES.contains(&r.as_str()))
            .cloned()
            .collect();
        v.sort();
        v
    }

    fn offers_exit_node(&self) -> bool {
        self.prefs
            .advertise_routes
            .iter()
            .flatten()
            .any(|r| EXIT_ROUTES.contains(&r.as_str()))
    }

    fn tags(&self) -> Vec<String> {
        let mut v = self.prefs.advertise_tags.clone().unwrap_or_default();
        v.sort();
        v
    }

    fn exit_node(&self) -> String {
        if self.prefs.exit_node_ip.is_empty() {
            self.prefs.exit_node_id.clone()
        } else {
            self.prefs.exit_node_ip.clone()
        }
    }
}

/// How the node converges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `tailscale up` with the settings (a node to log in or start).
    Up,
    /// `tailscale set` with the settings that differ.
    Set,
    /// `tailscale up --reset` with the full set (tags or login server differ).
    Reset,
}

/// One managed setting, as the plan shows it and as the CLI takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The profile's key (`accept_routes`).
    pub key: &'static str,
    /// The flag (`--accept-routes`).
    pub flag: &'static str,
    pub before: Option<String>,
    pub after: String,
}

fn join(v: &[String]) -> String {
    v.join(",")
}

/// Every setting the profile manages, with the node's value where known.
pub fn settings(want: &Want, have: Option<&Have>) -> Vec<Setting> {
    let mut out = Vec::new();
    let mut push = |key, flag, before: Option<String>, after: String| {
        out.push(Setting {
            key,
            flag,
            before,
            after,
        })
    };
    let has = |f: &dyn Fn(&Have) -> String| have.map(f);
    if let Some(v) = &want.hostname {
        push(
            "hostname",
            "--hostname",
            has(&|h| h.prefs.hostname.clone()),
            v.clone(),
        );
    }
    if let Some(v) = &want.tags {
        push(
            "advertise_tags",
            "--advertise-tags",
            has(&|h| join(&h.tags())),
            join(v),
        );
    }
    if let Some(v) = &want.routes {
        push(
            "advertise_routes",
            "--advertise-routes",
            has(&|h| join(&h.routes())),
            join(v),
        );
    }
    if let Some(v) = want.accept_routes {
        push(
            "accept_routes",
            "--accept-routes",
            has(&|h| h.prefs.route_all.to_string()),
            v.to_string(),
        );
    }
    if let Some(v) = want.accept_dns {
        push(
            "accept_dns",
            "--accept-dns",
            has(&|h| h.prefs.corp_dns.to_string()),
            v.to_string(),
        );
    }
    if let Some(v) = want.ssh {
        push(
            "ssh",
            "--ssh",
            has(&|h| h.prefs.run_ssh.to_string()),
            v.to_string(),
        );
    }
    if let Some(v) = want.exit_node_offer {
        push(
            "advertise_exit_node",
            "--advertise-exit-node",
            has(&|h| h.offers_exit_node().to_string()),
            v.to_string(),
        );
    }
    if let Some(v) = &want.exit_node {
        push(
            "exit_node",
            "--exit-node",
            has(&|h| h.exit_node()),
            v.clone(),
        );
    }
    if let Some(v) = &want.login_server {
        push(
            "login_server",
            "--login-server",
            has(&|h| h.prefs.control_url.clone()),
            v.clone(),
        );
    }
    out
}

/// Settings only `up` can change.
fn up_only(key: &str) -> bool {
    matches!(key, "advertise_tags" | "login_server")
}

/// What converging takes: the step and the settings it changes, or `None` when the node
/// has every setting and runs. A node that must log in is `Up` whatever differs.
pub fn plan(want: &Want, have: Option<&Have>) -> Option<(Step, Vec<Setting>)> {
    let all = settings(want, have);
    let running = have.is_some_and(|h| h.state == "Running");
    if !running {
        return Some((Step::Up, all));
    }
    let differ: Vec<Setting> = all
        .into_iter()
        .filter(|s| s.before.as_deref() != Some(s.after.as_str()))
        .collect();
    if differ.is_empty() {
        return None;
    }
    if differ.iter().any(|s| up_only(s.key)) {
        return Some((Step::Reset, settings(want, have)));
    }
    // Routes and the exit-node offer are one list on the node (the exit routes are
    // routes): when one is set, the other goes along so neither drops the other.
    let route_keys = ["advertise_routes", "advertise_exit_node"];
    let mut differ = differ;
    if differ.iter().any(|s| route_keys.contains(&s.key)) {
        for s in settings(want, have) {
            if route_keys.contains(&s.key) && !differ.iter().any(|d| d.key == s.key) {
                differ.push(s);
            }
        }
    }
    Some((Step::Set, differ))
}

/// The argument list of a step; `auth_key_path` is the key file's real path (under
/// `--root`), passed by reference only.
pub fn argv(step: &Step, settings: &[Setting], auth_key_path: Option<&str>) -> Vec<String> {
    let mut argv = vec!["tailscale".to_string()];
    match step {
        Step::Set => argv.push("set".into()),
        Step::Up => argv.push("up".into()),
        Step::Reset => {
            argv.push("up".into());
            argv.push("--reset".into());
        }
    }
    if *step != Step::Set
        && let Some(path) = auth_key_path
    {
        argv.push(format!("--auth-key=file:{path}"));
    }
    for s in settings {
        argv.push(format!("{}={}", s.flag, s.after));
    }
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(prefs: Prefs) -> Have {
        Have {
            state: "Running".into(),
            prefs,
        }
    }

    fn want() -> Want {
        Want {
            hostname: Some("forge-01".into()),
            tags: Some(vec!["tag:forge".into()]),
            accept_routes: Some(true),
            ssh: Some(true),
            auth_key_file: Some("/etc/ts.key".into()),
            ..Want::default()
        }
    }

    fn converged() -> Prefs {
        Prefs {
            hostname: "forge-01".into(),
            advertise_tags: Some(vec!["tag:forge".into()]),
            route_all: true,
            run_ssh: true,
            want_running: true,
            ..Prefs::default()
        }
    }

    #[test]
    fn a_node_to_log_in_runs_up_with_the_key_by_reference() {
        let have = Have {
            state: "NeedsLogin".into(),
            prefs: Prefs::default(),
        };
        let (step, settings) = plan(&want(), Some(&have)).unwrap();
        assert_eq!(step, Step::Up);
        assert_eq!(
            argv(&step, &settings, Some("/root/etc/ts.key")),
            [
                "tailscale",
                "up",
                "--auth-key=file:/root/etc/ts.key",
                "--hostname=forge-01",
                "--advertise-tags=tag:forge",
                "--accept-routes=true",
                "--ssh=true"
            ]
        );
    }

    #[test]
    fn a_running_node_gets_set_for_what_set_changes_and_nothing_when_converged() {
        assert_eq!(plan(&want(), Some(&running(converged()))), None);
        let mut drifted = converged();
        drifted.hostname = "old".into();
        drifted.route_all = false;
        let (step, settings) = plan(&want(), Some(&running(drifted))).unwrap();
        assert_eq!(step, Step::Set);
        assert_eq!(
            argv(&step, &settings, Some("/etc/ts.key")),
            [
                "tailscale",
                "set",
                "--hostname=forge-01",
                "--accept-routes=true"
            ],
            "set never carries the key"
        );
    }

    #[test]
    fn new_tags_need_up_reset_with_every_setting() {
        let mut other = converged();
        other.advertise_tags = Some(vec!["tag:old".into()]);
        other.hostname = "old".into();
        let (step, settings) = plan(&want(), Some(&running(other))).unwrap();
        assert_eq!(step, Step::Reset);
        let args = argv(&step, &settings, Some("/etc/ts.key"));
        assert_eq!(
            &args[..4],
            ["tailscale", "up", "--reset", "--auth-key=file:/etc/ts.key"]
        );
        assert!(
            args.contains(&"--ssh=true".to_string()),
            "the full set: {args:?}"
        );
    }

    #[test]
    fn exit_routes_are_the_exit_node_setting_not_routes() {
        let mut prefs = converged();
        prefs.advertise_routes = Some(vec![
            "0.0.0.0/0".into(),
            "::/0".into(),
            "10.42.0.0/24".into(),
        ]);
        let have = running(prefs);
        let w = Want {
            routes: Some(vec!["10.42.0.0/24".into()]),
            exit_node_offer: Some(true),
            ..Want::default()
        };
        assert_eq!(plan(&w, Some(&have)), None);
    }
}
