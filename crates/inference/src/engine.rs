//! The engine thread: owns one llama.cpp model and context, drives the [`Scheduler`] and
//! decodes every active slot together in one batch per step (continuous batching).
//!
//! **Invariant:** only this thread touches the context; handlers reach it through the
//! bounded job channel and hear back through each job's bounded event channel.
//!
//! A constrained slot checks each sampled token against its grammar and masks only when
//! the pick is rejected ([`constrained_sample`]); any grammar error fails that request, so
//! no unchecked token leaves this thread.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use tokio::sync::{Semaphore, watch};

use super::grammar::{self, Session, StepError};
use super::job::{EngineHandle, Event, FinishReason, Job, ModelInfo, ModelState, Tokenize};
use super::metrics::Metrics;
use super::scheduler::{AfterToken, End, Refused, Scheduler};
use super::template::ChatTemplate;
use super::text::{StopFilter, StopScan, Utf8Stream};
use super::validate::Sampling;

/// How to load and run one model.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The GGUF file.
    pub path: PathBuf,
    /// Sequences decoded together.
    pub slots: usize,
    /// Context length of each slot.
    pub ctx: usize,
    /// Requests that may wait for a slot beyond the busy ones.
    pub queue: usize,
    /// CPU threads for decoding and prompt processing.
    pub threads: usize,
    /// Layers offloaded to a GPU; `None` offloads all that the build supports.
    pub gpu_layers: Option<u32>,
    /// Lock the weights in RAM.
    pub mlock: bool,
    /// Map the file instead of reading it (shares pages with the page cache).
    pub mmap: bool,
    /// Tokens per decode step (llama.cpp's n_batch).
    pub batch: usize,
    /// Keep each slot's KV cells after its request and reuse the longest shared prefix
    /// (`serve --no-prompt-cache` turns it off).
    pub prompt_cache: bool,
    /// The LoRA adapter sets requests may decode under (served Cards'), loaded with the
    /// model and freed with it.
    pub adapters: Vec<AdapterSet>,
}

pub use super::card_request::AdapterSet;

/// Stack of an engine thread (address space; only the pages touched are memory).
const ENGINE_STACK: usize = 64 << 20;

/// llama.cpp's backend initializes once per process; every engine shares it.
pub fn backend() -> Result<&'static LlamaBackend, String> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The model's tokenizer for handlers (the model is `Sync`).
struct ModelTokenizer(Arc<LlamaModel>);

impl Tokenize for ModelTokenizer {
    fn tokenize(&self, text: &str, special: bool) -> Vec<i32> {
        let vocab = self.0.vocab();
        vocab
            .tokenize(text.as_bytes(), vocab.should_add_bos(), special)
            .into_iter()
            .map(|t| t.0)
            .collect()
    }
}

/// Start an engine thread for one model; it publishes readiness on the handle's watch.
pub fn spawn(
    name: &str,
    cfg: EngineConfig,
    metrics: Arc<Metrics>,
) -> std::io::Result<EngineHandle> {
    let (state_tx, state_rx) = watch::channel(ModelState::Loading);
    let capacity = cfg.slots + cfg.queue;
    let (jobs_tx, jobs_rx) = std::sync::mpsc::sync_channel(capacity);
    let slots = cfg.slots;
    let label = name.to_string();
    std::thread::Builder::new()
        .name(format!("engine-{name}"))
        // llguidance steps each constrained slot on this thread; give its regex and
        // parser code the same room as a compile.
        .stack_size(ENGINE_STACK)
        .spawn(move || {
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run_engine(&label, cfg, jobs_rx, &state_tx, &metrics)
            }));
            let failed = match run {
                Ok(Ok(())) => None,
                Ok(Err(why)) => Some(why),
                // A bug in the engine: the model is marked failed (health says so, every
                // request gets a 503) and the daemon lives on.
                Err(_) => Some("the engine thread panicked; reload the model".to_string()),
            };
            if let Some(why) = failed {
                tracing::error!(model = %label, "engine stopped: {why}");
                state_tx.send_replace(ModelState::Failed(why));
            }
        })?;
    Ok(EngineHandle {
        jobs: jobs_tx,
        permits: Arc::new(Semaphore::new(capacity)),
        state: state_rx,
        slots,
    })
}

