//! Check a merged tree against the generated JSON Schema: unknown keys (with a
//! suggestion), missing keys, wrong types, enums, integer ranges, and sizes, durations and
//! modes through their parsers. Every error is collected; nothing stops at the first.

use serde_json::Value;

use super::diagnostics::Issue;
use super::schema::{profile_schema, ref_name, resolve};
use super::suggest;
use super::tree::{Kind, Loc, Node, Seg, key_path};
use super::units::{Duration, Mode, Size};

/// What the schema check found; missing required keys are kept apart because they are
/// judged per alternative of an untagged enum before they count.
#[derive(Debug, Default)]
pub struct Findings {
    pub issues: Vec<Issue>,
    /// Missing required keys, reported unless the table comes from a file with syntax errors.
    pub missing: Vec<Issue>,
}

/// Check the whole profile tree.
pub fn check_profile(root: &Node) -> Findings {
    let mut findings = Findings::default();
    let mut path = Vec::new();
    check(profile_schema(), root, &root.loc, &mut path, &mut findings);
    findings
}

/// Check `node` against `schema`. `at` is where the node was named (a table's key, an array
/// element's own place): a missing key is reported there.
fn check(schema: &Value, node: &Node, at: &Loc, path: &mut Vec<Seg>, out: &mut Findings) {
    if let Some(name) = ref_name(schema) {
        match name {
            "Size" => return check_unit::<Size>(node, path, out, "a size such as \"64G\""),
            "Duration" => {
                return check_unit::<Duration>(node, path, out, "a duration such as \"30s\"");
            }
            "Mode" => return check_unit::<Mode>(node, path, out, "an octal mode such as \"0644\""),
            _ => {}
        }
        if let Some(target) = schema["$ref"].as_str().and_then(resolve) {
            return check(target, node, at, path, out);
        }
    }
    if let Some(alts) = schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))
        .and_then(Value::as_array)
    {
        return check_alternatives(schema, alts, node, at, path, out);
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        return check_enum(allowed, node, path, out);
    }
    if let Some(constant) = schema.get("const") {
        return check_enum(std::slice::from_ref(constant), node, path, out);
    }
    if !type_matches(schema, node) {
        let issue = Issue::new(
            &node.loc,
            key_path(path),
            format!("expected {}, found {}", expected(schema), node.describe()),
        )
        .label(format!("expected {}", expected(schema)));
        let issue = match &node.kind {
            // `ashift = 12.0`: say what to write rather than what the key is for.
            Kind::Float(f) if resolved(schema)["type"] == "integer" && f.fract() == 0.0 => {
                issue.hint(format!("write {f:.0}, without the decimal point"))
            }
            _ => with_description_hint(issue, schema),
        };
        out.issues.push(issue);
        return;
    }
    match &node.kind {
        Kind::Table(_) => check_table(schema, node, at, path, out),
        Kind::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    path.push(Seg::Index(i));
                    check(item_schema, item, &item.loc, path, out);
                    path.pop();
                }
            }
        }
        Kind::Integer(n) => check_range(schema, *n, node, path, out),
        _ => {}
    }
}

fn check_table(schema: &Value, node: &Node, at: &Loc, path: &mut Vec<Seg>, out: &mut Findings) {
    let Some(table) = node.table() else { return };
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    for (key, entry) in table {
        let known = props.and_then(|p| p.get(key));
        let value_schema = match (known, additional) {
            (Some(s), _) => s,
            (None, Some(s)) if s.is_object() => s,
            (None, _) => {
                let names: Vec<&str> = props
                    .map(|p| p.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                let place = if path.is_empty() {
                    "at the top level".to_string()
                } else {
                    format!("in {}", key_path(path))
                };
                let mut full = path.clone();
                full.push(Seg::Key(key.clone()));
                let mut issue = Issue::new(
                    &entry.key_loc,
                    key_path(&full),
                    format!(
                        "unknown key \"{key}\" {place}{}",
                        suggest::suffix(key, names.iter().copied())
                    ),
                )
                .label("unknown key")
                .hint(format!("keys allowed here: {}", names.join(", ")));
                // `auth_key = "tskey-..."`: a secret typed in where a file was meant. The
                // quoted line must not repeat it.
                if secret_like(key) && entry.node.loc.file == entry.key_loc.file {
                    issue = issue.mask(entry.node.loc.span.clone());
                }
                out.issues.push(issue);
                continue;
            }
        };
        path.push(Seg::Key(key.clone()));
        check(value_schema, &entry.node, &entry.key_loc, path, out);
        path.pop();
    }
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for key in required.iter().filter_map(Value::as_str) {
            if table.contains_key(key) {
                continue;
            }
            let what = if path.is_empty() {
                "at the top level".to_string()
            } else {
                format!("in {}", key_path(path))
            };
            let described = props
                .and_then(|p| p.get(key))
                .and_then(|s| s.get("description"))
                .and_then(Value::as_str)
                .map(|d| format!("add `{key} = ...`: {}", first_sentence(d)))
                .unwrap_or_else(|| format!("add `{key} = ...`"));
            out.missing.push(
                Issue::new(at, key_path(path), format!("missing key \"{key}\" {what}"))
                    .label(format!("this table needs \"{key}\""))
                    .hint(described),
            );
        }
    }
}

