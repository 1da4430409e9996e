//! Rules the schema cannot say: names, references between sections and semantic checks
//! (absolute normalized paths, content xor template, vdev group sizes, sha256 digests, listen addresses, non-empty check commands,
//! unit names, key files named by path).
//!
//! The rules read the merged tree, not the typed profile, so they run even when the
//! schema check found errors elsewhere; a value of the wrong type is skipped here (the
//! schema check has reported it).

use indexmap::IndexMap;

use super::diagnostics::Issue;
use super::suggest;
use super::tree::{Entry, Node, Seg, key_path, quote};

/// Check every rule over the merged profile tree.
pub fn check_rules(root: &Node) -> Vec<Issue> {
    let mut out = Vec::new();
    host(root, &mut out);
    files(root, &mut out);
    checks(root, &mut out);
    storage(root, &mut out);
    services(root, &mut out);
    inference(root, &mut out);
    out
}

fn path_of(keys: &[&str]) -> Vec<Seg> {
    keys.iter().map(|k| Seg::Key(k.to_string())).collect()
}

fn kp(keys: &[&str]) -> String {
    key_path(&path_of(keys))
}

/// The entries of the table at `keys`, when it is a table.
fn table_at<'a>(root: &'a Node, keys: &[&str]) -> Option<&'a IndexMap<String, Entry>> {
    root.get_path(keys)?.node.table()
}

fn host(root: &Node, out: &mut Vec<Issue>) {
    expect(root, out);
    let Some(entry) = root.get_path(&["host", "name"]) else {
        return;
    };
    let Some(name) = entry.node.str() else { return };
    if let Err(why) = hostname(name) {
        out.push(
            Issue::new(&entry.node.loc, "host.name", format!("host name {} {why}", quote(name)))
                .label("not a host name")
                .hint("use letters, digits and '-' (at most 63), not starting or ending with '-', e.g. \"forge-01\""),
        );
    }
}

/// `host.expect` must name an archetype of the hardware database.
fn expect(root: &Node, out: &mut Vec<Issue>) {
    let Some(entry) = root.get_path(&["host", "expect"]) else {
        return;
    };
    let Some(id) = entry.node.str() else { return };
    let known = crate::hardware::archetype_ids();
    if !known.contains(&id) {
        out.push(
            Issue::new(
                &entry.node.loc,
                "host.expect",
                format!(
                    "unknown hardware archetype {}{}",
                    quote(id),
                    suggest::suffix(id, known.iter().copied())
                ),
            )
            .label("not an archetype id")
            .hint(format!("known archetypes: {}", known.join(", "))),
        );
    }
}

fn hostname(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 63 {
        return Err("must be 1 to 63 characters long");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err("may hold only letters, digits and '-'");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("may not start or end with '-'");
    }
    Ok(())
}

/// Why `path` is not an absolute, normalized path.
pub fn absolute_normalized(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("is not absolute".into());
    }
    if path.len() > 1 && path.ends_with('/') {
        return Err("ends with '/'".into());
    }
    if path.contains("//") {
        return Err("has an empty component ('//')".into());
    }
    if path.split('/').any(|c| c == "." || c == "..") {
        return Err("has a '.' or '..' component".into());
    }
    if path.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    Ok(())
}

fn files(root: &Node, out: &mut Vec<Issue>) {
    let Some(files) = table_at(root, &["files"]) else {
        return;
    };
    for (path, entry) in files {
        let here = kp(&["files", path]);
        if let Err(why) = absolute_normalized(path) {
            out.push(
                Issue::new(
                    &entry.key_loc,
                    &here,
                    format!("file path {} {why}", quote(path)),
                )
                .label("not an absolute, normalized path")
                .hint("key files by their absolute path, e.g. [files.\"/etc/motd\"]"),
            );
        }
        let Some(spec) = entry.node.table() else {
            continue;
        };
        match (spec.get("content"), spec.get("template")) {
            (Some(_), Some(template)) => out.push(
                Issue::new(
                    &template.key_loc,
                    &here,
                    format!("file {} sets both content and template", quote(path)),
                )
                .label("second source of content")
                .hint("give exactly one of `content` or `template`"),
            ),
            (None, None) => out.push(
                Issue::new(
                    &entry.key_loc,
                    &here,
                    format!("file {} sets neither content nor template", quote(path)),
                )
                .label("no content")
                .hint("give exactly one of `content = \"...\"` or `template = \"name.j2\"`"),
            ),
            _ => {}
        }
    }
}

