//! Mutations of JSON schemas, on the parsed value: subschemas replaced, wrapped many levels
//! deep, copied and deleted; `$ref`s added to any node in every spelling llguidance and
//! RFC 6901 read differently (`~1`, `%2F`, `00`, `#/`); `$defs` chains, enums and patterns
//! sized at the limits; keys renamed to keywords. One mutation in eight is a byte-level
//! one on the text, for the parser's sake.

use serde_json::{Map, Value, json};

use crate::mutate::{self, Rng};

/// Values are wrapped no deeper than this: serde refuses more than 128 levels when the
/// mutant is parsed again, and a request never carries more.
const MAX_DEPTH: usize = 120;

/// Nodes considered per mutation (the first ones in document order).
const MAX_NODES: usize = 4000;

/// Sizes around the limits (64 levels, 4096 enum values and pattern bytes).
const COUNTS: &[usize] = &[1, 2, 5, 31, 62, 63, 64, 65, 100, 500, 4096, 4097];

/// Small schemas to put in place of a node.
const SNIPPETS: &[&str] = &[
    r##"{"type": "string"}"##,
    r##"{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}"##,
    r##"{"type": "array", "items": {"type": "number"}, "minItems": 1}"##,
    r##"{"anyOf": [{"type": "null"}, {"$ref": "#"}]}"##,
    r##"{"allOf": [{"type": "object"}, {"$ref": "#/$defs/a"}]}"##,
    r##"{"$ref": "#/$defs/a"}"##,
    r##"{"$ref": "#/"}"##,
    r##"{"enum": ["a", 1, null, {"enum": [1]}]}"##,
    r##"{"const": [[[{"$ref": "#"}]]]}"##,
    r##"{"type": "string", "pattern": "^(a|b)+$", "format": "date"}"##,
    r##"{"patternProperties": {"^x-": {"type": "string"}}, "additionalProperties": false}"##,
    r##"{"prefixItems": [{"type": "string"}], "items": false}"##,
    r##"{"oneOf": [{}], "not": {}}"##,
    r##"{"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"type": "boolean"}}}"##,
    "true",
    "false",
    "{}",
    "null",
    "[]",
    "-1e400",
    "\"\\u0000~1/%25\"",
];

/// Keys to rename keys to: keywords, annotations, and near misses.
const KEYS: &[&str] = &[
    "type",
    "enum",
    "const",
    "anyOf",
    "allOf",
    "oneOf",
    "$ref",
    "$defs",
    "definitions",
    "properties",
    "patternProperties",
    "additionalProperties",
    "items",
    "prefixItems",
    "additionalItems",
    "pattern",
    "format",
    "minItems",
    "maxLength",
    "description",
    "default",
    "examples",
    "not",
    "maximun",
    "a/b",
    "a~1b",
    "",
];

/// A mutant of `parent`: structural when it parses, byte-level otherwise (and sometimes).
pub fn mutant(parent: &[u8], pool: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let parsed = serde_json::from_slice::<Value>(parent);
    let Ok(mut v) = parsed else {
        return mutate::mutant(parent, rng);
    };
    if rng.below(8) == 0 {
        return mutate::mutant(parent, rng);
    }
    for _ in 0..=rng.below(3) {
        mutate_value(&mut v, pool, rng);
    }
    serde_json::to_vec(&v).unwrap_or_else(|_| parent.to_vec())
}

/// Every node's JSON pointer and depth (the root is 1), in document order, iteratively.
fn nodes(v: &Value) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut stack: Vec<(String, &Value, usize)> = vec![(String::new(), v, 1)];
    while let Some((at, node, depth)) = stack.pop() {
        if out.len() >= MAX_NODES {
            break;
        }
        match node {
            Value::Object(o) => {
                for (k, sub) in o.iter().rev() {
                    let token = k.replace('~', "~0").replace('/', "~1");
                    stack.push((format!("{at}/{token}"), sub, depth + 1));
                }
            }
            Value::Array(a) => {
                for (i, sub) in a.iter().enumerate().rev() {
                    stack.push((format!("{at}/{i}"), sub, depth + 1));
                }
            }
            _ => {}
        }
        out.push((at, depth));
    }
    out
}

/// The deepest nesting below `v` (a scalar is 0), iteratively.
fn height(v: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((node, d)) = stack.pop() {
        match node {
            Value::Object(o) => stack.extend(o.values().map(|s| (s, d + 1))),
            Value::Array(a) => stack.extend(a.iter().map(|s| (s, d + 1))),
            _ => max = max.max(d),
        }
        max = max.max(d);
    }
    max
}

/// A `$ref` string for the node at `pointer`, in one of the spellings that llguidance
/// (splitting on `/`, no unescaping) and RFC 6901/3986 read differently.
fn ref_to(pointer: &str, rng: &mut Rng) -> String {
    match rng.below(7) {
        0 if pointer.is_empty() => "#/".into(),
        1 => format!("#{}", pointer.replace('~', "%7E").replace('/', "%2F")),
        2 => format!("#{}", pointer.replace("~1", "/")),
        3 => {
            // Leading zeros on an array index: another string, the same node.
            let zeros = "0".repeat(1 + rng.below(3));
            let mut parts: Vec<String> = pointer.split('/').map(String::from).collect();
            if let Some(last) = parts.iter_mut().rev().find(|p| p.parse::<usize>().is_ok()) {
                last.insert_str(0, &zeros);
            }
            format!("#{}", parts.join("/"))
        }
        4 => format!("#{pointer}/"),
        _ => format!("#{pointer}"),
    }
}

