//! The processor as Linux describes it in /proc/cpuinfo.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// The processor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    /// The model name ("AMD Ryzen 9 7950X 16-Core Processor", "Apple M2 Ultra").
    pub model: String,
    /// The vendor ("GenuineIntel", "AuthenticAMD", "Apple", "ARM").
    pub vendor: String,
    /// Physical cores (what llama.cpp's thread count should follow).
    pub cores: u32,
    /// Hardware threads (logical CPUs).
    pub threads: u32,
    /// Performance cores of a hybrid CPU (Apple Silicon's perflevel0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance_cores: Option<u32>,
    /// Efficiency cores of a hybrid CPU (Apple Silicon's perflevel1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub efficiency_cores: Option<u32>,
    /// Instruction set extensions that matter to inference, in [`FLAGS_OF_INTEREST`] order.
    pub flags: Vec<String>,
    /// Hardware virtualization: "vmx" (Intel VT-x), "svm" (AMD-V), "hvf" (Apple
    /// Hypervisor.framework) or "none".
    pub virtualization: String,
}

/// The extensions reported, under the names /proc/cpuinfo gives x86 ones; arm64 names
/// are translated to these by [`ARM_FLAGS`].
pub const FLAGS_OF_INTEREST: [&str; 16] = [
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx_vnni",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "neon",
    "fp16",
    "dotprod",
    "i8mm",
    "sve",
];

/// arm64 feature names in /proc/cpuinfo and the names reported for them.
const ARM_FLAGS: [(&str, &str); 5] = [
    ("asimd", "neon"),
    ("asimdhp", "fp16"),
    ("asimddp", "dotprod"),
    ("i8mm", "i8mm"),
    ("sve", "sve"),
];

/// Parse /proc/cpuinfo.
pub fn parse_cpuinfo(text: &str) -> Cpu {
    let mut threads = 0u32;
    let mut model = None;
    let mut vendor = None;
    let mut implementer = None;
    let mut raw_flags: BTreeSet<String> = BTreeSet::new();
    // (physical id, core id) pairs name physical cores; absent on arm64 and some VMs.
    let mut core_ids: BTreeSet<(String, String)> = BTreeSet::new();
    let mut physical_id = String::new();
    let mut packages: BTreeSet<String> = BTreeSet::new();
    let mut cores_per_package = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "processor" => {
                threads += 1;
                physical_id.clear();
            }
            "model name" | "Model Name" => {
                model.get_or_insert_with(|| value.to_string());
            }
            "vendor_id" => {
                vendor.get_or_insert_with(|| value.to_string());
            }
            "CPU implementer" => {
                implementer.get_or_insert_with(|| value.to_string());
            }
            "physical id" => {
                physical_id = value.to_string();
                packages.insert(value.to_string());
            }
            "core id" => {
                core_ids.insert((physical_id.clone(), value.to_string()));
            }
            "cpu cores" => {
                cores_per_package = cores_per_package.or(value.parse::<u32>().ok());
            }
            "flags" | "Features" => raw_flags.extend(value.split_whitespace().map(String::from)),
            _ => {}
        }
    }
    let cores = if !core_ids.is_empty() {
        core_ids.len() as u32
    } else if let Some(per) = cores_per_package {
        per * packages.len().max(1) as u32
    } else {
        threads
    };
    let vendor = vendor
        .or_else(|| implementer.as_deref().map(arm_implementer))
        .unwrap_or_else(|| "unknown".to_string());
    Cpu {
        model: model.unwrap_or_else(|| "unknown".to_string()),
        vendor,
        cores,
        threads,
        performance_cores: None,
        efficiency_cores: None,
        flags: flags_of_interest(&raw_flags),
        virtualization: virtualization(&raw_flags).to_string(),
    }
}

/// Whether /proc/cpuinfo's flags include `hypervisor`: the CPU runs under a hypervisor,
/// so this machine is itself a virtual machine (x86 only; arm64 has no such flag).
pub fn is_guest(text: &str) -> bool {
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(key, _)| key.trim() == "flags")
        .any(|(_, value)| value.split_whitespace().any(|f| f == "hypervisor"))
}