fn checks(root: &Node, out: &mut Vec<Issue>) {
    let Some(list) = root.get("checks").and_then(|e| e.node.array()) else {
        return;
    };
    for (i, check) in list.iter().enumerate() {
        let base = vec![Seg::Key("checks".into()), Seg::Index(i)];
        if let Some(name) = check
            .get("name")
            .filter(|n| n.node.str().is_some_and(|s| s.trim().is_empty()))
        {
            let mut p = base.clone();
            p.push(Seg::Key("name".into()));
            out.push(
                Issue::new(&name.node.loc, key_path(&p), "check name is empty")
                    .label("empty name")
                    .hint("name the check, e.g. name = \"inference answers\""),
            );
        }
        let Some(command) = check.get("command") else {
            continue;
        };
        let Some(argv) = command.node.array() else {
            continue;
        };
        let mut p = base.clone();
        p.push(Seg::Key("command".into()));
        let empty_program = argv
            .first()
            .and_then(Node::str)
            .is_some_and(|s| s.trim().is_empty());
        if argv.is_empty() || empty_program {
            out.push(
                Issue::new(&command.node.loc, key_path(&p), "check command is empty")
                    .label("no program to run")
                    .hint("give the program and its arguments, e.g. command = [\"curl\", \"-fsS\", \"http://127.0.0.1:8080/health\"]"),
            );
        }
    }
}

/// Why `name` is not a valid ZFS name component: a bounded charset, never "." or "..".
fn component(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("has an empty component".into());
    }
    if name == "." || name == ".." {
        return Err(format!("has a {} component", quote(name)));
    }
    if name.len() > 255 {
        return Err("has a component longer than 255 characters".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
    {
        return Err(format!("contains {}", quote(&bad.to_string())));
    }
    Ok(())
}

/// Prefixes ZFS reserves for pool names: they read as vdev types in `zpool create`.
const RESERVED_POOL_PREFIXES: [&str; 4] = ["mirror", "raidz", "draid", "spare"];

/// Why `name` is not a pool name ZFS accepts (its pool_namecheck: a letter first, no
/// reserved vdev-type prefix, not exactly `log`, not `c` and a digit, which reads as a
/// Solaris disk name).
fn pool_name(name: &str) -> Result<(), String> {
    component(name)?;
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err("must start with a letter".into());
    }
    if let Some(r) = RESERVED_POOL_PREFIXES
        .iter()
        .find(|r| name.starts_with(**r))
    {
        return Err(format!(
            "starts with {r:?}, which ZFS reserves (mirror, raidz, draid and spare name vdev types)"
        ));
    }
    if name == "log" {
        return Err("is \"log\", which ZFS reserves for log devices".into());
    }
    let mut chars = name.chars();
    if chars.next() == Some('c') && chars.next().is_some_and(|c| c.is_ascii_digit()) {
        return Err("is \"c\" and a digit, which ZFS reserves (it reads as a disk name)".into());
    }
    Ok(())
}

/// Why `name` is not a valid dataset or zvol name under a pool ("tank/models").
fn dataset_name(name: &str) -> Result<(), String> {
    if name.len() > 255 {
        return Err("is longer than 255 characters".into());
    }
    let mut parts = name.split('/');
    let pool = parts.next().unwrap_or_default();
    pool_name(pool).map_err(|why| format!("has a bad pool part: {why}"))?;
    let rest: Vec<&str> = parts.collect();
    if rest.is_empty() {
        return Err("names a pool, not a dataset under it".into());
    }
    for part in rest {
        component(part)?;
    }
    Ok(())
}