/// A job in a slot, with the per-sequence state the engine keeps.
struct SlotJob {
    job: Job,
    /// The sampler chain, built at admission (it carries penalty and RNG state).
    sampler: Option<LlamaSampler>,
    /// Bytes of pieces not yet forming whole characters.
    utf8: Utf8Stream,
    /// Stop strings across token boundaries.
    stop: StopFilter,
    /// When the last token was produced, for per-token latency.
    last_token: Option<Instant>,
    /// The request's grammar state, when its output is constrained.
    grammar: Option<Session>,
}

/// Test-only hook (never set it outside tests): `SOVEREIGN_TEST_MASK_FAIL_AFTER=MODEL:N`
/// makes the grammar step after the N-th of every constrained request on the served model
/// MODEL fail as a mask error would, so tests can watch the request end with an error and
/// no unchecked token. Read once when the engine starts.
pub const TEST_MASK_FAIL_AFTER: &str = "SOVEREIGN_TEST_MASK_FAIL_AFTER";

fn test_mask_fail_after(model: &str) -> Option<u64> {
    let v = std::env::var(TEST_MASK_FAIL_AFTER).ok()?;
    let (name, n) = v.rsplit_once(':')?;
    (name == model).then(|| n.parse().ok()).flatten()
}

fn sampler_for(s: &Sampling, n_vocab: i32) -> LlamaSampler {
    let mut chain = Vec::new();
    if s.presence_penalty != 0.0 || s.frequency_penalty != 0.0 || s.repeat_penalty != 1.0 {
        chain.push(LlamaSampler::penalties(
            n_vocab,
            64,
            s.repeat_penalty,
            s.frequency_penalty,
            s.presence_penalty,
        ));
    }
    if s.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        if s.top_k > 0 {
            chain.push(LlamaSampler::top_k(s.top_k));
        }
        if s.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(s.top_p, 1));
        }
        if s.min_p > 0.0 {
            chain.push(LlamaSampler::min_p(s.min_p, 1));
        }
        chain.push(LlamaSampler::temp(s.temperature));
        // llama.cpp draws a random seed for u32::MAX.
        chain.push(LlamaSampler::dist(s.seed.unwrap_or(u32::MAX)));
    }
    LlamaSampler::chain_simple(chain)
}

