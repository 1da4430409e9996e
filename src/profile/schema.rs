//! The JSON Schema (draft 2020-12) of the profile format, generated from the typed
//! profile's doc comments. `sovereign schema` prints it and the validator checks merged
//! profiles against it, so known keys, types and enums have one source of truth.

use std::sync::OnceLock;

use serde_json::Value;

use super::Profile;

/// The profile format as a JSON Schema value.
pub fn profile_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(schema_for::<Profile>)
}

/// The JSON Schema of a file format rooted at `T`, generated the way every format of the
/// project is (draft 2020-12, definitions under `$defs`, no nulls), so
/// [`super::validate::check_tree`] reads it.
pub use crate::inference::json_schema::schema_for;

/// Resolve a `$ref` of the generated schema ("#/$defs/Name").
pub fn resolve<'a>(reference: &str) -> Option<&'a Value> {
    resolve_in(profile_schema(), reference)
}

/// Resolve a `$ref` ("#/$defs/Name") of the schema `root`.
pub fn resolve_in<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let name = reference.strip_prefix("#/$defs/")?;
    root.get("$defs")?.get(name)
}

/// The name a `$ref` points to ("Size" for "#/$defs/Size").
pub fn ref_name(schema: &Value) -> Option<&str> {
    schema.get("$ref")?.as_str()?.strip_prefix("#/$defs/")
}

/// The keys of `schema` (the root and each definition) that have no description: a test
/// of every format holds this empty, since editors and `schema` readers see only these.
pub fn undescribed_keys(schema: &Value) -> Vec<String> {
    let mut missing = Vec::new();
    let mut visit = |name: &str, obj: &Value| {
        if let Some(Value::Object(props)) = obj.get("properties") {
            for (key, prop) in props {
                let described = prop
                    .get("description")
                    .and_then(Value::as_str)
                    .is_some_and(|d| !d.trim().is_empty());
                if !described {
                    missing.push(format!("{name}.{key}"));
                }
            }
        }
    };
    visit("(root)", schema);
    if let Some(defs) = schema["$defs"].as_object() {
        for (name, def) in defs {
            visit(name, def);
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key of the format has a description.
    #[test]
    fn every_key_has_a_description() {
        let schema = profile_schema();
        let defs = schema["$defs"].as_object().expect("definitions");
        assert!(defs.len() > 10, "the schema defines the profile's types");
        let missing = undescribed_keys(schema);
        assert!(
            missing.is_empty(),
            "keys without a description: {missing:?}"
        );
    }

    #[test]
    fn schema_is_draft_2020_12_without_nulls() {
        let schema = profile_schema();
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        let text = schema.to_string();
        assert!(!text.contains("\"null\""), "TOML has no null: {text}");
        assert!(schema["properties"]["storage"].is_object());
    }
}