const NAME_HINT: &str = "use letters, digits, '_', '-', '.' and ':' in each '/'-separated part, with no empty, '.' or '..' parts, e.g. \"tank/models\"";

fn storage(root: &Node, out: &mut Vec<Issue>) {
    let pools = table_at(root, &["storage", "pools"]);
    let pool_names: Vec<&str> = pools
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let policies = table_at(root, &["storage", "snapshot_policies"]);
    let policy_names: Vec<&str> = policies
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default();

    for (name, entry) in pools.into_iter().flatten() {
        let here = kp(&["storage", "pools", name]);
        if let Err(why) = pool_name(name) {
            out.push(
                Issue::new(&entry.key_loc, &here, format!("pool name {} {why}", quote(name)))
                    .label("not a pool name")
                    .hint("a pool name starts with a letter and holds letters, digits, '_', '-', '.' and ':', e.g. \"tank\""),
            );
        }
        pool_rules(name, &entry.node, out);
    }
    shared_devices(pools, out);

    for (name, entry) in policies.into_iter().flatten() {
        // Every count zero (or left out) keeps no snapshot: each one taken is pruned at once.
        let counts = ["hourly", "daily", "weekly", "monthly"];
        let keeps = counts.iter().any(|k| {
            entry
                .node
                .get(k)
                .and_then(|e| e.node.int())
                .is_some_and(|n| n > 0)
        });
        let typed = counts
            .iter()
            .all(|k| entry.node.get(k).is_none_or(|e| e.node.int().is_some()));
        if !keeps && typed {
            out.push(
                Issue::new(
                    &entry.key_loc,
                    kp(&["storage", "snapshot_policies", name]),
                    format!(
                        "snapshot policy {} keeps nothing: every count is 0, so each snapshot it takes would be pruned at once",
                        quote(name)
                    ),
                )
                .label("keeps no snapshot")
                .hint("keep at least one, e.g. hourly = 24, daily = 7"),
            );
        }
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            out.push(
                Issue::new(
                    &entry.key_loc,
                    kp(&["storage", "snapshot_policies", name]),
                    format!(
                        "snapshot policy name {} may hold only letters, digits, '_' and '-'",
                        quote(name)
                    ),
                )
                .label("not a policy name")
                .hint("e.g. [storage.snapshot_policies.rolling]"),
            );
        }
    }

    for section in ["datasets", "zvols"] {
        let what = if section == "datasets" {
            "dataset"
        } else {
            "zvol"
        };
        for (name, entry) in table_at(root, &["storage", section]).into_iter().flatten() {
            let here = kp(&["storage", section, name]);
            if let Err(why) = dataset_name(name) {
                out.push(
                    Issue::new(
                        &entry.key_loc,
                        &here,
                        format!("{what} name {} {why}", quote(name)),
                    )
                    .label(format!("not a {what} name"))
                    .hint(NAME_HINT),
                );
                continue;
            }
            let pool = name.split('/').next().unwrap_or_default();
            if !pool_names.contains(&pool) {
                let declared = if pool_names.is_empty() {
                    "no pools are declared".to_string()
                } else {
                    format!("declared pools: {}", pool_names.join(", "))
                };
                out.push(
                    Issue::new(
                        &entry.key_loc,
                        &here,
                        format!(
                            "{what} {} is on pool {}, which is not declared in storage.pools{}",
                            quote(name),
                            quote(pool),
                            suggest::suffix(pool, pool_names.iter().copied())
                        ),
                    )
                    .label("undeclared pool")
                    .hint(format!(
                        "declare [storage.pools.{}] or fix the name ({declared})",
                        super::tree::toml_key(pool)
                    )),
                );
            }
            if section == "zvols" {
                zvol_rules(root, name, &entry.node, out);
                continue;
            }
            let Some(snap) = entry.node.get("snapshots") else {
                continue;
            };
            let Some(policy) = snap.node.str() else {
                continue;
            };
            if !policy_names.contains(&policy) {
                out.push(
                    Issue::new(
                        &snap.node.loc,
                        kp(&["storage", "datasets", name, "snapshots"]),
                        format!(
                            "snapshot policy {} is not declared in storage.snapshot_policies{}",
                            quote(policy),
                            suggest::suffix(policy, policy_names.iter().copied())
                        ),
                    )
                    .label("undeclared policy")
                    .hint(format!(
                        "declare [storage.snapshot_policies.{}] or name one of: {}",
                        super::tree::toml_key(policy),
                        if policy_names.is_empty() {
                            "(none declared)".to_string()
                        } else {
                            policy_names.join(", ")
                        }
                    )),
                );
            }
        }
    }
}

