//! Constrained decoding: `response_format` (JSON object or JSON schema) and a raw `grammar`
//! (GBNF, or Lark when it starts with `%llguidance`) become one [`GrammarSpec`], checked
//! here so anything the engine cannot enforce is a 400 before a token is generated.
//!
//! **Fail closed:** a schema keyword outside [`schema::SUPPORTED`] or a GBNF construct
//! [`gbnf`] cannot convert is refused by name; nothing is dropped silently. With the engine
//! build, [`Compiler`] turns a spec into llguidance's matcher (cached by digest) and the
//! engine thread checks every sampled token against it, computing a full token mask only
//! when the pick is rejected.

pub mod gbnf;
pub mod limits;
pub mod schema;

#[cfg(feature = "engine")]
mod compile;
mod gate;
#[cfg(feature = "engine")]
pub mod maskbench;
#[cfg(feature = "engine")]
pub mod meter;
#[cfg(feature = "engine")]
pub mod vocab;

#[cfg(feature = "engine")]
pub use compile::{Compiled, Compiler, Session, StepError};
pub use gate::{COMPILE_STACK, CompileGate};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::error::ApiError;

/// Without the engine nothing compiles a grammar, so no compiled grammar exists.
#[cfg(not(feature = "engine"))]
#[derive(Debug)]
pub enum Compiled {}

/// What a request asks the output to follow, checked but not yet compiled.
#[derive(Debug, Clone, PartialEq)]
pub enum GrammarSpec {
    /// A JSON schema (`json_object` is `{"type": "object"}`); output is compact JSON.
    Json {
        /// Which request form it came from, for logs and errors.
        kind: JsonKind,
        /// The schema as given, its keywords already checked.
        schema: Value,
    },
    /// A Lark grammar as llguidance reads it (a GBNF grammar arrives here converted).
    Lark {
        /// The grammar came as GBNF.
        from_gbnf: bool,
        /// The Lark text llguidance compiles.
        text: String,
    },
}

/// The request form of a JSON constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKind {
    Object,
    Schema,
}

impl GrammarSpec {
    /// A short label for logs: `json_object`, `json_schema`, `gbnf` or `lark`.
    pub fn label(&self) -> &'static str {
        match self {
            GrammarSpec::Json {
                kind: JsonKind::Object,
                ..
            } => "json_object",
            GrammarSpec::Json { .. } => "json_schema",
            GrammarSpec::Lark {
                from_gbnf: true, ..
            } => "gbnf",
            GrammarSpec::Lark { .. } => "lark",
        }
    }

    /// The request parameter a compile error is about.
    pub fn param(&self) -> &'static str {
        match self {
            GrammarSpec::Json { .. } => "response_format",
            GrammarSpec::Lark { .. } => "grammar",
        }
    }

    /// sha256 of the kind and the text llguidance compiles: the compile cache key.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        match self {
            GrammarSpec::Json { schema, .. } => {
                h.update(b"json\0");
                h.update(schema.to_string().as_bytes());
            }
            GrammarSpec::Lark { text, .. } => {
                h.update(b"lark\0");
                h.update(text.as_bytes());
            }
        }
        h.finalize().into()
    }
}

/// Read `response_format` and `grammar` from a request body: `None` when neither asks for
/// a constraint. Both at once is a 400 (which would win is not obvious).
pub fn from_request(obj: &Map<String, Value>) -> Result<Option<GrammarSpec>, ApiError> {
    let format = match obj.get("response_format") {
        None | Some(Value::Null) => None,
        Some(v) => response_format(v)?,
    };
    let grammar = match obj.get("grammar") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(raw_grammar(text)?),
        Some(_) => {
            return Err(ApiError::bad(
                "grammar",
                "grammar must be a string (GBNF, or Lark starting with %llguidance)",
            ));
        }
    };
    match (format, grammar) {
        (Some(_), Some(_)) => Err(ApiError::bad(
            "grammar",
            "give response_format or grammar, not both",
        )),
        (f, g) => Ok(f.or(g)),
    }
}

