//! The JSON-schema keyword allow-list. llguidance skips keywords it does not know (a typo
//! such as `maximun`, or `uniqueItems` in some drafts), which would let output through that
//! the caller believes is enforced; so every schema is walked here first and any keyword
//! outside these lists is refused with its JSON pointer.
//!
//! Both walks here recurse on client input, so both stop at [`MAX_NESTING`]
//! levels; the size and depth limits themselves are checked by [`super::limits`].

use serde_json::Value;

use super::super::error::ApiError;
use super::limits::MAX_NESTING;

/// Keywords the engine enforces on the output.
pub const SUPPORTED: &[&str] = &[
    "type",
    "enum",
    "const",
    "anyOf",
    "allOf",
    "$ref",
    // objects
    "properties",
    "required",
    "additionalProperties",
    "patternProperties",
    "minProperties",
    "maxProperties",
    // arrays
    "items",
    "prefixItems",
    "additionalItems",
    "minItems",
    "maxItems",
    // strings
    "minLength",
    "maxLength",
    "pattern",
    "format",
    // numbers
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
];

/// Keywords that describe without constraining, or hold definitions for `$ref`.
pub const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$defs",
    "definitions",
    "$comment",
    "title",
    "description",
    "default",
    "examples",
    "readOnly",
    "writeOnly",
    "contentMediaType",
    "contentEncoding",
];

/// A keyword outside the lists, or a keyword with a value of the wrong shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaError {
    Unsupported { keyword: String, pointer: String },
    Malformed { pointer: String, message: String },
}

impl std::fmt::Display for SchemaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SchemaError::Unsupported { keyword, pointer } => write!(
                f,
                "the schema keyword {keyword:?} at {} cannot be enforced; remove it or use one of: {}",
                show(pointer),
                SUPPORTED.join(", ")
            ),
            SchemaError::Malformed { pointer, message } => {
                write!(f, "the schema at {}: {message}", show(pointer))
            }
        }
    }
}

fn show(pointer: &str) -> String {
    if pointer.is_empty() {
        "the root (\"\")".into()
    } else {
        format!("{pointer:?}")
    }
}

impl SchemaError {
    pub fn into_api_error(self) -> ApiError {
        let message = format!("response_format.json_schema.schema: {self}");
        match self {
            SchemaError::Unsupported { .. } => ApiError::Unsupported {
                param: "response_format.json_schema.schema".into(),
                message,
            },
            SchemaError::Malformed { .. } => {
                ApiError::bad("response_format.json_schema.schema", message)
            }
        }
    }
}

/// Walk `schema` and refuse the first keyword the engine would not enforce.
pub fn check(schema: &Value) -> Result<(), SchemaError> {
    walk(schema, "", 1)
}

/// JSON pointer escaping (RFC 6901).
fn token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The message for a walk that stops at the nesting limit.
fn too_deep(at: &str) -> SchemaError {
    SchemaError::Malformed {
        pointer: at.into(),
        message: format!("the schema nests deeper than the limit of {MAX_NESTING}"),
    }
}

