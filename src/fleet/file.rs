//! The fleet file's format: what `fleet.toml` may say, with a doc comment on every key.
//!
//! These types are the single source of the format, as `profile::types` is for profiles:
//! serde reads them, schemars turns the same doc comments into `sovereign schema --fleet`,
//! and the loader takes its known keys, types and ranges from that schema. The defaults
//! are the constants below; the schema's `default`s and descriptions are made from them,
//! and the loader fills them in, so the number a user reads is the number used.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::profile::units::Duration;

/// How many hosts a fleet works on at once unless `parallel` says otherwise.
pub const DEFAULT_PARALLEL: usize = 10;
/// How long a host waits for its confirmation unless `confirm_timeout` says otherwise.
pub const DEFAULT_CONFIRM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// How ssh checks host keys unless `strict_host_keys` says otherwise: trust on first
/// contact, refuse a changed key.
pub const DEFAULT_STRICT_HOST_KEYS: StrictHostKeys = StrictHostKeys::AcceptNew;
/// The names a host may have (the keys of `[hosts]`): letters, digits, '-', '_', '.', not
/// starting with '-' (the name is ssh's address unless `address` is set, and an address
/// that starts with '-' would read as an option). [`is_host_name`] is the same rule.
pub const HOST_NAME_PATTERN: &str = "^[A-Za-z0-9_.][A-Za-z0-9_.-]*$";
/// The tags a host may carry: lowercase letters, digits, '-', '_'. [`is_tag`] is the
/// same rule.
pub const TAG_PATTERN: &str = "^[a-z0-9_-]+$";

/// Whether `name` may name a host: [`HOST_NAME_PATTERN`].
pub fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Whether `tag` is a valid tag: [`TAG_PATTERN`].
pub fn is_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'))
}

/// A fleet file as written: every key optional, paths as the user wrote them (relative to
/// the file). [`super::load::load`] checks it and turns it into a [`super::Fleet`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "sovereign fleet",
    description = "The machines a fleet plans and applies over SSH, each with its own profile."
)]
pub struct FleetFile {
    /// How many hosts are worked on at once, at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1), transform = parallel_schema)]
    pub parallel: Option<u32>,

    /// How long each host waits, after its apply, for the controller's confirmation over a
    /// new SSH connection; without one in time it rolls itself back to its previous
    /// generation. A duration such as "30s" (longer than zero).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = confirm_timeout_schema)]
    pub confirm_timeout: Option<Duration>,

    /// How ssh checks each host's key (its StrictHostKeyChecking): "accept-new" trusts a
    /// key on first contact and refuses the host if its key ever changes; "yes" connects
    /// only to hosts whose key is already known. "no" is refused: a fleet never connects
    /// to a host it has not verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = strict_host_keys_schema)]
    pub strict_host_keys: Option<StrictHostKeys>,

    /// The known_hosts file that holds the fleet's host keys (ssh's UserKnownHostsFile), a
    /// path relative to this file. Default: ssh's own configuration decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<PathBuf>,

    /// Values for every host that does not set them: the keys of a `[hosts.NAME]` table
    /// except `address`, which is each host's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<HostSettings>,

    /// The machines, keyed by name (letters, digits, '-', '_', '.'; not starting with
    /// '-'). ssh connects to the name unless the host sets `address`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = hosts_schema)]
    pub hosts: BTreeMap<String, HostEntry>,
}

/// How ssh checks host keys: "yes" (only hosts whose key is already known) or
/// "accept-new" (a new host's key is trusted and recorded; a changed key is refused).
/// There is no "no": a fleet never connects to a host it has not verified.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StrictHostKeys {
    // The variants are described above, not each with a doc comment: with them schemars
    // writes one `const` per variant, and an unknown value would be reported against the
    // first variant alone instead of the list.
    Yes,
    #[default]
    AcceptNew,
}

impl StrictHostKeys {
    /// The value of ssh's `StrictHostKeyChecking` option, as the fleet file spells it.
    pub fn as_ssh_option(self) -> &'static str {
        match self {
            StrictHostKeys::Yes => "yes",
            StrictHostKeys::AcceptNew => "accept-new",
        }
    }
}

/// One `[hosts.NAME]` table: where the host is, then what it shares with `[defaults]`.
// serde cannot deny unknown fields next to `flatten`; the schema closes the table instead,
// and the loader checks the schema before serde reads anything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct HostEntry {
    /// The host name or IP address ssh connects to. Default: the host's name (the key of
    /// its table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,

    /// How the host is reached and what it runs; unset keys come from `[defaults]`.
    #[serde(flatten)]
    pub settings: HostSettings,
}

