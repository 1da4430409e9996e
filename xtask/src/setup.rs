//! `cargo xtask setup`: install the Debian packages sovereign needs, idempotently.

use std::process::Command;

use anyhow::{Context, Result, bail};

/// Debian packages and why each is needed.
const PACKAGES: &[(&str, &str)] = &[
    ("cmake", "builds llama.cpp"),
    ("clang", "builds llama.cpp's bindings (bindgen)"),
    (
        "libclang-dev",
        "bindgen reads llama.cpp's headers through libclang",
    ),
    ("pkg-config", "finds system libraries for -sys crates"),
];

pub fn run() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !installed(name))
        .collect();
    if missing.is_empty() {
        eprintln!("setup: all {} system packages present", PACKAGES.len());
        return Ok(());
    }
    if !is_root() {
        bail!(
            "setup needs root to install {}: run it as root (or: sudo apt-get install {})",
            missing.join(", "),
            missing.join(" ")
        );
    }
    eprintln!("setup: installing {}", missing.join(", "));
    apt(&["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&missing);
    apt(&args)?;
    Ok(())
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", package])
        .output()
        .map(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains("install ok installed")
        })
        .unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn apt(args: &[&str]) -> Result<()> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .with_context(|| format!("cannot run apt-get {}", args.join(" ")))?;
    if !status.success() {
        bail!("apt-get {} failed ({status})", args.join(" "));
    }
    Ok(())
}
