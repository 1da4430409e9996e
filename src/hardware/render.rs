//! The human summary of detected facts, as `sovereign detect` prints it on stderr.

use super::virt::KvmProbe;
use super::{Facts, Gpu, UNKNOWN, archetype_ids};
use crate::inference::units::{ByteStyle, human_bytes};

/// Bytes as GiB with one decimal ("24.0 GiB"), by the one byte formatter.
pub fn gib(bytes: u64) -> String {
    human_bytes(bytes, ByteStyle::Gib)
}

/// A readable summary: one labelled line per fact, continuation lines indented.
pub fn summary(facts: &Facts) -> String {
    let mut lines = Vec::new();
    let cpu = &facts.cpu;
    lines.push(format!("cpu        {} ({})", cpu.model, cpu.vendor));
    let mut cores = format!("{} cores, {} threads", cpu.cores, cpu.threads);
    if let (Some(p), Some(e)) = (cpu.performance_cores, cpu.efficiency_cores) {
        cores.push_str(&format!(" ({p} performance, {e} efficiency)"));
    }
    lines.push(format!("           {cores}"));
    let flags = if cpu.flags.is_empty() {
        "none of interest".to_string()
    } else {
        cpu.flags.join(" ")
    };
    lines.push(format!("           flags: {flags}"));
    lines.push(format!("           virtualization: {}", cpu.virtualization));
    if facts.apple_chip.is_none() {
        let mut kvm = if facts.kvm {
            "/dev/kvm present"
        } else {
            "no /dev/kvm"
        }
        .to_string();
        if facts.guest {
            kvm.push_str("; this machine is itself a guest (cpu flag hypervisor)");
        }
        lines.push(format!("           kvm: {kvm}"));
    }
    if let Some(probe) = &facts.kvm_probe {
        lines.push(format!("           {}", probe_line(probe)));
    }

    let mem = &facts.memory;
    lines.push(match mem.available_bytes {
        Some(a) => format!(
            "memory     {} total, {} available",
            gib(mem.total_bytes),
            gib(a)
        ),
        None => format!("memory     {} total", gib(mem.total_bytes)),
    });

    if facts.gpus.is_empty() {
        lines.push("gpus       none".to_string());
    }
    for (i, gpu) in facts.gpus.iter().enumerate() {
        lines.push(format!("gpu {i:<6} {}", gpu_line(gpu)));
    }

    if !facts.interfaces.is_empty() {
        let list: Vec<String> = facts
            .interfaces
            .iter()
            .map(|i| format!("{} (mtu {})", i.name, i.mtu))
            .collect();
        lines.push(format!("network    {}", list.join(", ")));
    }
    if let Some(ts) = &facts.tailscale {
        lines.push(match &ts.ipv4 {
            Some(ip) => format!("tailscale  {}, {ip}", ts.state),
            None => format!("tailscale  {}", ts.state),
        });
    }

    match &facts.archetype_detail {
        Some(a) => {
            lines.push(format!("archetype  {} ({})", a.id, a.name));
            if let Some(bw) = a.memory_bandwidth_gbps {
                lines.push(format!("           memory bandwidth {bw} GB/s"));
            }
            if let Some(largest) = &a.largest_model {
                lines.push(format!("           models up to {largest}"));
            }
            for band in &a.throughput {
                lines.push(format!("           {band}"));
            }
        }
        None => lines.push(format!(
            "archetype  {UNKNOWN}: no entry of hardware/ describes exactly this machine (known: {})",
            archetype_ids().join(", ")
        )),
    }
    for note in &facts.notes {
        lines.push(format!("note       {note}"));
    }
    lines.join("\n")
}

/// "kvm probe: passed in 3.2 s (KERNEL)" or "kvm probe: failed: why".
pub fn probe_line(probe: &KvmProbe) -> String {
    if probe.passed {
        format!(
            "kvm probe: passed in {:.1} s ({})",
            probe.seconds, probe.kernel
        )
    } else {
        format!("kvm probe: failed: {}", probe.detail)
    }
}

fn gpu_line(gpu: &Gpu) -> String {
    let mut head = Vec::new();
    if let Some(addr) = &gpu.pci_address {
        head.push(addr.clone());
    }
    if let (Some(v), Some(d)) = (&gpu.vendor_id, &gpu.device_id) {
        let hex = |id: &str| id.trim_start_matches("0x").to_string();
        head.push(format!("[{}:{}]", hex(v), hex(d)));
    }
    head.push(
        gpu.name
            .clone()
            .unwrap_or_else(|| "(name unknown)".to_string()),
    );
    let mut parts = vec![head.join(" ")];
    match gpu.vram_bytes {
        Some(v) if gpu.unified_memory => parts.push(format!("{} unified memory", gib(v))),
        Some(v) => parts.push(format!("{} VRAM", gib(v))),
        None => {}
    }
    if let Some(driver) = &gpu.driver_version {
        parts.push(format!("driver {driver}"));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(passed: bool, detail: &str) -> KvmProbe {
        KvmProbe {
            passed,
            detail: detail.into(),
            kernel: "/boot/vmlinuz-6.1.0-18-amd64".into(),
            initrd: "/boot/initrd.img-6.1.0-18-amd64".into(),
            host_kernel: "6.1.0-18-amd64".into(),
            seconds: 3.24,
            at: "2025-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn a_guest_with_a_probe_says_both_under_kvm() {
        let facts = Facts {
            kvm: true,
            guest: true,
            kvm_probe: Some(probe(true, "Run /init as init process")),
            ..Facts::default()
        };
        let text = summary(&facts);
        assert!(
            text.contains(
                "\n           kvm: /dev/kvm present; this machine is itself a guest (cpu flag hypervisor)\n           kvm probe: passed in 3.2 s (/boot/vmlinuz-6.1.0-18-amd64)\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_failed_probe_says_why() {
        let facts = Facts {
            kvm_probe: Some(probe(false, "no marker within 60s: the guest hung")),
            ..Facts::default()
        };
        let text = summary(&facts);
        assert!(text.contains("kvm: no /dev/kvm\n"), "{text}");
        assert!(!text.contains("guest (cpu flag"), "{text}");
        assert!(
            text.contains("kvm probe: failed: no marker within 60s: the guest hung"),
            "{text}"
        );
    }
}