fn run_engine(
    name: &str,
    cfg: EngineConfig,
    jobs: std::sync::mpsc::Receiver<Job>,
    state: &watch::Sender<ModelState>,
    metrics: &Metrics,
) -> Result<(), String> {
    let backend = backend()?;
    let gpu_layers = cfg.gpu_layers.unwrap_or(if backend.supports_gpu_offload() {
        u32::MAX
    } else {
        0
    });
    // The project's own bounded parser reads the header first, whichever path the file
    // came by (`--model`, the cache, the admin load): llama.cpp's loader never sees a file
    // that parser refuses.
    super::gguf::parse_file(&cfg.path)
        .map_err(|e| format!("{} is not a valid GGUF file: {e}", cfg.path.display()))?;
    let params = LlamaModelParams::default()
        .with_n_gpu_layers(gpu_layers)
        .with_use_mlock(cfg.mlock)
        .with_use_mmap(cfg.mmap);
    let mut model = LlamaModel::load_from_file(backend, &cfg.path, &params)
        .map_err(|e| format!("cannot load {}: {e}", cfg.path.display()))?;
    // Adapters load once per model load; a refused one fails the load with the reason,
    // so a model never serves with half its Cards.
    let mut adapters = Vec::new();
    for set in &cfg.adapters {
        // Checked with the project's own parser against the model before llama.cpp reads
        // it, as every model file is (a merged set is a file of its own).
        let (adapter, _info) =
            super::adapter::load(&mut model, &cfg.path, &set.path).map_err(|e| {
                format!(
                    "adapter set {:?} ({}) does not load on this model: {e}",
                    set.name,
                    set.path.display()
                )
            })?;
        adapters.push(adapter);
    }
    let model = Arc::new(model);
    let total_ctx =
        u32::try_from(cfg.slots * cfg.ctx).map_err(|_| "slots x ctx is too large".to_string())?;
    let threads = i32::try_from(cfg.threads.max(1)).unwrap_or(1);
    let ctx_params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(total_ctx))
        .with_n_seq_max(cfg.slots as u32)
        .with_n_batch(cfg.batch as u32)
        .with_n_ubatch(cfg.batch as u32)
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
        .with_kv_unified(false);
    let mut lctx = model
        .new_context(backend, ctx_params)
        .map_err(|e| format!("cannot create a context: {e}"))?;
    let template = model.meta_val_str("tokenizer.chat_template").ok();
    let vocab = model.vocab();
    let piece = |t: LlamaToken| vocab.token_to_piece(t, false, None);
    let bos = String::from_utf8_lossy(&vocab.token_to_piece(vocab.bos(), true, None)).into_owned();
    let eos = String::from_utf8_lossy(&vocab.token_to_piece(vocab.eos(), true, None)).into_owned();
    // The token trie is built once per model load; grammars compile against it.
    let trie_start = Instant::now();
    let compiler = grammar::Compiler::new(&grammar::vocab::tok_env(&model)).map(Arc::new);
    match &compiler {
        Ok(_) => tracing::debug!(
            model = name,
            ms = trie_start.elapsed().as_millis() as u64,
            "token trie built"
        ),
        Err(why) => tracing::warn!(model = name, "constrained decoding unavailable: {why}"),
    }
    let fail_after = test_mask_fail_after(name);
    let info = ModelInfo {
        grammar: compiler,
        tokenizer: Box::new(ModelTokenizer(model.clone())),
        template: ChatTemplate::new(template, bos, eos),
        ctx: cfg.ctx,
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    state.send_replace(ModelState::Ready(Arc::new(info)));
    tracing::info!(
        model = name,
        slots = cfg.slots,
        ctx = cfg.ctx,
        threads,
        "model ready"
    );

    let n_vocab = model.n_vocab();
    let mut sched: Scheduler<SlotJob> = Scheduler::new(cfg.slots, cfg.queue, cfg.batch, cfg.ctx);
    let mut batch = LlamaBatch::new(cfg.batch, 1);
    let mut gone = false;
    let mut shown = Shown::default();
    // The adapter set the context applies now (0: none).
    let mut applied = 0;
    loop {
        // Intake: block only when there is nothing to decode.
        if sched.is_idle() {
            metrics_gauges(metrics, &sched, &mut shown);
            match jobs.recv() {
                Ok(j) => submit(&mut sched, j, &cfg),
                Err(_) => break,
            }
        }
        loop {
            match jobs.try_recv() {
                Ok(j) => submit(&mut sched, j, &cfg),
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    gone = true;
                    break;
                }
            }
        }
        for (slot, _job) in sched.reap(|j| j.job.abandoned()) {
            if slot != usize::MAX && sched.holds(slot) == 0 {
                clear_slot(&mut lctx, slot);
            }
        }
        let (filled, _dropped) = sched.admit(|j| j.job.abandoned());
        for a in filled {
            // The cells past the shared prefix belong to another conversation.
            trim_slot(&mut lctx, &mut sched, a.slot, a.keep);
            if let Some(j) = sched.job_mut(a.slot) {
                j.sampler = Some(sampler_for(&j.job.req.sampling, n_vocab));
                j.grammar = j.job.req.grammar.as_ref().map(|g| g.session(fail_after));
            }
        }
        metrics_gauges(metrics, &sched, &mut shown);
        for c in sched.settle() {
            // A whole-sequence copy: llama.cpp copies only whole streams between the
            // sequences of a context whose slots each have their own (a partial range
            // would abort the process); the tail is dropped after.
            if let Err(e) = lctx.copy_kv_cache_seq(c.src as i32, c.dst as i32, None, None) {
                tracing::warn!("cannot copy slot {} to {}: {e}", c.src, c.dst);
            }
            trim_slot(&mut lctx, &mut sched, c.dst, c.keep);
        }
        let chunks = sched.next_step();
        // The context applies its adapters to the whole batch: set the step's before it.
        if !chunks.is_empty() && sched.group() != applied {
            if let Err(why) = apply_adapters(&mut lctx, &mut adapters, &cfg, sched.group()) {
                tracing::error!(model = name, "{why}");
                for c in &chunks {
                    if let Some(j) = sched.release(c.slot, End::Clear) {
                        let _closed = j.job.events.try_send(Event::Failed(why.clone()));
                    }
                    clear_slot(&mut lctx, c.slot);
                }
                continue;
            }
            applied = sched.group();
            metrics.adapter_switches.fetch_add(1, Ordering::Relaxed);
        }
        if chunks.is_empty() {
            if gone && sched.is_idle() {
                break;
            }
            continue;
        }
        batch.clear();
        for c in &chunks {
            let last = c.tokens.len() - 1;
            for (i, t) in c.tokens.iter().enumerate() {
                batch
                    .add(
                        LlamaToken(*t),
                        (c.pos + i) as i32,
                        &[c.slot as i32],
                        c.logits && i == last,
                    )
                    .map_err(|e| format!("batch overflow: {e}"))?;
            }
        }
        if let Err(e) = lctx.decode(&mut batch) {
            tracing::error!(model = name, "decode failed: {e}");
            for c in &chunks {
                if let Some(j) = sched.release(c.slot, End::Clear) {
                    let _closed = j
                        .job
                        .events
                        .try_send(Event::Failed(format!("decode failed: {e}")));
                }
                clear_slot(&mut lctx, c.slot);
            }
            continue;
        }
        let mut idx = 0i32;
        for c in &chunks {
            idx += c.tokens.len() as i32;
            if c.prefill {
                metrics
                    .prompt_tokens
                    .fetch_add(c.tokens.len() as u64, Ordering::Relaxed);
                metrics
                    .prompt_tokens_cached
                    .fetch_add(c.reused as u64, Ordering::Relaxed);
            }
            if !c.logits {
                continue;
            }
            let Some(j) = sched.job_mut(c.slot) else {
                continue;
            };
            let Some(sampler) = j.sampler.as_mut() else {
                continue;
            };
            let token = match j.grammar.as_mut() {
                // `sample` also accepts the token into the chain (penalties, RNG).
                None => sampler.sample(&lctx, idx - 1),
                // A panic in the grammar code fails this request alone.
                Some(g) => match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    constrained_sample(&lctx, idx - 1, sampler, g, metrics)
                }))
                .unwrap_or_else(|_| Err(StepError("the grammar step failed unexpectedly".into())))
                {
                    Ok(t) => t,
                    Err(e) => {
                        // Fail closed: the request ends here, the unchecked token is never sent.
                        tracing::warn!(model = name, "{e}");
                        if let Some(j) = sched.release(c.slot, End::Clear) {
                            metrics_gauges(metrics, &sched, &mut shown);
                            let _closed = j.job.events.try_send(Event::Failed(e.to_string()));
                        }
                        clear_slot(&mut lctx, c.slot);
                        continue;
                    }
                },
            };
            let now = Instant::now();
            match j.last_token {
                None => metrics
                    .ttft
                    .observe(now.duration_since(j.job.received).as_secs_f64()),
                Some(t) => metrics
                    .token_latency
                    .observe(now.duration_since(t).as_secs_f64()),
            }
            j.last_token = Some(now);
            metrics.generated_tokens.fetch_add(1, Ordering::Relaxed);
            let after = sched.on_token(c.slot, token.0);
            let j = sched.job_mut(c.slot).expect("slot still held");
            // A complete grammar allows nothing but the end: stop without sampling it.
            let complete = j.grammar.as_ref().is_some_and(Session::is_stopped);
            let finish = if vocab.is_eog(token) {
                flush(j, None);
                Some(FinishReason::Stop)
            } else {
                let text = j.utf8.push(&piece(token));
                match j.stop.push(&text) {
                    StopScan::Continue(t) => {
                        send_text(j, t);
                        let reason = if complete {
                            Some(FinishReason::Stop)
                        } else {
                            (after == AfterToken::Length).then_some(FinishReason::Length)
                        };
                        if reason.is_some() {
                            flush(j, None);
                        }
                        reason
                    }
                    StopScan::Stopped(t) => {
                        flush(j, Some(t));
                        Some(FinishReason::Stop)
                    }
                }
            };
            if let Some(reason) = finish {
                let (prompt_tokens, completion_tokens, cached_tokens) =
                    sched.counts(c.slot).unwrap_or((0, 0, 0));
                if let Some(j) = sched.release(c.slot, End::Keep) {
                    // The gauges first: a client that saw Done reads a freed slot.
                    metrics_gauges(metrics, &sched, &mut shown);
                    let _closed = j.job.events.try_send(Event::Done {
                        reason,
                        prompt_tokens,
                        completion_tokens,
                        cached_tokens,
                    });
                }
                if sched.holds(c.slot) == 0 {
                    clear_slot(&mut lctx, c.slot);
                }
            }
        }
    }
    for j in sched.drain_all() {
        let _closed = j
            .job
            .events
            .try_send(Event::Failed("the daemon is shutting down".into()));
    }
    metrics_gauges(metrics, &sched, &mut shown);
    Ok(())
}

