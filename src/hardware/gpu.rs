//! NVIDIA GPUs: PCI display devices in sysfs, enriched by what nvidia-smi reports.
//!
//! sysfs alone gives the address and the ids, which is enough to match an archetype even
//! where the driver is missing; nvidia-smi adds the name, the VRAM and the driver version.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::archetype::parse_pci_id;

/// PCI vendor id of NVIDIA.
pub const NVIDIA: u16 = 0x10de;

/// The nvidia-smi query detection runs (CSV, no header, no units: MiB for memory).
pub const NVIDIA_SMI_ARGS: [&str; 3] = [
    "nvidia-smi",
    "--query-gpu=pci.bus_id,name,memory.total,driver_version",
    "--format=csv,noheader,nounits",
];

/// One GPU.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Gpu {
    /// PCI address in sysfs form ("0000:01:00.0"); none for an Apple GPU.
    pub pci_address: Option<String>,
    /// PCI vendor id ("0x10de"); none for an Apple GPU.
    pub vendor_id: Option<String>,
    /// PCI device id ("0x2684"); none when only nvidia-smi saw the card.
    pub device_id: Option<String>,
    /// The product name, from nvidia-smi (or the chip for Apple); none without it.
    pub name: Option<String>,
    /// Memory the GPU can use, in bytes; none when nvidia-smi is absent.
    pub vram_bytes: Option<u64>,
    /// The NVIDIA driver version; none when nvidia-smi is absent.
    pub driver_version: Option<String>,
    /// The GPU shares system memory with the CPU (Apple Silicon).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unified_memory: bool,
}

/// NVIDIA display devices (class 0x03xxxx) under a sysfs `bus/pci/devices` folder, in
/// address order. A missing folder means no PCI bus to see (a container, macOS): no GPUs.
pub fn scan_pci(devices: &Path) -> anyhow::Result<Vec<Gpu>> {
    let entries = match std::fs::read_dir(devices) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", devices.display())),
    };
    let mut gpus = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", devices.display()))?;
        let dir = entry.path();
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))
        };
        let vendor = read("vendor")?;
        if parse_pci_id(&vendor) != Some(NVIDIA) {
            continue;
        }
        let class = read("class")?;
        let class = u32::from_str_radix(class.trim().trim_start_matches("0x"), 16)
            .with_context(|| format!("{}/class holds {class:?}", dir.display()))?;
        if class >> 16 != 0x03 {
            continue; // the HDMI audio function and other non-display parts of the card
        }
        let device = read("device")?;
        gpus.push(Gpu {
            pci_address: Some(entry.file_name().to_string_lossy().into_owned()),
            vendor_id: Some(format!("0x{NVIDIA:04x}")),
            device_id: parse_pci_id(&device).map(|d| format!("0x{d:04x}")),
            ..Gpu::default()
        });
    }
    gpus.sort_by(|a, b| a.pci_address.cmp(&b.pci_address));
    Ok(gpus)
}

/// One line of nvidia-smi's CSV output.
#[derive(Debug, Clone, PartialEq)]
pub struct SmiRow {
    /// PCI address normalized to sysfs form.
    pub pci_address: String,
    /// The product name ("NVIDIA GeForce RTX 4090").
    pub name: String,
    /// Total VRAM; none when the board reports "[N/A]".
    pub vram_bytes: Option<u64>,
    /// The driver version ("550.54.14").
    pub driver_version: String,
}

/// Parse the output of [`NVIDIA_SMI_ARGS`]; a line that does not have four fields is an
/// error quoting it.
pub fn parse_nvidia_smi(text: &str) -> anyhow::Result<Vec<SmiRow>> {
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [bus, name, mib, driver] = fields[..] else {
            anyhow::bail!(
                "nvidia-smi output line {} has {} fields, expected 4 (bus id, name, memory, driver): {line:?}",
                n + 1,
                fields.len()
            );
        };
        rows.push(SmiRow {
            pci_address: normalize_bus_id(bus),
            name: name.to_string(),
            // "[N/A]" on some boards; MiB otherwise.
            vram_bytes: mib.parse::<u64>().ok().map(|m| m << 20),
            driver_version: driver.to_string(),
        });
    }
    Ok(rows)
}

/// nvidia-smi writes "00000000:01:00.0" (an 8-digit domain, upper case); sysfs "0000:01:00.0".
pub fn normalize_bus_id(bus: &str) -> String {
    let lower = bus.trim().to_ascii_lowercase();
    match lower.split_once(':') {
        Some((domain, rest)) => match u32::from_str_radix(domain, 16) {
            Ok(d) => format!("{d:04x}:{rest}"),
            Err(_) => lower,
        },
        None => lower,
    }
}

/// Add nvidia-smi's names, VRAM and driver to the cards sysfs found, by PCI address. A card
/// only nvidia-smi sees (no sysfs, as in some containers) is added without ids.
pub fn enrich(gpus: &mut Vec<Gpu>, rows: Vec<SmiRow>) {
    for row in rows {
        let gpu = match gpus
            .iter_mut()
            .position(|g| g.pci_address.as_deref() == Some(row.pci_address.as_str()))
        {
            Some(i) => &mut gpus[i],
            None => {
                gpus.push(Gpu {
                    pci_address: Some(row.pci_address.clone()),
                    vendor_id: Some(format!("0x{NVIDIA:04x}")),
                    ..Gpu::default()
                });
                gpus.last_mut().expect("just pushed")
            }
        };
        gpu.name = Some(row.name);
        gpu.vram_bytes = row.vram_bytes;
        gpu.driver_version = Some(row.driver_version);
    }
    gpus.sort_by(|a, b| a.pci_address.cmp(&b.pci_address));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_smi_rows_parse_with_normalized_addresses() {
        let rows = parse_nvidia_smi(
            "00000000:01:00.0, NVIDIA GeForce RTX 4090, 24564, 550.54.14\n00000000:2B:00.0, NVIDIA RTX A6000, [N/A], 550.54.14\n",
        )
        .unwrap();
        assert_eq!(rows[0].pci_address, "0000:01:00.0");
        assert_eq!(rows[0].name, "NVIDIA GeForce RTX 4090");
        assert_eq!(rows[0].vram_bytes, Some(24564 << 20));
        assert_eq!(rows[1].pci_address, "0000:2b:00.0");
        assert_eq!(rows[1].vram_bytes, None);
    }

    #[test]
    fn a_malformed_nvidia_smi_line_is_an_error_quoting_it() {
        let err = parse_nvidia_smi("NVIDIA-SMI has failed because it couldn't communicate")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1 has 1 fields"), "{err}");
        assert!(err.contains("NVIDIA-SMI has failed"), "{err}");
    }

    #[test]
    fn enrichment_joins_by_address_and_keeps_cards_only_one_side_saw() {
        let mut gpus = vec![Gpu {
            pci_address: Some("0000:01:00.0".into()),
            vendor_id: Some("0x10de".into()),
            device_id: Some("0x2204".into()),
            ..Gpu::default()
        }];
        enrich(
            &mut gpus,
            vec![SmiRow {
                pci_address: "0000:02:00.0".into(),
                name: "NVIDIA GeForce RTX 3090".into(),
                vram_bytes: Some(24576 << 20),
                driver_version: "535.183.01".into(),
            }],
        );
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[0].name, None);
        assert_eq!(gpus[1].device_id, None);
        assert_eq!(gpus[1].vram_bytes, Some(24576 << 20));
    }
}
