//! The archetype database (hardware/*.toml, compiled in) and matching facts against it.
//!
//! An archetype is a machine class a profile can be written for. Matching is exact: every
//! NVIDIA GPU must carry one of the archetype's PCI device ids and the count must agree, or
//! the chip name must equal an Apple archetype's. Anything else is "unknown", never a guess.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::{Facts, Gpu};
use crate::profile::units::Size;

/// The archetype id reported when nothing in the database matches.
pub const UNKNOWN: &str = "unknown";

/// The database files, embedded so the binary needs nothing beside it at run time.
const FILES: [(&str, &str); 6] = [
    (
        "rtx-3060.toml",
        include_str!("../../hardware/rtx-3060.toml"),
    ),
    (
        "rtx-3090.toml",
        include_str!("../../hardware/rtx-3090.toml"),
    ),
    (
        "2x-rtx-3090.toml",
        include_str!("../../hardware/2x-rtx-3090.toml"),
    ),
    (
        "rtx-4090.toml",
        include_str!("../../hardware/rtx-4090.toml"),
    ),
    (
        "m2-ultra.toml",
        include_str!("../../hardware/m2-ultra.toml"),
    ),
    (
        "cpu-only.toml",
        include_str!("../../hardware/cpu-only.toml"),
    ),
];

/// A machine class from hardware/.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Archetype {
    /// The id profiles name in `host.expect`; equals the file name without `.toml`.
    pub id: String,
    /// A readable name.
    pub name: String,
    /// What the machine is good for, in a sentence or two.
    pub description: String,
    /// Memory bandwidth of one GPU (or of unified memory), in GB/s; decode speed follows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bandwidth_gbps: Option<u32>,
    /// The largest model class the machine is meant for, when it is limited ("8B").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub largest_model: Option<String>,
    /// NVIDIA GPUs this archetype has; absent for Apple and CPU-only machines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuSpec>,
    /// The Apple chip this archetype is; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apple: Option<AppleSpec>,
    /// Throughput figures quoted for this machine class.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub throughput: Vec<ThroughputBand>,
}

/// The GPUs of an NVIDIA archetype.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuSpec {
    /// PCI vendor id, "0x10de".
    pub vendor_id: String,
    /// PCI device ids any of which a card of this archetype carries ("0x2684").
    pub device_ids: Vec<String>,
    /// How many such cards the machine has.
    pub count: usize,
    /// VRAM of one card.
    pub vram: Size,
}

/// The chip of an Apple Silicon archetype.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppleSpec {
    /// `machdep.cpu.brand_string` as sysctl prints it ("Apple M2 Ultra").
    pub chip: String,
}

/// A quoted throughput: a model size, a quantization and tokens per second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThroughputBand {
    /// Model size class ("70B").
    pub model: String,
    /// Weight quantization ("4-bit").
    pub quantization: String,
    /// Decode speed of one sequence; absent when no figure is quoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_second: Option<Band>,
    /// The figure is a rough one ("~42 tok/s").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub approximate: bool,
}

/// A range of tokens per second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Band {
    /// The slow end, tokens per second.
    pub low: u32,
    /// The fast end; equal to `low` for a single figure.
    pub high: u32,
}

impl std::fmt::Display for ThroughputBand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {}: ", self.model, self.quantization)?;
        match self.tokens_per_second {
            None => write!(f, "fits, no speed quoted"),
            Some(b) if b.low == b.high => {
                let tilde = if self.approximate { "~" } else { "" };
                write!(f, "{tilde}{} tok/s", b.low)
            }
            Some(b) => write!(f, "{}-{} tok/s", b.low, b.high),
        }
    }
}

/// Every archetype, in database order.
pub fn archetypes() -> &'static [Archetype] {
    static DB: OnceLock<Vec<Archetype>> = OnceLock::new();
    DB.get_or_init(|| {
        FILES
            .iter()
            .map(|(file, text)| {
                // A broken database file is a build defect that the tests catch, not user input.
                toml::from_str(text)
                    .unwrap_or_else(|e| panic!("hardware/{file} is not a valid archetype: {e}"))
            })
            .collect()
    })
}

/// The ids of every archetype, in database order.
pub fn archetype_ids() -> Vec<&'static str> {
    archetypes().iter().map(|a| a.id.as_str()).collect()
}

