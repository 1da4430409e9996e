//! What one input exercises, for each fuzzer, and the invariants checked on the way (a
//! broken one panics, which the loop reports like any panic). An `Err` from the code under
//! test is a fine outcome: refusing hostile input is its job.
//!
//! With the `llguidance` feature, whatever the request path accepts is also compiled by
//! llguidance on the loop's stack (half a request thread's), the promise of the limits
//! being that it neither overflows nor takes more than a second.

use serde_json::{Map, Value};
use sovereign_inference::grammar::limits::{self, LarkSource};
use sovereign_inference::grammar::{self, GrammarSpec, gbnf, schema};

use crate::driver::Target;
use crate::{json, text};

/// Grammar text: GBNF, and Lark when it starts with `%llguidance`.
pub const GBNF: Target = Target {
    name: "gbnf",
    run: run_grammar,
    mutate: text::mutant,
};

/// JSON schemas, as `response_format.json_schema.schema`.
pub const SCHEMA: Target = Target {
    name: "schema",
    run: run_schema,
    mutate: json::mutant,
};

/// An outcome's first words without numbers, names and pointers, so "line 3" and "line 4",
/// or the same error at two pointers, are one outcome.
fn coarse(message: &str) -> String {
    message
        .split_whitespace()
        .filter(|w| !w.contains(['"', '/', '#']))
        .take(5)
        .map(|w| w.replace(|c: char| c.is_ascii_digit(), ""))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The request path's answer, coarsely.
fn outcome(result: &Result<Option<GrammarSpec>, sovereign_inference::error::ApiError>) -> String {
    match result {
        Ok(Some(spec)) => format!("ok {}", spec.label()),
        Ok(None) => "none".into(),
        Err(e) => format!("{} {}", e.status().as_u16(), coarse(&e.message())),
    }
}

/// The GBNF reader, the Lark scanner on the raw text and on the reader's output, and the
/// request path for a `grammar` field.
pub fn run_grammar(input: &[u8]) -> String {
    let text = String::from_utf8_lossy(input);
    // The scanner takes any text, Lark or not.
    let raw = limits::scan_lark(&text);
    let converted = gbnf::to_lark(&text);
    if let Ok(lark) = &converted {
        // The reader's promise: what it writes nests and counts within the limits.
        let scan = limits::scan_lark(lark);
        assert!(
            scan.nesting <= limits::MAX_NESTING && scan.rules <= limits::MAX_RULES + 1,
            "the GBNF reader wrote Lark past the limits: {scan:?}"
        );
    }
    let mut body = Map::new();
    body.insert("grammar".into(), Value::String(text.into_owned()));
    let request = grammar::from_request(&body);
    if let Ok(Some(GrammarSpec::Lark { text, .. })) = &request {
        // What the request path accepts passes the limits, scanned again.
        let source = if converted.is_ok() {
            LarkSource::Gbnf
        } else {
            LarkSource::Lark
        };
        if let Err(e) = limits::scan_lark(text).check(source) {
            panic!("an accepted grammar fails the limits: {}", e.message());
        }
    }
    let compiled = compile(&request);
    format!(
        "{} | {} | n{} r{} | {compiled}",
        outcome(&request),
        match &converted {
            Ok(_) => "gbnf ok".to_string(),
            Err(e) => coarse(&e.to_string().replace(|c: char| c.is_ascii_digit(), "")),
        },
        raw.nesting.min(70) / 8,
        raw.rules.min(1100) / 128,
    )
}

/// The schema limits, the keyword allow-list, the `$ref` check and the request path for
/// `response_format.json_schema.schema`.
pub fn run_schema(input: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<Value>(input) else {
        return "not json".into();
    };
    let limited = limits::check_schema(&value);
    let checked = schema::check(&value);
    let refs = schema::check_refs(&value);
    let mut json_schema = Map::new();
    json_schema.insert("name".into(), Value::String("fuzz".into()));
    json_schema.insert("schema".into(), value);
    let mut format = Map::new();
    format.insert("type".into(), Value::String("json_schema".into()));
    format.insert("json_schema".into(), Value::Object(json_schema));
    let mut body = Map::new();
    body.insert("response_format".into(), Value::Object(format));
    let request = grammar::from_request(&body);
    if request.is_ok() && limited.is_err() {
        panic!("the request path accepted a schema past the limits: {limited:?}");
    }
    let compiled = compile(&request);
    format!(
        "{} | {} | {} | {} | {compiled}",
        outcome(&request),
        match &limited {
            Ok(()) => "in limits".to_string(),
            Err(e) => coarse(&e.message()),
        },
        checked.map_or_else(|e| coarse(&e.to_string()), |()| "allowed".into()),
        refs.map_or_else(|e| coarse(&e.to_string()), |()| "refs ok".into()),
    )
}

/// Compile what the request path accepted with llguidance, as the daemon would.
#[cfg(feature = "llguidance")]
fn compile(request: &Result<Option<GrammarSpec>, sovereign_inference::error::ApiError>) -> String {
    use llguidance::api::TopLevelGrammar;
    use llguidance::toktrie::ApproximateTokEnv;
    use llguidance::{Matcher, ParserFactory};

    thread_local! {
        /// A byte-level vocabulary: the grammar's compile does not depend on the model's.
        static FACTORY: Option<ParserFactory> = {
            let factory = ParserFactory::new_simple(&ApproximateTokEnv::single_byte_env());
            factory.ok().map(|mut f| {
                f.quiet();
                f.limits_mut().verbose_errors = false;
                f
            })
        };
    }
    let Ok(Some(spec)) = request else {
        return "-".into();
    };
    let grammar = match spec {
        GrammarSpec::Json { schema, .. } => {
            // The options the daemon compiles with (compile.rs, with_compact_options).
            let mut s = schema.clone();
            if let Value::Object(o) = &mut s {
                o.insert(
                    "x-guidance".into(),
                    serde_json::json!({"whitespace_flexible": false, "item_separator": ",",
                        "key_separator": ":", "lenient": false, "coerce_one_of": false}),
                );
            }
            TopLevelGrammar::from_json_schema(s)
        }
        GrammarSpec::Lark { text, .. } => TopLevelGrammar::from_lark(text.clone()),
    };
    FACTORY.with(|factory| {
        let Some(factory) = factory else {
            return "no factory".to_string();
        };
        match factory.create_parser(grammar) {
            Ok(parser) => match Matcher::new(Ok(parser)).get_error() {
                None => "compiled".into(),
                Some(e) => format!("matcher: {}", coarse(&e)),
            },
            Err(e) => format!("refused: {}", coarse(&e.to_string())),
        }
    })
}

/// Without llguidance, nothing is compiled.
#[cfg(not(feature = "llguidance"))]
fn compile(_request: &Result<Option<GrammarSpec>, sovereign_inference::error::ApiError>) -> String {
    "-".into()
}
