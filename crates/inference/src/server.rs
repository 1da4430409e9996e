//! The OpenAI-compatible HTTP API on axum: routes, Bearer auth, body limits and deadlines,
//! one log line per request, a panic in a handler caught as a 500, and [`run`], which
//! serves a listener (through [`super::conn`]'s bounded connections) until a shutdown
//! future resolves.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::FutureExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};

use super::card_request::{self, ServedCard};
use super::error::ApiError;
use super::grammar::CompileGate;
use super::job::{EngineHandle, Event, FinishReason, ModelState};
use super::limits::ServerLimits;
use super::metrics::Metrics;
use super::validate::{Endpoint, ParsedRequest, Prompt, ValidRequest, parse};

/// Largest request body accepted by default (413 beyond).
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;

/// An API key, kept only as its digest so comparisons take the same time for any input.
#[derive(Clone)]
pub struct ApiKey([u8; 32]);

impl ApiKey {
    pub fn new(key: &str) -> Self {
        ApiKey(Sha256::digest(key.as_bytes()).into())
    }

    /// Constant-time comparison of digests: no early exit on the first differing byte.
    fn matches(&self, offered: &str) -> bool {
        let d: [u8; 32] = Sha256::digest(offered.as_bytes()).into();
        let diff = self
            .0
            .iter()
            .zip(d.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Everything the handlers share.
pub struct ServerState {
    /// Served models by name, started with the daemon.
    pub models: BTreeMap<String, EngineHandle>,
    /// The cache's models, started on first use (`serve` with no `--model`).
    pub catalog: Option<Arc<super::catalog::Catalog>>,
    /// Required Bearer key; `None` only on loopback (the CLI enforces that).
    pub api_key: Option<ApiKey>,
    /// Exported on /metrics.
    pub metrics: Arc<Metrics>,
    /// Largest request body.
    pub body_limit: usize,
    /// Write one access line per request to stderr (the daemon does; tests need not).
    pub log_requests: bool,
    /// Deadlines, the connection cap and the compile budget.
    pub limits: ServerLimits,
    /// Admission and time budget of grammar compiles, shared by every model.
    pub compiles: CompileGate,
    /// Set when the shutdown deadline passes: handlers end what they still wait on.
    pub ending: watch::Sender<bool>,
    /// Served Cards by name: a request naming one runs on its base model with the Card
    /// applied ([`super::card_request`]).
    pub cards: BTreeMap<String, Arc<ServedCard>>,
}

impl ServerState {
    /// The state for these models under `limits`, not ending.
    pub fn new(
        models: BTreeMap<String, EngineHandle>,
        catalog: Option<Arc<super::catalog::Catalog>>,
        api_key: Option<ApiKey>,
        metrics: Arc<Metrics>,
        limits: ServerLimits,
    ) -> Self {
        ServerState {
            models,
            catalog,
            api_key,
            metrics,
            body_limit: DEFAULT_BODY_LIMIT,
            log_requests: false,
            compiles: CompileGate::new(&limits),
            limits,
            ending: watch::channel(false).0,
            cards: BTreeMap::new(),
        }
    }

    /// Resolves once the shutdown deadline has passed.
    async fn ended(&self) {
        let mut rx = self.ending.subscribe();
        // An error means the sender is gone with the state: nothing will end us then.
        if rx.wait_for(|e| *e).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

type AppState = Arc<ServerState>;

/// The router, for tests that want it without a listener.
pub fn router(state: AppState) -> Router {
    let authed = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/metrics", get(metrics))
        .route("/v1/sovereign/models/load", post(super::admin::load))
        .route("/v1/sovereign/models/unload", post(super::admin::unload))
        .route("/v1/sovereign/models", get(super::admin::models))
        .route("/v1/sovereign/status", get(super::admin::status))
        .route("/v1/sovereign/cards", get(super::admin::cards))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/health", get(health))
        .merge(authed)
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move {
            ApiError::MethodNotAllowed {
                method: method.to_string(),
                path: uri.path().to_string(),
            }
        })
        .layer(middleware::from_fn(catch_panic))
        .layer(middleware::from_fn_with_state(state.clone(), log_request))
        .with_state(state)
}

/// Serve until `shutdown` resolves; then stop accepting, let in-flight requests finish
/// within the shutdown deadline, end the rest with an error, and return.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.limits.clone();
    let ending = state.ending.clone();
    super::conn::serve(listener, router(state), limits, shutdown, move || {
        ending.send_replace(true);
    })
    .await
}

/// A panic in a handler is a bug in that request's path: answer it with a 500 and keep
/// serving (without this the connection would just drop).
async fn catch_panic(req: Request, next: Next) -> Response {
    match std::panic::AssertUnwindSafe(next.run(req))
        .catch_unwind()
        .await
    {
        Ok(resp) => resp,
        Err(panic) => {
            let why = super::error::panic_text(&*panic);
            tracing::error!("request handler panicked: {why}");
            ApiError::Internal("the request failed unexpectedly; the daemon logged it".into())
                .into_response()
        }
    }
}

async fn log_request(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    state.metrics.request(status);
    if state.log_requests {
        // Never the headers: the Authorization header carries the key.
        eprintln!(
            "{} {method} {path} {status} {}ms",
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            start.elapsed().as_millis()
        );
    }
    resp
}

async fn auth(
    State(state): State<AppState>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    if let Some(key) = &state.api_key {
        let offered = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !offered.is_some_and(|o| key.matches(o)) {
            return ApiError::Unauthorized.into_response();
        }
    }
    next.run(req).await
}

async fn health(State(state): State<AppState>) -> Response {
    let mut loading = Vec::new();
    let mut failed = Vec::new();
    let lazy = state
        .catalog
        .as_ref()
        .map(|c| c.started())
        .unwrap_or_default();
    for (name, h) in state.models.iter().chain(lazy.iter().map(|(n, h)| (n, h))) {
        match &*h.state.borrow() {
            ModelState::Ready(_) => {}
            ModelState::Loading => loading.push(name.clone()),
            ModelState::Failed(why) => failed.push(json!({"model": name, "error": why})),
        }
    }
    if loading.is_empty() && failed.is_empty() {
        (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response()
    } else {
        let status = if failed.is_empty() {
            "loading"
        } else {
            "failed"
        };
        let body = json!({"status": status, "loading": loading, "failed": failed});
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn models(State(state): State<AppState>) -> Response {
    let mut created: BTreeMap<String, u64> = state
        .models
        .iter()
        .map(|(name, h)| (name.clone(), h.info().map_or(0, |i| i.created)))
        .collect();
    if let Some(catalog) = &state.catalog {
        let started: BTreeMap<String, EngineHandle> = catalog.started().into_iter().collect();
        let names = tokio::task::spawn_blocking({
            let catalog = catalog.clone();
            move || catalog.names()
        })
        .await
        .unwrap_or_default();
        for name in names {
            let at = started
                .get(&name)
                .map_or(0, |h| h.info().map_or(0, |i| i.created));
            created.entry(name).or_insert(at);
        }
    }
    let mut data: Vec<Value> = created
        .iter()
        .map(|(name, created)| {
            json!({"id": name, "object": "model", "created": created, "owned_by": "sovereign"})
        })
        .collect();
    for card in state.cards.values() {
        // A Card was created when its base was loaded.
        let at = created.get(&card.base).copied().unwrap_or(0);
        data.push(card_request::model_object(card, at));
    }
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// The body as JSON: at most `body_limit` bytes (413 beyond), within the body deadline
/// (408 beyond), parsed with serde's nesting limit.
pub(super) async fn json_body(state: &ServerState, body: Body) -> Result<Value, ApiError> {
    let limit = state.body_limit;
    let seconds = state.limits.body_timeout.as_secs();
    let read = tokio::time::timeout(state.limits.body_timeout, axum::body::to_bytes(body, limit));
    let bytes = tokio::select! {
        r = read => r,
        // A body still trickling in when the shutdown deadline passes ends here.
        () = state.ended() => return Err(ApiError::ShuttingDown),
    };
    let bytes = bytes
        .map_err(|_| ApiError::BodyTimeout { seconds })?
        .map_err(|e| {
            // to_bytes reports the limit through its error source: anything else is a
            // broken or reset body.
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                ApiError::TooLarge { limit }
            } else {
                ApiError::BadRequest {
                    message: format!("cannot read the body: {e}"),
                    param: None,
                }
            }
        })?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest {
        message: format!("the body is not valid JSON: {e}"),
        param: None,
    })
}

async fn chat(State(state): State<AppState>, body: Body) -> Response {
    handle(state, Endpoint::Chat, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn completions(State(state): State<AppState>, body: Body) -> Response {
    handle(state, Endpoint::Completion, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// Body → ParsedRequest → (model) → ValidRequest → engine → response.
async fn handle(state: AppState, endpoint: Endpoint, body: Body) -> Result<Response, ApiError> {
    let value = json_body(&state, body).await?;
    let parsed = parse(endpoint, &value)?;
    // A Card runs on its base model; the response still names the Card.
    let (parsed, card) = match state.cards.get(&parsed.model) {
        Some(served) => {
            let body = value.as_object().expect("parse accepts only an object");
            let applied = card_request::apply(served, parsed, body)?;
            let base = served.base.clone();
            (
                applied.parsed,
                Some((base, applied.template, applied.context)),
            )
        }
        None => (parsed, None),
    };
    let engine_name = card.as_ref().map_or(&parsed.model, |(base, _, _)| base);
    let engine = match (state.models.get(engine_name), &state.catalog) {
        (Some(engine), _) => engine.clone(),
        (None, Some(catalog)) => {
            let engine = catalog.engine(engine_name).await?;
            // A model loaded on first use: this request waits for the load, not a retry.
            let mut ready = engine.state.clone();
            let _ = ready.wait_for(|s| !matches!(s, ModelState::Loading)).await;
            engine
        }
        (None, None) => return Err(ApiError::UnknownModel(parsed.model.clone())),
    };
    let info = engine.info()?;
    let constraint = parsed.constraint.clone();
    // Formatting and tokenizing a prompt of up to the body limit takes CPU time the
    // client chooses: off the runtime's few worker threads, which every connection shares.
    let via_card = card.is_some();
    let (template, context) = card.map_or((None, None), |(_, t, c)| (t, c));
    let mut valid = tokio::task::spawn_blocking({
        let info = info.clone();
        move || tokenize(parsed, &info, template, context)
    })
    .await
    .map_err(|_| ApiError::Internal("formatting the prompt failed unexpectedly".into()))??;
    // Compiled before submitting: a grammar that does not compile is a 400, not a slot.
    valid.grammar =
        super::grammar::compile_for(&info, constraint, &state.compiles, &state.metrics).await?;
    let stream = valid.stream;
    let include_usage = valid.include_usage;
    let model = valid.model.clone();
    let rx = engine.submit(valid)?;
    if via_card {
        state.metrics.card_request(&model);
    }
    let id = response_id(endpoint);
    if stream {
        Ok(stream_response(
            rx,
            endpoint,
            id,
            model,
            include_usage,
            state,
        ))
    } else {
        tokio::select! {
            r = collect_response(rx, endpoint, id, model) => r,
            // Dropping the receiver frees the slot in the engine.
            () = state.ended() => Err(ApiError::ShuttingDown),
        }
    }
}

/// Format and tokenize the prompt; a Card may bring its own chat `template` and a
/// `context` that prompt and answer must fit (never beyond the slot's).
fn tokenize(
    parsed: ParsedRequest,
    info: &super::job::ModelInfo,
    template: Option<String>,
    context: Option<usize>,
) -> Result<ValidRequest, ApiError> {
    let tokens = match &parsed.prompt {
        Prompt::Chat(messages) => {
            let own = template.map(|t| info.template.with_source(t));
            let text = own
                .as_ref()
                .unwrap_or(&info.template)
                .render(messages)
                .map_err(|e| ApiError::Template(e.to_string()))?;
            info.tokenizer.tokenize(&text, true)
        }
        Prompt::Text(text) => info.tokenizer.tokenize(text, false),
    };
    parsed.into_valid(tokens, context.map_or(info.ctx, |c| c.min(info.ctx)))
}

fn response_id(endpoint: Endpoint) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let prefix = match endpoint {
        Endpoint::Chat => "chatcmpl",
        Endpoint::Completion => "cmpl",
    };
    format!("{prefix}-{t:x}{n:x}")
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// OpenAI's usage object; `cached` prompt tokens were reused from the KV cache.
fn usage(prompt: usize, completion: usize, cached: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
           "prompt_tokens_details": {"cached_tokens": cached}})
}

async fn collect_response(
    mut rx: mpsc::Receiver<Event>,
    endpoint: Endpoint,
    id: String,
    model: String,
) -> Result<Response, ApiError> {
    let mut text = String::new();
    loop {
        match rx.recv().await {
            Some(Event::Text(t)) => text.push_str(&t),
            Some(Event::Done {
                reason,
                prompt_tokens,
                completion_tokens,
                cached_tokens,
            }) => {
                let choice = match endpoint {
                    Endpoint::Chat => {
                        json!({"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": reason.as_str()})
                    }
                    Endpoint::Completion => {
                        json!({"index": 0, "text": text, "logprobs": null, "finish_reason": reason.as_str()})
                    }
                };
                let object = match endpoint {
                    Endpoint::Chat => "chat.completion",
                    Endpoint::Completion => "text_completion",
                };
                let body = json!({"id": id, "object": object, "created": now_secs(), "model": model, "choices": [choice], "usage": usage(prompt_tokens, completion_tokens, cached_tokens)});
                return Ok(axum::Json(body).into_response());
            }
            Some(Event::Failed(why)) => return Err(ApiError::Engine(why)),
            None => return Err(ApiError::Engine("the engine dropped the request".into())),
        }
    }
}

/// State of one SSE stream between chunks.
struct StreamState {
    /// Events from the engine; dropping it (client gone) frees the slot.
    rx: mpsc::Receiver<Event>,
    /// Chat or completion chunk shapes.
    endpoint: Endpoint,
    /// The same id on every chunk.
    id: String,
    /// The model name echoed on every chunk.
    model: String,
    /// Creation time echoed on every chunk.
    created: u64,
    /// Send a usage chunk before `[DONE]`.
    include_usage: bool,
    /// The chat role chunk has been sent.
    sent_role: bool,
    /// Events still to send before ending (usage chunk, [DONE]).
    tail: std::collections::VecDeque<SseEvent>,
    /// The stream has ended.
    over: bool,
    /// Tells the stream that the shutdown deadline has passed.
    state: AppState,
}

impl StreamState {
    fn chunk(&self, delta: Value, finish: Option<FinishReason>) -> SseEvent {
        let finish = finish.map(FinishReason::as_str);
        let (object, choice) = match self.endpoint {
            Endpoint::Chat => (
                "chat.completion.chunk",
                json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}),
            ),
            Endpoint::Completion => (
                "text_completion",
                json!({"index": 0, "text": delta.get("content").cloned().unwrap_or(json!("")), "logprobs": null, "finish_reason": finish}),
            ),
        };
        let body = json!({"id": self.id, "object": object, "created": self.created, "model": self.model, "choices": [choice]});
        SseEvent::default().data(body.to_string())
    }
}

fn stream_response(
    rx: mpsc::Receiver<Event>,
    endpoint: Endpoint,
    id: String,
    model: String,
    include_usage: bool,
    state: AppState,
) -> Response {
    let st = StreamState {
        state,
        rx,
        endpoint,
        id,
        model,
        created: now_secs(),
        include_usage,
        sent_role: false,
        tail: Default::default(),
        over: false,
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        if let Some(ev) = st.tail.pop_front() {
            return Some((Ok::<_, Infallible>(ev), st));
        }
        if st.over {
            return None;
        }
        if st.endpoint == Endpoint::Chat && !st.sent_role {
            st.sent_role = true;
            let ev = st.chunk(json!({"role": "assistant", "content": ""}), None);
            return Some((Ok(ev), st));
        }
        let next = tokio::select! {
            ev = st.rx.recv() => Ok(ev),
            () = st.state.ended() => Err(ApiError::ShuttingDown),
        };
        let next = match next {
            Ok(ev) => ev,
            Err(e) => {
                st.over = true;
                return Some((Ok(SseEvent::default().data(e.body().to_string())), st));
            }
        };
        let ev = match next {
            Some(Event::Text(t)) => st.chunk(json!({"content": t}), None),
            Some(Event::Done {
                reason,
                prompt_tokens,
                completion_tokens,
                cached_tokens,
            }) => {
                let ev = st.chunk(json!({}), Some(reason));
                if st.include_usage {
                    let object = if st.endpoint == Endpoint::Chat {
                        "chat.completion.chunk"
                    } else {
                        "text_completion"
                    };
                    let u = json!({"id": st.id, "object": object, "created": st.created, "model": st.model, "choices": [], "usage": usage(prompt_tokens, completion_tokens, cached_tokens)});
                    st.tail.push_back(SseEvent::default().data(u.to_string()));
                }
                st.tail.push_back(SseEvent::default().data("[DONE]"));
                st.over = true;
                ev
            }
            Some(Event::Failed(why)) => {
                st.over = true;
                SseEvent::default().data(ApiError::Engine(why).body().to_string())
            }
            None => {
                st.over = true;
                SseEvent::default().data(
                    ApiError::Engine("the engine dropped the request".into())
                        .body()
                        .to_string(),
                )
            }
        };
        Some((Ok(ev), st))
    });
    Sse::new(stream).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::ModelState;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A handle whose engine never finishes loading (no engine thread: a stand-in).
    fn loading_handle() -> (EngineHandle, tokio::sync::watch::Sender<ModelState>) {
        let (state_tx, state) = tokio::sync::watch::channel(ModelState::Loading);
        let (jobs, _rx) = std::sync::mpsc::sync_channel(1);
        let h = EngineHandle {
            jobs,
            permits: Arc::new(tokio::sync::Semaphore::new(1)),
            state,
            slots: 1,
        };
        (h, state_tx)
    }

    async fn get(addr: std::net::SocketAddr, req: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn health_is_503_while_loading_and_requests_are_refused() {
        let (h, state_tx) = loading_handle();
        let state = Arc::new(ServerState::new(
            [("m".to_string(), h)].into_iter().collect(),
            None,
            Some(ApiKey::new("k")),
            Arc::new(Metrics::default()),
            ServerLimits::default(),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(run(listener, state, async move {
            let _ = stopped.await;
        }));
        let health = get(
            addr,
            "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(health.starts_with("HTTP/1.1 503"), "{health}");
        assert!(health.contains("\"loading\""), "{health}");
        let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        let chat = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer k\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let r = get(addr, &chat).await;
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        assert!(r.contains("still loading"), "{r}");
        state_tx.send_replace(ModelState::Failed("broken file".into()));
        let health = get(
            addr,
            "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(
            health.starts_with("HTTP/1.1 503") && health.contains("broken file"),
            "{health}"
        );
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[test]
    fn key_comparison_accepts_only_the_key() {
        let k = ApiKey::new("secret");
        assert!(k.matches("secret"));
        assert!(!k.matches("secret "));
        assert!(!k.matches(""));
        assert_eq!(format!("{k:?}"), "ApiKey(<redacted>)");
    }
}
