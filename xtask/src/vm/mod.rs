//! `cargo xtask vm-test`: `sovereign apply` on fresh Debian guests under qemu, with the real
//! OpenZFS kernel module and systemd as PID 1 (tests/vm_guests.rs).
//!
//! 1. the guest image, built from Debian's packages and cached by its inputs in
//!    [`CACHE`] (outside the clone, so a second run on the same machine is warm);
//! 2. a sovereign binary for a CPU level qemu's emulation has (the host build uses every
//!    extension of this CPU, AVX-512 included), in its own target folder in the cache;
//! 3. the tests, which boot the guests and check them from the host.

mod guest_files;
mod image;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{cargo, project_root, run_step, setup};

/// The cache: images and the portable build. `SOVEREIGN_VM_CACHE` moves it.
const CACHE: &str = "/var/cache/sovereign-tests/vm";

/// The CPU level of the guests' binary: what qemu's `-cpu max` emulates (SSE4.2, POPCNT)
/// and every x86-64 machine of the last decade runs.
const PORTABLE_CPU: &str = "x86-64-v2";

const USAGE: &str = "\
cargo xtask vm-test [--smoke]

Boots two Debian 12 guests under qemu (KVM where a probe shows a guest boots under it,
software emulation otherwise) and runs `sovereign apply` in them against the real OpenZFS
module and systemd: pools, datasets, a zvol and snapshots; a VXLAN segment between the
guests; the inference unit with its sandbox and credential; restarts, a second apply, a
rollback, a reboot, and an apply whose health check fails.

The guest image (OpenZFS's modules built by zfs-dkms, then the root image) and the
portable binary are cached in /var/cache/sovereign-tests/vm (SOVEREIGN_VM_CACHE moves it):
the first run builds them, later runs start from the cache.

  --smoke   one guest: apply a pool, a dataset and the inference unit, and chat (CI's check)

When a check fails, the guests' console logs and every command's output are kept in
target/vm-logs/<test>/.";

pub fn run(args: &[String]) -> Result<()> {
    let mut smoke = false;
    for a in args {
        match a.as_str() {
            "--smoke" => smoke = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    setup::run()?;
    test(smoke)
}

/// The VM tests, with the packages already set up (`cargo xtask ci` calls this).
pub fn test(smoke: bool) -> Result<()> {
    let started = Instant::now();
    let cache = std::env::var_os("SOVEREIGN_VM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(CACHE));
    std::fs::create_dir_all(&cache)
        .with_context(|| format!("cannot create the VM tests' cache {}", cache.display()))?;
    // One run at a time per cache: two would build into the same folders.
    let lock_path = cache.join(".lock");
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        eprintln!(
            "vm-test: another run holds {}; waiting for it",
            lock_path.display()
        );
        lock.lock()
            .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    }
    let guest = image::ensure(&cache)?;
    let images_at = started.elapsed().as_secs();
    let binary = portable_binary(&cache)?;
    let binary_at = started.elapsed().as_secs();
    let logs = project_root().join("target/vm-logs");
    let mut tests = cargo();
    tests
        .args(["test", "--test", "vm_guests", "--"])
        .args(["--ignored", "--test-threads=1", "--nocapture"])
        .env("SOVEREIGN_VM_IMAGE", &guest.dir)
        .env("SOVEREIGN_VM_BIN", &binary)
        .env("SOVEREIGN_VM_LOGS", &logs);
    if smoke {
        tests.arg("smoke");
    }
    let result = run_step(tests);
    let total = started.elapsed().as_secs();
    eprintln!(
        "vm-test: {} in {total} s (guest image {}, portable binary {} s, tests {} s)",
        if result.is_ok() { "passed" } else { "FAILED" },
        match guest.build_seconds {
            Some(s) => format!("built in {s} s"),
            None => format!("cached, {images_at} s"),
        },
        binary_at - images_at,
        total - binary_at
    );
    result
}

/// Build sovereign for [`PORTABLE_CPU`] in the cache's own target folder (its flags differ
/// from the workspace's, so sharing a folder would rebuild both every time).
fn portable_binary(cache: &Path) -> Result<PathBuf> {
    let target = cache.join("target");
    let mut build = cargo();
    build
        .args(["build", "--bin", "sovereign"])
        .env("CARGO_TARGET_DIR", &target)
        .env("RUSTFLAGS", format!("-C target-cpu={PORTABLE_CPU}"));
    run_step(build)?;
    Ok(target.join("debug/sovereign"))
}
