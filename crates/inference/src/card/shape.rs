//! The structural check: the parsed Card against its own generated schema, every error at
//! once, each turned into a message that says what to write and placed at the offending
//! value (or key). The schema is the one `sovereign schema --card` prints, so an editor
//! using it and this check agree.

use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

use super::format::{self, SHA256_PATTERN};
use super::locate::{Tree, escape, key_path, tokens};
use super::{Problem, number, show_value};

fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        // The schema is generated from our own types; a failure is a bug caught by every test.
        jsonschema::draft202012::new(format::schema()).expect("the Card schema compiles")
    })
}

/// Every way `card` departs from the schema.
pub(super) fn check(card: &Value, tree: &Tree<'_>) -> Vec<Problem> {
    let mut out = Vec::new();
    for e in validator().iter_errors(card) {
        let at = e.instance_path().as_str().to_string();
        let keyword_at = e.schema_path().as_str().to_string();
        let here = || tree.value_at(&at).unwrap_or(0);
        let path = key_path(&at);
        // The schema object holding the keyword that failed.
        let rule = schema_at(parent(&keyword_at));
        match e.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let valid: Vec<&str> = rule
                    .and_then(|s| s.get("properties"))
                    .and_then(Value::as_object)
                    .map(|p| p.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                let place = if at.is_empty() {
                    "at the top level".to_string()
                } else {
                    format!("in {path}")
                };
                for key in unexpected {
                    out.push(Problem::new(
                        tree.key_at(&at, key).unwrap_or_else(here),
                        &format!("{at}/{}", escape(key)),
                        format!(
                            "unknown key {key:?} {place}{}; the keys allowed here are {}",
                            did_you_mean(key, &valid),
                            valid.join(", ")
                        ),
                    ));
                }
            }
            ValidationErrorKind::Required { property } => {
                let property = property.as_str().unwrap_or_default();
                let message = if keyword_at.ends_with("/dependentRequired") {
                    format!(
                        "{path} gives a source, so it needs \"{property}\" too: pin the file by \
                         its sha256 (64 hexadecimal digits)"
                    )
                } else {
                    let about = rule
                        .and_then(|s| s.pointer(&format!("/properties/{}", escape(property))))
                        .and_then(description)
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default();
                    format!("{path} needs the key \"{property}\"{about}")
                };
                out.push(Problem::new(here(), &at, message));
            }
            ValidationErrorKind::Type { .. } => {
                let expected = rule
                    .and_then(|s| s.get("type"))
                    .map(|t| match t {
                        Value::Array(types) => types
                            .iter()
                            .filter_map(Value::as_str)
                            .map(a_type)
                            .collect::<Vec<_>>()
                            .join(" or "),
                        other => a_type(other.as_str().unwrap_or_default()),
                    })
                    .unwrap_or_else(|| "another type".into());
                out.push(Problem::new(
                    here(),
                    &at,
                    format!("{path} must be {expected}, got {}", got(e.instance())),
                ));
            }
            ValidationErrorKind::Minimum { .. } | ValidationErrorKind::Maximum { .. } => {
                let (min, max) =
                    rule.map_or((None, None), |s| (s.get("minimum"), s.get("maximum")));
                let range = match (min.map(number), max.map(number)) {
                    (Some(lo), Some(hi)) => format!("between {lo} and {hi}"),
                    (Some(lo), None) => format!("at least {lo}"),
                    (None, Some(hi)) => format!("at most {hi}"),
                    (None, None) => "in range".into(),
                };
                out.push(Problem::new(
                    here(),
                    &at,
                    format!("{path} must be {range}, got {}", e.instance()),
                ));
            }
            ValidationErrorKind::MaxItems { limit } => {
                let count = e.instance().as_array().map_or(0, Vec::len);
                // The first entry beyond the limit is where the list goes wrong.
                let first_extra = tree.value_at(&format!("{at}/{limit}")).unwrap_or_else(here);
                out.push(Problem::new(
                    first_extra,
                    &at,
                    format!("{path} holds {count} entries; at most {limit} are allowed"),
                ));
            }
            ValidationErrorKind::MinLength { .. } => {
                out.push(Problem::new(
                    here(),
                    &at,
                    format!("{path} must not be empty"),
                ));
            }
            ValidationErrorKind::Pattern { pattern } if pattern == SHA256_PATTERN => {
                let prefixed = e
                    .instance()
                    .as_str()
                    .is_some_and(|s| s.starts_with("sha256:"));
                let hint = if prefixed {
                    "; write the digits without the \"sha256:\" prefix"
                } else {
                    ""
                };
                out.push(Problem::new(
                    here(),
                    &at,
                    format!(
                        "{path} must be a sha256: 64 hexadecimal digits, got {}{hint}",
                        show_value(e.instance())
                    ),
                ));
            }
            ValidationErrorKind::OneOfNotValid { .. }
            | ValidationErrorKind::OneOfMultipleValid { .. } => {
                let keys = one_of_keys(schema_at(&keyword_at));
                let names = keys
                    .iter()
                    .map(|k| format!("\"{k}\""))
                    .collect::<Vec<_>>()
                    .join(" or ");
                let given = tree.keys_among(&at, &keys);
                // A misspelt alternative is reported as an unknown key with the right
                // spelling; saying that none is given as well would only repeat it.
                let misspelt = e.instance().as_object().is_some_and(|o| {
                    o.keys()
                        .any(|k| !keys.contains(&k.as_str()) && !did_you_mean(k, &keys).is_empty())
                });
                match given.as_slice() {
                    [] if misspelt => {}
                    [] => out.push(Problem::new(
                        here(),
                        &at,
                        format!("{path} needs one of {names}"),
                    )),
                    // Only one given, yet no alternative matched: the other errors at this
                    // place say why.
                    [_] => {}
                    [_, (second, offset), ..] => out.push(Problem::new(
                        *offset,
                        &format!("{at}/{}", escape(second)),
                        format!("{path} gives more than one of {names}; give exactly one"),
                    )),
                }
            }
            _ => out.push(Problem::new(here(), &at, format!("{path}: {e}"))),
        }
    }
    out
}

