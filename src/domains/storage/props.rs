//! ZFS property names and values: which the running dialect knows, which a user may set,
//! and how a declared value compares with what `zfs get -p` prints.

use crate::profile::units::Size;

use super::dialect::Dialect;

/// The user property sovereign writes on every dataset, zvol and pool root it creates or
/// adopts; its value names the state directory that owns the dataset, so two state roots on
/// one machine never claim each other's datasets.
pub const OWNER_PROPERTY: &str = "sovereign:owner";

/// What kind of value a native property takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A byte count; "none" means no limit and reads back as 0.
    SizeOrNone,
    /// A byte count that must be a power of two (recordsize, volblocksize).
    BlockSize,
    /// One of a fixed set.
    OneOf(&'static [&'static str]),
    /// Compression: the dialect decides.
    Compression,
    /// Free text (mountpoint, sharenfs, ...).
    Text,
}

const ON_OFF: &[&str] = &["on", "off"];

/// Native properties settable on both dialects, and their kinds.
const COMMON: &[(&str, Kind)] = &[
    (
        "aclinherit",
        Kind::OneOf(&[
            "discard",
            "noallow",
            "restricted",
            "passthrough",
            "passthrough-x",
        ]),
    ),
    ("atime", Kind::OneOf(ON_OFF)),
    ("canmount", Kind::OneOf(&["on", "off", "noauto"])),
    ("checksum", Kind::Text),
    ("compression", Kind::Compression),
    ("copies", Kind::OneOf(&["1", "2", "3"])),
    ("dedup", Kind::Text),
    ("devices", Kind::OneOf(ON_OFF)),
    ("exec", Kind::OneOf(ON_OFF)),
    ("logbias", Kind::OneOf(&["latency", "throughput"])),
    ("mountpoint", Kind::Text),
    ("nbmand", Kind::OneOf(ON_OFF)),
    ("primarycache", Kind::OneOf(&["all", "none", "metadata"])),
    ("quota", Kind::SizeOrNone),
    ("readonly", Kind::OneOf(ON_OFF)),
    ("recordsize", Kind::BlockSize),
    ("refquota", Kind::SizeOrNone),
    ("refreservation", Kind::SizeOrNone),
    ("reservation", Kind::SizeOrNone),
    ("secondarycache", Kind::OneOf(&["all", "none", "metadata"])),
    ("setuid", Kind::OneOf(ON_OFF)),
    ("sharenfs", Kind::Text),
    ("sharesmb", Kind::Text),
    ("snapdir", Kind::OneOf(&["hidden", "visible"])),
    ("vscan", Kind::OneOf(ON_OFF)),
    ("xattr", Kind::Text),
    ("zoned", Kind::OneOf(ON_OFF)),
    // Create-time only, but settable in a profile for a new dataset.
    (
        "casesensitivity",
        Kind::OneOf(&["sensitive", "insensitive", "mixed"]),
    ),
    (
        "normalization",
        Kind::OneOf(&["none", "formC", "formD", "formKC", "formKD"]),
    ),
    ("utf8only", Kind::OneOf(ON_OFF)),
    ("volsize", Kind::SizeOrNone),
    ("volblocksize", Kind::BlockSize),
];

/// Properties only zfs-fuse (pool version 23) has.
const FUSE_ONLY: &[(&str, Kind)] = &[(
    "aclmode",
    Kind::OneOf(&["discard", "groupmask", "passthrough"]),
)];

/// Properties only OpenZFS has.
const OPENZFS_ONLY: &[(&str, Kind)] = &[
    (
        "acltype",
        Kind::OneOf(&["off", "noacl", "nfsv4", "posix", "posixacl"]),
    ),
    (
        "aclmode",
        Kind::OneOf(&["discard", "groupmask", "passthrough", "restricted"]),
    ),
    (
        "dnodesize",
        Kind::OneOf(&["legacy", "auto", "1k", "2k", "4k", "8k", "16k"]),
    ),
    ("relatime", Kind::OneOf(ON_OFF)),
    ("sync", Kind::OneOf(&["standard", "always", "disabled"])),
    ("special_small_blocks", Kind::SizeOrNone),
    (
        "redundant_metadata",
        Kind::OneOf(&["all", "most", "some", "none"]),
    ),
    (
        "volmode",
        Kind::OneOf(&["default", "full", "geom", "dev", "none"]),
    ),
    ("overlay", Kind::OneOf(ON_OFF)),
    ("filesystem_limit", Kind::Text),
    ("snapshot_limit", Kind::Text),
    ("context", Kind::Text),
    ("fscontext", Kind::Text),
    ("defcontext", Kind::Text),
    ("rootcontext", Kind::Text),
    ("encryption", Kind::Text),
    ("keyformat", Kind::Text),
    ("keylocation", Kind::Text),
    ("pbkdf2iters", Kind::Text),
];

