//! The rules of `[forge]` a schema cannot say: VM names, what a VM's disks and networks
//! refer to (declared zvols, datasets and segments with bridges), a disk used by two VMs,
//! boot paths, and keys that mean nothing for the chosen hypervisor. What depends on the
//! machine (CPUs to pin to, memory, the pool's size, the kernel file) is plan's to judge.

use std::collections::BTreeMap;

use crate::profile::diagnostics::Issue;
use crate::profile::rules::{absolute_normalized, kp, table_at};
use crate::profile::tree::{Node, Seg, key_path, quote};

use super::section::{MIN_MEMORY_BYTES, NAT};
use crate::profile::units::Size;

/// Why `name` cannot be a VM's name (libvirt's and xl's, and part of file names).
pub fn vm_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!(
            "is {} bytes long; a VM name has 1 to 64",
            name.len()
        ));
    }
    if name.starts_with(['.', '-']) {
        return Err("starts with '.' or '-'".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!("contains {}", quote(&bad.to_string())));
    }
    Ok(())
}

/// Why `file` cannot be an image file's name inside a dataset.
fn file_name(file: &str) -> Result<(), String> {
    if file.is_empty() || file == "." || file == ".." || file.contains('/') || file.contains('\0') {
        return Err("is not a plain file name (no '/', not '.' or '..')".into());
    }
    Ok(())
}

