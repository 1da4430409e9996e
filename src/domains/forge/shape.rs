//! The fields of a VM the profile owns, in one comparable shape: built from the profile
//! for the desired VM and parsed from libvirt's inactive XML for the defined one. Diff
//! compares shapes, never XML text, so what libvirt adds on its own (machine type
//! versions, PCI addresses, controllers) is never a change.

use serde::Serialize;

/// One NIC: a host bridge or a libvirt network, and its MAC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Nic {
    /// "bridge" or "network".
    pub kind: String,
    /// The bridge's or the network's name.
    pub source: String,
    pub mac: String,
}

/// The owned fields of one VM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Shape {
    /// libvirt's domain type: "kvm" or "qemu" (software emulation).
    pub domain_type: String,
    pub uuid: String,
    pub vcpus: u32,
    /// Host CPU per vCPU, in vCPU order; empty when unpinned.
    pub pin: Vec<u32>,
    pub memory_kib: u64,
    pub hugepages: bool,
    /// Disk sources (image paths or /dev/zvol/...), in target order.
    pub disks: Vec<String>,
    pub nics: Vec<Nic>,
    pub kernel: Option<String>,
    pub initrd: Option<String>,
    pub cmdline: Option<String>,
}

impl Shape {
    /// The fields that differ, as (name, before, after) for the plan.
    pub fn differences(&self, want: &Shape) -> Vec<(&'static str, String, String)> {
        let mut out = Vec::new();
        let mut field = |name: &'static str, have: String, want: String| {
            if have != want {
                out.push((name, have, want));
            }
        };
        field("type", self.domain_type.clone(), want.domain_type.clone());
        field("uuid", self.uuid.clone(), want.uuid.clone());
        field("vcpus", self.vcpus.to_string(), want.vcpus.to_string());
        field("pin", list(&self.pin), list(&want.pin));
        field(
            "memory",
            format!("{} KiB", self.memory_kib),
            format!("{} KiB", want.memory_kib),
        );
        field(
            "hugepages",
            self.hugepages.to_string(),
            want.hugepages.to_string(),
        );
        field("disks", self.disks.join(", "), want.disks.join(", "));
        let nics = |n: &[Nic]| {
            n.iter()
                .map(|n| format!("{} {} ({})", n.kind, n.source, n.mac))
                .collect::<Vec<_>>()
                .join(", ")
        };
        field("networks", nics(&self.nics), nics(&want.nics));
        let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
        field("kernel", opt(&self.kernel), opt(&want.kernel));
        field("initrd", opt(&self.initrd), opt(&want.initrd));
        field("cmdline", opt(&self.cmdline), opt(&want.cmdline));
        out
    }
}

fn list(v: &[u32]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// The XML the profile's shape is rendered to (templates/forge/domain.xml.j2), parsed
/// back by [`parse_domain`]; a golden test and a round trip hold the two together.
pub const DOMAIN_TEMPLATE: &str = include_str!("../../../templates/forge/domain.xml.j2");
/// Xen's domain configuration (templates/forge/xl.cfg.j2).
pub const XL_TEMPLATE: &str = include_str!("../../../templates/forge/xl.cfg.j2");

/// Parse a domain's XML (`virsh dumpxml --inactive`) into its shape.
pub fn parse_domain(xml: &str) -> Result<(String, Shape), String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("not XML: {e}"))?;
    let dom = doc.root_element();
    if dom.tag_name().name() != "domain" {
        return Err(format!("<{}> is not a <domain>", dom.tag_name().name()));
    }
    let name = text(dom, "name").ok_or("the domain has no <name>")?;
    let mut shape = Shape {
        domain_type: dom.attribute("type").unwrap_or("").to_string(),
        uuid: text(dom, "uuid").unwrap_or_default().to_ascii_lowercase(),
        ..Shape::default()
    };
    shape.vcpus = text(dom, "vcpu")
        .and_then(|t| t.parse().ok())
        .ok_or("the domain has no <vcpu> count")?;
    let memory = child(dom, "memory").ok_or("the domain has no <memory>")?;
    let amount: u64 = memory
        .text()
        .and_then(|t| t.trim().parse().ok())
        .ok_or("<memory> is not a number")?;
    shape.memory_kib = to_kib(amount, memory.attribute("unit").unwrap_or("KiB"))?;
    shape.hugepages = child(dom, "memoryBacking").is_some_and(|m| child(m, "hugepages").is_some());
    if let Some(tune) = child(dom, "cputune") {
        let mut pins: Vec<(u32, u32)> = tune
            .children()
            .filter(|c| c.has_tag_name("vcpupin"))
            .filter_map(|p| {
                Some((
                    p.attribute("vcpu")?.parse().ok()?,
                    p.attribute("cpuset")?.parse().ok()?,
                ))
            })
            .collect();
        pins.sort_unstable();
        shape.pin = pins.into_iter().map(|(_, cpu)| cpu).collect();
    }
    if let Some(os) = child(dom, "os") {
        shape.kernel = text(os, "kernel");
        shape.initrd = text(os, "initrd");
        shape.cmdline = text(os, "cmdline");
    }
    if let Some(devices) = child(dom, "devices") {
        let mut disks: Vec<(String, String)> = devices
            .children()
            .filter(|c| c.has_tag_name("disk") && c.attribute("device").unwrap_or("disk") == "disk")
            .filter_map(|d| {
                let source = child(d, "source")?;
                let path = source.attribute("file").or(source.attribute("dev"))?;
                let target = child(d, "target")?.attribute("dev")?;
                Some((target.to_string(), path.to_string()))
            })
            .collect();
        disks.sort_by(|a, b| (a.0.len(), &a.0).cmp(&(b.0.len(), &b.0)));
        shape.disks = disks.into_iter().map(|(_, p)| p).collect();
        shape.nics = devices
            .children()
            .filter(|c| c.has_tag_name("interface"))
            .filter_map(|i| {
                let kind = i.attribute("type")?.to_string();
                let source = child(i, "source")?;
                let source = source
                    .attribute("bridge")
                    .or(source.attribute("network"))?
                    .to_string();
                let mac = child(i, "mac")
                    .and_then(|m| m.attribute("address"))
                    .unwrap_or("")
                    .to_ascii_lowercase();
                Some(Nic { kind, source, mac })
            })
            .collect();
    }
    Ok((name, shape))
}