/// Physical cores of this machine, the default thread count of the engine (hyperthreads
/// share execution units, so llama.cpp gains nothing from them): /proc/cpuinfo as
/// [`parse_cpuinfo`] counts it, at most the CPUs this process may run on, and that count
/// where /proc/cpuinfo cannot be read.
pub fn physical_cores() -> usize {
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
    match std::fs::read_to_string("/proc/cpuinfo") {
        Ok(text) => match parse_cpuinfo(&text).cores as usize {
            0 => logical,
            cores => cores.min(logical),
        },
        Err(_) => logical,
    }
}

/// The extensions of interest among a CPU's raw flags, arm64 names translated.
pub fn flags_of_interest(raw: &BTreeSet<String>) -> Vec<String> {
    let named = |name: &str| {
        raw.contains(name)
            || ARM_FLAGS
                .iter()
                .any(|(arm, ours)| *ours == name && raw.contains(*arm))
    };
    FLAGS_OF_INTEREST
        .iter()
        .filter(|f| named(f))
        .map(|f| f.to_string())
        .collect()
}

fn virtualization(raw: &BTreeSet<String>) -> &'static str {
    if raw.contains("vmx") {
        "vmx"
    } else if raw.contains("svm") {
        "svm"
    } else {
        "none"
    }
}

/// The vendor behind an arm64 "CPU implementer" code.
fn arm_implementer(code: &str) -> String {
    match code {
        "0x41" => "ARM".into(),
        "0x61" => "Apple".into(),
        "0x4e" => "NVIDIA".into(),
        "0x51" => "Qualcomm".into(),
        other => format!("implementer {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stanza(n: u32, phys: u32, core: u32, flags: &str) -> String {
        format!(
            "processor\t: {n}\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz\nphysical id\t: {phys}\ncore id\t\t: {core}\ncpu cores\t: 2\nflags\t\t: {flags}\n\n"
        )
    }

    #[test]
    fn cores_count_distinct_core_ids_per_package() {
        // Two packages, two cores each, two threads per core.
        let flags = "fpu sse4_2 avx avx2 fma f16c vmx avx512f avx512_vnni";
        let text: String = (0..8)
            .map(|n| stanza(n, n / 4, (n % 4) / 2, flags))
            .collect();
        let cpu = parse_cpuinfo(&text);
        assert_eq!((cpu.cores, cpu.threads), (4, 8));
        assert_eq!(cpu.vendor, "GenuineIntel");
        assert_eq!(
            cpu.flags,
            [
                "sse4_2",
                "avx",
                "avx2",
                "fma",
                "f16c",
                "avx512f",
                "avx512_vnni"
            ]
        );
        assert_eq!(cpu.virtualization, "vmx");
    }

    #[test]
    fn arm64_features_are_translated_and_cores_fall_back_to_threads() {
        let text = "processor\t: 0\nFeatures\t: fp asimd asimdhp asimddp i8mm\nCPU implementer\t: 0x41\n\nprocessor\t: 1\nFeatures\t: fp asimd asimdhp asimddp i8mm\nCPU implementer\t: 0x41\n";
        let cpu = parse_cpuinfo(text);
        assert_eq!((cpu.cores, cpu.threads), (2, 2));
        assert_eq!(cpu.vendor, "ARM");
        assert_eq!(cpu.model, "unknown");
        assert_eq!(cpu.flags, ["neon", "fp16", "dotprod", "i8mm"]);
        assert_eq!(cpu.virtualization, "none");
    }

    #[test]
    fn the_hypervisor_flag_marks_a_guest() {
        let guest = stanza(0, 0, 0, "fpu vmx avx2 hypervisor lahf_lm");
        assert!(is_guest(&guest));
        let bare = stanza(0, 0, 0, "fpu vmx avx2 lahf_lm");
        assert!(!is_guest(&bare));
        // Only the flags line counts, and only the whole word.
        assert!(!is_guest(
            "processor : 0\nmodel name : hypervisor special\nflags : fpu hypervisor_x\n"
        ));
        // arm64 has no such flag: its Features line never marks a guest.
        assert!(!is_guest("processor : 0\nFeatures : fp asimd\n"));
    }

    #[test]
    fn svm_is_amd_virtualization() {
        let cpu = parse_cpuinfo("processor : 0\nvendor_id : AuthenticAMD\nflags : svm avx2\n");
        assert_eq!(cpu.virtualization, "svm");
        assert_eq!(cpu.flags, ["avx2"]);
    }
}