fn pool_rules(name: &str, pool: &Node, out: &mut Vec<Issue>) {
    let Some(vdevs) = pool.get("vdevs") else {
        return;
    };
    let Some(list) = vdevs.node.array() else {
        return;
    };
    let base = path_of(&["storage", "pools", name, "vdevs"]);
    if list.is_empty() {
        out.push(
            Issue::new(
                &vdevs.node.loc,
                key_path(&base),
                format!("pool {} has no vdevs", quote(name)),
            )
            .label("empty")
            .hint(
                "list at least one device or file, e.g. vdevs = [\"/var/lib/sovereign/tank.img\"]",
            ),
        );
    }
    for (i, vdev) in list.iter().enumerate() {
        let mut p = base.clone();
        p.push(Seg::Index(i));
        if let Some(device) = vdev.str() {
            device_path(device, vdev, &p, out);
            continue;
        }
        let (Some(kind), Some(devices)) = (vdev.get("type"), vdev.get("devices")) else {
            continue;
        };
        let (Some(kind), Some(members)) = (kind.node.str(), devices.node.array()) else {
            continue;
        };
        let least = match kind {
            "mirror" => 2,
            "raidz1" => 3,
            "raidz2" => 4,
            _ => continue,
        };
        p.push(Seg::Key("devices".into()));
        if members.len() < least {
            out.push(
                Issue::new(
                    &devices.node.loc,
                    key_path(&p),
                    format!("a {kind} vdev needs at least {least} devices, found {}", members.len()),
                )
                .label(format!("{} device(s)", members.len()))
                .hint("mirror needs 2 or more devices, raidz1 3 or more, raidz2 4 or more; a single device is written as a plain path"),
            );
        }
        for (j, member) in members.iter().enumerate() {
            if let Some(device) = member.str() {
                let mut q = p.clone();
                q.push(Seg::Index(j));
                device_path(device, member, &q, out);
            }
        }
    }
}

/// What ZFS refuses of a zvol, known from the profile alone: a size of zero, a block size
/// that is not a power of two from 512 bytes to 128K, a dataset of the same name, a
/// dataset under it (a zvol holds no datasets).
fn zvol_rules(root: &Node, name: &str, zvol: &Node, out: &mut Vec<Issue>) {
    use super::units::Size;
    let size_of = |key: &str| {
        zvol.get(key)
            .and_then(|e| Some((e, e.node.str()?.parse::<Size>().ok()?)))
    };
    if let Some((e, size)) = size_of("size") {
        if size.bytes() == 0 {
            out.push(
                Issue::new(
                    &e.node.loc,
                    kp(&["storage", "zvols", name, "size"]),
                    format!("zvol {} has a size of 0", quote(name)),
                )
                .label("empty volume")
                .hint("give the volume's size, e.g. size = \"64G\""),
            );
        }
    }
    if let Some((e, bs)) = size_of("volblocksize") {
        let b = bs.bytes();
        if !b.is_power_of_two() || !(512..=128 * 1024).contains(&b) {
            out.push(
                Issue::new(
                    &e.node.loc,
                    kp(&["storage", "zvols", name, "volblocksize"]),
                    format!("volblocksize {bs} is not a power of two from 512B to 128K"),
                )
                .label("not a block size")
                .hint("e.g. volblocksize = \"16K\" (512B, 1K, 2K, 4K, 8K, 16K, 32K, 64K or 128K)"),
            );
        }
    }
    for (dataset, entry) in table_at(root, &["storage", "datasets"])
        .into_iter()
        .flatten()
    {
        let message = if dataset == name {
            format!("{} is declared as a dataset and as a zvol", quote(name))
        } else if dataset.starts_with(&format!("{name}/")) {
            format!(
                "dataset {} is under zvol {}, and a zvol holds no datasets",
                quote(dataset),
                quote(name)
            )
        } else {
            continue;
        };
        out.push(
            Issue::new(
                &entry.key_loc,
                kp(&["storage", "datasets", dataset]),
                message,
            )
            .label("conflicts with a zvol")
            .hint(
                "a name is either a dataset (a filesystem) or a zvol (a block device); rename one",
            ),
        );
    }
}

