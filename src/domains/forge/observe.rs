//! What the machine has of the Forge, read in bulk: one `dpkg-query` for the packages,
//! one `virsh` process for the lists of domains and networks and one for the inactive XML
//! of the domains the profile or the ledger names (virsh runs `;`-separated commands in
//! one connection), `xl list` under Xen, and a stat per image file.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::host::{Cmd, Host};

use super::desired::Desired;
use super::section::Hypervisor;
use super::shape::{Shape, parse_domain};

/// Printed by `virsh echo` between the outputs of the commands of one virsh process.
const SEPARATOR: &str = "@@sovereign-forge@@";
/// How long libvirt may take to answer: a hung daemon must not hang plan.
pub const VIRSH_TIMEOUT: Duration = Duration::from_secs(60);
/// Debian's GRUB script of the Xen entries, and the name it is diverted to so that it runs
/// before Linux's and its first entry becomes the default (Debian's documented way).
pub const XEN_GRUB_SCRIPT: &str = "/etc/grub.d/20_linux_xen";
pub const XEN_GRUB_SCRIPT_FIRST: &str = "/etc/grub.d/08_linux_xen";
/// GRUB's generated menu: its first entry is the default.
pub const GRUB_CFG: &str = "/boot/grub/grub.cfg";

/// One domain libvirt has defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defined {
    /// Its owned fields, or why its XML could not be read.
    pub shape: Result<Shape, String>,
    pub running: bool,
    pub autostart: bool,
}

/// What libvirt has, when it answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Libvirt {
    /// Every defined domain's name (the profile's or not).
    pub names: BTreeSet<String>,
    /// The domains the profile or the ledger names.
    pub domains: BTreeMap<String, Defined>,
    /// libvirt networks: name -> active.
    pub networks: BTreeMap<String, bool>,
}

/// What Xen has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Xen {
    /// This machine runs under Xen now (`/sys/hypervisor/type` says "xen").
    pub running: bool,
    /// GRUB's menu makes Xen the default: its first entry is Xen's.
    pub boot_default: bool,
    /// Under `--root`: the running machine's boot entry is not the profile's to change.
    pub staged: bool,
    /// Domains `xl list` shows (running ones: xl keeps no definitions).
    pub domains: BTreeSet<String>,
}

/// What the machine has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub installed: BTreeSet<String>,
    /// libvirt, or why it does not answer (not installed, not running).
    pub libvirt: Result<Libvirt, String>,
    pub xen: Xen,
    /// Image files: real path -> size, `None` when absent.
    pub images: BTreeMap<String, Option<u64>>,
    /// Pools the images live on: name -> size in bytes.
    pub pools: BTreeMap<String, u64>,
    /// Whether PID 1 is systemd (the daemon is started as a unit only there).
    pub systemd: bool,
    /// Free huge pages in bytes (`/proc/meminfo`), read when a VM asks for them.
    pub hugepages_free: Option<u64>,
}

