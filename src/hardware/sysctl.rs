//! macOS: the processor, memory and Apple Silicon GPU from `sysctl` output.
//!
//! Pure parsing of `name: value` lines, so it is tested with fixture outputs on any OS; only
//! the decision to run `sysctl` on the real machine is macOS-only (see `detect`).

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use super::cpu::{Cpu, flags_of_interest};
use super::gpu::Gpu;
use super::memory::Memory;

/// The names detection asks `sysctl` for. Names a machine lacks (an Intel Mac has no
/// perflevels) are reported on stderr and skipped; the rest still print.
pub const SYSCTL_NAMES: [&str; 14] = [
    "machdep.cpu.brand_string",
    "machdep.cpu.vendor",
    "hw.physicalcpu",
    "hw.logicalcpu",
    "hw.perflevel0.physicalcpu",
    "hw.perflevel1.physicalcpu",
    "hw.memsize",
    "hw.pagesize",
    "vm.page_free_count",
    "hw.optional.neon",
    "hw.optional.arm.FEAT_FP16",
    "hw.optional.arm.FEAT_DotProd",
    "hw.optional.arm.FEAT_I8MM",
    "kern.hv_support",
];

/// `sysctl` flag names and the CPU flags reported for them.
const SYSCTL_FLAGS: [(&str, &str); 4] = [
    ("hw.optional.neon", "neon"),
    ("hw.optional.arm.FEAT_FP16", "fp16"),
    ("hw.optional.arm.FEAT_DotProd", "dotprod"),
    ("hw.optional.arm.FEAT_I8MM", "i8mm"),
];

/// What `sysctl` says about the machine.
#[derive(Debug, Clone, PartialEq)]
pub struct MacFacts {
    pub cpu: Cpu,
    pub memory: Memory,
    /// The Apple Silicon chip ("Apple M2 Ultra"); none on an Intel Mac.
    pub apple_chip: Option<String>,
    /// The chip's integrated GPU, which shares system memory.
    pub gpu: Option<Gpu>,
}

/// Parse `sysctl NAME...` output (`name: value` per line).
pub fn parse_sysctl(text: &str) -> anyhow::Result<MacFacts> {
    let values: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let number = |name: &str| values.get(name).and_then(|v| v.parse::<u64>().ok());
    let brand = values
        .get("machdep.cpu.brand_string")
        .map(|s| s.to_string())
        .ok_or_else(|| anyhow::anyhow!("sysctl output has no machdep.cpu.brand_string line"))?;
    let total_bytes = number("hw.memsize")
        .ok_or_else(|| anyhow::anyhow!("sysctl output has no numeric hw.memsize line"))?;
    let apple_chip = brand.starts_with("Apple ").then(|| brand.clone());
    let vendor = match (&apple_chip, values.get("machdep.cpu.vendor")) {
        (Some(_), _) => "Apple".to_string(),
        (None, Some(v)) => v.to_string(),
        (None, None) => "unknown".to_string(),
    };
    let raw_flags: BTreeSet<String> = SYSCTL_FLAGS
        .iter()
        .filter(|(name, _)| number(name) == Some(1))
        .map(|(_, flag)| flag.to_string())
        .collect();
    let threads = number("hw.logicalcpu").unwrap_or(0) as u32;
    let cpu = Cpu {
        model: brand,
        vendor,
        cores: number("hw.physicalcpu").map_or(threads, |c| c as u32),
        threads,
        performance_cores: number("hw.perflevel0.physicalcpu").map(|c| c as u32),
        efficiency_cores: number("hw.perflevel1.physicalcpu").map(|c| c as u32),
        flags: flags_of_interest(&raw_flags),
        virtualization: if number("kern.hv_support") == Some(1) {
            "hvf"
        } else {
            "none"
        }
        .to_string(),
    };
    let available_bytes = number("vm.page_free_count")
        .zip(number("hw.pagesize"))
        .and_then(|(pages, size)| pages.checked_mul(size));
    let gpu = apple_chip.as_ref().map(|chip| Gpu {
        name: Some(format!("{chip} GPU")),
        vram_bytes: Some(total_bytes),
        unified_memory: true,
        ..Gpu::default()
    });
    Ok(MacFacts {
        cpu,
        memory: Memory {
            total_bytes,
            available_bytes,
        },
        apple_chip,
        gpu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const M2_ULTRA: &str = "machdep.cpu.brand_string: Apple M2 Ultra
hw.physicalcpu: 24
hw.logicalcpu: 24
hw.perflevel0.physicalcpu: 16
hw.perflevel1.physicalcpu: 8
hw.memsize: 206158430208
hw.pagesize: 16384
vm.page_free_count: 1000
hw.optional.neon: 1
hw.optional.arm.FEAT_FP16: 1
hw.optional.arm.FEAT_DotProd: 1
hw.optional.arm.FEAT_I8MM: 1
kern.hv_support: 1
";

    #[test]
    fn apple_silicon_reads_chip_cores_and_unified_memory() {
        let mac = parse_sysctl(M2_ULTRA).unwrap();
        assert_eq!(mac.apple_chip.as_deref(), Some("Apple M2 Ultra"));
        assert_eq!(mac.cpu.vendor, "Apple");
        assert_eq!((mac.cpu.cores, mac.cpu.threads), (24, 24));
        assert_eq!(
            (mac.cpu.performance_cores, mac.cpu.efficiency_cores),
            (Some(16), Some(8))
        );
        assert_eq!(mac.cpu.flags, ["neon", "fp16", "dotprod", "i8mm"]);
        assert_eq!(mac.cpu.virtualization, "hvf");
        assert_eq!(mac.memory.total_bytes, 192 << 30);
        assert_eq!(mac.memory.available_bytes, Some(1000 * 16384));
        let gpu = mac.gpu.unwrap();
        assert!(gpu.unified_memory);
        assert_eq!(gpu.vram_bytes, Some(192 << 30));
    }

    #[test]
    fn an_intel_mac_has_no_chip_and_no_gpu() {
        let mac = parse_sysctl(
            "machdep.cpu.brand_string: Intel(R) Core(TM) i9-9880H CPU @ 2.30GHz\nmachdep.cpu.vendor: GenuineIntel\nhw.physicalcpu: 8\nhw.logicalcpu: 16\nhw.memsize: 17179869184\n",
        )
        .unwrap();
        assert_eq!(mac.apple_chip, None);
        assert_eq!(mac.gpu, None);
        assert_eq!(mac.cpu.vendor, "GenuineIntel");
        assert_eq!((mac.cpu.cores, mac.cpu.threads), (8, 16));
        assert_eq!(mac.cpu.performance_cores, None);
    }

    #[test]
    fn output_without_the_brand_or_memory_is_an_error_naming_the_key() {
        let err = parse_sysctl("hw.memsize: 1\n").unwrap_err().to_string();
        assert!(err.contains("machdep.cpu.brand_string"), "{err}");
        let err = parse_sysctl("machdep.cpu.brand_string: Apple M2 Ultra\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("hw.memsize"), "{err}");
    }
}
