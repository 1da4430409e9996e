//! Profiles: load TOML files and their imports, merge them, validate them, and
//! describe the format as a JSON Schema.
//!
//! The output of this module is a [`ValidProfile`]: a typed [`Profile`] in which
//! every value still knows the file, line and column it came from.

pub mod diagnostics;
pub mod load;
pub mod merge;
pub mod rules;
pub mod schema;
pub mod show;
pub mod suggest;
pub mod templates;
pub mod tree;
pub mod types;
pub mod units;
pub mod validate;
pub mod zfs_names;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

pub use diagnostics::ProfileError;
pub use load::{LoadError, load};
pub use types::*;

/// Where a value of a profile was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub file: PathBuf,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// A loaded, merged and validated profile. Only this type reaches the planner.
#[derive(Debug, Clone)]
pub struct ValidProfile {
    /// The merged, typed profile.
    pub profile: Profile,
    /// The file the user named; imports are resolved relative to it.
    pub path: PathBuf,
    /// Every file that contributed, the named one first, in load order.
    pub sources: Vec<PathBuf>,
    /// Where each value came from, keyed by its TOML key path
    /// (`storage.datasets."tank/models".properties.recordsize`).
    pub origins: BTreeMap<String, Origin>,
}

impl ValidProfile {
    /// Where the value at `key_path` was written, if it was written in a file.
    pub fn origin(&self, key_path: &str) -> Option<&Origin> {
        self.origins.get(key_path)
    }
}
