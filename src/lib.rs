//! sovereign: turn a TOML profile into an applied AI workstation.
//!
//! The flow runs one way: [`profile`] loads and validates what the user wants,
//! [`hardware`] and the domains observe what the machine has, [`plan`] diffs the
//! two into a pure value, and [`apply`] executes it through [`host`], the only
//! module that touches the machine. See ARCHITECTURE.md for the map.

pub mod apply;
pub mod cli;
pub mod domain;
pub mod domains;
pub mod fleet;
pub mod hardware;
pub mod host;
/// The inference daemon, a crate of its own (`crates/inference`) that never imports this
/// one; re-exported so the provisioning code names it as before.
pub use sovereign_inference as inference;
pub mod plan;
pub mod planner;
pub mod profile;
pub mod state;