/// `schema` is `depth` subschemas deep (the root is 1); deeper than [`MAX_NESTING`] is
/// refused, so the recursion is bounded whatever the input.
fn walk(schema: &Value, at: &str, depth: usize) -> Result<(), SchemaError> {
    if depth > MAX_NESTING {
        return Err(too_deep(at));
    }
    let obj = match schema {
        Value::Bool(_) => return Ok(()),
        Value::Object(o) => o,
        _ => {
            return Err(SchemaError::Malformed {
                pointer: at.into(),
                message: "a schema must be an object or a boolean".into(),
            });
        }
    };
    for (k, v) in obj {
        let here = format!("{at}/{}", token(k));
        if !SUPPORTED.contains(&k.as_str()) && !ANNOTATIONS.contains(&k.as_str()) {
            return Err(SchemaError::Unsupported {
                keyword: k.clone(),
                pointer: here,
            });
        }
        match k.as_str() {
            // Maps of named subschemas.
            "properties" | "patternProperties" | "$defs" | "definitions" => {
                let map = v.as_object().ok_or_else(|| SchemaError::Malformed {
                    pointer: here.clone(),
                    message: format!("{k} must be an object"),
                })?;
                for (name, sub) in map {
                    walk(sub, &format!("{here}/{}", token(name)), depth + 1)?;
                }
            }
            // Lists of subschemas.
            "anyOf" | "allOf" | "prefixItems" => {
                let list = v.as_array().ok_or_else(|| SchemaError::Malformed {
                    pointer: here.clone(),
                    message: format!("{k} must be an array"),
                })?;
                for (i, sub) in list.iter().enumerate() {
                    walk(sub, &format!("{here}/{i}"), depth + 1)?;
                }
            }
            // One subschema.
            "items" | "additionalItems" | "additionalProperties" => walk(v, &here, depth + 1)?,
            "$ref" => {
                let r = v.as_str().ok_or_else(|| SchemaError::Malformed {
                    pointer: here.clone(),
                    message: "$ref must be a string".into(),
                })?;
                // Only references into this document: no fetching, no anchors.
                if !r.starts_with('#') {
                    return Err(SchemaError::Malformed {
                        pointer: here,
                        message: format!(
                            "$ref {r:?} is not supported: only references inside the schema (\"#/$defs/...\")"
                        ),
                    });
                }
                resolve(r).ok_or_else(|| SchemaError::Malformed {
                    pointer: here.clone(),
                    message: format!("$ref {r:?} is not a JSON pointer (\"#/$defs/name\")"),
                })?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The pointer part of a local `$ref` (`#` or `#/a/b`); `None` for anchors.
fn resolve(r: &str) -> Option<&str> {
    let p = r.strip_prefix('#')?;
    (p.is_empty() || p.starts_with('/')).then_some(p)
}

/// Every `$ref` in the schema resolves inside it (llguidance reports a dangling one too,
/// but naming the pointer here gives a clearer 400).
pub fn check_refs(root: &Value) -> Result<(), SchemaError> {
    // `depth` counts objects and arrays (the root is 1), bounded like `walk`.
    fn go(root: &Value, v: &Value, at: &str, depth: usize) -> Result<(), SchemaError> {
        if depth > MAX_NESTING && (v.is_object() || v.is_array()) {
            return Err(too_deep(at));
        }
        match v {
            Value::Object(o) => {
                for (k, sub) in o {
                    let here = format!("{at}/{}", token(k));
                    if k == "$ref" {
                        if let Some(p) = sub.as_str().and_then(resolve) {
                            let p = p.replace("%25", "%");
                            if root.pointer(&p).is_none() {
                                return Err(SchemaError::Malformed {
                                    pointer: here,
                                    message: format!(
                                        "$ref {:?} points to nothing in the schema",
                                        sub.as_str().unwrap_or_default()
                                    ),
                                });
                            }
                        }
                    } else if !matches!(k.as_str(), "enum" | "const" | "default" | "examples") {
                        go(root, sub, &here, depth + 1)?;
                    }
                }
            }
            Value::Array(a) => {
                for (i, sub) in a.iter().enumerate() {
                    go(root, sub, &format!("{at}/{i}"), depth + 1)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
    go(root, root, "", 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn supported_schemas_pass() {
        let s = json!({
            "$defs": {"pt": {"type": "object", "properties": {"x": {"type": "integer", "minimum": 0}}}},
            "type": "object",
            "properties": {
                "p": {"$ref": "#/$defs/pt"},
                "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
                "name": {"type": "string", "pattern": "^[a-z]+$", "description": "d"}
            },
            "required": ["p"],
            "additionalProperties": false
        });
        check(&s).unwrap();
        check_refs(&s).unwrap();
    }

    #[test]
    fn unknown_keywords_are_named_with_their_pointer() {
        for (s, kw, ptr) in [
            (
                json!({"type": "array", "uniqueItems": true}),
                "uniqueItems",
                "/uniqueItems",
            ),
            (
                json!({"properties": {"a/b": {"type": "integer", "maximun": 3}}}),
                "maximun",
                "/properties/a~1b/maximun",
            ),
            (json!({"anyOf": [{"not": {}}]}), "not", "/anyOf/0/not"),
            (json!({"oneOf": [{}]}), "oneOf", "/oneOf"),
            (json!({"if": {}, "then": {}}), "if", "/if"),
        ] {
            match check(&s) {
                Err(SchemaError::Unsupported { keyword, pointer }) => {
                    assert_eq!((keyword.as_str(), pointer.as_str()), (kw, ptr), "{s}");
                }
                other => panic!("{s}: {other:?}"),
            }
        }
    }

    #[test]
    fn dangling_and_remote_refs_are_refused() {
        let s = json!({"properties": {"a": {"$ref": "#/$defs/missing"}}});
        check(&s).unwrap();
        let e = check_refs(&s).unwrap_err();
        assert!(e.to_string().contains("/properties/a/$ref"), "{e}");
        assert!(check(&json!({"$ref": "http://example.com/s.json"})).is_err());
    }

    #[test]
    fn both_walks_stop_at_the_nesting_limit() {
        // Deeper than serde would parse, built by hand; walked on a small stack.
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                let mut v = json!({"type": "string"});
                for _ in 0..5000 {
                    let mut o = serde_json::Map::new();
                    o.insert("items".into(), v);
                    v = Value::Object(o);
                }
                let e = check(&v).unwrap_err();
                assert!(e.to_string().contains("deeper than the limit of 64"), "{e}");
                let e = check_refs(&v).unwrap_err();
                assert!(e.to_string().contains("deeper than the limit of 64"), "{e}");
                // serde_json drops a Value recursively: take it apart here instead.
                while let Value::Object(mut o) = v {
                    v = o.remove("items").unwrap_or(Value::Null);
                }
            })
            .unwrap()
            .join()
            .unwrap();
        let mut v = json!({"type": "string"});
        for _ in 0..MAX_NESTING - 1 {
            v = json!({"items": v});
        }
        check(&v).unwrap();
        check_refs(&v).unwrap();
    }

    #[test]
    fn property_names_are_not_keywords() {
        check(&json!({"properties": {"uniqueItems": {"type": "boolean"}}})).unwrap();
        check(&json!({"enum": [{"not": 1}]})).unwrap();
    }
}
