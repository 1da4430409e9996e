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
    checks(root, &mut out);
    // Each section's own rules live with its domain.
    crate::domains::check_sections(root, &mut out);
    out
}

pub(crate) fn path_of(keys: &[&str]) -> Vec<Seg> {
    keys.iter().map(|k| Seg::Key(k.to_string())).collect()
}

pub(crate) fn kp(keys: &[&str]) -> String {
    key_path(&path_of(keys))
}

/// The entries of the table at `keys`, when it is a table.
pub(crate) fn table_at<'a>(root: &'a Node, keys: &[&str]) -> Option<&'a IndexMap<String, Entry>> {
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
    fn host_names_are_bounded() {
        assert!(hostname("forge-01").is_ok());
        assert!(hostname("-x").is_err());
    }
}