/// A `$defs` chain `<name>0 -> ... -> <name>n`, returned with its head's `$ref`.
fn chain(n: usize, name: &str, wrap: bool) -> (Map<String, Value>, String) {
    let mut defs = Map::new();
    for k in 0..n {
        let r = json!({"$ref": format!("#/$defs/{name}{}", k + 1)});
        let body = if wrap {
            json!({"type": "object", "properties": {"x": r}})
        } else {
            r
        };
        defs.insert(format!("{name}{k}"), body);
    }
    defs.insert(format!("{name}{n}"), json!({"type": "string"}));
    (defs, format!("#/$defs/{name}0"))
}

/// One structural mutation of `v`, in place.
fn mutate_value(v: &mut Value, pool: &[Vec<u8>], rng: &mut Rng) {
    let all = nodes(v);
    let (at, depth) = all[rng.below(all.len())].clone();
    let room = MAX_DEPTH.saturating_sub(depth);
    let count = COUNTS[rng.below(COUNTS.len())];
    match rng.below(12) {
        0 | 1 => {
            let snippet =
                serde_json::from_str(SNIPPETS[rng.below(SNIPPETS.len())]).unwrap_or(Value::Null);
            if let Some(node) = v.pointer_mut(&at) {
                *node = snippet;
            }
        }
        2 | 3 => {
            // Wrap the node in subschemas, many levels deep (as deep as serde allows).
            let Some(node) = v.pointer_mut(&at) else {
                return;
            };
            let levels = count.min(room.saturating_sub(height(node)) / 2);
            let kind = rng.below(5);
            let mut inner = node.take();
            // Built by hand: json!({"items": inner}) would serialize `inner` again.
            let one = |k: &str, v: Value| Value::Object(Map::from_iter([(k.to_string(), v)]));
            for _ in 0..levels {
                inner = match kind {
                    0 => one("anyOf", Value::Array(vec![inner, json!({"type": "null"})])),
                    1 => one("items", inner),
                    2 => one("properties", one("p", inner)),
                    3 => one("allOf", Value::Array(vec![inner])),
                    _ => one("additionalProperties", inner),
                };
            }
            *node = inner;
        }
        4 | 5 => {
            // A `$ref` to some node, set on this one.
            let (target, _) = &all[rng.below(all.len())];
            let r = ref_to(target, rng);
            match v.pointer_mut(&at) {
                Some(Value::Object(o)) => {
                    o.insert("$ref".into(), Value::String(r));
                }
                Some(node) => *node = json!({ "$ref": r }),
                None => {}
            }
        }
        6 => {
            // A `$defs` chain at the root, entered here.
            let name = ["d", "e", "f"][rng.below(3)];
            let (defs, head) = chain(count.min(600), name, rng.below(3) == 0);
            if let Value::Object(root) = v {
                let slot = root
                    .entry("$defs")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(d) = slot {
                    d.extend(defs);
                }
            }
            if let Some(node) = v.pointer_mut(&at) {
                *node = json!({ "$ref": head });
            }
        }
        7 => {
            // An enum, a pattern or a patternProperties key sized at a limit.
            let Some(Value::Object(o)) = v.pointer_mut(&at) else {
                return;
            };
            match rng.below(3) {
                0 => {
                    o.insert("enum".into(), (0..count).map(|i| json!(i)).collect());
                }
                1 => {
                    o.insert("pattern".into(), Value::String("a".repeat(count)));
                }
                _ => {
                    o.insert(
                        "patternProperties".into(),
                        json!({ "b".repeat(count): {"type": "string"} }),
                    );
                }
            }
        }
        8 => {
            // Copy another node here (a subtree of itself, at times).
            let (from, _) = &all[rng.below(all.len())];
            let Some(copy) = v.pointer(from).cloned() else {
                return;
            };
            if height(&copy) <= room
                && let Some(node) = v.pointer_mut(&at)
            {
                *node = copy;
            }
        }
        9 => {
            // Delete the node from its container.
            let Some(cut) = at.rfind('/') else {
                return;
            };
            let (parent, last) = (&at[..cut], &at[cut + 1..]);
            let key = last.replace("~1", "/").replace("~0", "~");
            match v.pointer_mut(parent) {
                Some(Value::Object(o)) => {
                    o.shift_remove(&key);
                }
                Some(Value::Array(a)) => {
                    if let Ok(i) = key.parse::<usize>()
                        && i < a.len()
                    {
                        a.remove(i);
                    }
                }
                _ => {}
            }
        }
        10 => {
            // Rename a key to a keyword (or a near miss).
            let Some(Value::Object(o)) = v.pointer_mut(&at) else {
                return;
            };
            let keys: Vec<String> = o.keys().cloned().collect();
            if let Some(k) = keys.get(rng.below(keys.len()))
                && let Some(val) = o.shift_remove(k)
            {
                o.insert(KEYS[rng.below(KEYS.len())].to_string(), val);
            }
        }
        _ => {
            // A subschema from another input of the pool.
            let Some(other) = pool.get(rng.below(pool.len())) else {
                return;
            };
            let Ok(o) = serde_json::from_slice::<Value>(other) else {
                return;
            };
            let pick = nodes(&o);
            let (from, _) = &pick[rng.below(pick.len())];
            if let Some(sub) = o.pointer(from)
                && height(sub) <= room
                && let Some(node) = v.pointer_mut(&at)
            {
                *node = sub.clone();
            }
        }
    }
}