fn child<'a, 'i>(parent: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    parent.children().find(|c| c.has_tag_name(name))
}

fn text(parent: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    child(parent, name)
        .and_then(|n| n.text())
        .map(|t| t.trim().to_string())
}

/// A libvirt memory amount in KiB.
fn to_kib(amount: u64, unit: &str) -> Result<u64, String> {
    let factor: u64 = match unit {
        "b" | "bytes" => return Ok(amount / 1024),
        "KiB" | "k" | "K" => 1,
        "MiB" | "M" => 1024,
        "GiB" | "G" => 1024 * 1024,
        "TiB" | "T" => 1024 * 1024 * 1024,
        "KB" => return Ok(amount * 1000 / 1024),
        other => return Err(format!("memory unit {other:?} is not one libvirt writes")),
    };
    Ok(amount * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_defined_domain_reads_back_as_its_shape() {
        let xml = r#"<domain type='qemu'>
  <name>hunt</name><uuid>4B1A3F5E-0000-4000-8000-000000000001</uuid>
  <memory unit='MiB'>256</memory><currentMemory unit='KiB'>262144</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <cputune><vcpupin vcpu='1' cpuset='3'/><vcpupin vcpu='0' cpuset='2'/></cputune>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type><kernel>/k</kernel><initrd>/i</initrd><cmdline>console=ttyS0</cmdline></os>
  <devices>
    <disk type='file' device='cdrom'><source file='/iso'/><target dev='hdc' bus='ide'/></disk>
    <disk type='block' device='disk'><source dev='/dev/zvol/tank/b'/><target dev='vdb' bus='virtio'/></disk>
    <disk type='file' device='disk'><source file='/tank/a.raw'/><target dev='vda' bus='virtio'/></disk>
    <interface type='bridge'><mac address='52:54:00:AA:BB:CC'/><source bridge='br-hunt'/></interface>
    <interface type='network'><mac address='52:54:00:aa:bb:cd'/><source network='default'/></interface>
  </devices>
</domain>"#;
        let (name, s) = parse_domain(xml).unwrap();
        assert_eq!(name, "hunt");
        assert_eq!(s.domain_type, "qemu");
        assert_eq!(s.uuid, "4b1a3f5e-0000-4000-8000-000000000001");
        assert_eq!((s.vcpus, s.memory_kib, s.hugepages), (2, 262_144, false));
        assert_eq!(s.pin, [2, 3]);
        assert_eq!(s.disks, ["/tank/a.raw", "/dev/zvol/tank/b"]);
        assert_eq!(s.nics[0].mac, "52:54:00:aa:bb:cc");
        assert_eq!(s.nics[1].kind, "network");
        assert_eq!(s.kernel.as_deref(), Some("/k"));
        assert!(parse_domain("<network/>").is_err());
        assert!(parse_domain("<domain").is_err());
    }
}
