//! Confirmed activation: an apply made with a confirmation deadline (`apply
//! --confirm-within`, what a fleet run uses) arms a watcher first; the apply's change is
//! kept only if `sovereign confirm TOKEN` arrives, over a new connection, before the
//! deadline; otherwise the watcher rolls the machine back to the generation before it.
//! The watcher and the commands talk through small files in `<state>/confirm/`, so each
//! side survives the other's death (a cut SSH session, a killed controller).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{StateDir, write_json};

/// What an armed apply recorded for its watcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Armed {
    /// The generation to roll back to; `None`: the state before the first generation.
    pub rollback_to: Option<u64>,
    /// How long after the apply ends a confirmation may arrive.
    pub seconds: u64,
}

/// Where an armed apply stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The watcher waits: the apply runs, or waits for its confirmation.
    Armed,
    /// The apply ended and changed the machine: the deadline runs from now.
    Applied,
    /// The apply did not succeed (it rolled itself back or stopped): nothing to confirm.
    Disarmed,
    Confirmed,
    RolledBack,
}

impl Stage {
    pub fn word(self) -> &'static str {
        match self {
            Stage::Armed => "armed",
            Stage::Applied => "applied",
            Stage::Disarmed => "disarmed",
            Stage::Confirmed => "confirmed",
            Stage::RolledBack => "rolled_back",
        }
    }
}

fn dir(state: &StateDir) -> PathBuf {
    state.path.join("confirm")
}

fn file(state: &StateDir, token: &str, what: &str) -> PathBuf {
    dir(state).join(format!("{token}.{what}.json"))
}

/// A token no one can guess: 128 random bits, hex.
pub fn new_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for a confirmation token")?;
    Ok(hex::encode(bytes))
}

/// Whether `token` has the shape [`new_token`] gives (it names files).
pub fn valid_token(token: &str) -> bool {
    token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Record an armed apply.
pub fn arm(state: &StateDir, token: &str, armed: &Armed) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir(state))
        .with_context(|| format!("cannot create {}", dir(state).display()))?;
    write_json(&file(state, token, "armed"), armed)
}

/// Move an armed apply to `stage` (each stage is a file of its own: the first writer of a
/// final stage wins, see [`settle`]).
pub fn mark(state: &StateDir, token: &str, stage: Stage) -> anyhow::Result<()> {
    write_json(&file(state, token, stage.word()), &stage)
}

/// What was armed under `token`.
pub fn armed(state: &StateDir, token: &str) -> Option<Armed> {
    let text = std::fs::read(file(state, token, "armed")).ok()?;
    serde_json::from_slice(&text).ok()
}

/// When `stage` was reached, if it was.
pub fn reached(state: &StateDir, token: &str, stage: Stage) -> Option<SystemTime> {
    std::fs::metadata(file(state, token, stage.word()))
        .ok()?
        .modified()
        .ok()
}

/// The furthest stage `token` reached.
pub fn stage(state: &StateDir, token: &str) -> Option<Stage> {
    armed(state, token)?;
    for s in [
        Stage::RolledBack,
        Stage::Confirmed,
        Stage::Disarmed,
        Stage::Applied,
    ] {
        if reached(state, token, s).is_some() {
            return Some(s);
        }
    }
    Some(Stage::Armed)
}

/// Claim the right to settle `token`: the confirmation and the watcher's rollback race at
/// the deadline, and exactly one may win. `Ok(false)`: the other one already did.
pub fn claim(state: &StateDir, token: &str) -> anyhow::Result<bool> {
    let lock = dir(state).join(format!("{token}.settled"));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&lock)
    {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", lock.display())),
    }
}

/// How long the watcher waits for the apply itself to end before it gives up on it (an
/// apply killed in the middle never ends; its journal is recovered by the next one).
pub const APPLY_BOUND: Duration = Duration::from_secs(6 * 3600);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fs::Root;

    #[test]
    fn an_armed_apply_moves_through_its_stages_and_only_one_side_settles_it() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(&Root::new(dir.path()).unwrap());
        let token = new_token().unwrap();
        assert!(valid_token(&token));
        assert!(!valid_token("../../etc/passwd"));
        assert_eq!(stage(&state, &token), None, "nothing armed yet");
        let armed_as = Armed {
            rollback_to: Some(3),
            seconds: 30,
        };
        arm(&state, &token, &armed_as).unwrap();
        assert_eq!(armed(&state, &token), Some(armed_as));
        assert_eq!(stage(&state, &token), Some(Stage::Armed));
        mark(&state, &token, Stage::Applied).unwrap();
        assert_eq!(stage(&state, &token), Some(Stage::Applied));
        assert!(reached(&state, &token, Stage::Applied).is_some());
        // The confirmation and the watcher race: the first claim wins, the second loses.
        assert!(claim(&state, &token).unwrap());
        assert!(!claim(&state, &token).unwrap());
        mark(&state, &token, Stage::Confirmed).unwrap();
        assert_eq!(stage(&state, &token), Some(Stage::Confirmed));
    }
}