/// The archetype with this id.
pub fn find(id: &str) -> Option<&'static Archetype> {
    archetypes().iter().find(|a| a.id == id)
}

/// Parse a PCI id as sysfs ("0x2684"), nvidia-smi or a person writes it.
pub(crate) fn parse_pci_id(text: &str) -> Option<u16> {
    let t = text.trim();
    let hex = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    u16::from_str_radix(hex, 16).ok()
}

/// VRAM may read a little under the nominal size (nvidia-smi reports 24564 MiB on a 4090);
/// below this share of it the card is another variant (a 3060 with 8 GB is not the 12 GB one).
const VRAM_TOLERANCE: f64 = 0.9;

impl Archetype {
    /// Whether these GPUs are exactly this archetype's.
    fn matches_gpus(&self, gpus: &[Gpu]) -> bool {
        let Some(spec) = &self.gpu else {
            return false;
        };
        let vendor = parse_pci_id(&spec.vendor_id);
        let ids: Vec<Option<u16>> = spec.device_ids.iter().map(|d| parse_pci_id(d)).collect();
        gpus.len() == spec.count
            && gpus.iter().all(|g| {
                let same_card = g.vendor_id.as_deref().and_then(parse_pci_id) == vendor
                    && g.device_id
                        .as_deref()
                        .and_then(parse_pci_id)
                        .is_some_and(|d| ids.contains(&Some(d)));
                let enough_vram = g
                    .vram_bytes
                    .is_none_or(|v| v as f64 >= spec.vram.bytes() as f64 * VRAM_TOLERANCE);
                same_card && enough_vram
            })
    }
}

/// The archetype these facts describe, or `None` for "unknown".
pub fn classify(facts: &Facts) -> Option<&'static Archetype> {
    let db = archetypes();
    if let Some(chip) = &facts.apple_chip {
        return db
            .iter()
            .find(|a| a.apple.as_ref().is_some_and(|s| &s.chip == chip));
    }
    if facts.gpus.is_empty() {
        return db.iter().find(|a| a.gpu.is_none() && a.apple.is_none());
    }
    db.iter().find(|a| a.matches_gpus(&facts.gpus))
}

/// Why a profile's `host.expect` does not hold on this machine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpectError {
    /// `expect` names no archetype in the database.
    #[error("unknown hardware archetype {expect:?}{}; known archetypes: {}", did_you_mean(.suggestion), .known.join(", "))]
    UnknownArchetype {
        /// What the profile wrote.
        expect: String,
        /// The closest known id, when one is close.
        suggestion: Option<String>,
        /// Every known id.
        known: Vec<String>,
    },
    /// The machine is another archetype.
    #[error("this machine is {detected:?}, but the profile expects {expected:?}")]
    Mismatch {
        /// What the profile wrote.
        expected: String,
        /// What detection found ("unknown" when nothing matched).
        detected: String,
    },
}

fn did_you_mean(s: &Option<String>) -> String {
    s.as_ref()
        .map(|s| format!(" (did you mean {s:?}?)"))
        .unwrap_or_default()
}