/// A device or file may back one vdev of one pool: listed twice (in one mirror, or in two
/// pools), `zpool create` refuses it, or worse, two pools fight over it.
fn shared_devices(pools: Option<&IndexMap<String, Entry>>, out: &mut Vec<Issue>) {
    // Every device of every pool, then in file order, so the second mention is the one
    // reported whatever order the pools merged in.
    let mut devices: Vec<(&str, Vec<Seg>, &Node)> = Vec::new();
    for (pool, entry) in pools.into_iter().flatten() {
        let Some(vdevs) = entry.node.get("vdevs").and_then(|v| v.node.array()) else {
            continue;
        };
        for (i, vdev) in vdevs.iter().enumerate() {
            let mut p = path_of(&["storage", "pools", pool, "vdevs"]);
            p.push(Seg::Index(i));
            if vdev.str().is_some() {
                devices.push((pool, p, vdev));
            } else if let Some(members) = vdev.get("devices").and_then(|d| d.node.array()) {
                p.push(Seg::Key("devices".into()));
                for (j, m) in members.iter().enumerate() {
                    let mut q = p.clone();
                    q.push(Seg::Index(j));
                    devices.push((pool, q, m));
                }
            }
        }
    }
    devices.sort_by_key(|(_, _, n)| (n.loc.file, n.loc.span.start));
    let mut seen: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for (pool, path, node) in devices {
        let Some(device) = node.str() else {
            continue;
        };
        let Some(first) = seen.get(device) else {
            seen.insert(device, pool);
            continue;
        };
        let message = if *first == pool {
            format!(
                "device {} is listed twice in pool {}",
                quote(device),
                quote(pool)
            )
        } else {
            format!(
                "device {} is already a vdev of pool {}",
                quote(device),
                quote(first)
            )
        };
        out.push(
            Issue::new(&node.loc, key_path(&path), message)
                .label("listed again")
                .hint("each device or file backs one vdev of one pool; name another device here"),
        );
    }
}

fn device_path(device: &str, node: &Node, path: &[Seg], out: &mut Vec<Issue>) {
    if let Err(why) = absolute_normalized(device) {
        out.push(
            Issue::new(&node.loc, key_path(path), format!("vdev path {} {why}", quote(device)))
                .label("not an absolute path")
                .hint("name devices by absolute path, e.g. \"/dev/disk/by-id/nvme-A\" or a file \"/var/lib/sovereign/tank.img\""),
        );
    }
}

/// Why `name` cannot be a systemd unit name (without its ".service" suffix).
pub fn unit_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 200 {
        return Err("must be 1 to 200 characters long".into());
    }
    if name.ends_with(".service") {
        return Err("ends with \".service\" (the suffix is added)".into());
    }
    if name.starts_with(['.', '-']) {
        return Err("may not start with '.' or '-'".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '@')))
    {
        return Err(format!("contains {}", quote(&bad.to_string())));
    }
    Ok(())
}