fn response_format(v: &Value) -> Result<Option<GrammarSpec>, ApiError> {
    let param = "response_format";
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::bad(param, "response_format must be an object"))?;
    let only = |allowed: &[&str]| -> Result<(), ApiError> {
        match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(ApiError::Unsupported {
                param: format!("response_format.{k}"),
                message: format!("response_format.{k} is not supported"),
            }),
            None => Ok(()),
        }
    };
    match obj.get("type").and_then(Value::as_str) {
        Some("text") => {
            only(&["type"])?;
            Ok(None)
        }
        Some("json_object") => {
            only(&["type"])?;
            Ok(Some(GrammarSpec::Json {
                kind: JsonKind::Object,
                schema: json!({"type": "object"}),
            }))
        }
        Some("json_schema") => {
            only(&["type", "json_schema"])?;
            let js = obj
                .get("json_schema")
                .and_then(Value::as_object)
                .ok_or_else(|| {
                    ApiError::bad(
                        "response_format.json_schema",
                        "response_format.json_schema must be an object with name and schema",
                    )
                })?;
            if let Some(k) = js
                .keys()
                .find(|k| !["name", "schema", "strict", "description"].contains(&k.as_str()))
            {
                return Err(ApiError::Unsupported {
                    param: format!("response_format.json_schema.{k}"),
                    message: format!("response_format.json_schema.{k} is not supported"),
                });
            }
            match js.get("name") {
                Some(Value::String(n))
                    if !n.is_empty()
                        && n.len() <= 64
                        && n.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') => {}
                _ => {
                    return Err(ApiError::bad(
                        "response_format.json_schema.name",
                        "response_format.json_schema.name must be 1 to 64 of a-z, A-Z, 0-9, _ and -",
                    ));
                }
            }
            if let Some(s) = js.get("strict").filter(|s| !s.is_boolean() && !s.is_null()) {
                return Err(ApiError::bad(
                    "response_format.json_schema.strict",
                    format!("response_format.json_schema.strict must be a boolean, got {s}"),
                ));
            }
            let schema = match js.get("schema") {
                // `true` and `{}` accept any JSON value.
                None | Some(Value::Bool(true)) => json!({}),
                Some(Value::Object(_)) => js["schema"].clone(),
                Some(_) => {
                    return Err(ApiError::bad(
                        "response_format.json_schema.schema",
                        "response_format.json_schema.schema must be a JSON schema object",
                    ));
                }
            };
            // The limits first: every walk after them is then bounded by them.
            limits::check_schema(&schema)?;
            schema::check(&schema)
                .and_then(|()| schema::check_refs(&schema))
                .map_err(schema::SchemaError::into_api_error)?;
            Ok(Some(GrammarSpec::Json {
                kind: JsonKind::Schema,
                schema,
            }))
        }
        Some(other) => Err(ApiError::Unsupported {
            param: "response_format.type".into(),
            message: format!(
                "response_format.type {other:?} is not supported: use text, json_object or json_schema"
            ),
        }),
        None => Err(ApiError::bad(
            "response_format.type",
            "response_format.type is required: text, json_object or json_schema",
        )),
    }
}

/// The raw `grammar` field: Lark when it starts with `%llguidance`, GBNF otherwise.
fn raw_grammar(text: &str) -> Result<GrammarSpec, ApiError> {
    // Size before anything reads the text.
    limits::check_grammar_bytes(text)?;
    if text.trim_start().starts_with("%llguidance") {
        let scan = limits::scan_lark(text);
        // An embedded `%json` schema would bypass the keyword check and the schema limits:
        // refuse it by name, wherever the scanner finds one (`(%json {...})` too).
        if let Some(line) = text
            .lines()
            .position(|l| l.trim_start().starts_with("%json") || l.contains(" %json"))
            .map(|l| l + 1)
            .or(scan.json_at.map(|at| at.line))
        {
            return Err(ApiError::Unsupported {
                param: "grammar".into(),
                message: format!(
                    "grammar line {line}: %json inside a Lark grammar is not supported; use response_format json_schema"
                ),
            });
        }
        scan.check(limits::LarkSource::Lark)?;
        return Ok(GrammarSpec::Lark {
            from_gbnf: false,
            text: text.to_string(),
        });
    }
    let lark = gbnf::to_lark(text).map_err(|e| match e {
        gbnf::GbnfError::Unsupported { .. } => ApiError::Unsupported {
            param: "grammar".into(),
            message: format!("grammar (GBNF): {e}"),
        },
        gbnf::GbnfError::Syntax { .. } => ApiError::bad("grammar", format!("grammar (GBNF): {e}")),
    })?;
    // The reader bounds nesting and rules itself; the chain of rule references is only
    // visible in the whole grammar.
    limits::scan_lark(&lark).check(limits::LarkSource::Gbnf)?;
    Ok(GrammarSpec::Lark {
        from_gbnf: true,
        text: lark,
    })
}

