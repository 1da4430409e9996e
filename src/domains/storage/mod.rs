//! The Nest: ZFS pools, datasets, zvols and snapshot policies as a plan/apply domain.
//!
//! The flow is the engine's: [`desired::desired`] checks the profile's `[storage]` section
//! against the running [`dialect`], [`observe::observe`] reads the machine in bulk,
//! [`diff::diff`] turns the two into ordered [`diff::Op`]s (pure), and [`exec`] carries one
//! op out through the host layer. [`snapshots`] is the retention engine behind
//! `sovereign snapshot`; [`health`] is the post-apply check.

pub mod desired;
pub mod dialect;
pub mod diff;
pub mod domain;
pub mod exec;
pub mod health;
pub mod observe;
pub mod probe;
pub mod props;
pub mod snapshots;
pub mod topology;

pub use dialect::{Dialect, dialect_facts, dialect_line};
pub use domain::Storage;
