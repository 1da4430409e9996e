//! What passes between HTTP handlers and an engine thread: the job, the events that come
//! back, the model's readiness, and the handle that submits with admission control.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use super::error::ApiError;
use super::template::ChatTemplate;
use super::validate::ValidRequest;

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// End-of-generation token or a stop string.
    Stop,
    /// max_tokens reached.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// One message from the engine about a job.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Generated text: whole characters, stop strings already cut.
    Text(String),
    /// Generation finished.
    Done {
        reason: FinishReason,
        prompt_tokens: usize,
        completion_tokens: usize,
        /// Prompt tokens whose KV cells were reused rather than decoded.
        cached_tokens: usize,
    },
    /// The engine failed this job (decode error, shutdown).
    Failed(String),
}

/// A request handed to an engine thread.
#[derive(Debug)]
pub struct Job {
    /// The checked request.
    pub req: ValidRequest,
    /// Where events go; closed when the client went away, which frees the slot.
    pub events: mpsc::Sender<Event>,
    /// Admission: held while the job is queued or in a slot.
    pub permit: OwnedSemaphorePermit,
    /// When the handler accepted it, for time to first token.
    pub received: Instant,
}

impl Job {
    /// The client is gone (response dropped).
    pub fn abandoned(&self) -> bool {
        self.events.is_closed()
    }
}

/// Tokenizing with the loaded model, usable from any thread.
pub trait Tokenize: Send + Sync {
    /// `special`: parse control-token text (chat templates) rather than treat it as text.
    fn tokenize(&self, text: &str, special: bool) -> Vec<i32>;
}

/// What handlers know about a loaded model.
pub struct ModelInfo {
    /// The model's tokenizer.
    pub tokenizer: Box<dyn Tokenize>,
    /// The model's chat template (or the default).
    pub template: ChatTemplate,
    /// Context length of one slot.
    pub ctx: usize,
    /// Load time, seconds since the epoch (`created` in /v1/models).
    pub created: u64,
    /// Compiles grammars against this model's vocabulary (its token trie is built once
    /// per load); the error says why constrained decoding is unavailable.
    #[cfg(feature = "engine")]
    pub grammar: Result<Arc<super::grammar::Compiler>, String>,
}

/// A model's lifecycle as health and handlers see it.
#[derive(Clone)]
pub enum ModelState {
    Loading,
    Ready(Arc<ModelInfo>),
    Failed(String),
}

/// How handlers reach one engine thread.
#[derive(Clone)]
pub struct EngineHandle {
    /// Bounded queue into the engine thread; its capacity equals the permits.
    pub jobs: std::sync::mpsc::SyncSender<Job>,
    /// Slots plus queue places; a request that gets none is a 429.
    pub permits: Arc<Semaphore>,
    /// Readiness, published by the engine thread.
    pub state: watch::Receiver<ModelState>,
    /// Number of slots, for logs.
    pub slots: usize,
}

impl EngineHandle {
    pub fn info(&self) -> Result<Arc<ModelInfo>, ApiError> {
        match &*self.state.borrow() {
            ModelState::Ready(i) => Ok(i.clone()),
            ModelState::Loading => Err(ApiError::NotReady("the model is still loading".into())),
            ModelState::Failed(why) => Err(ApiError::NotReady(format!(
                "the model failed to load: {why}"
            ))),
        }
    }

    /// Admit and queue a request; the receiver yields its events.
    pub fn submit(&self, req: ValidRequest) -> Result<mpsc::Receiver<Event>, ApiError> {
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::QueueFull)?;
        // Room for every token plus the final event: the engine never blocks on a client.
        let (tx, rx) = mpsc::channel(req.max_tokens + 2);
        let job = Job {
            req,
            events: tx,
            permit,
            received: Instant::now(),
        };
        self.jobs.try_send(job).map_err(|e| match e {
            std::sync::mpsc::TrySendError::Full(_) => ApiError::QueueFull,
            std::sync::mpsc::TrySendError::Disconnected(_) => {
                ApiError::NotReady("the engine has stopped".into())
            }
        })?;
        Ok(rx)
    }
}
