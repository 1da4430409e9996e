//! Constrained decoding against real llama.cpp on the tiny model: JSON modes produce JSON
//! that validates against its schema, raw GBNF and Lark grammars constrain output, what
//! cannot be enforced is a 400 naming it, a failing mask ends the request with an error
//! and no unchecked token, and constrained and plain requests share the engine.
// Needs llama.cpp: built only with the `engine` feature (the default).
#![cfg(feature = "engine")]

mod inference_support;

use std::sync::OnceLock;

use inference_support::{ServerOptions, TestServer, chat_body, start};
use serde_json::{Value, json};

/// The served model name the mask-failure hook is scoped to.
const FAILING: &str = "failing";
/// Grammar steps a request on FAILING takes before its forced mask error.
const FAIL_AFTER: usize = 3;

/// Every test calls this first: it sets the test hook before any engine (or llama.cpp,
/// which reads the environment) starts, so no thread reads the environment meanwhile.
fn setup() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // SAFETY: runs once, before this binary starts any engine or server thread.
        unsafe {
            std::env::set_var(
                sovereign_inference::engine::TEST_MASK_FAIL_AFTER,
                format!("{FAILING}:{FAIL_AFTER}"),
            )
        };
    });
}

fn server() -> TestServer {
    setup();
    start(ServerOptions {
        slots: 4,
        queue: 4,
        ..Default::default()
    })
}

fn completion(extra: Value) -> Value {
    let mut b = json!({"model": "tiny", "prompt": "write the record:", "max_tokens": 300});
    b.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    b
}

fn schema_format(schema: &Value) -> Value {
    json!({"type": "json_schema", "json_schema": {"name": "record", "schema": schema, "strict": true}})
}

/// The generated text and finish reason of a successful completion.
fn text_of(r: &inference_support::Response) -> (String, String) {
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let c = &v["choices"][0];
    let text = c["text"]
        .as_str()
        .or_else(|| c["message"]["content"].as_str())
        .unwrap_or_else(|| panic!("no text in {v}"))
        .to_string();
    (text, c["finish_reason"].as_str().unwrap_or_default().into())
}

/// An independent validator for the schema keywords these tests use (the engine's own
/// matcher is not asked whether its output is right).
fn validate(root: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let fail = |why: String| Err(format!("{at}: {why} (value {v})"));
    let Some(s) = schema.as_object() else {
        return if schema == &json!(false) {
            fail("false schema".into())
        } else {
            Ok(())
        };
    };
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let target = root
            .pointer(r.trim_start_matches('#'))
            .ok_or(format!("dangling {r}"))?;
        validate(root, target, v, at)?;
    }
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(t) => vec![t.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            "number" => v.is_number(),
            // -0 and 2.0 are integers to JSON schema, though not to serde_json.
            "integer" => v.as_f64().is_some_and(|f| f.fract() == 0.0),
            _ => false,
        });
        if !ok {
            return fail(format!("not of type {t}"));
        }
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            return fail("not in enum".into());
        }
    }
    if let Some(c) = s.get("const") {
        if c != v {
            return fail(format!("not the const {c}"));
        }
    }
    if let Some(n) = v.as_f64() {
        let bound = |k: &str| s.get(k).and_then(Value::as_f64);
        if bound("minimum").is_some_and(|m| n < m)
            || bound("maximum").is_some_and(|m| n > m)
            || bound("exclusiveMinimum").is_some_and(|m| n <= m)
            || bound("exclusiveMaximum").is_some_and(|m| n >= m)
        {
            return fail("out of range".into());
        }
    }
    if let Some(text) = v.as_str() {
        let len = text.chars().count() as u64;
        if s.get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| len < m)
            || s.get("maxLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| len > m)
        {
            return fail("length out of bounds".into());
        }
        if let Some(p) = s.get("pattern").and_then(Value::as_str) {
            if !pattern_matches(p, text) {
                return fail(format!("does not match {p}"));
            }
        }
    }
    if let Some(a) = v.as_array() {
        let n = a.len() as u64;
        if s.get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| n < m)
            || s.get("maxItems")
                .and_then(Value::as_u64)
                .is_some_and(|m| n > m)
        {
            return fail("item count out of bounds".into());
        }
        let prefix = s.get("prefixItems").and_then(Value::as_array);
        for (i, item) in a.iter().enumerate() {
            let sub = match prefix.and_then(|p| p.get(i)) {
                Some(p) => Some(p),
                None => s.get("items"),
            };
            if let Some(sub) = sub {
                validate(root, sub, item, &format!("{at}/{i}"))?;
            }
        }
    }
    if let Some(o) = v.as_object() {
        let props = s.get("properties").and_then(Value::as_object);
        for req in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !o.contains_key(req.as_str().unwrap_or_default()) {
                return fail(format!("missing required {req}"));
            }
        }
        for (k, item) in o {
            match props.and_then(|p| p.get(k)) {
                Some(sub) => validate(root, sub, item, &format!("{at}/{k}"))?,
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => return fail(format!("extra property {k}")),
                    Some(sub) => validate(root, sub, item, &format!("{at}/{k}"))?,
                    None => {}
                },
            }
        }
    }
    if let Some(any) = s.get("anyOf").and_then(Value::as_array) {
        if !any.iter().any(|sub| validate(root, sub, v, at).is_ok()) {
            return fail("matches no anyOf branch".into());
        }
    }
    for sub in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        validate(root, sub, v, at)?;
    }
    Ok(())
}