fn check_alternatives(
    schema: &Value,
    alts: &[Value],
    node: &Node,
    at: &Loc,
    path: &mut Vec<Seg>,
    out: &mut Findings,
) {
    let mut best: Option<Findings> = None;
    for alt in alts {
        let mut trial = Findings::default();
        check(alt, node, at, path, &mut trial);
        if trial.issues.is_empty() && trial.missing.is_empty() {
            return;
        }
        // An alternative of the right kind (a table for a table) says more than "expected X
        // or Y": keep its own findings.
        if best.is_none() && type_matches(&resolved(alt), node) {
            best = Some(trial);
        }
    }
    if let Some(found) = best {
        out.issues.extend(found.issues);
        out.missing.extend(found.missing);
        return;
    }
    let options: Vec<String> = alts.iter().map(|a| expected(&resolved(a))).collect();
    let issue = Issue::new(
        &node.loc,
        key_path(path),
        format!("expected {}, found {}", either(&options), node.describe()),
    )
    .label("not allowed here");
    out.issues.push(with_description_hint(issue, schema));
}

fn check_enum(allowed: &[Value], node: &Node, path: &[Seg], out: &mut Findings) {
    let names: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
    let listed = names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    match node.str() {
        Some(s) if names.contains(&s) => {}
        Some(s) => out.issues.push(
            Issue::new(
                &node.loc,
                key_path(path),
                format!(
                    "unknown value \"{s}\" (expected one of {listed}){}",
                    suggest::suffix(s, names.iter().copied())
                ),
            )
            .label("unknown value")
            .hint(format!("use one of {listed}")),
        ),
        None => out.issues.push(
            Issue::new(
                &node.loc,
                key_path(path),
                format!("expected one of {listed}, found {}", node.describe()),
            )
            .label("expected a string"),
        ),
    }
}

fn check_unit<T: std::str::FromStr<Err = String>>(
    node: &Node,
    path: &[Seg],
    out: &mut Findings,
    what: &str,
) {
    match &node.kind {
        Kind::String(s) => {
            if let Err(err) = s.parse::<T>() {
                let (message, hint) = match err.split_once("; ") {
                    Some((m, h)) => (m.to_string(), Some(h.to_string())),
                    None => (err, None),
                };
                let mut issue = Issue::new(&node.loc, key_path(path), message)
                    .label(format!("expected {what}"));
                issue.hint = hint;
                out.issues.push(issue);
            }
        }
        _ => {
            let hint = match &node.kind {
                // TOML reads `mode = 644` as the decimal number 644: the quotes matter.
                Kind::Integer(n) if what.contains("mode") => {
                    format!("quote it so it stays octal, e.g. mode = \"{n:04}\"")
                }
                Kind::Integer(n) => format!(
                    "write it as a quoted string with a unit, e.g. \"{n}{}\"",
                    unit_example(what)
                ),
                _ => format!("write {what}"),
            };
            out.issues.push(
                Issue::new(
                    &node.loc,
                    key_path(path),
                    format!("expected {what}, found {}", node.describe()),
                )
                .label(format!("expected {what}"))
                .hint(hint),
            );
        }
    }
}

fn unit_example(what: &str) -> &'static str {
    if what.contains("size") {
        "G"
    } else if what.contains("duration") {
        "s"
    } else {
        ""
    }
}

/// The largest value the integer's Rust type holds (schemars writes it as `format`), for
/// a field whose schema sets no maximum: past it deserializing would fail with Rust's words
/// and no place.
fn type_max(schema: &Value) -> Option<i64> {
    match schema.get("format").and_then(Value::as_str)? {
        "uint8" => Some(u8::MAX.into()),
        "uint16" => Some(u16::MAX.into()),
        "uint32" => Some(u32::MAX.into()),
        "int8" => Some(i8::MAX.into()),
        "int16" => Some(i16::MAX.into()),
        "int32" => Some(i32::MAX.into()),
        _ => None,
    }
}

fn check_range(schema: &Value, n: i64, node: &Node, path: &[Seg], out: &mut Findings) {
    let min = schema.get("minimum").and_then(Value::as_i64);
    let max = schema.get("maximum").and_then(Value::as_i64);
    if max.is_none() {
        if let Some(limit) = type_max(schema).filter(|m| n > *m) {
            let issue = Issue::new(
                &node.loc,
                key_path(path),
                format!("{}{n} is too large: at most {limit}", key_name(path)),
            )
            .label("too large");
            let mut issue = with_description_hint(issue, schema);
            if issue.hint.is_none() {
                // A branch of a union (`gpu_layers`' count) has no description of its own.
                issue = issue.hint(format!("give a whole number from 0 to {limit}"));
            }
            out.issues.push(issue);
            return;
        }
    }
    let too_small = min.is_some_and(|m| n < m);
    let too_big = max.is_some_and(|m| n > m);
    if too_small || too_big {
        let issue = Issue::new(
            &node.loc,
            key_path(path),
            format!(
                "{}{n} is out of range: expected {}",
                key_name(path),
                expected(schema)
            ),
        )
        .label("out of range");
        out.issues.push(with_description_hint(issue, schema));
    }
}

