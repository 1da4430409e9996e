//! Compiling a [`GrammarSpec`] with llguidance once per distinct grammar (cached by
//! digest, per model, within a memory budget), and the per-request [`Session`] the engine
//! thread steps token by token. Every llguidance error surfaces as a `Result`: nothing here
//! falls back to unconstrained text.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{SimpleVob, TokEnv};
use llguidance::{Matcher, ParserFactory};
use serde_json::{Value, json};

use super::GrammarSpec;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Compiled grammars kept per model; the least recently used goes first. The memory they
/// keep is bounded too, by [`GRAMMAR_CACHE_BYTES`].
pub const CACHE_ENTRIES: usize = 64;
pub use crate::limits::GRAMMAR_CACHE_BYTES;
/// Longest compile error passed to the client (llguidance can quote whole grammars).
const MAX_ERROR: usize = 2000;

/// A compiled grammar: a matcher at its start state, cloned for each request (clones
/// share the lexer's caches, so later requests with the same grammar start warm).
pub struct Compiled {
    /// The matcher before any token, which every request's session clones.
    start: Matcher,
    /// The request form (`json_schema`, `gbnf`, ...), for logs.
    label: &'static str,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Compiled({})", self.label)
    }
}

impl Compiled {
    /// A fresh matcher for one request; `fail_after` is the test hook (see the engine).
    pub fn session(&self, fail_after: Option<u64>) -> Session {
        Session {
            matcher: self.start.clone(),
            steps: 0,
            fail_after,
        }
    }

    pub fn label(&self) -> &'static str {
        self.label
    }
}

/// Turns specs into [`Compiled`] grammars for one model's vocabulary.
pub struct Compiler {
    /// llguidance's factory: the model's token trie and its precomputed slices.
    factory: ParserFactory,
    /// Compiled grammars by digest, shared by the handlers of this model.
    cache: Mutex<Cache>,
    /// The memory the cached grammars may keep.
    budget: u64,
}

/// A small least-recently-used map, bounded in entries and in bytes.
#[derive(Default)]
struct Cache {
    /// Digest to grammar.
    entries: HashMap<[u8; 32], Entry>,
    /// Counts uses, to find the least recently used entry.
    tick: u64,
    /// The bytes every entry keeps, added up.
    bytes: u64,
}

/// One cached grammar.
struct Entry {
    compiled: Arc<Compiled>,
    /// The tick of its last use.
    used: u64,
    /// What its compile left allocated ([`super::meter`]).
    bytes: u64,
}

impl Compiler {
    /// Build the parser factory (and its token-trie slices) once per model load.
    pub fn new(tok_env: &TokEnv) -> Result<Self, String> {
        let mut factory = ParserFactory::new_simple(tok_env)
            .map_err(|e| format!("cannot prepare constrained decoding: {e}"))?;
        factory.quiet();
        // Errors go to clients: the message, not a dump of the parser state.
        factory.limits_mut().verbose_errors = false;
        Ok(Compiler {
            factory,
            cache: Mutex::new(Cache::default()),
            budget: GRAMMAR_CACHE_BYTES,
        })
    }

    /// The cached grammar for `spec`, marked as just used.
    pub fn cached(&self, spec: &GrammarSpec) -> Option<Arc<Compiled>> {
        let key = spec.digest();
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        c.tick += 1;
        let tick = c.tick;
        let hit = c.entries.get_mut(&key)?;
        hit.used = tick;
        Some(hit.compiled.clone())
    }

    /// Keep `compiled` (which keeps `bytes`) in the cache when it fits the budget,
    /// evicting the least recently used until it does; a grammar larger than a quarter of
    /// the budget is served but not kept.
    pub fn keep(&self, spec: &GrammarSpec, compiled: Compiled, bytes: u64) -> Arc<Compiled> {
        let compiled = Arc::new(compiled);
        if bytes > self.budget / 4 {
            return compiled;
        }
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        c.tick += 1;
        let tick = c.tick;
        while c.entries.len() >= CACHE_ENTRIES || c.bytes + bytes > self.budget {
            let Some(oldest) = c
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some(gone) = c.entries.remove(&oldest) {
                c.bytes -= gone.bytes;
            }
        }
        let entry = Entry {
            compiled: compiled.clone(),
            used: tick,
            bytes,
        };
        if let Some(old) = c.entries.insert(spec.digest(), entry) {
            c.bytes -= old.bytes;
        }
        c.bytes += bytes;
        compiled
    }

    /// Entries and bytes the cache holds now.
    pub fn cache_usage(&self) -> (usize, u64) {
        let c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        (c.entries.len(), c.bytes)
    }

    /// The vocabulary the grammars are compiled against.
    pub fn tok_env(&self) -> &TokEnv {
        self.factory.tok_env()
    }