/// The few patterns the schemas below use, checked by hand (no regex engine in the tests).
fn pattern_matches(p: &str, t: &str) -> bool {
    let lower = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase());
    let digits = |s: &str, n: usize| s.len() == n && s.chars().all(|c| c.is_ascii_digit());
    match p {
        "^[a-z]+$" => lower(t),
        "^[A-Z]{3}-[0-9]{4}$" => {
            t.len() == 8
                && t[..3].chars().all(|c| c.is_ascii_uppercase())
                && &t[3..4] == "-"
                && digits(&t[4..], 4)
        }
        "^[a-z]{1,8}@[a-z]{1,8}\\.(com|org)$" => t.split_once('@').is_some_and(|(u, d)| {
            lower(u)
                && u.len() <= 8
                && (d.ends_with(".com") || d.ends_with(".org"))
                && lower(&d[..d.len() - 4])
                && d.len() - 4 <= 8
        }),
        other => panic!("the test validator does not know the pattern {other}"),
    }
}

/// At least 20 schemas covering nested objects, bounded arrays, enums, number ranges,
/// patterns, optional fields, `$ref` and `anyOf`.
fn schemas() -> Vec<Value> {
    let word = json!({"type": "string", "maxLength": 6});
    vec![
        json!({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": false}),
        json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 3, "maximum": 9}}, "required": ["n"], "additionalProperties": false}),
        json!({"type": "object", "properties": {"t": {"type": "integer", "exclusiveMinimum": -5, "exclusiveMaximum": 5}}, "required": ["t"], "additionalProperties": false}),
        json!({"type": "object", "properties": {"color": {"enum": ["red", "green", "blue"]}}, "required": ["color"], "additionalProperties": false}),
        json!({"type": "object", "properties": {"name": word, "age": {"type": "integer", "minimum": 0, "maximum": 120}}, "required": ["name", "age"], "additionalProperties": false}),
        json!({"type": "object", "properties": {"tags": {"type": "array", "items": word, "minItems": 1, "maxItems": 3}}, "required": ["tags"], "additionalProperties": false}),
        json!({"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 99}, "minItems": 2, "maxItems": 4}),
        json!({"type": "array", "prefixItems": [{"type": "boolean"}, {"enum": [1, 2, 3]}], "items": false, "minItems": 2}),
        json!({"type": "object", "properties": {"user": {"type": "object", "properties": {"id": {"type": "integer", "minimum": 1, "maximum": 1000}, "role": {"enum": ["admin", "guest"]}}, "required": ["id", "role"], "additionalProperties": false}}, "required": ["user"], "additionalProperties": false}),
        json!({"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {"type": "object", "properties": {"c": {"const": "deep"}}, "required": ["c"], "additionalProperties": false}}, "required": ["b"], "additionalProperties": false}}, "required": ["a"], "additionalProperties": false}),
        json!({"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"}}, "required": ["code"], "additionalProperties": false}),
        json!({"type": "object", "properties": {"slug": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 10}}, "required": ["slug"], "additionalProperties": false}),
        json!({"type": "object", "properties": {"email": {"type": "string", "pattern": "^[a-z]{1,8}@[a-z]{1,8}\\.(com|org)$"}}, "required": ["email"], "additionalProperties": false}),
        json!({"type": "object", "properties": {"id": {"type": "integer", "minimum": 0, "maximum": 50}, "note": word}, "required": ["id"], "additionalProperties": false}),
        json!({"type": "object", "properties": {"x": {"type": "boolean"}, "y": {"type": "null"}}, "additionalProperties": false}),
        json!({"$defs": {"point": {"type": "object", "properties": {"x": {"type": "integer", "minimum": -9, "maximum": 9}, "y": {"type": "integer", "minimum": -9, "maximum": 9}}, "required": ["x", "y"], "additionalProperties": false}}, "type": "object", "properties": {"from": {"$ref": "#/$defs/point"}, "to": {"$ref": "#/$defs/point"}}, "required": ["from", "to"], "additionalProperties": false}),
        json!({"definitions": {"level": {"enum": ["low", "high"]}}, "type": "array", "items": {"$ref": "#/definitions/level"}, "maxItems": 3}),
        json!({"anyOf": [{"type": "integer", "minimum": 0, "maximum": 9}, {"type": "boolean"}]}),
        json!({"type": "object", "properties": {"v": {"anyOf": [{"enum": ["none"]}, {"type": "object", "properties": {"k": {"type": "integer", "minimum": 0, "maximum": 3}}, "required": ["k"], "additionalProperties": false}]}}, "required": ["v"], "additionalProperties": false}),
        json!({"type": "object", "properties": {"r": {"type": "number", "minimum": 0, "maximum": 1}}, "required": ["r"], "additionalProperties": false}),
        json!({"allOf": [{"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"]}, {"type": "object", "properties": {"b": {"type": "boolean"}}, "required": ["b"]}], "type": "object", "properties": {"a": {"type": "boolean"}, "b": {"type": "boolean"}}, "additionalProperties": false}),
        json!({"type": "object", "properties": {"matrix": {"type": "array", "items": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "minItems": 2, "maxItems": 2}, "minItems": 2, "maxItems": 2}}, "required": ["matrix"], "additionalProperties": false}),
        json!({"title": "status", "description": "annotations only", "type": "object", "properties": {"s": {"enum": ["up", "down"], "description": "state", "default": "up"}}, "required": ["s"], "additionalProperties": false}),
    ]
}