/// The subschema at a pointer into the Card's schema, following `$ref`s on the way (an
/// error's keyword location may or may not pass through them).
fn schema_at(pointer: &str) -> Option<&'static Value> {
    let root = format::schema();
    // The definition a `$ref` names (schemars puts a field's description beside it).
    let target = |at: &'static Value| -> Option<&'static Value> {
        let r = at.get("$ref")?.as_str()?.strip_prefix('#')?;
        root.pointer(r)
    };
    let mut at = root;
    for token in tokens(pointer) {
        if token == "$ref" {
            at = target(at)?;
            continue;
        }
        at = match at {
            Value::Object(o) => match o.get(&token) {
                Some(next) => next,
                None => target(at)?.get(&token)?,
            },
            Value::Array(a) => a.get(token.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(at)
}

/// The schema that describes the Card's value at an instance pointer (`/sampling/top_k`).
pub(super) fn schema_for(instance: &str) -> Option<&'static Value> {
    let mut path = String::new();
    for token in tokens(instance) {
        let here = schema_at(&path)?;
        let has = |key: &str| {
            here.get(key).is_some()
                || schema_at(&format!("{path}/$ref")).is_some_and(|t| t.get(key).is_some())
        };
        if has("properties") {
            path.push_str(&format!("/properties/{}", escape(&token)));
        } else if has("items") {
            path.push_str("/items");
        } else {
            return None;
        }
    }
    let at = schema_at(&path)?;
    Some(schema_at(&format!("{path}/$ref")).unwrap_or(at))
}

fn parent(pointer: &str) -> &str {
    pointer.rsplit_once('/').map_or("", |(p, _)| p)
}

fn description(schema: &Value) -> Option<String> {
    let d = schema.get("description")?.as_str()?;
    // The first sentence is enough in a message.
    let first = d.split(". ").next().unwrap_or(d).trim_end_matches('.');
    let mut chars = first.chars();
    let lowered: String = chars
        .next()
        .map(|c| c.to_lowercase().chain(chars).collect())
        .unwrap_or_default();
    Some(lowered.replace('\n', " "))
}

/// The keys a `oneOf` of `{"required": [key]}` alternatives chooses between.
fn one_of_keys(one_of: Option<&'static Value>) -> Vec<&'static str> {
    let Some(Value::Array(alts)) = one_of else {
        return Vec::new();
    };
    alts.iter()
        .filter_map(|alt| alt.pointer("/required/0").and_then(Value::as_str))
        .collect()
}

/// `a string`, `an integer`, ... for a JSON Schema type name.
fn a_type(t: &str) -> String {
    match t {
        "integer" | "object" | "array" => format!("an {t}"),
        _ => format!("a {t}"),
    }
}

/// What a value is, with the value itself when it is short.
fn got(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(_) => format!("a string ({})", show_value(v)),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// ` (did you mean "x"?)` when a valid key is a likely typo of `key`.
fn did_you_mean(key: &str, valid: &[&str]) -> String {
    let limit = (key.chars().count() / 3).max(1);
    valid
        .iter()
        .map(|v| (strsim::osa_distance(&key.to_lowercase(), v), *v))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| format!(" (did you mean \"{v}\"?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_pointers_follow_refs() {
        let t = schema_for("/sampling/temperature").unwrap();
        assert_eq!(t["maximum"], serde_json::json!(2.0));
        assert!(schema_for("/adapters/3/scale").unwrap()["maximum"].is_number());
        assert!(schema_for("/response/json_schema/x").is_none());
        assert!(
            schema_at("/properties/sampling/$ref/properties/top_k")
                .is_some_and(|s| s["type"] == "integer")
        );
    }

    #[test]
    fn typos_get_the_closest_key() {
        let keys = ["temperature", "top_p", "top_k"];
        assert_eq!(
            did_you_mean("temprature", &keys),
            " (did you mean \"temperature\"?)"
        );
        assert_eq!(did_you_mean("colour", &keys), "");
    }
}