/// The keys a `[hosts.NAME]` table and `[defaults]` share.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostSettings {
    /// The user ssh logs in as. Default: ssh's own configuration decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,

    /// The port ssh connects to, 1 to 65535. Default: ssh's own configuration decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,

    /// The private key ssh authenticates with (`ssh -i`), a path relative to this file.
    /// Default: ssh's own configuration decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<PathBuf>,

    /// The profile the host is planned and applied with, a path relative to this file;
    /// the file must exist. Every host needs one, its own or the one in `[defaults]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<PathBuf>,

    /// The `--root` sovereign runs with on the host: an absolute path there under which
    /// managed files and sovereign's own state are relocated (for staging and tests).
    /// Default: none, the host's own `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,

    /// Tags that select hosts by role: lowercase letters, digits, '-', '_'. A host's own
    /// `tags` replace those of `[defaults]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = tags_schema)]
    pub tags: Option<Vec<String>>,
}

/// The fleet file's format as a JSON Schema value (draft 2020-12), generated the way the
/// profile's is.
pub fn fleet_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(crate::profile::schema::schema_for::<FleetFile>)
}

/// Record `value` as the key's default, in the schema's `default` for editors and at the
/// end of its description for people, both from the one constant.
fn default_is(schema: &mut Schema, value: Value) {
    let shown = value.to_string();
    if let Some(Value::String(description)) = schema.get_mut("description") {
        description.push_str(&format!(" Default: {shown}."));
    }
    schema.insert("default".into(), value);
}

fn parallel_schema(schema: &mut Schema) {
    default_is(schema, DEFAULT_PARALLEL.into());
}

fn confirm_timeout_schema(schema: &mut Schema) {
    default_is(schema, Duration(DEFAULT_CONFIRM_TIMEOUT).to_string().into());
}

fn strict_host_keys_schema(schema: &mut Schema) {
    default_is(schema, DEFAULT_STRICT_HOST_KEYS.as_ssh_option().into());
}

fn hosts_schema(schema: &mut Schema) {
    schema.insert(
        "propertyNames".into(),
        serde_json::json!({ "pattern": HOST_NAME_PATTERN }),
    );
}

fn tags_schema(schema: &mut Schema) {
    if let Some(Value::Object(items)) = schema.get_mut("items") {
        items.insert("pattern".into(), TAG_PATTERN.into());
        items.insert(
            "description".into(),
            "A tag: lowercase letters, digits, '-', '_', e.g. \"gpu\" or \"rack-2\".".into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written rules and the patterns the schema gives editors say the same.
    #[test]
    fn patterns_and_predicates_agree() {
        let matcher = |pattern: &str| {
            jsonschema::validator_for(&serde_json::json!({ "type": "string", "pattern": pattern }))
                .expect("the pattern compiles")
        };
        let tag = matcher(TAG_PATTERN);
        let name = matcher(HOST_NAME_PATTERN);
        for s in [
            "", "gpu", "gpu-1", "gpu_1", "GPU", "gpu.1", "-x", "x-", ".x", "a b", "é", "9", "_",
            "gpu1.lab", "a/b", "a:b",
        ] {
            let text = Value::String(s.into());
            assert_eq!(is_tag(s), tag.is_valid(&text), "tag {s:?}");
            assert_eq!(is_host_name(s), name.is_valid(&text), "host name {s:?}");
        }
    }

    #[test]
    fn the_schema_states_each_default_once_from_its_constant() {
        let schema = fleet_schema();
        let props = &schema["properties"];
        assert_eq!(props["parallel"]["default"], 10);
        assert_eq!(props["parallel"]["minimum"], 1);
        assert_eq!(props["confirm_timeout"]["default"], "30s");
        assert_eq!(props["strict_host_keys"]["default"], "accept-new");
        for key in ["parallel", "confirm_timeout", "strict_host_keys"] {
            let description = props[key]["description"].as_str().unwrap_or_default();
            assert!(
                description.ends_with(&format!(" Default: {}.", props[key]["default"])),
                "{description}"
            );
        }
        assert_eq!(
            schema["$defs"]["StrictHostKeys"]["enum"],
            serde_json::json!(["yes", "accept-new"])
        );
        // Both tables are closed, so an unknown key is an error in either.
        assert_eq!(schema["$defs"]["HostEntry"]["additionalProperties"], false);
        assert_eq!(
            schema["$defs"]["HostSettings"]["additionalProperties"],
            false
        );
    }

    /// Every key of the format has a description, as the profile's test demands of its own.
    #[test]
    fn every_key_has_a_description() {
        let missing = crate::profile::schema::undescribed_keys(fleet_schema());
        assert!(
            missing.is_empty(),
            "keys without a description: {missing:?}"
        );
    }
}
