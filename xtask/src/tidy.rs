//! House rules as a test: every module opens with a `//!` line, no leftover
//! `todo!`/`dbg!`/`unimplemented!`, and no process spawned outside the host layer (the
//! crates under crates/ have none: they spawn nothing).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

pub fn check(root: &Path) -> Result<()> {
    let mut problems = Vec::new();
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
    #[test]
    fn the_code_follows_the_house_rules() {
        super::check(&crate::project_root()).unwrap();
    }
}
