//! The benchmark's baseline: a plain llama.cpp prompt-then-decode loop in-process, one
//! sequence, no scheduler, no HTTP, with the same build and settings as the daemon.

use std::num::NonZeroU32;
use std::path::Path;
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use serde::Serialize;

/// What one raw run measured.
#[derive(Debug, Serialize)]
pub struct RawFigures {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// Prompt processing: tokens per second.
    pub prompt_tps: f64,
    /// Decoding: tokens per second.
    pub gen_tps: f64,
    /// Prompt time until the first token is sampled, in milliseconds.
    pub prompt_ms: f64,
    /// Bytes of weights (for the bandwidth ratio).
    pub model_bytes: u64,
}

/// Decode `generate` tokens greedily after a `prompt`-token prompt (ignoring end tokens, so
/// every run does the same work).
pub fn run(
    path: &Path,
    threads: usize,
    ctx: usize,
    prompt: usize,
    generate: usize,
) -> Result<RawFigures, String> {
    let backend = super::engine::backend()?;
    let model = LlamaModel::load_from_file(
        backend,
        path,
        &LlamaModelParams::default().with_n_gpu_layers(0),
    )
    .map_err(|e| format!("cannot load {}: {e}", path.display()))?;
    let threads = i32::try_from(threads).unwrap_or(1);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(ctx as u32))
        .with_n_batch(512)
        .with_n_ubatch(512)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut lctx = model
        .new_context(backend, params)
        .map_err(|e| e.to_string())?;
    // A prompt of ordinary word pieces, cycled to the requested length.
    let text =
        "the quiet river and the green stone hold the light of the local machine ".repeat(prompt);
    let mut tokens = model.vocab().tokenize(text.as_bytes(), true, false);
    tokens.truncate(prompt);
    let mut batch = LlamaBatch::new(512.max(prompt), 1);
    let start = Instant::now();
    for (i, t) in tokens.iter().enumerate() {
        batch
            .add(*t, i as i32, &[0], i == tokens.len() - 1)
            .map_err(|e| e.to_string())?;
    }
    lctx.decode(&mut batch).map_err(|e| e.to_string())?;
    let mut sampler = LlamaSampler::greedy();
    let mut next: LlamaToken = sampler.sample(&lctx, batch.n_tokens() - 1);
    let prompt_s = start.elapsed().as_secs_f64();
    let gen_start = Instant::now();
    for i in 0..generate {
        batch.clear();
        batch
            .add(next, (tokens.len() + i) as i32, &[0], true)
            .map_err(|e| e.to_string())?;
        lctx.decode(&mut batch).map_err(|e| e.to_string())?;
        next = sampler.sample(&lctx, 0);
    }
    let gen_s = gen_start.elapsed().as_secs_f64();
    Ok(RawFigures {
        prompt_tokens: tokens.len(),
        generated_tokens: generate,
        prompt_tps: tokens.len() as f64 / prompt_s,
        gen_tps: generate as f64 / gen_s,
        prompt_ms: prompt_s * 1e3,
        model_bytes: model.size(),
    })
}