/// Properties ZFS computes; naming one in a profile is a mistake.
const READ_ONLY: &[&str] = &[
    "available",
    "compressratio",
    "creation",
    "defer_destroy",
    "mounted",
    "origin",
    "referenced",
    "type",
    "used",
    "usedbychildren",
    "usedbydataset",
    "usedbyrefreservation",
    "usedbysnapshots",
    "userrefs",
    "guid",
    "logicalused",
    "logicalreferenced",
    "written",
    "refcompressratio",
    "clones",
    "createtxg",
    "objsetid",
];

/// Readings that change without anyone changing the dataset (space, time); left out of
/// the digests that tell a saved plan it is stale.
pub fn is_volatile(name: &str) -> bool {
    matches!(
        name,
        "used"
            | "available"
            | "referenced"
            | "compressratio"
            | "refcompressratio"
            | "written"
            | "logicalused"
            | "logicalreferenced"
            | "usedbychildren"
            | "usedbydataset"
            | "usedbyrefreservation"
            | "usedbysnapshots"
            | "userrefs"
    )
}

/// Whether a property name is a user property (`module:name`).
pub fn is_user_property(name: &str) -> bool {
    name.contains(':')
}

fn kind_of(dialect: &Dialect, name: &str) -> Option<Kind> {
    let extra = match dialect {
        Dialect::ZfsFuse { .. } => FUSE_ONLY,
        Dialect::Openzfs { .. } => OPENZFS_ONLY,
    };
    extra
        .iter()
        .chain(COMMON)
        .find(|(n, _)| *n == name)
        .map(|(_, k)| *k)
}

/// Whether a size property may be written `none`.
fn parse_size(value: &str) -> Option<u64> {
    if let Ok(n) = value.parse::<u64>() {
        return Some(n);
    }
    value.parse::<Size>().ok().map(Size::bytes)
}

/// Check one declared property against the running dialect. The message says what is wrong
/// and what to write instead; the caller adds where it was written.
pub fn validate(dialect: &Dialect, name: &str, value: &str) -> Result<(), String> {
    if is_user_property(name) {
        if name == OWNER_PROPERTY {
            return Err(format!(
                "{OWNER_PROPERTY} is sovereign's own ownership marker and cannot be declared"
            ));
        }
        return Ok(());
    }
    if READ_ONLY.contains(&name) {
        return Err(format!("`{name}` is read-only: ZFS computes it"));
    }
    let Some(kind) = kind_of(dialect, name) else {
        let known: Vec<&str> = COMMON.iter().map(|(n, _)| *n).collect();
        let near = known
            .iter()
            .copied()
            .max_by(|a, b| strsim::jaro_winkler(a, name).total_cmp(&strsim::jaro_winkler(b, name)))
            .filter(|best| strsim::jaro_winkler(best, name) > 0.8);
        let hint = near
            .map(|n| format!(" (did you mean `{n}`?)"))
            .unwrap_or_default();
        return Err(format!(
            "unknown ZFS property `{name}` for {}{hint}; user properties need a colon, e.g. `sovereign:{name}`",
            dialect.describe()
        ));
    };
    match kind {
        Kind::SizeOrNone => {
            if value != "none" && parse_size(value).is_none() {
                return Err(format!(
                    "`{name}` = {value:?} is not a size: write e.g. \"10G\" or \"none\""
                ));
            }
        }
        Kind::BlockSize => {
            let Some(bytes) = parse_size(value) else {
                return Err(format!(
                    "`{name}` = {value:?} is not a size: write e.g. \"128K\""
                ));
            };
            let max = dialect.max_recordsize();
            if !bytes.is_power_of_two() || bytes < 512 || bytes > max {
                return Err(format!(
                    "`{name}` = {value:?} is out of range: {} takes a power of two from 512 to {}",
                    dialect.describe(),
                    Size(max)
                ));
            }
        }
        Kind::OneOf(choices) => {
            if !choices.contains(&value) {
                return Err(format!(
                    "`{name}` = {value:?} is not one of {}",
                    choices.join(", ")
                ));
            }
        }
        Kind::Compression => {
            if !dialect.accepts_compression(value) {
                return Err(format!(
                    "compression {value:?} is not available on {}: choose one of {}",
                    dialect.describe(),
                    dialect.compression_choices()
                ));
            }
        }
        Kind::Text => {}
    }
    Ok(())
}

