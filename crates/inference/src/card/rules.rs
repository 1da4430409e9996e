//! The rules a schema cannot say: keys written twice, model names, adapter sources, stop
//! strings counted in bytes, integers written with a fraction, and the response and the
//! chat template, each checked by the daemon's own code for a request or a model.
//!
//! Each rule looks only at values of the right type; a value of the wrong shape is the
//! structural check's to report, and a place it reported is skipped here, so no mistake is
//! reported twice.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::locate::{Lines, Tree, escape, key_path};
use super::shape::schema_for;
use super::{Problem, number, show_value};
use crate::cache::ModelName;
use crate::error::ApiError;
use crate::grammar::{self, schema as keywords};
use crate::template::{ChatMessage, ChatTemplate};
use crate::validate::MAX_STOP_LEN;

/// The integer keys of a Card. JSON Schema counts `5.0` as an integer; the daemon's request
/// parser does not, and neither does a Card.
pub(super) const INTEGER_KEYS: &[&str] = &[
    "/sampling/top_k",
    "/sampling/seed",
    "/sampling/max_tokens",
    "/context",
];

/// Every rule beyond the schema; `flagged` holds the places the structural check reported.
pub(super) fn check(
    card: &Value,
    tree: &Tree<'_>,
    lines: &Lines<'_>,
    flagged: &HashSet<String>,
) -> Vec<Problem> {
    let mut out = Vec::new();
    for d in tree.duplicate_keys() {
        out.push(Problem::new(
            d.again,
            &format!("{}/{}", d.object, escape(&d.key)),
            format!(
                "the key {:?} is written twice in {} (first at {}); keep one",
                d.key,
                key_path(&d.object),
                lines.pos(d.first)
            ),
        ));
    }
    let open = |pointer: &str| !flagged.contains(pointer);
    let at = |pointer: &str| tree.value_at(pointer).unwrap_or(0);
    let string = |pointer: &str| {
        card.pointer(pointer)
            .and_then(Value::as_str)
            .filter(|_| open(pointer))
    };

    if let Some(name) = string("/base/model") {
        if let Err(e) = ModelName::parse(name) {
            out.push(Problem::new(
                at("/base/model"),
                "/base/model",
                format!("base.model: {e}"),
            ));
        }
    }
    let adapters = card
        .get("adapters")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    for i in 0..adapters {
        let model = format!("/adapters/{i}/model");
        if let Some(name) = string(&model) {
            if let Err(e) = ModelName::parse(name) {
                out.push(Problem::new(
                    at(&model),
                    &model,
                    format!("{}: {e}", key_path(&model)),
                ));
            }
        }
        let source = format!("/adapters/{i}/source");
        if let Some(s) = string(&source) {
            if let Some(why) = source_problem(s) {
                out.push(Problem::new(
                    at(&source),
                    &source,
                    format!("{}: {why}", key_path(&source)),
                ));
            }
        }
    }
    let stops = card.pointer("/sampling/stop").and_then(Value::as_array);
    for (i, stop) in stops.into_iter().flatten().enumerate() {
        let pointer = format!("/sampling/stop/{i}");
        match stop.as_str() {
            Some(s) if s.len() > MAX_STOP_LEN && open(&pointer) => out.push(Problem::new(
                at(&pointer),
                &pointer,
                format!(
                    "{} is {} bytes; a stop string is 1 to {MAX_STOP_LEN} bytes",
                    key_path(&pointer),
                    s.len()
                ),
            )),
            _ => {}
        }
    }
    for pointer in INTEGER_KEYS {
        let Some(Value::Number(n)) = card.pointer(pointer) else {
            continue;
        };
        let written_as_float = !n.is_i64() && !n.is_u64();
        // A fraction is a type error the structural check reports.
        let whole = n.as_f64().is_some_and(|f| f.fract() == 0.0);
        if written_as_float && whole && open(pointer) {
            let rule = schema_for(pointer);
            let (lo, hi) = rule.map_or((String::new(), String::new()), |s| {
                (number(&s["minimum"]), number(&s["maximum"]))
            });
            out.push(Problem::new(
                at(pointer),
                pointer,
                format!(
                    "{} must be an integer from {lo} to {hi}, written without a fraction or an \
                     exponent, got {n}",
                    key_path(pointer)
                ),
            ));
        }
    }
    out.extend(response(card, tree, &open));
    if let Some(template) = string("/template") {
        let system = card.get("system").and_then(Value::as_str);
        if let Some(why) = template_problem(template, system) {
            out.push(Problem::new(
                at("/template"),
                "/template",
                format!("template: {why}"),
            ));
        }
    }
    out
}

/// Why an adapter's source is neither a URL the cache pulls from nor an absolute path.
fn source_problem(source: &str) -> Option<String> {
    let lower = source.get(..8).unwrap_or(source).to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        return None;
    }
    if let Some((scheme, _)) = source.split_once("://") {
        return Some(format!(
            "the {scheme}:// scheme is not supported; give an https:// or http:// URL or an \
             absolute path"
        ));
    }
    if std::path::Path::new(source).is_absolute() {
        return None;
    }
    Some(format!(
        "{} is neither a URL nor an absolute path; give an https:// or http:// URL or an \
         absolute path (a Card is read from anywhere, so a relative path has no fixed meaning)",
        show_value(&Value::String(source.into()))
    ))
}