fn services(root: &Node, out: &mut Vec<Issue>) {
    let Some(services) = table_at(root, &["services"]) else {
        return;
    };
    for (name, entry) in services {
        let here = kp(&["services", name]);
        if let Err(why) = unit_name(name) {
            out.push(
                Issue::new(&entry.key_loc, &here, format!("service name {} {why}", quote(name)))
                    .label("not a unit name")
                    .hint("use letters, digits, '_', '-', '.', ':' and '@', without \".service\", e.g. [services.backup]"),
            );
        }
        if name == crate::profile::INFERENCE_UNIT && root.get("inference").is_some() {
            out.push(
                Issue::new(&entry.key_loc, &here, format!("service {} is the unit [inference] generates", quote(name)))
                    .label("taken by [inference]")
                    .hint("give this service another name; [inference] declares sovereign-inference itself"),
            );
        }
        let Some(spec) = entry.node.table() else {
            continue;
        };
        match (spec.get("unit"), spec.get("template")) {
            (Some(_), Some(template)) => out.push(
                Issue::new(
                    &template.key_loc,
                    &here,
                    format!("service {} sets both unit and template", quote(name)),
                )
                .label("second source of the unit")
                .hint("give exactly one of `unit` or `template`"),
            ),
            (None, None) => out.push(
                Issue::new(
                    &entry.key_loc,
                    &here,
                    format!("service {} sets neither unit nor template", quote(name)),
                )
                .label("no unit")
                .hint("give `unit = \"[Service]\\nExecStart=...\"` or `template = \"name.service.j2\"`"),
            ),
            _ => {}
        }
        for (i, path) in spec
            .get("restart_on")
            .and_then(|e| e.node.array())
            .into_iter()
            .flatten()
            .enumerate()
        {
            let Some(p) = path.str() else { continue };
            if let Err(why) = absolute_normalized(p) {
                let at = key_path(&[
                    Seg::Key("services".into()),
                    Seg::Key(name.clone()),
                    Seg::Key("restart_on".into()),
                    Seg::Index(i),
                ]);
                out.push(
                    Issue::new(&path.loc, at, format!("restart_on path {} {why}", quote(p)))
                        .label("not an absolute, normalized path")
                        .hint("name the files the service reads by absolute path, e.g. \"/etc/backup.conf\""),
                );
            }
        }
    }
}

