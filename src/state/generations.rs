//! Generations: one record per apply that changed something, numbered from 1.

use std::fmt;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::{StateDir, write_json};
use crate::plan::Plan;
use crate::plan::resolve::Resolved;

/// How an apply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Still running, or killed before it could say (the next apply turns it into
    /// `failed`).
    Running,
    Succeeded,
    Failed,
    /// A health check failed and the changes were undone.
    RolledBack,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Running => "running",
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::RolledBack => "rolled_back",
        })
    }
}

/// One generation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Generation {
    /// 1, 2, 3, ...
    pub number: u64,
    /// When the apply started (RFC 3339, UTC).
    pub started: String,
    /// When it ended; `None` while running or when killed.
    pub finished: Option<String>,
    pub outcome: Outcome,
    /// What happened, for people (the failed step, the failing check, the rollback).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The generation this one rolled back to (`sovereign rollback N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_to: Option<u64>,
    /// The resolved profile it applied (self-contained: templates included).
    pub profile: Resolved,
    /// The plan it carried out.
    pub plan: Plan,
}

/// The generation number the next apply records.
pub fn next_number(state: &StateDir) -> anyhow::Result<u64> {
    Ok(numbers(state)?.last().map_or(1, |n| n + 1))
}

/// The newest generation, if any (read alone: a record holds a whole profile and plan).
pub fn latest(state: &StateDir) -> anyhow::Result<Option<Generation>> {
    numbers(state)?.last().map(|&n| load(state, n)).transpose()
}

pub fn save(state: &StateDir, generation: &Generation) -> anyhow::Result<()> {
    write_json(
        &state
            .generations_dir()
            .join(format!("{}.json", generation.number)),
        generation,
    )
}

pub fn load(state: &StateDir, number: u64) -> anyhow::Result<Generation> {
    let path = state.generations_dir().join(format!("{number}.json"));
    if !path.exists() {
        bail!(
            "there is no generation {number} (see `sovereign generations`) in {}",
            state.generations_dir().display()
        );
    }
    let text = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a sovereign generation", path.display()))
}

/// Every generation, oldest first.
pub fn list(state: &StateDir) -> anyhow::Result<Vec<Generation>> {
    numbers(state)?
        .into_iter()
        .map(|n| load(state, n))
        .collect()
}

/// The numbers of the recorded generations, ascending, from the file names alone.
fn numbers(state: &StateDir) -> anyhow::Result<Vec<u64>> {
    let dir = state.generations_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut numbers = Vec::new();
    for entry in entries {
        let name = entry?.file_name();
        if let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            numbers.push(n);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// The last succeeded generation numbered below `before`.
pub fn last_succeeded_before(state: &StateDir, before: u64) -> anyhow::Result<Option<Generation>> {
    Ok(list(state)?
        .into_iter()
        .rev()
        .find(|g| g.number < before && g.outcome == Outcome::Succeeded))
}

/// Now, as generations and journals write it.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
