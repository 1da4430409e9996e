//! Pool layouts: the profile's vdevs as libzetta's topology types, and the layout a pool
//! has, read from `zpool status`.
//!
//! libzetta's [`CreateVdevRequest`] is the one layout type: it checks group sizes and
//! renders the `zpool create` arguments. Its own `zpool status` parser does not read
//! zfs-fuse's output, so [`parse_status`] reads the config section here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use libzetta::zpool::CreateVdevRequest;

use crate::profile::{Vdev, VdevKind};

/// Where a path of the profile lands on this machine. Under `--root`, file vdevs and
/// absolute mountpoints are relocated under the root like managed files; device nodes
/// (`/dev/...`) stay the real machine's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Relocate {
    /// The `--root` directory, if any.
    pub root: Option<PathBuf>,
}

impl Relocate {
    /// The path as used on the machine.
    pub fn path(&self, declared: &str) -> PathBuf {
        match &self.root {
            Some(root) if !declared.starts_with("/dev/") && declared.starts_with('/') => {
                root.join(declared.trim_start_matches('/'))
            }
            _ => PathBuf::from(declared),
        }
    }

    /// A mountpoint property value as used on the machine (`none`/`legacy` unchanged).
    pub fn mountpoint(&self, declared: &str) -> String {
        if declared.starts_with('/') {
            self.path(declared).to_string_lossy().into_owned()
        } else {
            declared.to_string()
        }
    }
}

/// One declared vdev as libzetta's request type, or why it cannot be one.
pub fn to_request(vdev: &Vdev, relocate: &Relocate) -> Result<CreateVdevRequest, String> {
    let check = |p: &str| -> Result<PathBuf, String> {
        if !Path::new(p).is_absolute() {
            return Err(format!(
                "vdev path {p:?} is not absolute: write the full path, e.g. \"/var/lib/sovereign/tank.img\""
            ));
        }
        Ok(relocate.path(p))
    };
    let request = match vdev {
        Vdev::Single(p) => CreateVdevRequest::SingleDisk(check(p)?),
        Vdev::Group(g) => {
            let devices = g
                .devices
                .iter()
                .map(|d| check(d))
                .collect::<Result<Vec<_>, _>>()?;
            let (min, request) = match g.kind {
                VdevKind::Mirror => (2, CreateVdevRequest::Mirror(devices)),
                VdevKind::Raidz1 => (3, CreateVdevRequest::RaidZ(devices)),
                // libzetta's own check wants 5 for raidz2; ZFS takes 4.
                VdevKind::Raidz2 => (4, CreateVdevRequest::RaidZ2(devices)),
            };
            if g.devices.len() < min {
                return Err(format!(
                    "a {} group needs at least {min} devices, this one has {}",
                    kind_word(g.kind),
                    g.devices.len()
                ));
            }
            if !matches!(g.kind, VdevKind::Raidz2) && !request.is_valid() {
                return Err(format!("libzetta rejects this {} group", kind_word(g.kind)));
            }
            request
        }
    };
    Ok(request)
}

fn kind_word(k: VdevKind) -> &'static str {
    match k {
        VdevKind::Mirror => "mirror",
        VdevKind::Raidz1 => "raidz1",
        VdevKind::Raidz2 => "raidz2",
    }
}

/// Every device path of a layout.
pub fn devices(layout: &[CreateVdevRequest]) -> Vec<PathBuf> {
    layout
        .iter()
        .flat_map(|v| match v {
            CreateVdevRequest::SingleDisk(d) => vec![d.clone()],
            CreateVdevRequest::Mirror(d)
            | CreateVdevRequest::RaidZ(d)
            | CreateVdevRequest::RaidZ2(d)
            | CreateVdevRequest::RaidZ3(d) => d.clone(),
        })
        .collect()
}

/// `zpool create` arguments for a layout (libzetta renders them).
pub fn create_args(layout: &[CreateVdevRequest]) -> Vec<std::ffi::OsString> {
    layout
        .iter()
        .cloned()
        .flat_map(CreateVdevRequest::into_args)
        .collect()
}

