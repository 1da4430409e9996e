//! Hardware detection: CPU, memory, GPUs, and the matching archetype from hardware/.
//!
//! Detection is read-only and cheap: a few files under /proc and /sys, one `nvidia-smi`
//! query when it is installed, or one `sysctl` call on macOS. The readings go through the
//! pure parsers of the submodules, so tests feed them fixture trees ([`Source::Fixture`])
//! for machines this one is not.

pub mod archetype;
pub mod cpu;
pub mod gpu;
pub mod memory;
pub mod network;
pub mod render;
pub mod sysctl;
pub mod virt;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

pub use archetype::{
    Archetype, ExpectError, UNKNOWN, archetype_ids, archetypes, check_expect, classify,
};
pub use cpu::Cpu;
pub use gpu::Gpu;
pub use memory::Memory;

use crate::host::{Cmd, Host};

/// What the machine has. Serialized as `sovereign detect --json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// The processor.
    pub cpu: Cpu,
    /// System memory.
    pub memory: Memory,
    /// NVIDIA GPUs in PCI address order, or the Apple Silicon GPU; empty without either.
    pub gpus: Vec<Gpu>,
    /// `/dev/kvm` exists: the kernel's KVM is there and can run VMs. CPU flags alone miss
    /// it where a hypervisor hides vmx/svm but passes KVM through (nested guests).
    #[serde(default)]
    pub kvm: bool,
    /// The CPU's `hypervisor` flag: this machine is itself a virtual machine, where KVM
    /// (nested) often does not work even with `/dev/kvm` present.
    #[serde(default)]
    pub guest: bool,
    /// The last KVM boot probe on this kernel (`sovereign detect --probe-kvm`), read from
    /// the state directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kvm_probe: Option<virt::KvmProbe>,
    /// The Apple Silicon chip ("Apple M2 Ultra"), when the machine is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apple_chip: Option<String>,
    /// Network interfaces and their MTUs (a VXLAN segment derives its MTU from its
    /// underlay's). Filled by `sovereign detect` ([`network::fill`]), not when planning.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<network::Interface>,
    /// This node's Tailscale, where `tailscale` is installed (`sovereign detect` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tailscale: Option<network::Tailscale>,
    /// The matched archetype id from hardware/, or "unknown".
    pub archetype: String,
    /// The matched archetype's database entry; none for "unknown".
    pub archetype_detail: Option<Archetype>,
    /// What detection could not see and why (nvidia-smi missing or failing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Key paths of readings that change from run to run (`memory.available_bytes`); what
    /// compares facts across runs leaves them out (see [`Facts::stable`]).
    pub volatile: Vec<String>,
}

impl Facts {
    /// The machine's memory as the daemon's memory budget reads it.
    pub fn machine(&self) -> crate::inference::estimate::Machine {
        crate::inference::estimate::Machine {
            ram_total_bytes: self.memory.total_bytes,
            ram_available_bytes: self.memory.available_bytes,
            gpus: self
                .gpus
                .iter()
                .map(|g| crate::inference::estimate::MachineGpu {
                    name: g.name.clone(),
                    vram_bytes: g.vram_bytes,
                    unified_memory: g.unified_memory,
                })
                .collect(),
        }
    }

    /// These facts without their volatile readings: what two runs on one machine share.
    /// The guest flag and the KVM probe stay: they change only with the machine, its
    /// kernel or a new `detect --probe-kvm`, which is a change worth seeing.
    pub fn stable(&self) -> Facts {
        let mut facts = self.clone();
        facts.memory.available_bytes = None;
        facts.tailscale = None;
        facts.volatile.clear();
        facts
    }
}

/// Where detection reads the machine from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// This machine: /proc, /sys, `nvidia-smi` and (on macOS) `sysctl`, through the host.
    Machine,
    /// A recorded machine: a folder holding `proc/cpuinfo`, `proc/meminfo` and
    /// `sys/bus/pci/devices/*/{vendor,device,class}`, optionally `dev/kvm` (any file
    /// stands for the device) and `nvidia-smi.csv` (the
    /// output of the nvidia-smi query; absent means nvidia-smi is not installed), or
    /// instead `sysctl.txt` for a Mac. Used by tests and `detect --facts-from`.
    Fixture(PathBuf),
}

/// How long nvidia-smi may take; a hung driver must not hang detection.
#[cfg_attr(target_os = "macos", allow(dead_code))]
const NVIDIA_SMI_TIMEOUT: Duration = Duration::from_secs(20);

/// Observe this machine (read-only).
pub fn detect(host: &dyn Host) -> anyhow::Result<Facts> {
    detect_in(host, &Source::Machine)
}

