//! `sovereign detect`: report the machine's CPU, memory, GPUs and hardware archetype, and
//! check a profile's `host.expect` against them; with `--probe-kvm`, boot a guest to see
//! whether KVM really works.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::output::Style;
use super::{CmdResult, Output, exit, report};
use crate::hardware::virt::{self, ProbeSpec};
use crate::hardware::{self, ExpectError, Facts, Source};
use crate::host::RealHost;
use crate::state::StateDir;

const EXAMPLES: &str = "\
Examples:
  sovereign detect                              # summary on stderr
  sovereign detect --json | jq .archetype       # facts as JSON on stdout
  sovereign detect --expect profiles/rtx4090.toml
  sovereign detect --probe-kvm /vmlinuz /initrd.img   # boot a guest under KVM
  sovereign detect --json | jq .kvm_probe       # the probe, cached for this kernel

Exit status: 0 detected (and, with --expect, the machine matches); 1 an error, or the
machine is not the archetype the profile's host.expect names. A failed KVM probe still
exits 0: its verdict is data (kvm_probe.passed), kept in the state folder for this kernel
and shown by later detects; 1 only when the probe cannot run (qemu-system-x86_64 missing,
a boot file unreadable) or its result cannot be saved.";

/// Detect the machine: CPU, memory, GPUs and the matching hardware archetype.
///
/// Reads /proc, /sys/bus/pci and, when installed, nvidia-smi (sysctl on macOS); changes
/// nothing. The archetype is an id from the hardware database (`rtx-4090`, `2x-rtx-3090`,
/// `m2-ultra`, `rtx-3060`, `rtx-3090`, `cpu-only`) or `unknown` when none matches exactly.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Print the facts as JSON on stdout (keys: cpu, memory, gpus, kvm, guest, kvm_probe,
    /// archetype, archetype_detail, volatile).
    #[arg(long)]
    pub json: bool,
    /// Check the machine against the `host.expect` of this profile; exit 1 on a mismatch.
    #[arg(long, value_name = "PROFILE")]
    pub expect: Option<PathBuf>,
    /// Read a recorded machine from DIR (proc/, sys/, nvidia-smi.csv, sysctl.txt) instead
    /// of this one: for tests.
    #[arg(long, value_name = "DIR", hide = true)]
    pub facts_from: Option<PathBuf>,
    /// Boot KERNEL with INITRD under KVM (qemu-system-x86_64, 256 MiB, serial console)
    /// and record whether the guest reaches the marker line: /dev/kvm can exist where a
    /// guest hangs. The result is saved in the state folder (under --root) and shown by
    /// detect and used by plan while this kernel runs.
    #[arg(
        long,
        num_args = 2,
        value_names = ["KERNEL", "INITRD"],
        conflicts_with = "facts_from"
    )]
    pub probe_kvm: Option<Vec<PathBuf>>,
    /// The console text that means the guest booted; the default is what Linux prints
    /// when it starts the initramfs's /init, so any initramfs will do.
    #[arg(long, value_name = "TEXT", default_value = virt::DEFAULT_MARKER, requires = "probe_kvm")]
    pub probe_marker: String,
    /// How long the guest gets to print the marker before it counts as hung.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = virt::DEFAULT_TIMEOUT_SECS,
        value_parser = clap::value_parser!(u64).range(1..),
        requires = "probe_kvm"
    )]
    pub probe_timeout: u64,
}