fn inference(root: &Node, out: &mut Vec<Issue>) {
    let Some(section) = root.get("inference") else {
        return;
    };
    let node = &section.node;
    let key_file = node.get("api_key_file");
    if let Some(listen) = node.get("listen") {
        if let Some(addr) = listen.node.str() {
            match addr.parse::<std::net::SocketAddr>() {
                Err(_) => out.push(
                    Issue::new(&listen.node.loc, "inference.listen", listen_problem(addr))
                        .label("not a socket address")
                        .hint("write an IP address and a port, e.g. \"127.0.0.1:8080\" or \"[::1]:8080\""),
                ),
                Ok(sock) if !sock.ip().is_loopback() && key_file.is_none() => out.push(
                    Issue::new(
                        &listen.node.loc,
                        "inference.listen",
                        format!("listen address {} is reachable from other machines but no api_key_file is set", quote(addr)),
                    )
                    .label("not loopback")
                    .hint("set inference.api_key_file to a file holding the key, or listen on 127.0.0.1"),
                ),
                Ok(_) => {}
            }
        }
    }
    if let Some(file) = key_file {
        if let Some(path) = file.node.str() {
            // A value with no '/' is most likely the key itself pasted in: never echo it.
            if !path.contains('/') {
                out.push(
                    Issue::new(
                        &file.node.loc,
                        "inference.api_key_file",
                        "api_key_file must name a file holding the key, and this value is not a path (it may be the key itself; it is not shown)",
                    )
                    .label("not a path")
                    .hint("put the key in a file readable only by root (mode 0600) and give its absolute path, e.g. \"/etc/sovereign/api-key\"; a key in a profile is a leaked key")
                    .sensitive(),
                );
            } else if let Err(why) = absolute_normalized(path) {
                // A key may contain '/' (base64 does): never repeat the value.
                out.push(
                    Issue::new(
                        &file.node.loc,
                        "inference.api_key_file",
                        format!(
                            "api_key_file {why} (the value is not shown: it may be the key itself)"
                        ),
                    )
                    .label("not an absolute path")
                    .hint("name the key file by absolute path, e.g. \"/etc/sovereign/api-key\"")
                    .sensitive(),
                );
            }
        }
    }
    client_bounds(node, out);
    if let (Some(old), Some(_)) = (node.get("ctx"), node.get("context")) {
        out.push(
            Issue::new(
                &old.key_loc,
                kp(&["inference", "ctx"]),
                "ctx and context are both given",
            )
            .label("the old spelling of context")
            .hint("give only `context` (`ctx` is its old spelling)"),
        );
    }
    for (name, entry) in table_at(root, &["inference", "models"])
        .into_iter()
        .flatten()
    {
        let here = kp(&["inference", "models", name]);
        if let Err(why) = model_name(name) {
            out.push(
                Issue::new(&entry.key_loc, &here, format!("model name {} {why}", quote(name)))
                    .label("not a model name")
                    .hint("use letters, digits, '_', '-', '.' and ':' (clients send this name), e.g. \"coder\" or \"qwen2.5-coder:7b\""),
            );
        }
        if let Some(source) = entry.node.get("source") {
            if let Some(s) = source.node.str() {
                let ok = s.starts_with("https://") && s.len() > "https://".len()
                    || absolute_normalized(s).is_ok();
                if !ok {
                    out.push(
                        Issue::new(
                            &source.node.loc,
                            kp(&["inference", "models", name, "source"]),
                            format!("model source {} is neither an https URL nor an absolute path", quote(s)),
                        )
                        .label("not a model source")
                        .hint("give \"https://host/path/model.gguf\" or an absolute path such as \"/srv/models/model.gguf\""),
                    );
                }
            }
        }
        if let Some(sha) = entry.node.get("sha256") {
            if let Some(s) = sha.node.str() {
                if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                    out.push(
                        Issue::new(
                            &sha.node.loc,
                            kp(&["inference", "models", name, "sha256"]),
                            match s.chars().find(|c| !c.is_ascii_hexdigit()) {
                                Some(c) => format!("sha256 must be 64 hex digits, and {} is not one", quote(&c.to_string())),
                                None => format!("sha256 must be 64 hex digits, found {} character(s)", s.chars().count()),
                            },
                        )
                        .label("not a sha256 digest")
                        .hint("copy the digest `sha256sum model.gguf` prints (64 characters 0-9, a-f)"),
                    );
                }
            }
        }
        if let Some(ttl) = entry.node.get("ttl") {
            let secs = ttl
                .node
                .str()
                .and_then(|s| s.parse::<super::units::Duration>().ok())
                .map(|d| d.as_std().as_secs());
            let range = crate::inference::limits::TTL_SECS;
            if let Some(secs) = secs.filter(|s| !range.contains(s)) {
                out.push(
                    Issue::new(
                        &ttl.node.loc,
                        kp(&["inference", "models", name, "ttl"]),
                        format!(
                            "ttl must be between {}s and {}s, not {secs}s (the daemon refuses it: a zero TTL would unload the model at once)",
                            range.start(),
                            range.end()
                        ),
                    )
                    .label("out of range")
                    .hint("give the idle time before the model is unloaded, e.g. \"30m\", or leave ttl out to keep it loaded"),
                );
            }
        }
    }
}