/// Observe the machine `source` describes (read-only).
pub fn detect_in(host: &dyn Host, source: &Source) -> anyhow::Result<Facts> {
    let mut facts = match source {
        Source::Machine => observe_machine(host)?,
        Source::Fixture(dir) => observe_fixture(dir)?,
    };
    if facts.memory.available_bytes.is_some() {
        facts.volatile.push("memory.available_bytes".into());
    }
    let matched = classify(&facts);
    facts.archetype = matched.map_or(UNKNOWN, |a| a.id.as_str()).to_string();
    facts.archetype_detail = matched.cloned();
    Ok(facts)
}

#[cfg(target_os = "macos")]
fn observe_machine(host: &dyn Host) -> anyhow::Result<Facts> {
    let cmd = Cmd::new(std::iter::once("sysctl").chain(sysctl::SYSCTL_NAMES));
    let out = host
        .run(&cmd)
        .context("cannot read the machine's sysctl values")?;
    // sysctl exits non-zero when one name is unknown (an Intel Mac has no perflevels) but
    // still prints the others; the parser insists on what it needs.
    let text = out.stdout_str();
    from_sysctl(&text).with_context(|| format!("reading the output of `{}`", cmd.display()))
}

#[cfg(not(target_os = "macos"))]
fn observe_machine(host: &dyn Host) -> anyhow::Result<Facts> {
    let smi = if host.has_program("nvidia-smi") {
        let cmd = Cmd::new(gpu::NVIDIA_SMI_ARGS).timeout(NVIDIA_SMI_TIMEOUT);
        Some(match host.run(&cmd) {
            Ok(out) if out.success() => Ok(out.stdout_str()),
            Ok(out) if out.timed_out => Err(format!(
                "`{}` did not answer within {}s",
                cmd.display(),
                NVIDIA_SMI_TIMEOUT.as_secs()
            )),
            Ok(out) => Err(format!(
                "`{}` failed: {}",
                cmd.display(),
                first_line(&out.stdout_str(), &out.stderr_str())
            )),
            Err(e) => Err(e.to_string()),
        })
    } else {
        None
    };
    from_linux_tree(Path::new("/"), smi)
}

fn observe_fixture(dir: &Path) -> anyhow::Result<Facts> {
    if !dir.is_dir() {
        anyhow::bail!(
            "{} is not a folder of recorded machine facts (proc/, sys/, nvidia-smi.csv or sysctl.txt)",
            dir.display()
        );
    }
    let sysctl = dir.join("sysctl.txt");
    if sysctl.exists() {
        let text = read(&sysctl)?;
        return from_sysctl(&text).with_context(|| format!("reading {}", sysctl.display()));
    }
    let smi_file = dir.join("nvidia-smi.csv");
    let smi = smi_file
        .exists()
        .then(|| read(&smi_file).map_err(|e| format!("{e:#}")));
    from_linux_tree(dir, smi)
}

/// Facts from a Linux tree under `root` and the nvidia-smi output: `None` when nvidia-smi
/// is not installed, `Some(Err)` when it failed (the GPUs are still reported, from sysfs).
fn from_linux_tree(root: &Path, smi: Option<Result<String, String>>) -> anyhow::Result<Facts> {
    let cpuinfo = read(&root.join("proc/cpuinfo"))?;
    let meminfo_path = root.join("proc/meminfo");
    let meminfo = read(&meminfo_path)?;
    let memory = memory::parse_meminfo(&meminfo)
        .with_context(|| format!("{} has no MemTotal line", meminfo_path.display()))?;
    let mut gpus = gpu::scan_pci(&root.join("sys/bus/pci/devices"))?;
    let mut notes = Vec::new();
    match smi {
        Some(Ok(text)) => gpu::enrich(&mut gpus, gpu::parse_nvidia_smi(&text)?),
        Some(Err(why)) => notes.push(format!(
            "nvidia-smi could not report GPU names, VRAM and driver: {why}"
        )),
        None if !gpus.is_empty() => notes.push(
            "nvidia-smi is not installed: GPU names, VRAM and driver versions are unknown \
             (install the NVIDIA driver to see them)"
                .into(),
        ),
        None => {}
    }
    Ok(Facts {
        cpu: cpu::parse_cpuinfo(&cpuinfo),
        memory,
        gpus,
        kvm: root.join("dev/kvm").exists(),
        guest: cpu::is_guest(&cpuinfo),
        notes,
        ..Facts::default()
    })
}

fn from_sysctl(text: &str) -> anyhow::Result<Facts> {
    let mac = sysctl::parse_sysctl(text)?;
    Ok(Facts {
        cpu: mac.cpu,
        memory: mac.memory,
        gpus: mac.gpu.into_iter().collect(),
        apple_chip: mac.apple_chip,
        ..Facts::default()
    })
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

#[cfg_attr(target_os = "macos", allow(dead_code))]
fn first_line(stdout: &str, stderr: &str) -> String {
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output")
        .trim()
        .to_string()
}