/// Take `spec` compiled for the model in `info` from its cache, or compile it through the
/// gate (bounded in concurrency and time, off the async runtime, on a deep stack).
#[cfg(feature = "engine")]
pub async fn compile_for(
    info: &super::job::ModelInfo,
    spec: Option<GrammarSpec>,
    gate: &CompileGate,
    metrics: &std::sync::Arc<super::metrics::Metrics>,
) -> Result<Option<std::sync::Arc<Compiled>>, ApiError> {
    let Some(spec) = spec else {
        return Ok(None);
    };
    let compiler = info.grammar.clone().map_err(ApiError::Engine)?;
    if let Some(hit) = compiler.cached(&spec) {
        return Ok(Some(hit));
    }
    let metrics = metrics.clone();
    gate.run(move || compiler.compile(&spec, &metrics))
        .await?
        .map(Some)
}

/// Without the engine there is no model to constrain.
#[cfg(not(feature = "engine"))]
pub async fn compile_for(
    _info: &super::job::ModelInfo,
    spec: Option<GrammarSpec>,
    _gate: &CompileGate,
    _metrics: &std::sync::Arc<super::metrics::Metrics>,
) -> Result<Option<std::sync::Arc<Compiled>>, ApiError> {
    match spec {
        None => Ok(None),
        Some(s) => Err(ApiError::Unsupported {
            param: s.param().into(),
            message: "constrained decoding needs the engine build".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> Result<Option<GrammarSpec>, ApiError> {
        from_request(v.as_object().unwrap())
    }

    fn param(e: &ApiError) -> String {
        e.body()["error"]["param"].as_str().unwrap_or("").into()
    }

    #[test]
    fn text_format_and_absent_fields_ask_for_nothing() {
        assert_eq!(req(json!({})).unwrap(), None);
        assert_eq!(
            req(json!({"response_format": {"type": "text"}})).unwrap(),
            None
        );
    }

    #[test]
    fn json_object_is_an_object_schema() {
        let s = req(json!({"response_format": {"type": "json_object"}}))
            .unwrap()
            .unwrap();
        assert_eq!(s.label(), "json_object");
    }

    #[test]
    fn bad_forms_name_the_field() {
        for (body, p) in [
            (json!({"response_format": "json"}), "response_format"),
            (
                json!({"response_format": {"type": "yaml"}}),
                "response_format.type",
            ),
            (
                json!({"response_format": {"type": "json_schema"}}),
                "response_format.json_schema",
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}}),
                "response_format.json_schema.name",
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "uniqueItems": true}}}}),
                "response_format.json_schema.schema",
            ),
            (json!({"grammar": 5}), "grammar"),
            (
                json!({"grammar": "root ::= \"a\"", "response_format": {"type": "json_object"}}),
                "grammar",
            ),
        ] {
            let e = req(body.clone()).unwrap_err();
            assert_eq!(e.status(), 400, "{body}");
            assert_eq!(param(&e), p, "{body}: {}", e.message());
        }
    }

    #[test]
    fn lark_is_recognized_and_embedded_json_refused() {
        let s = req(json!({"grammar": "%llguidance {}\nstart: \"yes\" | \"no\""}))
            .unwrap()
            .unwrap();
        assert_eq!(s.label(), "lark");
        let e = req(json!({"grammar": "%llguidance {}\nstart: %json {}"})).unwrap_err();
        assert!(e.message().contains("%json"), "{}", e.message());
    }

    #[test]
    fn digests_differ_by_kind_and_text() {
        let a = GrammarSpec::Lark {
            from_gbnf: false,
            text: "start: \"a\"".into(),
        };
        let b = GrammarSpec::Lark {
            from_gbnf: false,
            text: "start: \"b\"".into(),
        };
        assert_ne!(a.digest(), b.digest());
        assert_eq!(a.digest(), a.clone().digest());
    }
}
