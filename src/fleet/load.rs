//! Loading a fleet file: read it with the profile's TOML reader, check it against the
//! fleet's schema and the rules a schema cannot say (host names, tags, paths, the profile
//! every host needs), and only when nothing is wrong, type it with `[defaults]` merged.
//!
//! Errors are the profile's: every one at once, in file order, as `file:line:column` with
//! the source line, the key path and a hint ([`LoadError`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::file::{
    DEFAULT_CONFIRM_TIMEOUT, DEFAULT_PARALLEL, DEFAULT_STRICT_HOST_KEYS, FleetFile, StrictHostKeys,
    fleet_schema, is_host_name, is_tag,
};
use crate::profile::diagnostics::{Issue, ProfileError, Sources};
use crate::profile::load::{Parsed, normalize, parse_file};
use crate::profile::tree::{Entry, Loc, Node, Seg, key_path};
use crate::profile::units::Duration;
use crate::profile::validate::check_tree;
use crate::profile::{LoadError, ValidProfile};

/// What a fleet's errors say the file is not: "fleet.toml is not a valid fleet: 2 errors".
const WHAT: &str = "fleet";

/// A loaded and checked fleet: every host with `[defaults]` merged in and every path of
/// the control machine made absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fleet {
    /// The fleet file as the user named it.
    pub path: PathBuf,
    /// How many hosts are worked on at once (at least 1).
    pub parallel: usize,
    /// How long the fleet waits for a host's confirmation before it gives that host up
    /// (longer than zero).
    pub confirm_timeout: std::time::Duration,
    /// How ssh checks host keys.
    pub strict_host_keys: StrictHostKeys,
    /// The known_hosts file for the fleet's host keys, absolute; `None`: ssh's own.
    pub known_hosts: Option<PathBuf>,
    /// The hosts, keyed by name.
    pub hosts: BTreeMap<String, Host>,
}

/// One host of a fleet, `[defaults]` merged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The host's name, the key of its `[hosts.NAME]` table.
    pub name: String,
    /// The host name or IP address ssh connects to (the name unless `address` is set).
    pub address: String,
    /// The user ssh logs in as; `None`: ssh's configuration decides.
    pub user: Option<String>,
    /// The port ssh connects to; `None`: ssh's configuration decides.
    pub port: Option<u16>,
    /// The private key ssh authenticates with, absolute; `None`: ssh's configuration decides.
    pub identity_file: Option<PathBuf>,
    /// The host's profile, absolute; the file existed when the fleet was loaded.
    pub profile: PathBuf,
    /// The `--root` sovereign runs with on the host (an absolute path there), if any.
    pub root: Option<String>,
    /// The host's tags (lowercase letters, digits, '-', '_'), as written.
    pub tags: Vec<String>,
}

impl Fleet {
    /// The distinct profiles the hosts run, each once, in path order.
    pub fn profiles(&self) -> Vec<&Path> {
        let mut paths: Vec<&Path> = self.hosts.values().map(|h| h.profile.as_path()).collect();
        paths.sort();
        paths.dedup();
        paths
    }
}

/// A fleet and the profiles its hosts run, each loaded and validated once: what
/// `sovereign validate --fleet` checks.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The fleet.
    pub fleet: Fleet,
    /// Every profile the hosts name, keyed by the absolute path in [`Host::profile`].
    pub profiles: BTreeMap<PathBuf, ValidProfile>,
    /// Every file read: the fleet file first, then each profile's files in path order.
    pub files: Vec<PathBuf>,
}

/// Load and check the fleet file at `path`. The hosts' profiles must exist but are not
/// loaded; [`load_with_profiles`] loads them too.
pub fn load(path: &Path) -> Result<Fleet, LoadError> {
    check(path)?.into_result()
}