    /// Compile `spec`, or return the cached result for the same digest. A grammar that
    /// does not compile is a 400 naming the request field and llguidance's reason.
    /// Call it on a compile thread ([`super::CompileGate`]): the compile is measured on
    /// the calling thread.
    pub fn compile(
        &self,
        spec: &GrammarSpec,
        metrics: &Metrics,
    ) -> Result<Arc<Compiled>, ApiError> {
        if let Some(hit) = self.cached(spec) {
            return Ok(hit);
        }
        let start = Instant::now();
        let (built, bytes) = super::meter::measure(|| self.build(spec));
        let compiled = built?;
        metrics
            .grammar_compile
            .observe(start.elapsed().as_secs_f64());
        Ok(self.keep(spec, compiled, bytes))
    }

    /// Compile without the cache or metrics.
    pub fn build(&self, spec: &GrammarSpec) -> Result<Compiled, ApiError> {
        let grammar = match spec {
            GrammarSpec::Json { schema, .. } => {
                TopLevelGrammar::from_json_schema(with_compact_options(schema))
            }
            GrammarSpec::Lark { text, .. } => TopLevelGrammar::from_lark(text.clone()),
        };
        let refused = |e: String| {
            let mut e = e.trim().to_string();
            if e.len() > MAX_ERROR {
                let cut = (0..=MAX_ERROR)
                    .rev()
                    .find(|i| e.is_char_boundary(*i))
                    .unwrap_or(0);
                e.truncate(cut);
                e.push_str("...");
            }
            ApiError::bad(
                spec.param(),
                format!("the {} grammar does not compile: {e}", spec.label()),
            )
        };
        let parser = self
            .factory
            .create_parser(grammar)
            .map_err(|e| refused(e.to_string()))?;
        let start = Matcher::new(Ok(parser));
        if let Some(e) = start.get_error() {
            return Err(refused(e));
        }
        // The first mask, here on the compile thread: a grammar whose very first step
        // exceeds llguidance's per-step limits is the client's 400 now, not a failed
        // generation later. It also warms the lexer cache the clones share.
        if let Err(e) = start.clone().compute_mask() {
            return Err(refused(format!(
                "its first step exceeds the per-step limits: {e}"
            )));
        }
        Ok(Compiled {
            start,
            label: spec.label(),
        })
    }
}

/// The schema with llguidance's options for compact JSON: no whitespace outside strings,
/// `,` and `:` as the only separators, and no lenient skipping of unknown keywords.
fn with_compact_options(schema: &Value) -> Value {
    let mut s = schema.clone();
    if let Value::Object(o) = &mut s {
        o.insert(
            "x-guidance".into(),
            json!({
                "whitespace_flexible": false,
                "item_separator": ",",
                "key_separator": ":",
                "lenient": false,
                "coerce_one_of": false
            }),
        );
    }
    s
}

/// Why a grammar step failed; the request ends with an error, never with unchecked text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError(pub String);

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "constrained decoding failed: {}", self.0)
    }
}

/// One request's position in its grammar.
pub struct Session {
    /// Where the output is in the grammar; an error poisons it for good.
    matcher: Matcher,
    /// Grammar steps taken (checks and masks), for the test hook.
    steps: u64,
    /// Test hook: the step after this many fails as a mask error would.
    fail_after: Option<u64>,
}

impl Session {
    fn step(&mut self) -> Result<(), StepError> {
        self.steps += 1;
        match self.fail_after {
            Some(n) if self.steps > n => Err(StepError(format!(
                "forced mask error after {n} grammar steps (test hook)"
            ))),
            _ => Ok(()),
        }
    }

    /// Consume `token` if the grammar allows it (`Ok(true)`); `Ok(false)` leaves the state
    /// untouched. Costs a lexer step, not a mask.
    pub fn try_accept(&mut self, token: u32) -> Result<bool, StepError> {
        self.step()?;
        match self.matcher.try_consume_tokens(&[token]) {
            Ok(n) => Ok(n == 1),
            Err(e) => Err(StepError(e.to_string())),
        }
    }

    /// Every token the grammar allows next (end-of-generation tokens when it may end).
    pub fn mask(&mut self) -> Result<SimpleVob, StepError> {
        self.step()?;
        let m = self
            .matcher
            .compute_mask()
            .map_err(|e| StepError(e.to_string()))?;
        if m.is_zero() {
            return Err(StepError("the grammar allows no token here".into()));
        }
        Ok(m)
    }

    /// Consume a token taken from [`Session::mask`].
    pub fn consume(&mut self, token: u32) -> Result<(), StepError> {
        self.matcher
            .consume_token(token)
            .map_err(|e| StepError(e.to_string()))
    }