/// Compact JSON: no whitespace outside strings.
fn assert_compact(text: &str) {
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else {
            assert!(!c.is_whitespace(), "whitespace outside strings in {text:?}");
        }
    }
}

#[test]
fn json_schema_outputs_validate_against_their_schema() {
    let s = server();
    let all = schemas();
    assert!(all.len() >= 20);
    for (i, schema) in all.iter().enumerate() {
        // Greedy and seeded sampling walk different paths through the same grammar.
        for sampling in [
            json!({"temperature": 0}),
            json!({"temperature": 1.0, "seed": i}),
        ] {
            let mut body = completion(json!({"response_format": schema_format(schema)}));
            body.as_object_mut()
                .unwrap()
                .extend(sampling.as_object().cloned().unwrap());
            let (text, finish) = text_of(&s.post("/v1/completions", &body));
            assert_eq!(finish, "stop", "schema {i} {schema}: {text:?}");
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("schema {i}: not JSON ({e}): {text:?}"));
            validate(schema, schema, &v, "")
                .unwrap_or_else(|e| panic!("schema {i} {schema}: {e}; output {text}"));
            assert_compact(&text);
        }
    }
    let compiled = s.metric("sovereign_grammar_compile_seconds_count");
    assert!(compiled >= all.len() as f64, "{compiled}");
    assert!(s.metric("sovereign_grammar_mask_seconds_count") > 0.0);
}

#[test]
fn json_object_output_parses_on_both_endpoints() {
    let s = server();
    // Greedy: sampled at temperature 1, the random-weight model may open a string and
    // never close it within the budget on another CPU's numerics (a truncated document
    // with finish "length" is then right, but says nothing about the grammar).
    let format =
        json!({"response_format": {"type": "json_object"}, "max_tokens": 400, "temperature": 0});
    let chat = s.post(
        "/v1/chat/completions",
        &chat_body("give me JSON", format.clone()),
    );
    let plain = s.post("/v1/completions", &completion(format));
    for r in [chat, plain] {
        let (text, finish) = text_of(&r);
        assert_eq!(finish, "stop", "{text:?}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
        assert!(v.is_object(), "{text}");
        assert_compact(&text);
    }
    // Streamed, the chunks add up to the same kind of document.
    let schema = json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}, "w": {"enum": ["x", "y"]}}, "required": ["n", "w"], "additionalProperties": false});
    let body = chat_body(
        "stream it",
        json!({"response_format": schema_format(&schema), "stream": true, "temperature": 0, "max_tokens": 100}),
    );
    let r = s.post("/v1/chat/completions", &body);
    assert_eq!(r.status, 200, "{}", r.body);
    let data = r.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    let mut text = String::new();
    let mut finish = None;
    for d in &data[..data.len() - 1] {
        let v: Value = serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}"));
        text.push_str(
            v["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or_default(),
        );
        if let Some(f) = v["choices"][0]["finish_reason"].as_str() {
            finish = Some(f.to_string());
        }
    }
    assert_eq!(finish.as_deref(), Some("stop"), "{text:?}");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    validate(&schema, &schema, &v, "").unwrap();
    // An unbounded string ends too (greedy: the tiny model closes a quote as second choice).
    let free =
        json!({"type": "object", "properties": {"free": {"type": "string"}}, "required": ["free"]});
    let body = completion(json!({"response_format": schema_format(&free), "temperature": 0}));
    let (text, finish) = text_of(&s.post("/v1/completions", &body));
    assert_eq!(finish, "stop", "{text:?}");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    validate(&free, &free, &v, "").unwrap();
}

