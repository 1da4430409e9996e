//! The Nest: ZFS pools, datasets, zvols and snapshot policies as a plan/apply domain.
//!
//! The flow is the engine's: [`desired::desired`] checks the profile's `[storage]` section
//! against the running [`dialect`] (asked in `observe`), [`observe::observe`] reads the machine in bulk,
//! [`diff::diff`] turns the two into ordered [`diff::Op`]s (pure), and [`apply`] carries one
//! op out through the host layer. [`snapshots`] is the retention engine behind
//! `sovereign snapshot`; [`health`] is the post-apply check.
//!
//! [`Storage`] implements [`Domain`], turning [`Op`]s into plan [`Change`]s.
//!
//! A change carries what people review (property names, before -> after in ZFS's units,
//! every dataset and snapshot a destroy takes) and, as its typed operation, the [`Op`]
//! itself with the dialect it was planned for: apply runs exactly that, never an op
//! rebuilt from the text people read.

pub mod rules;
pub mod section;

// ZFS itself (libzetta's layout types, the zfs and zpool commands) is Linux only; the
// section and its rules are read everywhere `validate` runs.
#[cfg(target_os = "linux")]
pub mod apply;
#[cfg(target_os = "linux")]
pub mod desired;
#[cfg(target_os = "linux")]
pub mod dialect;
#[cfg(target_os = "linux")]
pub mod diff;
#[cfg(target_os = "linux")]
mod domain;
#[cfg(target_os = "linux")]
pub mod health;
#[cfg(target_os = "linux")]
pub mod observe;
#[cfg(target_os = "linux")]
pub mod probe;
#[cfg(target_os = "linux")]
pub mod props;
#[cfg(target_os = "linux")]
pub mod snapshots;
#[cfg(target_os = "linux")]
pub mod topology;

#[cfg(target_os = "linux")]
pub use dialect::{Dialect, dialect_facts, dialect_line};
#[cfg(target_os = "linux")]
pub use domain::*;