/// Load and check the fleet file at `path` and every profile its hosts name (each once,
/// with `crate::profile::load`). Every error of the fleet file and of every profile is
/// reported together: the fleet's first, then each profile's at its own file:line.
pub fn load_with_profiles(path: &Path) -> Result<Validated, LoadError> {
    let checked = check(path)?;
    // The profiles named by a fleet that has errors are loaded too, so that one run
    // reports everything; a fleet file with TOML syntax errors names none.
    let named = checked.profiles.clone();
    let fleet = checked.into_result();
    let mut files = match &fleet {
        Ok(f) => vec![f.path.clone()],
        Err(err) => err.files.clone(),
    };
    let mut profiles = BTreeMap::new();
    let mut profile_errors = Vec::new();
    for (absolute, shown) in &named {
        match crate::profile::load(shown) {
            Ok(valid) => {
                files.extend(valid.sources.iter().cloned());
                profiles.insert(absolute.clone(), valid);
            }
            Err(err) => {
                files.extend(err.files.iter().cloned());
                profile_errors.extend(err.errors);
            }
        }
    }
    dedup_in_order(&mut files);
    match fleet {
        Ok(fleet) if profile_errors.is_empty() => Ok(Validated {
            fleet,
            profiles,
            files,
        }),
        Ok(fleet) => Err(LoadError {
            profile: fleet.path,
            what: WHAT,
            files,
            errors: profile_errors,
        }),
        Err(mut err) => {
            err.errors.extend(profile_errors);
            err.files = files;
            Err(err)
        }
    }
}

fn dedup_in_order(paths: &mut Vec<PathBuf>) {
    let mut seen = std::collections::HashSet::new();
    paths.retain(|p| seen.insert(p.clone()));
}

/// What one look at a fleet file found.
struct Checked {
    /// The fleet file as named, cleaned.
    shown: PathBuf,
    sources: Sources,
    /// Every problem found, in no particular order yet.
    issues: Vec<Issue>,
    /// Every profile the file names that exists: absolute path -> the path as shown.
    profiles: BTreeMap<PathBuf, PathBuf>,
    /// The parsed tree, for the typed result.
    tree: Node,
}

/// Read, parse and check a fleet file. `Err` only when the file cannot be read.
fn check(path: &Path) -> Result<Checked, LoadError> {
    let shown = normalize(path);
    let text = std::fs::read_to_string(path).map_err(|err| LoadError {
        profile: shown.clone(),
        what: WHAT,
        files: Vec::new(),
        errors: vec![ProfileError::file_level(
            &shown,
            format!("cannot read fleet file {}: {err}", shown.display()),
            Some(
                "check the path; a fleet file is a TOML file such as fleet.toml (`sovereign schema --fleet` prints its format)"
                    .into(),
            ),
        )],
    })?;
    let mut sources = Sources::default();
    let Parsed {
        tree,
        syntax,
        mut issues,
        ..
    } = parse_file(&mut sources, shown.clone(), text);
    if !syntax.is_empty() {
        // What the parser recovered from a broken file is a guess: report only its syntax.
        return Ok(Checked {
            shown,
            sources,
            issues: syntax,
            profiles: BTreeMap::new(),
            tree,
        });
    }
    let findings = check_tree(fleet_schema(), &tree);
    issues.extend(findings.issues.into_iter().map(|i| refine(i, &tree)));
    issues.extend(findings.missing);
    let dir = shown.parent().unwrap_or(Path::new("")).to_path_buf();
    let mut rules = Rules {
        dir: &dir,
        issues: Vec::new(),
        profiles: BTreeMap::new(),
    };
    rules.check(&tree);
    issues.append(&mut rules.issues);
    let profiles = rules.profiles;
    Ok(Checked {
        shown,
        sources,
        issues,
        profiles,
        tree,
    })
}

impl Checked {
    /// The typed fleet when nothing is wrong; else every error, in file order.
    fn into_result(mut self) -> Result<Fleet, LoadError> {
        if self.issues.is_empty() {
            match self.typed() {
                Ok(fleet) => return Ok(fleet),
                Err(issue) => self.issues.push(*issue),
            }
        }
        self.issues
            .sort_by_key(|i| (i.loc.file, i.loc.span.start, i.loc.span.end));
        self.issues
            .dedup_by(|a, b| a.loc == b.loc && a.key_path == b.key_path);
        let errors = self
            .issues
            .into_iter()
            .map(|i| self.sources.error(i))
            .collect();
        Err(LoadError {
            profile: self.shown,
            what: WHAT,
            files: self.sources.files.iter().map(|f| f.path.clone()).collect(),
            errors,
        })
    }