/// Free huge pages in bytes: `HugePages_Free` times `Hugepagesize` from /proc/meminfo.
pub fn parse_hugepages_free(meminfo: &str) -> Option<u64> {
    let field = |name: &str| {
        meminfo.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.trim_start_matches(':').trim();
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    Some(field("HugePages_Free")? * field("Hugepagesize")? * 1024)
}

/// Observe what `desired` names and what the ledger records (`owned_vms`, `owned_images`).
pub fn observe(
    root: &crate::host::fs::Root,
    host: &dyn Host,
    desired: Option<&Desired>,
    owned_vms: &BTreeSet<String>,
    owned_images: &BTreeSet<String>,
) -> Observed {
    let mut out = Observed {
        installed: BTreeSet::new(),
        libvirt: Err("no [forge] section".into()),
        xen: Xen::default(),
        images: BTreeMap::new(),
        pools: BTreeMap::new(),
        systemd: host.systemd_booted(),
        hugepages_free: None,
    };
    if desired.is_some_and(|d| d.vms.values().any(|v| v.shape.hugepages)) {
        out.hugepages_free = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| parse_hugepages_free(&t));
    }
    let hypervisor = desired.map(|d| d.hypervisor);
    if let Some(d) = desired {
        let names: Vec<&str> = d.packages.iter().map(String::as_str).collect();
        out.installed = crate::host::apt::installed(host, &names);
    }
    let mut vms: BTreeSet<String> = owned_vms.clone();
    if let Some(d) = desired {
        vms.extend(d.vms.keys().cloned());
    }
    match hypervisor {
        Some(Hypervisor::Xen) => out.xen = xen(root, host),
        Some(Hypervisor::Kvm) => out.libvirt = libvirt(host, &desired.expect("kvm").uri, &vms),
        // The section is gone: what the ledger records is still read, over the default
        // connection, so removing it is planned.
        None if !owned_vms.is_empty() => {
            out.libvirt = libvirt(host, super::section::DEFAULT_URI, &vms);
        }
        None => {}
    }
    let mut images: BTreeSet<&String> = owned_images.iter().collect();
    if let Some(d) = desired {
        images.extend(d.images.keys());
    }
    for path in images {
        let size = std::fs::metadata(path).ok().map(|m| m.len());
        out.images.insert(path.clone(), size);
    }
    if let Some(d) = desired {
        let pools: BTreeSet<&str> = d
            .images
            .values()
            .map(|i| i.dataset.split('/').next().unwrap_or(&i.dataset))
            .collect();
        if !pools.is_empty() && host.has_program("zpool") {
            let mut argv = vec!["zpool", "list", "-Hp", "-o", "name,size"];
            argv.extend(pools);
            if let Ok(o) = host.run(&Cmd::new(argv).timeout(VIRSH_TIMEOUT)) {
                for line in o.stdout_str().lines() {
                    let mut f = line.split('\t');
                    if let (Some(name), Some(Ok(size))) = (f.next(), f.next().map(str::parse)) {
                        out.pools.insert(name.to_string(), size);
                    }
                }
            }
        }
    }
    out
}

/// Run `;`-separated virsh commands in one process; the outputs, one per command.
pub fn virsh_batch(host: &dyn Host, uri: &str, commands: &[String]) -> Result<Vec<String>, String> {
    let script = commands.join(&format!("; echo {SEPARATOR}; "));
    let cmd = Cmd::new(["virsh", "-q", "-c", uri, script.as_str()]).timeout(VIRSH_TIMEOUT);
    let out = host
        .run(&cmd)
        .map_err(|e| format!("cannot run virsh: {e}"))?;
    if out.timed_out {
        return Err(format!(
            "libvirt did not answer within {} s",
            VIRSH_TIMEOUT.as_secs()
        ));
    }
    let text = out.stdout_str();
    let parts: Vec<String> = text.split(SEPARATOR).map(str::to_string).collect();
    let said = out.stderr_str();
    // virsh goes on after a command fails (a missing domain gives an empty answer, which
    // is an answer), but not without a connection: then nothing it printed is one.
    let unconnected = said.contains("failed to connect");
    if parts.len() != commands.len() || unconnected {
        let why = out.stderr_str();
        let why = why
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output");
        return Err(why.trim().trim_start_matches("error: ").to_string());
    }
    Ok(parts)
}