    /// The grammar is complete: nothing but the end may follow.
    pub fn is_stopped(&self) -> bool {
        self.matcher.is_stopped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grammar::{JsonKind, gbnf};
    use llguidance::toktrie::ApproximateTokEnv;

    fn compiler() -> Compiler {
        Compiler::new(&ApproximateTokEnv::single_byte_env()).unwrap()
    }

    /// Walk the grammar byte by byte along `text`, checking each byte with the mask too.
    fn accepts(c: &Compiled, text: &str) -> bool {
        let mut s = c.session(None);
        for b in text.bytes() {
            let m = s.mask().unwrap();
            if !m.is_allowed(b as u32) {
                return false;
            }
            assert!(s.try_accept(b as u32).unwrap());
        }
        s.is_stopped() || s.matcher.is_accepting().unwrap()
    }

    fn lark(g: &str) -> GrammarSpec {
        GrammarSpec::Lark {
            from_gbnf: true,
            text: gbnf::to_lark(g).unwrap(),
        }
    }

    #[test]
    fn converted_gbnf_compiles_and_constrains() {
        let c = compiler()
            .build(&lark(
                "root ::= \"ab\" [0-9]{2,3} (\"x\" | \"\") item*\nitem ::= [^a-z] | \".\"",
            ))
            .unwrap();
        assert!(accepts(&c, "ab12"));
        assert!(accepts(&c, "ab123x"));
        assert!(accepts(&c, "ab12xA."));
        assert!(!accepts(&c, "ab1"));
        assert!(!accepts(&c, "ab12xb"));
        let empty = compiler().build(&lark("root ::= \"a\"{0} \"b\"")).unwrap();
        assert!(accepts(&empty, "b"));
    }

    /// llama.cpp's own `grammars/json.gbnf`, as its users send it.
    const LLAMA_JSON_GBNF: &str = include_str!("../../../../fuzz/corpus/gbnf/ok-json.gbnf");

    #[test]
    fn llama_cpps_json_grammar_converts_and_constrains() {
        let c = compiler().build(&lark(LLAMA_JSON_GBNF)).unwrap();
        assert!(accepts(
            &c,
            r#"{"a": [1, -2.5e3, "x\n\u00e9", true, null], "b": {}}"#
        ));
        assert!(!accepts(&c, r#"{"a": [1,]}"#));
        assert!(!accepts(&c, r#"{'a': 1}"#));
        assert!(!accepts(&c, "[1]"));
    }

    #[test]
    fn json_output_is_compact() {
        let spec = GrammarSpec::Json {
            kind: JsonKind::Schema,
            schema: json!({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": false}),
        };
        let c = compiler().build(&spec).unwrap();
        assert!(accepts(&c, "{\"a\":12}"));
        assert!(!accepts(&c, "{ \"a\":12}"));
        assert!(!accepts(&c, "{\"a\": 12}"));
    }

    #[test]
    fn bad_grammars_are_400_before_any_token() {
        for spec in [
            GrammarSpec::Lark {
                from_gbnf: false,
                text: "%llguidance {}\nstart: foo".into(),
            },
            GrammarSpec::Json {
                kind: JsonKind::Schema,
                schema: json!({"type": "string", "format": "no-such-format"}),
            },
        ] {
            let e = compiler().build(&spec).unwrap_err();
            assert_eq!(e.status(), 400, "{}", e.message());
        }
    }

    #[test]
    fn the_cache_returns_the_same_compiled_grammar() {
        let c = compiler();
        let m = Metrics::default();
        let spec = lark("root ::= \"yes\" | \"no\"");
        let a = c.compile(&spec, &m).unwrap();
        let b = c.compile(&spec, &m).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(
            m.render()
                .contains("sovereign_grammar_compile_seconds_count 1\n")
        );
    }

    #[test]
    fn a_rejected_token_is_an_error_value_never_an_abort() {
        let c = compiler().build(&lark("root ::= [a-z]+")).unwrap();
        let mut s = c.session(None);
        // Checking leaves the state as it was, so the request can go on masked.
        assert!(!s.try_accept(b'Z' as u32).unwrap());
        assert!(s.try_accept(b'q' as u32).unwrap());
        // Forcing a token the grammar rejects fails the step; nothing panics.
        assert!(s.consume(b'Z' as u32).is_err());
        assert!(s.mask().is_err(), "a failed matcher stays failed");
    }

    #[test]
    fn the_test_hook_fails_the_step_after_n() {
        let c = compiler().build(&lark("root ::= [a-z]+")).unwrap();
        let mut s = c.session(Some(2));
        assert!(s.try_accept(b'a' as u32).unwrap());
        assert!(s.mask().is_ok());
        assert!(s.try_accept(b'b' as u32).is_err());
    }
}