    /// Type the checked tree and merge `[defaults]` into every host.
    fn typed(&self) -> Result<Fleet, Box<Issue>> {
        let file: FleetFile = serde_json::from_value(self.tree.to_json())
            .map_err(|err| {
                Issue::new(
                    &self.tree.loc,
                    "",
                    format!("the fleet file does not match the format: {err}"),
                )
                .hint("run `sovereign schema --fleet` for the format")
            })
            .map_err(Box::new)?;
        let dir = self.shown.parent().unwrap_or(Path::new(""));
        let place = |p: &Path| absolute(&dir.join(p));
        let defaults = file.defaults.unwrap_or_default();
        let mut hosts = BTreeMap::new();
        for (name, entry) in file.hosts {
            let own = entry.settings;
            let Some(profile) = own.profile.as_ref().or(defaults.profile.as_ref()) else {
                let at = self
                    .tree
                    .get_path(&["hosts", &name])
                    .map_or(&self.tree.loc, |e| &e.key_loc);
                return Err(Box::new(no_profile(at, &name)));
            };
            let host = Host {
                address: entry.address.unwrap_or_else(|| name.clone()),
                user: own.user.or_else(|| defaults.user.clone()),
                port: own.port.or(defaults.port),
                identity_file: own
                    .identity_file
                    .as_ref()
                    .or(defaults.identity_file.as_ref())
                    .map(|p| place(p)),
                profile: place(profile),
                root: own.root.or_else(|| defaults.root.clone()),
                tags: own
                    .tags
                    .or_else(|| defaults.tags.clone())
                    .unwrap_or_default(),
                name: name.clone(),
            };
            hosts.insert(name, host);
        }
        Ok(Fleet {
            path: self.shown.clone(),
            parallel: file.parallel.map_or(DEFAULT_PARALLEL, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            }),
            confirm_timeout: file
                .confirm_timeout
                .map_or(DEFAULT_CONFIRM_TIMEOUT, Duration::as_std),
            strict_host_keys: file.strict_host_keys.unwrap_or(DEFAULT_STRICT_HOST_KEYS),
            known_hosts: file.known_hosts.as_deref().map(place),
            hosts,
        })
    }
}

/// `path` (relative to the working directory, or absolute) as an absolute, cleaned path.
/// Lexical, like the profile's import paths: the file need not exist.
fn absolute(path: &Path) -> PathBuf {
    normalize(&std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
}

/// The schema's findings, said in the fleet's terms where a generic message would not
/// say why.
fn refine(issue: Issue, tree: &Node) -> Issue {
    let written = |key: &str| tree.get(key).and_then(|e| e.node.str());
    match issue.key_path.as_str() {
        "strict_host_keys" if matches!(written("strict_host_keys"), Some("no" | "off")) => {
            Issue::new(
                &issue.loc,
                issue.key_path,
                format!(
                    "\"{}\" is refused: a fleet never connects to a host whose key it has not verified",
                    written("strict_host_keys").unwrap_or("no")
                ),
            )
            .label("refused")
            .hint("use \"accept-new\" (the default: a new host's key is recorded, a changed key is refused) or \"yes\" (only hosts already in known_hosts)")
        }
        "defaults.address" if issue.message.starts_with("unknown key") => Issue::new(
            &issue.loc,
            issue.key_path,
            "address cannot be set in [defaults]: every host has its own address",
        )
        .label("not a default")
        .hint("set address in each [hosts.NAME] table that needs one; a host without it is reached at its name"),
        _ => issue,
    }
}

/// The error of a host that has no profile, its own or the default.
fn no_profile(at: &Loc, name: &str) -> Issue {
    Issue::new(
        at,
        key_path(&[Seg::Key("hosts".into()), Seg::Key(name.into())]),
        format!("host \"{name}\" has no profile"),
    )
    .label("needs a profile")
    .hint(format!(
        "add profile = \"profiles/NAME.toml\" (relative to the fleet file) to [hosts.{}], or set it once in [defaults]",
        crate::profile::tree::toml_key(name)
    ))
}

/// The checks a schema cannot say. Each looks only at values of the right type: the
/// schema has reported the others.
struct Rules<'a> {
    /// The fleet file's folder, as named: paths in the file are relative to it.
    dir: &'a Path,
    issues: Vec<Issue>,
    /// Every existing profile named: absolute path -> the path as shown.
    profiles: BTreeMap<PathBuf, PathBuf>,
}