/// Sample with the normal chain, then check the pick against the grammar (a lexer step);
/// only when it is rejected compute the full mask, sample again among the allowed tokens
/// and consume that. The chain accepts exactly the token that is returned.
fn constrained_sample(
    lctx: &LlamaContext<'_>,
    i: i32,
    sampler: &mut LlamaSampler,
    g: &mut Session,
    metrics: &Metrics,
) -> Result<LlamaToken, StepError> {
    let logits = lctx.get_logits_ith(i);
    let mut all = LlamaTokenDataArray::from_iter(
        logits
            .iter()
            .enumerate()
            .map(|(t, l)| LlamaTokenData::new(LlamaToken(t as i32), *l, 0.0)),
        false,
    );
    all.apply_sampler(sampler);
    let pick = all
        .selected_token()
        .ok_or_else(|| StepError("the sampler selected no token".into()))?;
    if g.try_accept(pick.0 as u32)? {
        sampler.accept(pick);
        return Ok(pick);
    }
    let start = Instant::now();
    let mask = g.mask()?;
    metrics.grammar_mask.observe(start.elapsed().as_secs_f64());
    let mut allowed = LlamaTokenDataArray::from_iter(
        logits
            .iter()
            .enumerate()
            .filter(|(t, _)| mask.is_allowed(*t as u32))
            .map(|(t, l)| LlamaTokenData::new(LlamaToken(t as i32), *l, 0.0)),
        false,
    );
    if allowed.data.is_empty() {
        return Err(StepError(
            "the grammar allows only tokens outside the model's vocabulary".into(),
        ));
    }
    allowed.apply_sampler(sampler);
    let pick = allowed
        .selected_token()
        .ok_or_else(|| StepError("the sampler selected no allowed token".into()))?;
    if !mask.is_allowed(pick.0 as u32) {
        return Err(StepError(format!("token {} is outside the mask", pick.0)));
    }
    g.consume(pick.0 as u32)?;
    sampler.accept(pick);
    Ok(pick)
}

