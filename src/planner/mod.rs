//! The planner (`planner::plan`): resolve, observe and diff every registered domain into a [`Planned`].
//!
//! Read-only: it reads the ledger (and replays an unfinished journal in memory) but
//! writes nothing; `sovereign plan` and `sovereign apply` both start here.

pub mod saved;

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use crate::domain::{self, AnyDomain, DiffOptions, DomainPlan, PlanContext, Requests};
use crate::hardware::Facts;
use crate::host::Host;
use crate::host::fs::Root;
use crate::plan::resolve::Resolved;
use crate::plan::{Address, Interrupted, Plan, Unmanaged};
use crate::state::journal;
use crate::state::{Ledger, StateDir};

/// What planning needs besides the profile.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Where managed files and the state live.
    pub root: Root,
    /// Allow changes that lose data.
    pub allow_destroy: bool,
}

/// A plan together with what the executor needs to carry it out.
pub struct Planned {
    /// The plan: pure data, rendered and saved.
    pub plan: Plan,
    /// The profile it was made from.
    pub profile: Resolved,
    /// The facts it was made with.
    pub facts: Facts,
    /// Each registered domain with its part of the plan.
    pub domains: Vec<(Box<dyn AnyDomain>, DomainPlan)>,
    /// The ledger it started from (with an unfinished journal replayed).
    pub ledger: Ledger,
    /// sha256 of the resolved profile.
    pub profile_digest: String,
    /// sha256 over every domain's desired state.
    pub desired_digest: String,
    /// Digest of the observed state of every resource covered.
    pub observed: BTreeMap<Address, String>,
    /// The options it was made with.
    pub options: PlanOptions,
    /// The sovereign binary it planned units to run.
    pub exe: std::path::PathBuf,
}

/// Plan `profile` against the machine.
pub fn plan(profile: Resolved, options: PlanOptions, host: &dyn Host) -> anyhow::Result<Planned> {
    let mut facts = crate::hardware::detect(host)?;
    // The KVM probe `detect --probe-kvm` cached under this root, if it ran on this kernel.
    facts.kvm_probe = crate::hardware::virt::load_probe(&StateDir::new(&options.root));
    if let Some(expect) = profile
        .profile
        .host
        .as_ref()
        .and_then(|h| h.expect.as_ref())
    {
        if *expect != facts.archetype {
            bail!(
                "{}: host.expect = {expect:?} but this machine is {:?} (see `sovereign detect`); use the profile written for this machine or change host.expect",
                profile.path.display(),
                facts.archetype
            );
        }
    }
    let state = StateDir::new(&options.root);
    let mut ledger = state.load_ledger()?;
    let unfinished = journal::unfinished(&state)?;
    if let Some(u) = &unfinished {
        u.replay(&mut ledger);
    }
    crate::domains::migrate(&mut ledger);

    let exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .context("cannot tell where the sovereign binary is (the units it writes run it)")?;
    let registry = crate::domains::registry();
    let mut requests = Requests::default();
    {
        let none = BTreeMap::new();
        let cx = PlanContext {
            profile: &profile,
            facts: &facts,
            root: &options.root,
            host,
            exe: &exe,
            requests: &requests,
            planned: &none,
        };
        let mut gathered = Requests::default();
        for d in &registry {
            gathered.extend(d.requests(&cx)?);
        }
        requests = gathered;
    }
    let diff_options = DiffOptions {
        allow_destroy: options.allow_destroy,
    };
    let mut domains = Vec::new();
    let mut changes = Vec::new();
    let mut observed = BTreeMap::new();
    let mut desired_hasher = Sha256::new();
    let mut planned = BTreeMap::new();
    for d in registry {
        let owned = ledger
            .domains
            .get(d.name())
            .map(|m| serde_json::to_value(m).expect("JSON values serialize"));
        let cx = PlanContext {
            profile: &profile,
            facts: &facts,
            root: &options.root,
            host,
            exe: &exe,
            requests: &requests,
            planned: &planned,
        };
        let dp = d.plan(&cx, owned.as_ref(), diff_options)?;
        planned.extend(dp.planned.iter().map(|(a, s)| (a.clone(), s.clone())));
        changes.extend(dp.changes.iter().cloned());
        observed.extend(dp.digests.iter().map(|(a, s)| (a.clone(), s.clone())));
        desired_hasher.update(dp.name.as_bytes());
        desired_hasher.update(dp.desired_digest.as_bytes());
        domains.push((d, dp));
    }
    let mut unmanaged = unmanaged_sections(&profile, &domains);
    for (_, dp) in &domains {
        unmanaged.extend(dp.unmanaged.iter().map(|note| Unmanaged {
            section: dp.name.to_string(),
            note: note.clone(),
        }));
    }
    let mut plan = Plan::new(changes, unmanaged);
    let running = crate::state::lock::running_apply(&state);
    plan.interrupted = unfinished.map(|u| Interrupted {
        running: running == Some(u.interrupted.pid),
        ..u.interrupted
    });
    Ok(Planned {
        plan,
        profile_digest: profile.digest(),
        desired_digest: hex::encode(desired_hasher.finalize()),
        profile,
        facts,
        domains,
        ledger,
        observed,
        options,
        exe,
    })
}

/// Declared top-level sections that no registered domain manages.
fn unmanaged_sections(
    profile: &Resolved,
    domains: &[(Box<dyn AnyDomain>, DomainPlan)],
) -> Vec<Unmanaged> {
    let value = serde_json::to_value(&profile.profile).expect("a profile always serializes");
    let Some(map) = value.as_object() else {
        return Vec::new();
    };
    map.keys()
        .filter(|k| !domain::ENGINE_SECTIONS.contains(&k.as_str()))
        .filter(|k| !domains.iter().any(|(d, _)| d.sections().contains(&k.as_str())))
        .map(|k| Unmanaged {
            section: k.clone(),
            note: format!(
                "[{k}] is declared but not managed by this version of sovereign: nothing in it is planned or applied"
            ),
        })
        .collect()
}