impl Rules<'_> {
    fn check(&mut self, tree: &Node) {
        if let Some(entry) = tree.get("confirm_timeout") {
            let zero = entry
                .node
                .str()
                .and_then(|s| s.parse::<Duration>().ok())
                .is_some_and(|d| d.as_std().is_zero());
            if zero {
                self.issues.push(
                    Issue::new(
                        &entry.node.loc,
                        "confirm_timeout",
                        "confirm_timeout must be longer than zero",
                    )
                    .label("zero")
                    .hint(format!(
                        "write a duration such as \"{}\" (the default)",
                        Duration(DEFAULT_CONFIRM_TIMEOUT)
                    )),
                );
            }
        }
        if let Some(entry) = tree.get("known_hosts") {
            self.path(entry, "known_hosts");
        }
        let defaults = tree.get("defaults").filter(|e| e.node.table().is_some());
        if let Some(entry) = defaults {
            self.settings(&entry.node, "defaults");
        }
        let default_profile = defaults.is_some_and(|e| e.node.get("profile").is_some());
        let hosts = tree.get("hosts");
        match hosts.map(|e| (e, e.node.table())) {
            None => self.issues.push(no_hosts(&tree.loc)),
            Some((entry, Some(table))) if table.is_empty() => {
                self.issues.push(no_hosts(&entry.key_loc));
            }
            Some((_, Some(table))) => {
                for (name, host) in table {
                    self.host(name, host, default_profile);
                }
            }
            // Not a table: the schema said so.
            Some((_, None)) => {}
        }
    }

    fn host(&mut self, name: &str, entry: &Entry, default_profile: bool) {
        let segs = [Seg::Key("hosts".into()), Seg::Key(name.into())];
        if !is_host_name(name) {
            self.issues.push(
                Issue::new(
                    &entry.key_loc,
                    key_path(&segs),
                    format!("host name \"{name}\" is not allowed: a host's name is letters, digits, '-', '_' and '.', not starting with '-'"),
                )
                .label("bad host name")
                .hint("rename the table, e.g. [hosts.gpu-1]; put an address ssh needs in `address`"),
            );
        }
        if entry.node.table().is_none() {
            return;
        }
        if let Some(address) = entry.node.get("address") {
            if let Some(text) = address.node.str() {
                if let Some(why) = bad_address(text) {
                    self.issues.push(
                        Issue::new(
                            &address.node.loc,
                            format!("{}.address", key_path(&segs)),
                            format!("address \"{text}\" is not a host name or IP address: {why}"),
                        )
                        .label("not an address")
                        .hint("write a host name (gpu1.lab) or an IP address (10.0.0.5, fd00::5); the user goes in `user`, the port in `port`"),
                    );
                }
            }
        }
        self.settings(&entry.node, &key_path(&segs));
        if entry.node.get("profile").is_none() && !default_profile {
            self.issues.push(no_profile(&entry.key_loc, name));
        }
    }

    /// The keys `[defaults]` and a host share, in the table at `table_path`.
    fn settings(&mut self, table: &Node, table_path: &str) {
        let at = |key: &str| format!("{table_path}.{key}");
        if let Some(entry) = table.get("user") {
            if let Some(user) = entry.node.str() {
                if user.is_empty()
                    || user.starts_with('-')
                    || user.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    self.issues.push(
                        Issue::new(
                            &entry.node.loc,
                            at("user"),
                            format!("user \"{user}\" is not a user name ssh can log in as"),
                        )
                        .label("bad user name")
                        .hint("write the remote account's name, e.g. user = \"ops\"; leave it out to let ssh's configuration decide"),
                    );
                }
            }
        }
        if let Some(entry) = table.get("identity_file") {
            self.path(entry, &at("identity_file"));
        }
        if let Some(entry) = table.get("profile") {
            if let Some(shown) = self.path(entry, &at("profile")) {
                self.profile(entry, &at("profile"), shown);
            }
        }
        if let Some(entry) = table.get("root") {
            if let Some(root) = entry.node.str() {
                if !root.starts_with('/') {
                    self.issues.push(
                        Issue::new(
                            &entry.node.loc,
                            at("root"),
                            format!("root \"{root}\" is not an absolute path"),
                        )
                        .label("not absolute")
                        .hint("root is a folder on the host, written from /, e.g. root = \"/var/tmp/sovereign-stage\""),
                    );
                }
            }
        }
        if let Some(entry) = table.get("tags") {
            for (i, item) in entry.node.array().unwrap_or_default().iter().enumerate() {
                let Some(tag) = item.str() else { continue };
                if is_tag(tag) {
                    continue;
                }
                let lower = tag.to_ascii_lowercase().replace([' ', '.'], "-");
                let hint = if is_tag(&lower) {
                    format!("write it as \"{lower}\"")
                } else {
                    "a tag is lowercase letters, digits, '-' and '_', e.g. \"gpu\" or \"rack-2\""
                        .to_string()
                };
                self.issues.push(
                    Issue::new(
                        &item.loc,
                        format!("{}[{i}]", at("tags")),
                        format!("tag \"{tag}\" is not allowed: tags are lowercase letters, digits, '-' and '_'"),
                    )
                    .label("bad tag")
                    .hint(hint),
                );
            }
        }
    }

    /// A path of the control machine, relative to the fleet file: its place as shown,
    /// or `None` (and an issue) when it cannot be one.
    fn path(&mut self, entry: &Entry, key: &str) -> Option<PathBuf> {
        let text = entry.node.str()?;
        let problem = if text.is_empty() {
            Some(format!("{key} is an empty path"))
        } else if text.starts_with('~') {
            Some(format!(
                "{key} \"{text}\" starts with '~', which a fleet file does not expand"
            ))
        } else {
            None
        };
        if let Some(message) = problem {
            self.issues.push(
                Issue::new(&entry.node.loc, key, message)
                    .label("not a path")
                    .hint("paths in a fleet file are relative to its folder, or absolute (/home/me/.ssh/id_ed25519)"),
            );
            return None;
        }
        Some(normalize(&self.dir.join(text)))
    }

    /// A profile path must name a file; record it for loading.
    fn profile(&mut self, entry: &Entry, key: &str, shown: PathBuf) {
        if shown.is_file() {
            self.profiles.insert(absolute(&shown), shown);
            return;
        }
        let what = if shown.exists() {
            "is not a file"
        } else {
            "does not exist"
        };
        let relative_to = if self.dir.as_os_str().is_empty() {
            "the fleet file's folder".to_string()
        } else {
            format!("the fleet file's folder, {}", self.dir.display())
        };
        self.issues.push(
            Issue::new(
                &entry.node.loc,
                key,
                format!("profile {} {what}", shown.display()),
            )
            .label("no such profile")
            .hint(format!(
                "profile paths are relative to {relative_to}; fix the path or create the profile"
            )),
        );
    }
}