pub fn run(args: Args, out: &Output) -> CmdResult {
    // Load the profile first: a broken profile is reported before anything is observed.
    let expect = match &args.expect {
        Some(path) => Some(expected_archetype(path)?),
        None => None,
    };
    // Likewise the boot files: a mistyped path fails before anything runs.
    let probe = match args.probe_kvm.as_deref() {
        Some([kernel, initrd]) => Some(
            ProbeSpec::new(
                kernel,
                initrd,
                &args.probe_marker,
                Duration::from_secs(args.probe_timeout),
            )
            .map_err(report)?,
        ),
        Some(other) => unreachable!("clap takes two values for --probe-kvm, got {other:?}"),
        None => None,
    };
    // The ZFS dialect and the KVM probe are the real machine's: reported only when
    // detecting it, never beside a fixture tree's facts.
    let from_machine = args.facts_from.is_none();
    let source = args.facts_from.map_or(Source::Machine, Source::Fixture);
    let mut facts = hardware::detect_in(&RealHost, &source).map_err(report)?;
    // The network facts: reported by detect, read by the network domain's own observe
    // when it plans (a plan never pays for hundreds of interfaces it does not use).
    if from_machine {
        hardware::network::fill(&mut facts, &RealHost);
    }
    let mut save_error = None;
    if from_machine {
        let state = StateDir::new(&super::plan::root_of(out)?);
        match &probe {
            Some(spec) => {
                out.say(format!(
                    "Booting {} under KVM (up to {} s)...",
                    spec.kernel.display(),
                    args.probe_timeout
                ));
                let result = virt::probe(spec, facts.kvm).map_err(report)?;
                // Printed even when it cannot be saved: the run is not wasted.
                save_error = virt::save_probe(&state, &result).err();
                facts.kvm_probe = Some(result);
            }
            None => facts.kvm_probe = virt::load_probe(&state),
        }
    }
    let verdict = expect
        .as_ref()
        .map(|e| (e, hardware::check_expect(&facts, &e.id)));

    if args.json {
        let mut value = serde_json::to_value(&facts)
            .map_err(|e| miette::miette!("cannot encode the facts as JSON: {e}"))?;
        if let Some((e, result)) = &verdict {
            value["expect"] = serde_json::json!({
                "profile": e.profile.display().to_string(),
                "archetype": e.id,
                "origin": e.origin,
                "matches": result.is_ok(),
            });
        }
        #[cfg(target_os = "linux")]
        if from_machine {
            value["zfs"] = crate::domains::storage::dialect_facts(&RealHost);
        }
        out.json(&value)?;
    } else {
        out.say(hardware::render::summary(&facts));
        #[cfg(target_os = "linux")]
        if from_machine {
            out.say(crate::domains::storage::dialect_line(&RealHost));
        }
    }
    if let Some(e) = save_error {
        return Err(miette::miette!(
            help = "run as root, or give --root DIR for a state folder you can write",
            "{e:#}"
        ));
    }

    match verdict {
        None => Ok(exit::OK),
        Some((e, Ok(()))) => {
            let mark = out.paint(Style::Green, "ok");
            out.say(format!(
                "{mark}: this machine is {:?}, as {} expects",
                facts.archetype,
                e.profile.display()
            ));
            Ok(exit::OK)
        }
        Some((e, Err(err))) => Err(expect_failure(e, &facts, err)),
    }
}

/// What a profile's `host.expect` says, and where it says it.
#[derive(Debug)]
struct Expected {
    /// The profile the user named.
    profile: PathBuf,
    /// The archetype id it expects.
    id: String,
    /// `file:line:column` of the `expect` value, when the loader knows it.
    origin: Option<String>,
}

fn expected_archetype(path: &Path) -> miette::Result<Expected> {
    let valid = crate::profile::load(path).map_err(miette::Report::new)?;
    let id = valid
        .profile
        .host
        .as_ref()
        .and_then(|h| h.expect.clone())
        .ok_or_else(|| {
            miette::miette!(
                help = format!(
                    "add `expect = \"<archetype>\"` under [host]; known archetypes: {}",
                    hardware::archetype_ids().join(", ")
                ),
                "{} sets no host.expect, so there is nothing to check this machine against",
                path.display()
            )
        })?;
    Ok(Expected {
        profile: path.to_path_buf(),
        origin: valid.origin("host.expect").map(|o| o.to_string()),
        id,
    })
}

fn expect_failure(e: &Expected, facts: &Facts, err: ExpectError) -> miette::Report {
    let place = e
        .origin
        .clone()
        .unwrap_or_else(|| format!("{} (host.expect)", e.profile.display()));
    match err {
        ExpectError::UnknownArchetype { .. } => miette::miette!(
            help = "host.expect names an archetype id from the hardware database; `sovereign detect` shows this machine's",
            "{place}: {err}"
        ),
        ExpectError::Mismatch { expected, detected } => {
            let help = if facts.archetype_detail.is_some() {
                format!(
                    "use this profile on a {expected} machine, or write a profile with host.expect = {detected:?} for this one"
                )
            } else {
                "no archetype of the hardware database describes this machine exactly; `sovereign detect` shows what it has".to_string()
            };
            miette::miette!(
                help = help,
                "this machine is {detected:?}, but {place} expects {expected:?}"
            )
        }
    }
}