/// The response through the very checks a request's `response_format` or `grammar` passes:
/// the same value a request would carry goes to [`grammar::from_request`].
fn response(card: &Value, tree: &Tree<'_>, open: &dyn Fn(&str) -> bool) -> Vec<Problem> {
    let mut out = Vec::new();
    let at = |pointer: &str| tree.value_at(pointer).unwrap_or(0);
    if let Some(schema) = card
        .pointer("/response/json_schema")
        .filter(|s| s.is_object())
    {
        let pointer = "/response/json_schema";
        let request = json!({"response_format": {
            "type": "json_schema",
            "json_schema": {"name": "card", "schema": schema},
        }});
        if let (true, Err(e)) = (open(pointer), from_request(&request)) {
            // Point into the schema when the keyword check names a place in it.
            let inner = keyword_pointer(schema)
                .map(|p| format!("{pointer}{p}"))
                .and_then(|p| {
                    let (parent, key) = p.rsplit_once('/')?;
                    let key = super::locate::tokens(&format!("/{key}")).next()?;
                    tree.key_at(parent, &key).or_else(|| tree.value_at(&p))
                });
            out.push(Problem::new(
                inner.unwrap_or_else(|| at(pointer)),
                pointer,
                schema_message(&e),
            ));
        }
    }
    if let Some(text) = card.pointer("/response/grammar").and_then(Value::as_str) {
        let pointer = "/response/grammar";
        let request = json!({ "grammar": text });
        if let (true, Err(e)) = (open(pointer), from_request(&request)) {
            out.push(Problem::new(at(pointer), pointer, grammar_message(&e)));
        }
    }
    out
}

fn from_request(request: &Value) -> Result<(), ApiError> {
    let empty = Map::new();
    grammar::from_request(request.as_object().unwrap_or(&empty)).map(|_| ())
}

/// The JSON pointer inside the schema of the keyword the allow-list refuses, if that is
/// what failed. Only called after [`grammar::from_request`] refused the schema, and only
/// past the limits (which bound every walk), as the request path orders them.
fn keyword_pointer(schema: &Value) -> Option<String> {
    grammar::limits::check_schema(schema).ok()?;
    match keywords::check(schema).and_then(|()| keywords::check_refs(schema)) {
        Err(keywords::SchemaError::Unsupported { pointer, .. })
        | Err(keywords::SchemaError::Malformed { pointer, .. })
            if !pointer.is_empty() =>
        {
            Some(pointer)
        }
        _ => None,
    }
}

/// A request's schema error as a Card's: the Card's key names the place.
fn schema_message(e: &ApiError) -> String {
    let m = e.message();
    let rest = m
        .strip_prefix("response_format.json_schema.schema: ")
        .or_else(|| m.strip_prefix("response_format.json_schema.schema "))
        .unwrap_or(&m);
    format!("response.json_schema: {rest}")
}

/// A request's grammar error as a Card's.
fn grammar_message(e: &ApiError) -> String {
    let m = e.message().replace(
        "use response_format json_schema",
        "use response.json_schema",
    );
    match m.strip_prefix("grammar") {
        Some(rest) => format!("response.grammar{rest}"),
        None => format!("response.grammar: {m}"),
    }
}

/// Render the template as the Card would use it (its system prompt, then a user turn) in
/// the daemon's sandbox; `None` when it renders.
fn template_problem(template: &str, system: Option<&str>) -> Option<String> {
    let mut messages = Vec::new();
    if let Some(system) = system {
        messages.push(ChatMessage {
            role: "system".into(),
            content: system.into(),
        });
    }
    messages.push(ChatMessage {
        role: "user".into(),
        content: "Hello".into(),
    });
    // Placeholders for the model's special tokens, which only the model knows.
    let t = ChatTemplate::new(Some(template.into()), "<s>".into(), "</s>".into());
    t.render(&messages).err().map(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_urls_or_absolute_paths() {
        assert_eq!(source_problem("https://example.org/a.gguf"), None);
        assert_eq!(source_problem("/srv/lora/a.gguf"), None);
        assert!(source_problem("ftp://x/a.gguf").unwrap().contains("ftp://"));
        assert!(
            source_problem("lora/a.gguf")
                .unwrap()
                .contains("absolute path")
        );
    }

    #[test]
    fn every_integer_of_the_schema_is_checked_for_a_fraction() {
        // The schema's integer keys, found by walking it: the list above must hold them all.
        let schema = super::super::format::schema();
        let mut found = Vec::new();
        for (prefix, props) in [
            ("", &schema["properties"]),
            ("/sampling", &schema["$defs"]["Sampling"]["properties"]),
            ("/base", &schema["$defs"]["Base"]["properties"]),
            ("/response", &schema["$defs"]["Response"]["properties"]),
        ] {
            for (k, v) in props.as_object().unwrap() {
                if v["type"] == "integer" {
                    found.push(format!("{prefix}/{k}"));
                }
            }
        }
        found.sort();
        let mut listed: Vec<String> = INTEGER_KEYS.iter().map(|s| s.to_string()).collect();
        listed.sort();
        assert_eq!(found, listed);
    }

    #[test]
    fn a_template_that_does_not_render_is_refused() {
        assert_eq!(
            template_problem("{{ messages[0]['content'] }}", Some("s")),
            None
        );
        let why = template_problem("{% for %}", None).unwrap();
        assert!(why.contains("chat template failed"), "{why}");
    }
}
