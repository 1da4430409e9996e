//! Talking to systemd: whether it can be used here, one bulk `systemctl show` to observe,
//! and the commands apply runs. Every command goes through [`crate::host::Host`].

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::host::{Cmd, Host};

/// How long one systemctl call may take (a start waits for the unit to come up).
const TIMEOUT: Duration = Duration::from_secs(120);

/// The properties observation reads.
pub const PROPERTIES: &str = "Id,LoadState,ActiveState,SubState,UnitFileState";

/// What `systemctl show` says about one unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitState {
    /// `loaded`, `not-found`, `masked`, ...
    pub load: String,
    /// `active`, `inactive`, `failed`, `activating`, ...
    pub active: String,
    /// `running`, `dead`, `exited`, ...
    pub sub: String,
    /// `enabled`, `disabled`, `static`, `masked`, or empty when there is no unit file.
    pub unit_file: String,
}

impl UnitState {
    pub fn is_enabled(&self) -> bool {
        matches!(self.unit_file.as_str(), "enabled" | "enabled-runtime")
    }

    pub fn is_active(&self) -> bool {
        matches!(self.active.as_str(), "active" | "activating" | "reloading")
    }
}

/// The unit file name of a service (`backup` -> `backup.service`).
pub fn unit(name: &str) -> String {
    format!("{name}.service")
}

/// Observe every named service with one `systemctl show`.
pub fn show(host: &dyn Host, names: &[&str]) -> anyhow::Result<BTreeMap<String, UnitState>> {
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut argv = vec![
        "systemctl".to_string(),
        "show".into(),
        format!("--property={PROPERTIES}"),
        "--".into(),
    ];
    argv.extend(names.iter().map(|n| unit(n)));
    let cmd = Cmd::new(argv).timeout(TIMEOUT);
    let out = host.run(&cmd)?;
    if !out.success() {
        bail!("`{}` failed: {}", cmd.display(), out.stderr_str().trim());
    }
    let parsed = parse_show(&out.stdout_str())?;
    Ok(names
        .iter()
        .map(|n| {
            let state = parsed.get(&unit(n)).cloned().unwrap_or_default();
            (n.to_string(), state)
        })
        .collect())
}

/// Parse `systemctl show --property=...` output for several units: one block of
/// `Key=Value` lines per unit, blocks separated by an empty line, each naming its `Id`.
pub fn parse_show(text: &str) -> anyhow::Result<BTreeMap<String, UnitState>> {
    let mut out = BTreeMap::new();
    for block in text.split("\n\n") {
        let mut props: BTreeMap<&str, &str> = BTreeMap::new();
        for line in block.lines().filter(|l| !l.trim().is_empty()) {
            let (k, v) = line
                .split_once('=')
                .with_context(|| format!("systemctl show printed {line:?}, not Key=Value"))?;
            props.insert(k, v);
        }
        if props.is_empty() {
            continue;
        }
        let id = props
            .get("Id")
            .with_context(|| format!("systemctl show printed a block without Id: {block:?}"))?;
        let get = |k: &str| props.get(k).copied().unwrap_or_default().to_string();
        out.insert(
            id.to_string(),
            UnitState {
                load: get("LoadState"),
                active: get("ActiveState"),
                sub: get("SubState"),
                unit_file: get("UnitFileState"),
            },
        );
    }
    Ok(out)
}

/// Run `systemctl ARGS...`, failing with its argv and stderr.
pub fn run(host: &dyn Host, args: &[&str]) -> anyhow::Result<()> {
    let mut argv = vec!["systemctl"];
    argv.extend_from_slice(args);
    let cmd = Cmd::new(argv).timeout(TIMEOUT);
    let out = host.run(&cmd)?;
    if !out.success() {
        bail!(
            "`{}` failed ({}): {}",
            cmd.display(),
            out.code
                .map(|c| format!("status {c}"))
                .unwrap_or_else(|| "killed or timed out".into()),
            out.stderr_str().trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from `systemctl show --property=Id,LoadState,ActiveState,SubState,UnitFileState
    /// -- ssh.service nope.service sovereign-inference.service` on Debian 12.
    const CAPTURED: &str = "\
Id=ssh.service
LoadState=loaded
ActiveState=active
SubState=running
UnitFileState=enabled

Id=nope.service
LoadState=not-found
ActiveState=inactive
SubState=dead
UnitFileState=

Id=sovereign-inference.service
LoadState=loaded
ActiveState=failed
SubState=failed
UnitFileState=disabled
";

    #[test]
    fn show_output_is_parsed_per_unit() {
        let parsed = parse_show(CAPTURED).unwrap();
        assert_eq!(parsed.len(), 3);
        let ssh = &parsed["ssh.service"];
        assert!(ssh.is_active() && ssh.is_enabled());
        let nope = &parsed["nope.service"];
        assert_eq!(nope.load, "not-found");
        assert!(!nope.is_active() && !nope.is_enabled());
        let inf = &parsed["sovereign-inference.service"];
        assert_eq!(inf.active, "failed");
        assert!(!inf.is_active() && !inf.is_enabled());
    }

    #[test]
    fn a_line_without_equals_is_an_error_quoting_it() {
        let err = parse_show("Id=a.service\ngarbage\n").unwrap_err();
        assert!(err.to_string().contains("garbage"), "{err}");
    }

    #[test]
    fn empty_output_is_no_units() {
        assert!(parse_show("").unwrap().is_empty());
    }
}