pub fn check(root: &Node, out: &mut Vec<Issue>) {
    let Some(forge) = root.get("forge") else {
        return;
    };
    let xen = forge.node.get("hypervisor").and_then(|h| h.node.str()) == Some("xen");
    if xen {
        for key in ["accel", "uri"] {
            if let Some(e) = forge.node.get(key) {
                out.push(
                    Issue::new(
                        &e.node.loc,
                        kp(&["forge", key]),
                        format!("{key} applies to hypervisor = \"kvm\" (libvirt), not to Xen"),
                    )
                    .label("not used by Xen")
                    .hint("remove it, or set hypervisor = \"kvm\""),
                );
            }
        }
    }
    let Some(vms) = table_at(root, &["forge", "vms"]) else {
        return;
    };
    let zvols = table_at(root, &["storage", "zvols"]);
    let datasets = table_at(root, &["storage", "datasets"]);
    let pools = table_at(root, &["storage", "pools"]);
    let segments = table_at(root, &["network", "vxlan"]);
    // disk identity -> the VM (and key path) that uses it first
    let mut disk_owner: BTreeMap<String, String> = BTreeMap::new();

    for (name, entry) in vms {
        let here = kp(&["forge", "vms", name]);
        if let Err(why) = vm_name(name) {
            out.push(
                Issue::new(
                    &entry.key_loc,
                    &here,
                    format!("VM name {} {why}", quote(name)),
                )
                .label("not a VM name")
                .hint("use letters, digits, '-', '_' and '.', e.g. [forge.vms.hunt-01]"),
            );
        }
        let at = |keys: &[&str]| {
            let mut path = vec!["forge", "vms", name.as_str()];
            path.extend(keys);
            kp(&path)
        };
        if let Some(mem) = entry.node.get("memory")
            && let Some(Ok(size)) = mem.node.str().map(str::parse::<Size>)
            && size.bytes() < MIN_MEMORY_BYTES
        {
            out.push(
                Issue::new(
                    &mem.node.loc,
                    at(&["memory"]),
                    format!(
                        "memory {} is below the 32M a Linux guest needs to boot",
                        quote(mem.node.str().unwrap_or(""))
                    ),
                )
                .label("too little memory")
                .hint("give the VM at least \"32M\", e.g. memory = \"512M\""),
            );
        }
        if let Some(pin) = entry.node.get("pin").and_then(|p| p.node.array())
            && pin.is_empty()
        {
            let e = entry.node.get("pin").expect("read above");
            out.push(
                Issue::new(&e.node.loc, at(&["pin"]), "pin lists no CPU")
                    .label("empty")
                    .hint("list host CPUs (pin = [2, 3]), or leave pin out to let the host schedule the vCPUs"),
            );
        }
        for key in ["kernel", "initrd"] {
            if let Some(e) = entry.node.get(key)
                && let Some(path) = e.node.str()
                && let Err(why) = absolute_normalized(path)
            {
                out.push(
                    Issue::new(
                        &e.node.loc,
                        at(&[key]),
                        format!("{key} {} {why}", quote(path)),
                    )
                    .label("not an absolute path")
                    .hint("give the host path, e.g. \"/srv/vm/vmlinuz\""),
                );
            }
        }
        if entry.node.get("kernel").is_none() {
            for key in ["initrd", "cmdline"] {
                if let Some(e) = entry.node.get(key) {
                    out.push(
                        Issue::new(&e.node.loc, at(&[key]), format!("{key} is set but kernel is not"))
                            .label("needs kernel")
                            .hint("set kernel to boot a kernel directly, or remove it to boot from the first disk"),
                    );
                }
            }
        }

        for (i, disk) in entry
            .node
            .get("disks")
            .and_then(|d| d.node.array())
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let disk_at = indexed(name, "disks", i);
            let identity = if let Some(z) = disk.get("zvol") {
                let Some(zname) = z.node.str() else { continue };
                if !zvols.is_some_and(|t| t.contains_key(zname)) {
                    out.push(
                        Issue::new(
                            &z.node.loc,
                            format!("{disk_at}.zvol"),
                            format!(
                                "zvol {} is not declared under [storage.zvols]",
                                quote(zname)
                            ),
                        )
                        .label("undeclared zvol")
                        .hint(declared_hint(
                            "zvol",
                            zvols
                                .map(|t| t.keys().cloned().collect())
                                .unwrap_or_default(),
                            &format!("[storage.zvols.\"{zname}\"] size = \"20G\""),
                        )),
                    );
                }
                format!("zvol {zname}")
            } else if let Some(d) = disk.get("dataset") {
                let Some(dname) = d.node.str() else { continue };
                let declared = datasets.is_some_and(|t| t.contains_key(dname))
                    || pools.is_some_and(|t| t.contains_key(dname));
                if !declared {
                    let pool = dname.split('/').next().unwrap_or(dname);
                    let what = if pools.is_some_and(|t| t.contains_key(pool)) {
                        format!(
                            "dataset {} is not declared under [storage.datasets]",
                            quote(dname)
                        )
                    } else {
                        format!(
                            "dataset {} is on pool {}, which is not declared under [storage.pools]",
                            quote(dname),
                            quote(pool)
                        )
                    };
                    out.push(
                        Issue::new(&d.node.loc, format!("{disk_at}.dataset"), what)
                            .label("undeclared dataset")
                            .hint(declared_hint(
                                "dataset",
                                datasets
                                    .map(|t| t.keys().cloned().collect())
                                    .unwrap_or_default(),
                                &format!("[storage.datasets.\"{dname}\"]"),
                            )),
                    );
                } else if let Some(mp) = unmounted(root, dname) {
                    out.push(
                        Issue::new(
                            &d.node.loc,
                            format!("{disk_at}.dataset"),
                            format!(
                                "dataset {} has mountpoint {}: an image file needs a mounted dataset",
                                quote(dname),
                                quote(&mp)
                            ),
                        )
                        .label("not mounted")
                        .hint("give the dataset (or the one it inherits its mountpoint from) an absolute mountpoint, or use a zvol disk"),
                    );
                }
                let file = disk.get("file").and_then(|f| f.node.str());
                if let Some(f) = disk.get("file")
                    && let Some(text) = f.node.str()
                    && let Err(why) = file_name(text)
                {
                    out.push(
                        Issue::new(
                            &f.node.loc,
                            format!("{disk_at}.file"),
                            format!("file {} {why}", quote(text)),
                        )
                        .label("not a file name")
                        .hint("name the image file inside the dataset, e.g. \"hunt.raw\""),
                    );
                }
                format!("image {dname}/{}", file.unwrap_or(""))
            } else {
                continue;
            };
            if let Some(first) = disk_owner.get(&identity) {
                out.push(
                    Issue::new(&disk.loc, &disk_at, format!("the {identity} is also {first}'s disk"))
                        .label("disk shared by two VMs")
                        .hint("a disk belongs to one VM: two VMs writing one block device corrupt it; give each VM its own zvol or image"),
                );
            } else {
                disk_owner.insert(identity, format!("VM {}", quote(name)));
            }
        }

        for (i, net) in entry
            .node
            .get("networks")
            .and_then(|d| d.node.array())
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let Some(net_name) = net.str() else { continue };
            let net_at = indexed(name, "networks", i);
            if net_name == NAT {
                if xen {
                    out.push(
                        Issue::new(
                            &net.loc,
                            &net_at,
                            "\"nat\" is libvirt's NAT network, which Xen's xl does not have",
                        )
                        .label("not with Xen")
                        .hint("attach the VM to a segment's bridge, or set hypervisor = \"kvm\""),
                    );
                }
                continue;
            }
            match segments.and_then(|s| s.get(net_name)) {
                None => out.push(
                    Issue::new(
                        &net.loc,
                        &net_at,
                        format!(
                            "network {} is not a segment declared under [network.vxlan]",
                            quote(net_name)
                        ),
                    )
                    .label("undeclared network")
                    .hint(declared_hint(
                        "segment",
                        segments
                            .map(|t| t.keys().cloned().collect())
                            .unwrap_or_default(),
                        "\"nat\" for libvirt's NAT network, or [network.vxlan.NAME] with a bridge",
                    )),
                ),
                Some(seg) if seg.node.get("bridge").is_none() => out.push(
                    Issue::new(
                        &net.loc,
                        &net_at,
                        format!(
                            "segment {} has no bridge for the VM to join",
                            quote(net_name)
                        ),
                    )
                    .label("segment without bridge")
                    .hint(format!(
                        "add bridge = \"br-{net_name}\" to [network.vxlan.{net_name}]"
                    )),
                ),
                Some(_) => {}
            }
        }
    }
}

