//! House rules as a test: every module opens with a `//!` line, no leftover
//! `todo!`/`dbg!`/`unimplemented!`, no process spawned outside the host layer (the
//! crates under crates/ spawn nothing), no domain importing another (nor the interface
//! naming one), and no import cycle between the planning, execution and state modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// The modules whose imports must form no cycle: the interface, the registry, the plan's
/// data, the planner, the state records and the executor.
const LAYERS: &[&str] = &["domain", "domains", "plan", "planner", "state", "apply"];

pub fn check(root: &Path) -> Result<()> {
    let mut problems = Vec::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = rust_files(&root.join("src"));
    for krate in subfolders(&root.join("crates")) {
        files.extend(rust_files(&krate.join("src")));
        // The daemon and GGUF crates stand below the provisioning crate, never beside it.
        let manifest = krate.join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).unwrap_or_default();
        if text
            .lines()
            .any(|l| l.trim_start().starts_with("sovereign "))
        {
            problems.push(format!(
                "{}: a crate under crates/ never depends on the sovereign crate",
                manifest.strip_prefix(root).unwrap_or(&manifest).display()
            ));
        }
    }
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let rel = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string();
        if !text.trim_start().starts_with("//!") {
            problems.push(format!(
                "{rel}: a module starts with a `//!` line saying what it is for"
            ));
        }
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for banned in ["todo!(", "dbg!(", "unimplemented!("] {
                if code.contains(banned) {
                    problems.push(format!("{rel}:{}: `{banned}` left in", i + 1));
                }
            }
            if code.contains("Command::new(") && !rel.starts_with("src/host/") {
                problems.push(format!(
                    "{rel}:{}: processes are spawned only by the host layer (src/host)",
                    i + 1
                ));
            }
        }
        problems.extend(domain_imports(&rel, &text));
        if let Some(from) = top_module(&rel) {
            for to in crate_paths(&text) {
                if from != to && LAYERS.contains(&from.as_str()) && LAYERS.contains(&to.as_str()) {
                    edges.entry(from.clone()).or_default().insert(to);
                }
            }
        }
    }
    if let Some(cycle) = find_cycle(&edges) {
        problems.push(format!(
            "the modules {} import each other in a cycle; move the shared part down a layer",
            cycle.join(" -> ")
        ));
    }
    if !problems.is_empty() {
        bail!(
            "tidy found {} problem(s):\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    Ok(())
}

/// `src/domains/NAME/...` -> `NAME`.
fn domain_of(rel: &str) -> Option<&str> {
    let rest = rel.strip_prefix("src/domains/")?;
    let (name, _) = rest.split_once('/')?;
    Some(name)
}

/// A domain folder imports no sibling (what it needs from another goes through the
/// interface: requests and addresses), and the interface (`src/domain/`) names no domain.
fn domain_imports(rel: &str, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let own = domain_of(rel);
    let interface = rel.starts_with("src/domain/");
    if own.is_none() && !interface {
        return out;
    }
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("domains::") {
            let after = &rest[at + "domains::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '{')
                .collect();
            let before = &rest[..at];
            let rooted = before.ends_with("crate::") || before.ends_with("sovereign::");
            if rooted {
                if interface {
                    out.push(format!(
                        "{rel}:{}: the domain interface names no domain (the registry in src/domains/mod.rs does)",
                        i + 1
                    ));
                } else if Some(name.as_str()) != own {
                    out.push(format!(
                        "{rel}:{}: the {} domain imports `domains::{name}`; a domain reaches another only through the interface (requests, addresses)",
                        i + 1,
                        own.unwrap_or("?")
                    ));
                }
            }
            rest = after;
        }
        // `super::super::x` from a domain's submodule climbs out of its folder.
        if let Some(name) = own {
            let depth = rel["src/domains/".len() + name.len() + 1..]
                .matches('/')
                .count();
            let climb = "super::".repeat(depth + 2);
            if code.contains(&climb) {
                out.push(format!(
                    "{rel}:{}: `{climb}` leaves the {name} domain's folder; import through the interface",
                    i + 1
                ));
            }
        }
    }
    out
}

/// `src/NAME/...` or `src/NAME.rs` -> `NAME`.
fn top_module(rel: &str) -> Option<String> {
    let rest = rel.strip_prefix("src/")?;
    let first = rest.split('/').next()?;
    Some(first.trim_end_matches(".rs").to_string())
}

/// Every top-level module named as `crate::NAME` in `text`.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
            rest = after;
        }
    }
    out
}

/// A cycle in `edges`, as the path that closes it.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if let Some(c) = visit(node, edges, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

/// The folders directly under `dir`, sorted.
fn subfolders(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_follows_the_house_rules() {
        check(&crate::project_root()).unwrap();
    }

    #[test]
    fn a_domain_importing_a_sibling_is_found() {
        let text = "//! x\nuse crate::domains::files::Files;\nuse crate::domains::storage::X;\n";
        let found = domain_imports("src/domains/storage/diff.rs", text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("imports `domains::files`"), "{found:?}");
        let climb = domain_imports(
            "src/domains/storage/diff.rs",
            "use super::super::files::X;\n",
        );
        assert_eq!(climb.len(), 1, "{climb:?}");
        assert!(domain_imports("src/domains/storage/diff.rs", "use super::props;\n").is_empty());
        let interface = domain_imports("src/domain/mod.rs", "crate::domains::files::Files\n");
        assert_eq!(interface.len(), 1, "{interface:?}");
        assert!(domain_imports("src/cli/plan.rs", "crate::domains::files::Files\n").is_empty());
    }

    #[test]
    fn an_import_cycle_is_found_and_a_chain_is_not() {
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        edges
            .entry("apply".into())
            .or_default()
            .insert("planner".into());
        edges
            .entry("planner".into())
            .or_default()
            .insert("state".into());
        edges
            .entry("state".into())
            .or_default()
            .insert("plan".into());
        assert_eq!(find_cycle(&edges), None);
        edges
            .entry("plan".into())
            .or_default()
            .insert("planner".into());
        assert_eq!(
            find_cycle(&edges).unwrap(),
            ["planner", "state", "plan", "planner"]
        );
    }
}
