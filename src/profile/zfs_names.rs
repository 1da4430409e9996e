//! The one definition of the names ZFS accepts for pools, datasets and zvols (its
//! `pool_namecheck` and `dataset_namecheck`), for `validate` and the storage domain alike.

use super::tree::quote;

/// Why `name` is not a valid ZFS name component: a bounded charset, never "." or "..".
pub fn component(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("has an empty component".into());
    }
    if name == "." || name == ".." {
        return Err(format!("has a {} component", quote(name)));
    }
    if name.len() > 255 {
        return Err("has a component longer than 255 characters".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
    {
        return Err(format!("contains {}", quote(&bad.to_string())));
    }
    Ok(())
}

/// Prefixes ZFS reserves for pool names: they read as vdev types in `zpool create`.
const RESERVED_POOL_PREFIXES: [&str; 4] = ["mirror", "raidz", "draid", "spare"];

/// Why `name` is not a pool name ZFS accepts (its pool_namecheck: a letter first, no
/// reserved vdev-type prefix, not exactly `log`, not `c` and a digit, which reads as a
/// Solaris disk name).
pub fn pool_name(name: &str) -> Result<(), String> {
    component(name)?;
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err("must start with a letter".into());
    }
    if let Some(r) = RESERVED_POOL_PREFIXES
        .iter()
        .find(|r| name.starts_with(**r))
    {
        return Err(format!(
            "starts with {r:?}, which ZFS reserves (mirror, raidz, draid and spare name vdev types)"
        ));
    }
    if name == "log" {
        return Err("is \"log\", which ZFS reserves for log devices".into());
    }
    let mut chars = name.chars();
    if chars.next() == Some('c') && chars.next().is_some_and(|c| c.is_ascii_digit()) {
        return Err("is \"c\" and a digit, which ZFS reserves (it reads as a disk name)".into());
    }
    Ok(())
}

/// Why `name` is not a valid dataset or zvol name under a pool ("tank/models").
pub fn dataset_name(name: &str) -> Result<(), String> {
    if name.len() > 255 {
        return Err("is longer than 255 characters".into());
    }
    let mut parts = name.split('/');
    let pool = parts.next().unwrap_or_default();
    pool_name(pool).map_err(|why| format!("has a bad pool part: {why}"))?;
    let rest: Vec<&str> = parts.collect();
    if rest.is_empty() {
        return Err("names a pool, not a dataset under it".into());
    }
    for part in rest {
        component(part)?;
    }
    Ok(())
}