/// A `$ref` replaced by what it points to (one level), for describing and matching kinds.
fn resolved(schema: &Value) -> Value {
    match ref_name(schema) {
        Some("Size" | "Duration" | "Mode") => schema.clone(),
        Some(_) => schema["$ref"]
            .as_str()
            .and_then(resolve)
            .cloned()
            .unwrap_or(Value::Null),
        None => schema.clone(),
    }
}

fn type_matches(schema: &Value, node: &Node) -> bool {
    if let Some(name) = ref_name(schema) {
        return matches!(name, "Size" | "Duration" | "Mode") && node.str().is_some();
    }
    let found = match &node.kind {
        Kind::Table(_) => "object",
        Kind::Array(_) => "array",
        Kind::String(_) => "string",
        Kind::Integer(_) => "integer",
        Kind::Float(_) => "number",
        Kind::Bool(_) => "boolean",
        Kind::Datetime(_) => "datetime",
    };
    let accepts = |t: &str| t == found || (t == "number" && found == "integer");
    match schema.get("type") {
        Some(Value::String(t)) => accepts(t),
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).any(accepts),
        // Enums and untyped schemas: strings are what enums hold here.
        None if schema.get("enum").is_some() || schema.get("const").is_some() => found == "string",
        _ => true,
    }
}

/// How a schema reads in "expected ...".
fn expected(schema: &Value) -> String {
    match ref_name(schema) {
        Some("Size") => return "a size such as \"64G\"".into(),
        Some("Duration") => return "a duration such as \"30s\"".into(),
        Some("Mode") => return "an octal mode such as \"0644\"".into(),
        _ => {}
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let names: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        return names.join(" or ");
    }
    if let Some(value) = schema.get("const") {
        return value.to_string();
    }
    let describe = |t: &str| -> String {
        match t {
            "string" => "a string".into(),
            "integer" => {
                let min = schema.get("minimum").and_then(Value::as_i64);
                let max = schema.get("maximum").and_then(Value::as_i64);
                match (min, max) {
                    (Some(a), Some(b)) => format!("an integer from {a} to {b}"),
                    (Some(0), None) => "a non-negative integer".into(),
                    (Some(a), None) => format!("an integer of at least {a}"),
                    _ => "an integer".into(),
                }
            }
            "number" => "a number".into(),
            "boolean" => "true or false".into(),
            "array" => match schema.get("items").map(resolved) {
                Some(items) if items.get("type").is_some() || items.get("anyOf").is_some() => {
                    format!("an array of {}", plural(&expected(&items)))
                }
                _ => "an array".into(),
            },
            "object" => "a table".into(),
            other => other.into(),
        }
    };
    match schema.get("type") {
        Some(Value::String(t)) => describe(t),
        Some(Value::Array(ts)) => either(
            &ts.iter()
                .filter_map(Value::as_str)
                .map(describe)
                .collect::<Vec<_>>(),
        ),
        _ => match schema.get("anyOf").and_then(Value::as_array) {
            Some(alts) => either(
                &alts
                    .iter()
                    .map(|a| expected(&resolved(a)))
                    .collect::<Vec<_>>(),
            ),
            None => "a value".into(),
        },
    }
}

/// The last key of a path and a space ("ashift "), or nothing.
fn key_name(path: &[Seg]) -> String {
    match path.last() {
        Some(Seg::Key(k)) => format!("{k} "),
        _ => String::new(),
    }
}

/// "a, b or c".
fn either(options: &[String]) -> String {
    match options {
        [] => "a value".into(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn plural(one: &str) -> String {
    match one {
        "a string" => "strings".into(),
        "a table" => "tables".into(),
        other => format!("values ({other})"),
    }
}

fn first_sentence(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.find(". ") {
        Some(i) => flat[..=i].to_string(),
        None => flat,
    }
}

/// Add the key's own description as a hint, so a type error says what the key is for.
fn with_description_hint(issue: Issue, schema: &Value) -> Issue {
    let flat = |d: &str| d.split_whitespace().collect::<Vec<_>>().join(" ");
    match schema.get("description").and_then(Value::as_str) {
        Some(d) if issue.hint.is_none() && flat(d).len() <= 160 => issue.hint(flat(d)),
        Some(d) if issue.hint.is_none() => issue.hint(first_sentence(d)),
        _ => issue,
    }
}

/// Whether an unknown key's name says its value may be a secret.
fn secret_like(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["key", "token", "secret", "password", "passwd", "credential"]
        .iter()
        .any(|w| key.contains(w))
}