/// Check a profile's `host.expect` against detected facts.
pub fn check_expect(facts: &Facts, expect: &str) -> Result<(), ExpectError> {
    let ids = archetype_ids();
    if !ids.contains(&expect) {
        let suggestion = ids
            .iter()
            .map(|id| (strsim::damerau_levenshtein(expect, id), *id))
            .filter(|(d, _)| *d <= 3)
            .min()
            .map(|(_, id)| id.to_string());
        return Err(ExpectError::UnknownArchetype {
            expect: expect.to_string(),
            suggestion,
            known: ids.iter().map(|s| s.to_string()).collect(),
        });
    }
    if facts.archetype == expect {
        Ok(())
    } else {
        Err(ExpectError::Mismatch {
            expected: expect.to_string(),
            detected: facts.archetype.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nvidia(device: &str, vram_gib: Option<u64>) -> Gpu {
        Gpu {
            pci_address: Some("0000:01:00.0".into()),
            vendor_id: Some("0x10de".into()),
            device_id: Some(device.into()),
            vram_bytes: vram_gib.map(|g| g << 30),
            ..Gpu::default()
        }
    }

    fn facts(gpus: Vec<Gpu>) -> Facts {
        Facts {
            gpus,
            ..Facts::default()
        }
    }

    fn id(f: &Facts) -> &str {
        classify(f).map_or(UNKNOWN, |a| a.id.as_str())
    }

    #[test]
    fn every_database_file_parses_and_is_named_by_its_id() {
        for ((file, _), arch) in FILES.iter().zip(archetypes()) {
            assert_eq!(*file, format!("{}.toml", arch.id));
            if let Some(gpu) = &arch.gpu {
                for d in &gpu.device_ids {
                    assert!(parse_pci_id(d).is_some(), "{file}: device id {d}");
                }
            }
        }
        assert_eq!(
            archetype_ids(),
            [
                "rtx-3060",
                "rtx-3090",
                "2x-rtx-3090",
                "rtx-4090",
                "m2-ultra",
                "cpu-only"
            ]
        );
    }

    #[test]
    fn every_file_in_the_hardware_folder_is_compiled_in() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("hardware");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|(f, _)| f.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }

    #[test]
    fn matching_needs_the_device_ids_and_the_count() {
        assert_eq!(id(&facts(vec![nvidia("0x2684", Some(24))])), "rtx-4090");
        assert_eq!(id(&facts(vec![nvidia("0x2204", Some(24))])), "rtx-3090");
        assert_eq!(
            id(&facts(vec![nvidia("0x2204", None), nvidia("0x2204", None)])),
            "2x-rtx-3090"
        );
        // Three 3090s, a 3090 Ti, a 3090 beside a 4090: no archetype, no guess.
        assert_eq!(id(&facts(vec![nvidia("0x2204", None); 3])), UNKNOWN);
        assert_eq!(id(&facts(vec![nvidia("0x2203", Some(24))])), UNKNOWN);
        assert_eq!(
            id(&facts(vec![nvidia("0x2204", None), nvidia("0x2684", None)])),
            UNKNOWN
        );
        assert_eq!(id(&facts(vec![])), "cpu-only");
    }

    #[test]
    fn every_rtx_3060_variant_with_12_gb_matches_and_8_gb_does_not() {
        for d in ["0x2503", "0x2504", "0x2544", "0x2487"] {
            assert_eq!(id(&facts(vec![nvidia(d, Some(12))])), "rtx-3060", "{d}");
        }
        assert_eq!(id(&facts(vec![nvidia("0x2504", Some(8))])), UNKNOWN);
        assert_eq!(id(&facts(vec![nvidia("0x2486", Some(8))])), UNKNOWN);
    }

    #[test]
    fn apple_archetypes_match_by_chip_name() {
        let mut f = facts(vec![]);
        f.apple_chip = Some("Apple M2 Ultra".into());
        assert_eq!(id(&f), "m2-ultra");
        f.apple_chip = Some("Apple M2 Max".into());
        assert_eq!(id(&f), UNKNOWN);
    }

    #[test]
    fn expect_reports_mismatches_and_unknown_ids() {
        let mut f = facts(vec![]);
        f.archetype = "cpu-only".into();
        assert_eq!(check_expect(&f, "cpu-only"), Ok(()));
        assert_eq!(
            check_expect(&f, "rtx-4090"),
            Err(ExpectError::Mismatch {
                expected: "rtx-4090".into(),
                detected: "cpu-only".into()
            })
        );
        let err = check_expect(&f, "rtx-4009").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("did you mean \"rtx-4090\""), "{text}");
        assert!(text.contains("rtx-3060, rtx-3090, 2x-rtx-3090"), "{text}");
        let err = check_expect(&f, "quantum-computer")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("did you mean"), "{err}");
    }

    #[test]
    fn throughput_bands_read_as_quoted() {
        let band = |id: &str| find(id).unwrap().throughput[0].to_string();
        assert_eq!(band("rtx-4090"), "70B at 4-bit: 52-65 tok/s");
        assert_eq!(band("2x-rtx-3090"), "70B at 4-bit: ~42 tok/s");
        assert_eq!(band("m2-ultra"), "70B at 4-bit: 40-100 tok/s");
        assert_eq!(band("rtx-3060"), "8B at 4-bit: fits, no speed quoted");
    }
}