#[test]
fn gbnf_and_lark_grammars_constrain_output() {
    let s = server();
    let gbnf = r#"root ::= "answer: " ("yes" | "no") " (" [0-9]{1,3} ")"
"#;
    let (text, finish) = text_of(&s.post(
        "/v1/completions",
        &completion(json!({"grammar": gbnf, "temperature": 0})),
    ));
    assert_eq!(finish, "stop");
    let rest = text
        .strip_prefix("answer: ")
        .unwrap_or_else(|| panic!("{text:?}"));
    let (word, num) = rest.split_once(" (").unwrap_or_else(|| panic!("{text:?}"));
    assert!(word == "yes" || word == "no", "{text:?}");
    let num = num.strip_suffix(')').unwrap_or_else(|| panic!("{text:?}"));
    assert!(
        (1..=3).contains(&num.len()) && num.chars().all(|c| c.is_ascii_digit()),
        "{text:?}"
    );

    let lark = "%llguidance {}\nstart: \"id=\" ID (\",\" ID){0,2}\nID: /[a-f]{2}[0-9]/\n";
    let (text, finish) = text_of(&s.post(
        "/v1/chat/completions",
        &chat_body(
            "ids please",
            json!({"grammar": lark, "temperature": 0.8, "seed": 3}),
        ),
    ));
    assert_eq!(finish, "stop");
    let ids = text
        .strip_prefix("id=")
        .unwrap_or_else(|| panic!("{text:?}"));
    for id in ids.split(',') {
        let b = id.as_bytes();
        assert!(
            b.len() == 3
                && (b'a'..=b'f').contains(&b[0])
                && (b'a'..=b'f').contains(&b[1])
                && b[2].is_ascii_digit(),
            "{text:?}"
        );
    }
}

