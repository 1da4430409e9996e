//! Loading a profile file into a [`ValidProfile`].
//!
//! Placeholder reader: parses one file with no imports or diagnostics. The full
//! loader (imports, merge, all-errors diagnostics) replaces it.

use std::path::Path;

use super::{Profile, ValidProfile};

/// Why a profile could not be loaded.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{0}")]
pub struct LoadError(pub String);

/// Load, merge and validate the profile at `path`.
pub fn load(path: &Path) -> Result<ValidProfile, LoadError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| LoadError(format!("cannot read {}: {e}", path.display())))?;
    let profile: Profile =
        toml::from_str(&text).map_err(|e| LoadError(format!("{}: {e}", path.display())))?;
    Ok(ValidProfile {
        profile,
        path: path.to_path_buf(),
        sources: vec![path.to_path_buf()],
        origins: Default::default(),
    })
}
