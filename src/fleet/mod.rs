//! The fleet: many machines, each planned and applied over SSH with its own profile.
//!
//! A fleet file (`fleet.toml`) names the hosts, how ssh reaches each one and the profile
//! it runs. [`file`] is its format (the single source of the fleet's JSON Schema, as
//! `profile::types` is the profile's); [`load`] reads it with the profile's TOML reader,
//! schema check and diagnostics, and hands back a typed [`Fleet`] with `[defaults]`
//! merged into every host and every path made absolute.

pub mod file;
pub mod load;
pub mod remote;
pub mod run;
pub mod ssh;

pub use file::StrictHostKeys;
pub use load::{Fleet, Host, load};