/// A layout in one line for plans: `mirror(/a, /b) + /c`.
pub fn describe(layout: &[CreateVdevRequest]) -> String {
    let paths = |d: &[PathBuf]| {
        d.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    layout
        .iter()
        .map(|v| match v {
            CreateVdevRequest::SingleDisk(d) => d.display().to_string(),
            CreateVdevRequest::Mirror(d) => format!("mirror({})", paths(d)),
            CreateVdevRequest::RaidZ(d) => format!("raidz1({})", paths(d)),
            CreateVdevRequest::RaidZ2(d) => format!("raidz2({})", paths(d)),
            CreateVdevRequest::RaidZ3(d) => format!("raidz3({})", paths(d)),
        })
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Read the data vdevs of every pool from `zpool status` output (both dialects print the
/// same config table). Log, cache and spare sections are not part of the data layout.
pub fn parse_status(text: &str) -> BTreeMap<String, Vec<CreateVdevRequest>> {
    let mut pools = BTreeMap::new();
    let mut pool: Option<String> = None;
    let mut in_config = false;
    let mut layout: Vec<CreateVdevRequest> = Vec::new();
    let mut group: Option<(String, Vec<PathBuf>)> = None;
    let flush_group = |group: &mut Option<(String, Vec<PathBuf>)>,
                       layout: &mut Vec<CreateVdevRequest>| {
        if let Some((kind, devs)) = group.take() {
            layout.push(match kind.as_str() {
                "mirror" => CreateVdevRequest::Mirror(devs),
                "raidz2" => CreateVdevRequest::RaidZ2(devs),
                "raidz3" => CreateVdevRequest::RaidZ3(devs),
                _ => CreateVdevRequest::RaidZ(devs),
            });
        }
    };
    for line in text.lines() {
        if let Some(name) = line.trim_start().strip_prefix("pool: ") {
            flush_group(&mut group, &mut layout);
            if let Some(p) = pool.take() {
                pools.insert(p, std::mem::take(&mut layout));
            }
            pool = Some(name.trim().to_string());
            in_config = false;
            continue;
        }
        if line.trim_start().starts_with("config:") {
            in_config = true;
            continue;
        }
        if line.trim_start().starts_with("errors:") {
            in_config = false;
            continue;
        }
        if !in_config || line.trim().is_empty() {
            continue;
        }
        // The config table is indented by a tab; vdevs by two more spaces per level.
        let body = line.strip_prefix('\t').unwrap_or(line);
        let depth = body.len() - body.trim_start_matches(' ').len();
        let name = body.split_whitespace().next().unwrap_or("");
        if name == "NAME" || depth == 0 {
            if depth == 0 && matches!(name, "logs" | "cache" | "spares") {
                flush_group(&mut group, &mut layout);
                in_config = false;
            }
            continue;
        }
        if depth == 2 {
            flush_group(&mut group, &mut layout);
            let kind = name.rsplit_once('-').map(|(k, _)| k).unwrap_or(name);
            if matches!(kind, "mirror" | "raidz" | "raidz1" | "raidz2" | "raidz3") {
                let kind = if kind == "raidz" { "raidz1" } else { kind };
                group = Some((kind.to_string(), Vec::new()));
            } else {
                layout.push(CreateVdevRequest::SingleDisk(PathBuf::from(name)));
            }
        } else if let Some((_, devs)) = group.as_mut() {
            devs.push(PathBuf::from(name));
        }
    }
    flush_group(&mut group, &mut layout);
    if let Some(p) = pool {
        pools.insert(p, layout);
    }
    pools
}

/// The folders OpenZFS strips from a device's path when `zpool status` names it (longest
/// first): a pool made on `/dev/vdb` lists it as `vdb`, one on
/// `/dev/disk/by-id/ata-X` as `ata-X`. Files keep their whole path.
const STRIPPED: &[&str] = &[
    "/dev/disk/by-partlabel/",
    "/dev/disk/by-partuuid/",
    "/dev/disk/by-label/",
    "/dev/disk/by-uuid/",
    "/dev/disk/by-vdev/",
    "/dev/disk/by-path/",
    "/dev/disk/by-id/",
    "/dev/mapper/",
    "/dev/",
];

/// A device as `zpool status` names it, so the profile's path and the status's name
/// compare equal.
fn as_listed(path: &Path) -> PathBuf {
    let text = path.to_string_lossy();
    STRIPPED
        .iter()
        .find_map(|dir| text.strip_prefix(dir))
        .map_or_else(|| path.to_path_buf(), PathBuf::from)
}

/// Whether two layouts are the same (order of groups and of members ignored; devices
/// compared as `zpool status` lists them).
pub fn same_layout(a: &[CreateVdevRequest], b: &[CreateVdevRequest]) -> bool {
    let canon = |l: &[CreateVdevRequest]| {
        let mut v: Vec<String> = l
            .iter()
            .map(|r| {
                let mut r = r.clone();
                match &mut r {
                    CreateVdevRequest::SingleDisk(d) => *d = as_listed(d),
                    CreateVdevRequest::Mirror(d)
                    | CreateVdevRequest::RaidZ(d)
                    | CreateVdevRequest::RaidZ2(d)
                    | CreateVdevRequest::RaidZ3(d) => {
                        for p in d.iter_mut() {
                            *p = as_listed(p);
                        }
                        d.sort();
                    }
                }
                describe(&[r])
            })
            .collect();
        v.sort();
        v
    };
    canon(a) == canon(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::VdevGroup;

    const STATUS: &str = "  pool: one\n state: ONLINE\n scrub: none requested\nconfig:\n\n\tNAME             STATE     READ WRITE CKSUM\n\tone              ONLINE       0     0     0\n\t  /tmp/zt/a.img  ONLINE       0     0     0\n\nerrors: No known data errors\n\n  pool: two\n state: ONLINE\n scrub: none requested\nconfig:\n\n\tNAME            STATE     READ WRITE CKSUM\n\ttwo             ONLINE       0     0     0\n\t  mirror-0      ONLINE       0     0     0\n\t    /tmp/zt/m1  ONLINE       0     0     0\n\t    /tmp/zt/m2  ONLINE       0     0     0\n\t  /tmp/zt/c     ONLINE       0     0     0\n\tcache\n\t  /tmp/zt/l2    ONLINE       0     0     0\n\nerrors: No known data errors\n";

    #[test]
    fn zpool_status_yields_each_pools_data_layout() {
        let pools = parse_status(STATUS);
        assert_eq!(describe(&pools["one"]), "/tmp/zt/a.img");
        assert_eq!(
            describe(&pools["two"]),
            "mirror(/tmp/zt/m1, /tmp/zt/m2) + /tmp/zt/c"
        );
    }

    #[test]
    fn devices_compare_as_zpool_status_lists_them() {
        // OpenZFS lists a pool made on /dev/vdb as `vdb`, and by-id paths by their name.
        let status = "  pool: tank\n state: ONLINE\nconfig:\n\n\tNAME        STATE     READ WRITE CKSUM\n\ttank        ONLINE       0     0     0\n\t  vdb       ONLINE       0     0     0\n\t  mirror-1  ONLINE       0     0     0\n\t    ata-A   ONLINE       0     0     0\n\t    sdc     ONLINE       0     0     0\n\nerrors: No known data errors\n";
        let listed = &parse_status(status)["tank"];
        let profile = [
            CreateVdevRequest::SingleDisk("/dev/vdb".into()),
            CreateVdevRequest::Mirror(vec!["/dev/sdc".into(), "/dev/disk/by-id/ata-A".into()]),
        ];
        assert!(same_layout(listed, &profile));
        let other = [
            CreateVdevRequest::SingleDisk("/dev/vdc".into()),
            CreateVdevRequest::Mirror(vec!["/dev/sdc".into(), "/dev/disk/by-id/ata-A".into()]),
        ];
        assert!(!same_layout(listed, &other));
        // A file vdev is its whole path.
        assert!(!same_layout(
            &[CreateVdevRequest::SingleDisk("img".into())],
            &[CreateVdevRequest::SingleDisk("/tmp/img".into())]
        ));
    }

    #[test]
    fn profile_vdevs_become_zpool_arguments() {
        let vdevs = [
            Vdev::Group(VdevGroup {
                kind: VdevKind::Mirror,
                devices: vec!["/a".into(), "/b".into()],
            }),
            Vdev::Single("/dev/sdc".into()),
        ];
        let reloc = Relocate {
            root: Some("/r".into()),
        };
        let layout: Vec<_> = vdevs
            .iter()
            .map(|v| to_request(v, &reloc).unwrap())
            .collect();
        let args: Vec<String> = create_args(&layout)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(args, ["mirror", "/r/a", "/r/b", "/dev/sdc"]);
    }

    #[test]
    fn bad_groups_and_relative_paths_are_refused() {
        let raidz = Vdev::Group(VdevGroup {
            kind: VdevKind::Raidz1,
            devices: vec!["/a".into()],
        });
        let err = to_request(&raidz, &Relocate::default()).unwrap_err();
        assert!(err.contains("at least 3"), "{err}");
        let err = to_request(&Vdev::Single("tank.img".into()), &Relocate::default()).unwrap_err();
        assert!(err.contains("not absolute"), "{err}");
    }

    #[test]
    fn layouts_compare_regardless_of_order() {
        let a = vec![CreateVdevRequest::Mirror(vec!["/x".into(), "/y".into()])];
        let b = vec![CreateVdevRequest::Mirror(vec!["/y".into(), "/x".into()])];
        let c = vec![CreateVdevRequest::SingleDisk("/x".into())];
        assert!(same_layout(&a, &b));
        assert!(!same_layout(&a, &c));
    }
}