/// Why `addr` is not an IP address and port, in the operator's words.
fn listen_problem(addr: &str) -> String {
    let port = addr.rsplit_once(':').map(|(_, p)| p);
    match port {
        Some(p) if p.parse::<u64>().is_ok_and(|n| n > 65_535) => {
            format!("listen address {}: port {p} is beyond 65535", quote(addr))
        }
        Some(p) if !p.is_empty() && p.parse::<u16>().is_ok() => format!(
            "listen address {}: {} is not an IP address (a name is not resolved here)",
            quote(addr),
            quote(addr.rsplit_once(':').map_or(addr, |(h, _)| h))
        ),
        _ => format!("listen address {} is not an address and port", quote(addr)),
    }
}

/// The daemon's bounds on clients (`header_timeout`, `max_connections`, ...): the ranges
/// are the daemon's own ([`crate::inference::limits::BOUNDS`]), so `validate` refuses what
/// `serve` would.
fn client_bounds(section: &Node, out: &mut Vec<Issue>) {
    use crate::inference::limits::{BOUNDS, BoundKind};
    for bound in BOUNDS {
        let Some(entry) = section.get(bound.key) else {
            continue;
        };
        // A value of the wrong type is the schema's to report.
        let value = match bound.kind {
            BoundKind::Seconds { .. } => entry
                .node
                .str()
                .and_then(|s| s.parse::<super::units::Duration>().ok())
                .map(|d| d.as_std().as_secs()),
            BoundKind::Count { .. } => entry.node.int().map(|n| n.max(0) as u64),
        };
        let Some(value) = value else {
            continue;
        };
        if let Err(why) = bound.check(value) {
            let (min, max) = bound.kind.range();
            let range = match bound.kind {
                BoundKind::Seconds { .. } => format!("from \"{min}s\" to \"{max}s\""),
                BoundKind::Count { .. } => format!("from {min} to {max}"),
            };
            out.push(
                Issue::new(&entry.node.loc, kp(&["inference", bound.key]), why)
                    .label("out of range")
                    .hint(format!(
                        "{}: {range}; leave it out for the default, {}",
                        bound.about,
                        bound.default_text()
                    )),
            );
        }
    }
}

fn model_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err("must be 1 to 128 characters long".into());
    }
    if name.contains("..") {
        return Err("may not contain \"..\"".into());
    }
    if name.starts_with(['.', '-']) {
        return Err("may not start with '.' or '-'".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
    {
        return Err(format!("contains {}", quote(&bad.to_string())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_be_absolute_and_normalized() {
        assert!(absolute_normalized("/etc/motd").is_ok());
        assert!(absolute_normalized("/").is_ok());
        for bad in ["etc/motd", "/etc/../motd", "/etc//motd", "/etc/", "/./x"] {
            assert!(absolute_normalized(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_bounded() {
        assert!(dataset_name("tank/models").is_ok());
        assert!(dataset_name("tank/vms/hunt-01").is_ok());
        assert!(dataset_name("tank").is_err());
        assert!(dataset_name("tank//x").is_err());
        assert!(dataset_name("tank/../x").is_err());
        assert!(dataset_name("tank/a b").is_err());
        assert!(pool_name("mirror0").is_err());
        assert!(pool_name("1tank").is_err());
        // Exactly what ZFS reserves, no more.
        for bad in ["log", "raidz2pool", "draidx", "spare", "c0", "c1tank"] {
            assert!(pool_name(bad).is_err(), "{bad}");
        }
        for good in ["logs", "logpool", "cache", "cachepool", "ctank", "c"] {
            assert!(pool_name(good).is_ok(), "{good}: {:?}", pool_name(good));
        }
        assert!(model_name("qwen2.5-coder:7b").is_ok());
        assert!(model_name("../etc").is_err());
        assert!(model_name("a/b").is_err());
        assert!(hostname("forge-01").is_ok());
        assert!(hostname("-x").is_err());
        assert!(unit_name("backup").is_ok());
        assert!(unit_name("getty@tty1").is_ok());
        assert!(unit_name("backup.service").is_err());
        assert!(unit_name("a/b").is_err());
    }
}