fn submit(sched: &mut Scheduler<SlotJob>, job: Job, cfg: &EngineConfig) {
    let prompt = job.req.prompt_tokens.clone();
    let max = job.req.max_tokens;
    // Set 0 is the base alone; set i + 1 is the i-th adapter set.
    let group = match &job.req.adapter_set {
        None => 0,
        Some(name) => match cfg.adapters.iter().position(|s| s.name == *name) {
            Some(i) => i + 1,
            None => {
                let why = format!("the adapter set {name:?} is not loaded with this model");
                let _closed = job.events.try_send(Event::Failed(why));
                return;
            }
        },
    };
    // A request that opts out neither reuses cells nor leaves its own for others; cells
    // decoded under one adapter set are reused only under the same set.
    let key = (cfg.prompt_cache && job.req.cache_prompt).then_some(group as u64);
    let stop = StopFilter::new(job.req.stop.clone());
    let sj = SlotJob {
        job,
        sampler: None,
        utf8: Utf8Stream::default(),
        stop,
        last_token: None,
        grammar: None,
    };
    if let Err((why, sj)) = sched.submit_in(group, prompt, max, key, sj) {
        let msg = match why {
            Refused::QueueFull => "the queue is full".to_string(),
            Refused::TooLong {
                prompt,
                max_tokens,
                ctx,
            } => {
                format!("prompt {prompt} + max_tokens {max_tokens} exceed the slot context {ctx}")
            }
            Refused::EmptyPrompt => "the prompt is empty".into(),
        };
        let _closed = sj.job.events.try_send(Event::Failed(msg));
    }
}

