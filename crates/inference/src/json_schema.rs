//! How the project generates a file format's JSON Schema from its serde types: draft
//! 2020-12, definitions under `$defs`, and no nulls (an optional key of a profile, fleet
//! file or Card is left out, never written as null). The profile's, the fleet file's and
//! the Card's schemas all come from here.

use schemars::generate::SchemaSettings;
use schemars::transform::RecursiveTransform;
use schemars::{JsonSchema, Schema};
use serde_json::Value;

/// The JSON Schema of a file format rooted at `T`.
pub fn schema_for<T: JsonSchema>() -> Value {
    SchemaSettings::draft2020_12()
        .with_transform(RecursiveTransform(drop_null))
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

/// `Option`'s "or null" is noise to an editor and to the validator where an optional key is
/// simply absent: a null is then a type error like any other.
fn drop_null(schema: &mut Schema) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if let Some(Value::Array(types)) = obj.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types.remove(0);
            obj.insert("type".into(), only);
        }
    }
    for key in ["anyOf", "oneOf"] {
        let Some(Value::Array(alts)) = obj.get_mut(key) else {
            continue;
        };
        alts.retain(|alt| alt.get("type") != Some(&Value::String("null".into())));
        if alts.len() == 1 {
            let Some(Value::Object(only)) = alts.pop() else {
                continue;
            };
            obj.remove(key);
            for (k, v) in only {
                // The field's own description is the better one; keep it.
                obj.entry(k).or_insert(v);
            }
        }
    }
}
