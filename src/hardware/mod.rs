//! Hardware detection: CPU, memory, GPUs, and the matching archetype from hardware/.
//!
//! Placeholder: reports the CPU model only. The full detector replaces it.

use serde::{Deserialize, Serialize};

use crate::host::Host;

/// What the machine has. Serialized as `sovereign detect --json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// The processor.
    pub cpu: Cpu,
    /// The matched archetype id from hardware/, or "unknown".
    pub archetype: String,
}

/// The processor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    pub model: String,
}

/// Observe the machine (read-only).
pub fn detect(_host: &dyn Host) -> anyhow::Result<Facts> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split(':').nth(1))
        })
        .map(|m| m.trim().to_string())
        .unwrap_or_default();
    Ok(Facts {
        cpu: Cpu { model },
        archetype: "unknown".into(),
    })
}
