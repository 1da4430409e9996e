//! Debian packages: which are installed (one `dpkg-query` for all of them) and installing
//! the missing ones (`apt-get update`, then one `apt-get install`). Domains that need
//! packages (Tailscale, the hypervisor) observe and install through here.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::bail;

use super::{Cmd, Host};

/// How long apt may take: a slow mirror is slow, a hung one must not hang apply forever.
const APT_TIMEOUT: Duration = Duration::from_secs(900);

/// The packages of `names` dpkg has installed. Where dpkg is absent (not Debian), none.
pub fn installed(host: &dyn Host, names: &[&str]) -> BTreeSet<String> {
    if names.is_empty() || !host.has_program("dpkg-query") {
        return BTreeSet::new();
    }
    let mut argv = vec!["dpkg-query", "-W", "-f=${Package} ${Status}\\n"];
    argv.extend(names);
    // dpkg-query exits 1 when one name is unknown but still lists the others.
    let Ok(out) = host.run(&Cmd::new(argv)) else {
        return BTreeSet::new();
    };
    parse_installed(&out.stdout_str())
}

/// `NAME STATUS` lines -> the names whose status is "install ok installed".
fn parse_installed(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(_, status)| status.trim() == "install ok installed")
        .map(|(name, _)| name.split(':').next().unwrap_or(name).to_string())
        .collect()
}

/// `apt-get update`, then install `names` without recommends (what a profile asks for is
/// what gets installed).
pub fn install(host: &dyn Host, names: &[&str]) -> anyhow::Result<()> {
    let mut install = vec!["apt-get", "install", "-y", "-q", "--no-install-recommends"];
    install.extend(names);
    for argv in [vec!["apt-get", "update", "-q"], install] {
        let mut cmd = Cmd::new(argv.clone()).timeout(APT_TIMEOUT);
        cmd.env
            .push(("DEBIAN_FRONTEND".into(), "noninteractive".into()));
        let out = host.run(&cmd)?;
        if out.timed_out {
            bail!(
                "`{}` did not finish within {} s",
                argv.join(" "),
                APT_TIMEOUT.as_secs()
            );
        }
        if !out.success() {
            bail!("`{}` failed: {}", argv.join(" "), out.stderr_str().trim());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fully_installed_packages_count() {
        let text = "tailscale install ok installed\nqemu-system-x86 deinstall ok config-files\nlibvirt-clients:amd64 install ok installed\nxen-utils-common unknown ok not-installed\n";
        let got = parse_installed(text);
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            ["libvirt-clients", "tailscale"]
        );
    }
}