#[test]
fn what_cannot_be_enforced_is_a_400_naming_it() {
    let s = server();
    let cases = [
        (
            json!({"response_format": schema_format(&json!({"type": "array", "uniqueItems": true}))}),
            "uniqueItems",
        ),
        (
            json!({"response_format": schema_format(&json!({"properties": {"a": {"type": "integer", "maximun": 3}}}))}),
            "/properties/a/maximun",
        ),
        (
            json!({"response_format": schema_format(&json!({"oneOf": [{"type": "integer"}]}))}),
            "oneOf",
        ),
        (
            json!({"response_format": schema_format(&json!({"properties": {"a": {"$ref": "#/$defs/gone"}}}))}),
            "#/$defs/gone",
        ),
        (
            json!({"response_format": schema_format(&json!({"type": "string", "format": "no-such-format"}))}),
            "no-such-format",
        ),
        (
            json!({"grammar": "root ::= \"a\" <[42]>"}),
            "token reference",
        ),
        (json!({"grammar": "root ::= \"a\" (\"b\""}), "line 1"),
        (
            json!({"grammar": "root ::= item"}),
            "\"item\" is used but never defined",
        ),
        (
            json!({"grammar": "%llguidance {}\nstart: undefined_rule"}),
            "undefined_rule",
        ),
    ];
    for (extra, needle) in cases {
        for path in ["/v1/completions", "/v1/chat/completions"] {
            let body = if path == "/v1/completions" {
                completion(extra.clone())
            } else {
                chat_body("x", extra.clone())
            };
            let r = s.post(path, &body);
            assert_eq!(r.status, 400, "{extra}: {}", r.body);
            let (param, _) = r.error();
            let param = param.unwrap_or_default();
            assert!(
                param.starts_with("response_format") || param == "grammar",
                "{extra}: param {param}"
            );
            let msg = r.json()["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(msg.contains(needle), "{extra}: {msg}");
        }
    }
    // None of them reached a slot.
    assert_eq!(s.metric("sovereign_generated_tokens_total"), 0.0);
}

#[test]
fn a_mask_error_ends_the_request_without_unchecked_tokens() {
    setup();
    let s = start(ServerOptions {
        models: vec![(FAILING.into(), inference_support::tiny())],
        ..Default::default()
    });
    let enum_schema = json!({"enum": ["alphabet", "betamax"]});
    let body = |stream: bool| {
        json!({"model": FAILING, "prompt": "pick:", "max_tokens": 50, "temperature": 0, "stream": stream,
               "response_format": schema_format(&enum_schema)})
    };
    let r = s.post("/v1/completions", &body(false));
    assert_eq!(r.status, 500, "{}", r.body);
    let msg = r.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(msg.contains("constrained decoding failed"), "{msg}");

    let r = s.post("/v1/completions", &body(true));
    assert_eq!(r.status, 200);
    let data = r.sse_data();
    let last = data.last().expect("events");
    let err: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"));
    assert!(
        err["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("constrained decoding failed")),
        "{last}"
    );
    assert!(!data.iter().any(|d| d == "[DONE]"), "{data:?}");
    // What was sent is a checked prefix of an allowed value: at most one token per step
    // taken before the failure, every one of them accepted by the grammar.
    let text: String = data[..data.len() - 1]
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["choices"][0]["text"].as_str().map(str::to_string))
        .collect();
    assert!(
        ["\"alphabet\"", "\"betamax\""]
            .iter()
            .any(|v| v.starts_with(&text)),
        "{text:?}"
    );
    // Every token took at least one grammar step, so fewer than FAIL_AFTER + 1 came out.
    let generated = s.metric("sovereign_generated_tokens_total") as usize;
    assert!(generated <= 2 * FAIL_AFTER, "{generated}");
}

#[test]
fn constrained_and_plain_requests_run_side_by_side() {
    let s = server();
    let schema = json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 99}, "w": {"type": "string", "maxLength": 5}}, "required": ["n", "w"], "additionalProperties": false});
    let bodies = [
        completion(
            json!({"response_format": schema_format(&schema), "temperature": 0.7, "seed": 1}),
        ),
        completion(json!({"max_tokens": 40, "temperature": 0})),
        chat_body(
            "json",
            json!({"response_format": {"type": "json_object"}, "max_tokens": 300, "temperature": 0}),
        ),
        chat_body("hi", json!({"max_tokens": 40, "stream": true})),
    ];
    std::thread::scope(|sc| {
        let handles: Vec<_> = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let s = &s;
                sc.spawn(move || {
                    let path = if b.get("messages").is_some() {
                        "/v1/chat/completions"
                    } else {
                        "/v1/completions"
                    };
                    (i, s.post(path, b))
                })
            })
            .collect();
        for h in handles {
            let (i, r) = h.join().expect("request thread");
            assert_eq!(r.status, 200, "request {i}: {}", r.body);
            match i {
                0 => {
                    let (text, _) = text_of(&r);
                    let v: Value =
                        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
                    validate(&schema, &schema, &v, "").unwrap();
                }
                2 => {
                    let (text, _) = text_of(&r);
                    assert!(
                        serde_json::from_str::<Value>(&text).is_ok_and(|v| v.is_object()),
                        "{text}"
                    );
                }
                3 => assert!(r.sse_data().iter().any(|d| d == "[DONE]"), "{}", r.body),
                _ => {
                    let (text, _) = text_of(&r);
                    assert!(!text.is_empty());
                }
            }
        }
    });
}

#[test]
fn running_out_of_tokens_finishes_with_length() {
    let s = server();
    let schema = json!({"type": "object", "properties": {"words": {"type": "array", "items": {"type": "string", "maxLength": 8}, "minItems": 5, "maxItems": 5}}, "required": ["words"], "additionalProperties": false});
    let (text, finish) = text_of(&s.post(
        "/v1/completions",
        &completion(
            json!({"response_format": schema_format(&schema), "max_tokens": 4, "temperature": 0}),
        ),
    ));
    assert_eq!(finish, "length", "{text:?}");
    assert!(
        text.starts_with("{\"words\":[") || "{\"words\":[".starts_with(&text),
        "{text:?}"
    );
}

/// The mask benchmark (`cargo xtask bench inference` runs it on the release build with
/// the 128k-vocabulary model): prints one `MASK_FIGURES {json}` line.
#[test]
#[ignore = "a benchmark: cargo xtask bench inference runs it"]
fn mask_benchmark() {
    let path = std::env::var_os("SOVEREIGN_MASK_BENCH_MODEL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            inference_support::model_file(
                "vocab128k.gguf",
                inference_support::gguf::ModelSpec::vocab128k(42),
            )
        });
    let figures =
        sovereign_inference::grammar::maskbench::run(&path, 2000, 7).expect("mask benchmark");
    println!("MASK_FIGURES {}", serde_json::to_string(&figures).unwrap());
}