/// Send text, dropping empty pieces. A full or closed channel means the client is gone;
/// the slot is reaped before the next step.
fn send_text(j: &SlotJob, text: String) {
    if !text.is_empty() {
        let _closed = j.job.events.try_send(Event::Text(text));
    }
}

/// End of generation: release held-back text (or `stopped`, the text before a stop
/// string) and any incomplete character as U+FFFD.
fn flush(j: &mut SlotJob, stopped: Option<String>) {
    let text = match stopped {
        Some(t) => t,
        None => {
            let tail = j.utf8.finish();
            let mut t = match j.stop.push(&tail) {
                StopScan::Continue(t) => t,
                StopScan::Stopped(t) => {
                    send_text(j, t);
                    return;
                }
            };
            t.push_str(&j.stop.finish());
            t
        }
    };
    send_text(j, text);
}

/// Make the context apply adapter set `group` (0: none) to the next decodes.
fn apply_adapters(
    lctx: &mut LlamaContext<'_>,
    adapters: &mut [llama_cpp_2::model::LlamaLoraAdapter],
    cfg: &EngineConfig,
    group: usize,
) -> Result<(), String> {
    match group.checked_sub(1) {
        None => match adapters.first_mut() {
            // Clearing takes any adapter handle; it removes them all.
            Some(any) => lctx
                .lora_adapter_remove(any)
                .map_err(|e| format!("cannot remove the adapters: {e}")),
            None => Ok(()),
        },
        Some(i) => lctx
            .lora_adapter_set(&mut adapters[i], cfg.adapters[i].scale)
            .map_err(|e| format!("cannot apply adapter set {:?}: {e}", cfg.adapters[i].name)),
    }
}

/// Drop `slot`'s cells from position `keep` on (all of them for 0). Where the model's
/// memory cannot drop part of a sequence (recurrent models) or no longer holds all of it,
/// the slot is cleared and its sequence starts from its first token.
fn trim_slot<J>(lctx: &mut LlamaContext<'_>, sched: &mut Scheduler<J>, slot: usize, keep: usize) {
    if keep == 0 {
        clear_slot(lctx, slot);
        return;
    }
    let trimmed = matches!(
        lctx.clear_kv_cache_seq(Some(slot as u32), Some(keep as u32), None),
        Ok(true)
    );
    // A sliding-window model drops old cells: a prefix is reusable only whole.
    let whole = trimmed
        && lctx.kv_cache_seq_pos_min(slot as i32) == 0
        && lctx.kv_cache_seq_pos_max(slot as i32) == keep as i32 - 1;
    if !whole {
        tracing::debug!("slot {slot} cannot keep a prefix; it decodes the whole prompt");
        clear_slot(lctx, slot);
        sched.restart(slot);
    }
}

fn clear_slot(lctx: &mut LlamaContext<'_>, slot: usize) {
    if let Err(e) = lctx.clear_kv_cache_seq(Some(slot as u32), None, None) {
        tracing::warn!("cannot clear slot {slot}: {e}");
    }
}

/// This engine's share of the gauges, so the engines of several models add up.
#[derive(Default)]
struct Shown {
    /// Busy slots last added to the gauge.
    busy: u64,
    /// Queued requests last added to the gauge.
    queued: u64,
}

fn metrics_gauges<J>(metrics: &Metrics, sched: &Scheduler<J>, shown: &mut Shown) {
    let (busy, queued) = (sched.busy() as u64, sched.queued() as u64);
    // Wrapping arithmetic adds a negative difference to the shared counter.
    metrics
        .busy_slots
        .fetch_add(busy.wrapping_sub(shown.busy), Ordering::Relaxed);
    metrics
        .queue_depth
        .fetch_add(queued.wrapping_sub(shown.queued), Ordering::Relaxed);
    *shown = Shown { busy, queued };
}