fn is_sized(name: &str) -> bool {
    matches!(
        name,
        "quota"
            | "refquota"
            | "reservation"
            | "refreservation"
            | "recordsize"
            | "volsize"
            | "volblocksize"
            | "special_small_blocks"
    )
}

fn is_limit(name: &str) -> bool {
    matches!(
        name,
        "quota" | "refquota" | "reservation" | "refreservation"
    )
}

/// The form in which a value is compared: sizes as bytes (`zfs get -p` prints bytes),
/// `none` limits as 0, everything else as written.
pub fn normalize(name: &str, value: &str) -> String {
    // gzip's default level is 6, and ZFS prints it as plain "gzip".
    if name == "compression" && value == "gzip-6" {
        return "gzip".into();
    }
    if is_sized(name) {
        if value == "none" {
            return "0".into();
        }
        if let Some(n) = parse_size(value) {
            return n.to_string();
        }
    }
    value.to_string()
}

/// A value for people: byte counts of size properties in ZFS's units ("128K").
pub fn display(name: &str, value: &str) -> String {
    if is_sized(name) {
        if let Ok(n) = normalize(name, value).parse::<u64>() {
            if n == 0 && is_limit(name) {
                return "none".into();
            }
            return Size(n).to_string();
        }
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fuse() -> Dialect {
        Dialect::ZfsFuse { pool_version: 23 }
    }

    #[test]
    fn declared_values_compare_with_parsable_output() {
        assert_eq!(normalize("recordsize", "128K"), "131072");
        assert_eq!(normalize("quota", "none"), "0");
        assert_eq!(normalize("quota", "1G"), "1073741824");
        assert_eq!(normalize("compression", "on"), "on");
        assert_eq!(
            normalize("compression", "gzip-6"),
            normalize("compression", "gzip")
        );
        assert_eq!(display("recordsize", "131072"), "128K");
        assert_eq!(display("quota", "0"), "none");
        assert_eq!(display("atime", "off"), "off");
    }

    #[test]
    fn the_dialect_decides_what_is_valid() {
        let open = Dialect::Openzfs {
            version: "2.1.11".into(),
        };
        assert!(
            validate(&fuse(), "compression", "lz4")
                .unwrap_err()
                .contains("zfs-fuse")
        );
        assert!(validate(&open, "compression", "lz4").is_ok());
        assert!(
            validate(&fuse(), "recordsize", "1M")
                .unwrap_err()
                .contains("128K")
        );
        assert!(validate(&open, "recordsize", "1M").is_ok());
        assert!(
            validate(&fuse(), "relatime", "on")
                .unwrap_err()
                .contains("unknown")
        );
        assert!(validate(&open, "relatime", "on").is_ok());
        assert!(validate(&fuse(), "sovereign:role", "models").is_ok());
        assert!(validate(&fuse(), OWNER_PROPERTY, "x").is_err());
        assert!(
            validate(&fuse(), "used", "1G")
                .unwrap_err()
                .contains("read-only")
        );
        assert!(
            validate(&fuse(), "atime", "maybe")
                .unwrap_err()
                .contains("on, off")
        );
        assert!(
            validate(&fuse(), "quota", "lots")
                .unwrap_err()
                .contains("not a size")
        );
    }

    #[test]
    fn a_misspelt_property_gets_a_suggestion() {
        let err = validate(&fuse(), "compresion", "on").unwrap_err();
        assert!(err.contains("did you mean `compression`"), "{err}");
    }
}