/// `forge.vms.NAME.KEY[i]`.
/// The mountpoint `dataset` inherits when it is not a path ("none", "legacy"): its own,
/// else its nearest declared ancestor's, as ZFS inherits it (plan's `desired::mountpoint`
/// refuses the same).
fn unmounted(root: &Node, dataset: &str) -> Option<String> {
    let storage = root.get("storage")?;
    let mut name = dataset;
    loop {
        let props = if name.contains('/') {
            storage.node.get_path(&["datasets", name, "properties"])
        } else {
            storage.node.get_path(&["pools", name, "filesystem"])
        };
        if let Some(mp) = props.and_then(|p| p.node.get("mountpoint")) {
            let mp = mp.node.str()?;
            return (!mp.starts_with('/')).then(|| mp.to_string());
        }
        name = name.rsplit_once('/')?.0;
    }
}

fn indexed(vm: &str, key: &str, i: usize) -> String {
    key_path(&[
        Seg::Key("forge".into()),
        Seg::Key("vms".into()),
        Seg::Key(vm.into()),
        Seg::Key(key.into()),
        Seg::Index(i),
    ])
}

/// "declared: a, b" or how to declare one.
fn declared_hint(what: &str, declared: Vec<String>, example: &str) -> String {
    if declared.is_empty() {
        format!("no {what} is declared; declare it, e.g. {example}")
    } else {
        format!(
            "declared: {}; or declare it, e.g. {example}",
            declared.join(", ")
        )
    }
}
