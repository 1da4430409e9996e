//! The mask benchmark: time llguidance's full token mask on a model's vocabulary along a
//! seeded random walk through a JSON schema (each step picks a random allowed token), so
//! the figure is the worst case of constrained decoding, where every pick is rejected.

use std::path::Path;
use std::time::Instant;

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use serde::Serialize;
use serde_json::json;

use super::{Compiler, GrammarSpec, JsonKind};
use crate::metrics::Metrics;

/// What one mask run measured.
#[derive(Debug, Serialize)]
pub struct MaskFigures {
    /// Which grammar: `record` (see [`schema`]) or `patterns` (see [`pattern_schema`]).
    pub workload: &'static str,
    /// Tokens in the vocabulary.
    pub vocab: usize,
    /// Masks timed.
    pub steps: usize,
    /// Building the token trie and parser factory (once per model load).
    pub setup_ms: f64,
    /// Compiling the schema (once per distinct schema).
    pub compile_ms: f64,
    /// Mask time percentiles, microseconds.
    pub mask_p50_us: f64,
    pub mask_p99_us: f64,
    pub mask_max_us: f64,
}

/// The benchmark's schema: nested objects, bounded arrays, enums, numbers and a pattern.
pub fn schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "id": {"type": "integer", "minimum": 0},
            "name": {"type": "string", "maxLength": 24},
            "status": {"enum": ["active", "paused", "closed"]},
            "score": {"type": "number", "minimum": 0, "maximum": 1},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 4},
            "owner": {
                "type": "object",
                "properties": {
                    "email": {"type": "string", "pattern": "^[a-z]{1,12}@[a-z]{1,12}\\.com$"},
                    "admin": {"type": "boolean"}
                },
                "required": ["email", "admin"],
                "additionalProperties": false
            }
        },
        "required": ["id", "name", "status", "score", "tags", "owner"],
        "additionalProperties": false
    })
}

/// Strings held to regular expressions, where llguidance's precomputed string-content
/// masks do not apply and the trie walk does the work.
pub fn pattern_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
            "email": {"type": "string", "pattern": "^[a-z]{1,12}@[a-z]{1,12}\\.(com|org)$"},
            "date": {"type": "string", "pattern": "^20[0-9]{2}-(0[1-9]|1[0-2])-[0-3][0-9]$"},
            "words": {"type": "string", "pattern": "^([a-z]+ ){1,6}[a-z]+$"}
        },
        "required": ["sku", "email", "date", "words"],
        "additionalProperties": false
    })
}

/// Time `steps` masks per workload on the vocabulary of the GGUF at `path`.
pub fn run(path: &Path, steps: usize, seed: u64) -> Result<Vec<MaskFigures>, String> {
    let backend = crate::engine::backend()?;
    let model = LlamaModel::load_from_file(
        backend,
        path,
        &LlamaModelParams::default().with_n_gpu_layers(0),
    )
    .map_err(|e| format!("cannot load {}: {e}", path.display()))?;
    let t = Instant::now();
    let env = super::vocab::tok_env(&model);
    let compiler = Compiler::new(&env)?;
    let setup_ms = t.elapsed().as_secs_f64() * 1e3;
    [("record", schema()), ("patterns", pattern_schema())]
        .into_iter()
        .map(|(workload, schema)| walk(&compiler, workload, schema, setup_ms, steps, seed))
        .collect()
}

fn walk(
    compiler: &Compiler,
    workload: &'static str,
    schema: serde_json::Value,
    setup_ms: f64,
    steps: usize,
    seed: u64,
) -> Result<MaskFigures, String> {
    let env = compiler.tok_env();
    let spec = GrammarSpec::Json {
        kind: JsonKind::Schema,
        schema,
    };
    let t = Instant::now();
    let compiled = compiler
        .compile(&spec, &Metrics::default())
        .map_err(|e| e.message())?;
    let compile_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut rng = seed | 1;
    let mut next = move || {
        // xorshift64: enough to pick among allowed tokens.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let trie = env.tok_trie();
    let steps = steps.max(1);
    let mut times = Vec::with_capacity(steps);
    let mut session = compiled.session(None);
    let mut allowed = Vec::new();
    while times.len() < steps {
        if session.is_stopped() {
            session = compiled.session(None);
        }
        let t = Instant::now();
        let mask = session.mask().map_err(|e| e.to_string())?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
        allowed.clear();
        mask.iter_set_entries(|i| allowed.push(i as u32));
        // Prefer text tokens; an end token only when nothing else is allowed.
        let text: Vec<u32> = allowed
            .iter()
            .copied()
            .filter(|t| !trie.is_special_token(*t) && !trie.eos_tokens().contains(t))
            .collect();
        let pool = if text.is_empty() { &allowed } else { &text };
        let pick = pool[(next() % pool.len() as u64) as usize];
        session.consume(pick).map_err(|e| e.to_string())?;
        if trie.eos_tokens().contains(&pick) {
            session = compiled.session(None);
        }
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    Ok(MaskFigures {
        workload,
        vocab: trie.vocab_size(),
        steps,
        setup_ms,
        compile_ms,
        mask_p50_us: pct(0.5),
        mask_p99_us: pct(0.99),
        mask_max_us: pct(1.0),
    })
}