fn names(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn libvirt(host: &dyn Host, uri: &str, vms: &BTreeSet<String>) -> Result<Libvirt, String> {
    if !host.has_program("virsh") {
        return Err("virsh is not installed (libvirt-clients)".into());
    }
    let lists = [
        "list --all --name",
        "list --name --state-running",
        "list --all --autostart --name",
        "net-list --all --name",
        "net-list --name",
    ]
    .map(String::from);
    let parts = virsh_batch(host, uri, &lists)
        .map_err(|why| format!("libvirt at {uri} does not answer: {why}"))?;
    let all = names(&parts[0]);
    let running = names(&parts[1]);
    let autostart = names(&parts[2]);
    let active_nets = names(&parts[4]);
    let mut out = Libvirt {
        networks: names(&parts[3])
            .into_iter()
            .map(|n| {
                let active = active_nets.contains(&n);
                (n, active)
            })
            .collect(),
        ..Libvirt::default()
    };
    let wanted: Vec<&String> = vms.iter().filter(|v| all.contains(*v)).collect();
    if !wanted.is_empty() {
        let dumps: Vec<String> = wanted
            .iter()
            .map(|v| format!("dumpxml --inactive {v}"))
            .collect();
        let xmls = virsh_batch(host, uri, &dumps)
            .map_err(|why| format!("libvirt at {uri} did not give the domains' XML: {why}"))?;
        for (name, xml) in wanted.into_iter().zip(xmls) {
            let shape = match parse_domain(xml.trim()) {
                Ok((seen, shape)) if &seen == name => Ok(shape),
                Ok((seen, _)) => Err(format!("libvirt answered with domain {seen:?}")),
                Err(why) => Err(why),
            };
            out.domains.insert(
                name.clone(),
                Defined {
                    shape,
                    running: running.contains(name),
                    autostart: autostart.contains(name),
                },
            );
        }
    }
    out.names = all;
    Ok(out)
}

/// Whether this machine runs under Xen now.
pub fn xen_running() -> bool {
    std::fs::read_to_string("/sys/hypervisor/type").is_ok_and(|t| t.trim() == "xen")
}

/// Whether the first entry of a GRUB menu (the default) boots Xen.
pub fn xen_first_in_menu(grub_cfg: &str) -> bool {
    grub_cfg
        .lines()
        .map(str::trim_start)
        .find(|l| l.starts_with("menuentry ") || l.starts_with("submenu "))
        .is_some_and(|l| l.contains("Xen"))
}

fn xen(root: &crate::host::fs::Root, host: &dyn Host) -> Xen {
    let running = xen_running();
    let boot_default = root
        .resolve(GRUB_CFG)
        .ok()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .is_some_and(|cfg| xen_first_in_menu(&cfg));
    let staged = root.path() != std::path::Path::new("/");
    let mut domains = BTreeSet::new();
    if running
        && let Ok(o) = host.run(&Cmd::new(["xl", "list"]).timeout(VIRSH_TIMEOUT))
        && o.success()
    {
        // Name ID Mem VCPUs State Time(s); the first row is the header, Domain-0 is Xen's.
        domains = o
            .stdout_str()
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| *n != "Domain-0")
            .map(str::to_string)
            .collect();
    }
    Xen {
        running,
        boot_default,
        staged,
        domains,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xen_is_the_default_only_when_its_entry_comes_first() {
        let linux_first = "set default=\"0\"\nmenuentry 'Debian GNU/Linux' --class debian {\n}\nsubmenu 'Debian GNU/Linux, with Xen hypervisor' {\n}\n";
        assert!(!xen_first_in_menu(linux_first));
        let xen_first = "set default=\"0\"\nsubmenu 'Debian GNU/Linux, with Xen hypervisor' {\n\tmenuentry 'Debian GNU/Linux, with Xen 4.17-amd64' {\n}\n}\nmenuentry 'Debian GNU/Linux' {\n}\n";
        assert!(xen_first_in_menu(xen_first));
        assert!(!xen_first_in_menu(""));
    }

    #[test]
    fn free_huge_pages_are_counted_in_bytes() {
        let meminfo = "MemTotal: 1000 kB\nHugePages_Total:     512\nHugePages_Free:      256\nHugepagesize:       2048 kB\n";
        assert_eq!(parse_hugepages_free(meminfo), Some(256 * 2048 * 1024));
        assert_eq!(parse_hugepages_free("MemTotal: 1 kB\n"), None);
    }
}