fn no_hosts(at: &Loc) -> Issue {
    Issue::new(at, "hosts", "the fleet has no hosts")
        .label("no hosts")
        .hint(
            "add a table for each machine, e.g. [hosts.gpu-1] with profile = \"profiles/gpu.toml\"",
        )
}

/// Why `address` cannot be ssh's destination, if it cannot: it must read as a host name
/// or an IP address, never as an option or a `user@host` form.
fn bad_address(address: &str) -> Option<&'static str> {
    if address.is_empty() {
        Some("it is empty")
    } else if address.starts_with('-') {
        Some("it starts with '-'")
    } else if address.contains('@') {
        Some("it holds a user")
    } else if address.matches(':').count() == 1 {
        // An IPv6 address has two colons at least: one is `host:port`.
        Some("it holds a port")
    } else if !address
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'%'))
    {
        Some("only letters, digits, '.', '-', '_', ':' and '%' may appear")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_host_names_or_ip_addresses() {
        for good in [
            "gpu1",
            "gpu1.lab.example",
            "10.0.0.5",
            "fd00::5",
            "fe80::1%eth0",
        ] {
            assert_eq!(bad_address(good), None, "{good}");
        }
        for bad in [
            "",
            "-oProxyCommand=x",
            "ops@gpu1",
            "gpu1 gpu2",
            "gpu1/x",
            "[::1]",
        ] {
            assert!(bad_address(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn a_profile_is_listed_once_however_many_hosts_run_it() {
        let host = |name: &str, profile: &str| Host {
            name: name.into(),
            address: name.into(),
            user: None,
            port: None,
            identity_file: None,
            profile: profile.into(),
            root: None,
            tags: Vec::new(),
        };
        let fleet = Fleet {
            path: "fleet.toml".into(),
            parallel: DEFAULT_PARALLEL,
            confirm_timeout: DEFAULT_CONFIRM_TIMEOUT,
            strict_host_keys: DEFAULT_STRICT_HOST_KEYS,
            known_hosts: None,
            hosts: [("a", "/p/x.toml"), ("b", "/p/w.toml"), ("c", "/p/x.toml")]
                .into_iter()
                .map(|(n, p)| (n.to_string(), host(n, p)))
                .collect(),
        };
        assert_eq!(
            fleet.profiles(),
            [Path::new("/p/w.toml"), Path::new("/p/x.toml")]
        );
    }
}
