//! Models served from the cache by name: each is checked (size, recorded hash, header),
//! weighed against the memory the daemon may fill, and its engine started on the first
//! request for it, at start when preloaded, or when asked through the admin API.
//!
//! A loaded model is unloaded when asked, when idle past its TTL ([`Catalog::reap`], run
//! by a timer), or when `--max-loaded` is reached and another must load (the least recently
//! used goes). Unloading drops the catalog's handle: the engine thread finishes the requests
//! it holds, then exits and frees the model; a later request loads it again on demand.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::cache::{Cache, Check, ResolveError};
use super::error::ApiError;
use super::estimate::{Budget, Estimate, Shape, estimate};
use super::job::{EngineHandle, ModelState};
use super::model_options::{GpuLayers, ModelOptions};

/// Starts an engine for a verified blob with its settings. The daemon passes its llama.cpp
/// engine; the closure must not block for the load itself (the engine loads on its thread).
pub type StartEngine =
    dyn Fn(&str, PathBuf, &Settings) -> std::io::Result<EngineHandle> + Send + Sync;

/// What a model runs with once its options are resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Settings {
    /// Context length of each slot.
    #[serde(rename = "context")]
    pub ctx: usize,
    pub slots: usize,
    pub gpu_layers: GpuLayers,
    /// Idle time before unload; `None`: kept until unloaded.
    #[serde(rename = "ttl_seconds", serialize_with = "secs")]
    pub ttl: Option<Duration>,
}

fn secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// The daemon-wide defaults and limits.
#[derive(Clone)]
pub struct CatalogConfig {
    pub slots: usize,
    pub ctx: usize,
    /// Tokens per micro-batch (for the compute-buffer estimate).
    pub batch: usize,
    pub gpu_layers: GpuLayers,
    /// Idle TTL of models loaded without one.
    pub ttl: Option<Duration>,
    /// Most models loaded at once; the least recently used is unloaded for another.
    pub max_loaded: Option<usize>,
    /// The memory models may fill, by how a model is offloaded.
    pub budget: Arc<dyn Fn(GpuLayers, u64) -> Budget + Send + Sync>,
    /// Per-model defaults from `--models FILE`.
    pub defaults: BTreeMap<String, ModelOptions>,
}

/// What a load request asks beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct LoadRequest {
    pub ctx: Option<usize>,
    pub gpu_layers: Option<GpuLayers>,
    pub ttl: Option<Duration>,
    /// Load even when the estimate says it will not fit.
    pub force: bool,
}

/// Why a load did not happen.
#[derive(Debug, Clone)]
pub enum LoadError {
    /// Not in the cache, corrupt, or the engine failed.
    Api(ApiError),
    /// The estimate exceeds the free memory.
    NoFit(Box<Weighed>),
    /// Loaded already with another context or offload.
    Conflict(String),
}

impl LoadError {
    /// For inference requests, which know only OpenAI's errors.
    pub fn into_api(self) -> ApiError {
        match self {
            LoadError::Api(e) => e,
            LoadError::NoFit(w) => ApiError::NotReady(w.refusal.unwrap_or_default()),
            LoadError::Conflict(why) => ApiError::NotReady(why),
        }
    }
}

impl From<ApiError> for LoadError {
    fn from(e: ApiError) -> Self {
        LoadError::Api(e)
    }
}

/// A model's estimate against the memory it would be loaded into.
#[derive(Debug, Clone, Serialize)]
pub struct Weighed {
    pub model: String,
    pub settings: Settings,
    pub needed: Estimate,
    pub available: Budget,
    /// Bytes the other loaded models hold (by their estimates).
    pub in_use_bytes: u64,
    pub free_bytes: u64,
    pub fits: bool,
    /// The refusal message when it does not fit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
}

/// What a load did.
#[derive(Debug, Clone, Serialize)]
pub struct Loaded {
    #[serde(flatten)]
    pub weighed: Weighed,
    /// It was loaded before with the same settings.
    pub already_loaded: bool,
    /// Models unloaded to stay within `--max-loaded`.
    pub evicted: Vec<String>,
}

/// One loaded model.
struct Entry {
    handle: EngineHandle,
    settings: Settings,
    estimate: Estimate,
    /// Admission permits when nothing was in flight: the engine's slots plus queue.
    capacity: usize,
    loaded_at: SystemTime,
    last_used: Mutex<Instant>,
}

impl Entry {
    fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn idle(&self) -> Duration {
        self.last_used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    /// Bytes it holds by its estimate; none once its engine failed (the thread is gone).
    fn holds(&self) -> u64 {
        match &*self.handle.state.borrow() {
            ModelState::Failed(_) => 0,
            _ => self.estimate.total_bytes,
        }
    }

    /// Requests queued or decoding.
    fn in_flight(&self) -> usize {
        self.capacity
            .saturating_sub(self.handle.permits.available_permits())
    }
}

/// A loaded model as `model ps` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ModelStatus {
    pub name: String,
    /// `loading`, `ready` or `failed`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(flatten)]
    pub settings: Settings,
    /// The estimate of what it holds.
    pub memory: Estimate,
    pub busy_slots: usize,
    pub queued: usize,
    pub idle_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_left_seconds: Option<f64>,
    pub loaded_at: chrono::DateTime<chrono::Utc>,
}

/// The cache's models, started lazily.
pub struct Catalog {
    /// Where the names and blobs come from.
    cache: Cache,
    /// How an engine is started once a blob passed its checks.
    start: Box<StartEngine>,
    config: CatalogConfig,
    /// Loaded models by name. Held across a load's checks and its engine start (which only
    /// spawns a thread), so two loads never both pass the memory check.
    entries: Mutex<BTreeMap<String, Arc<Entry>>>,
    /// When the daemon made it, for the status's uptime.
    created: Instant,
}

impl Catalog {
    pub fn new(cache: Cache, start: Box<StartEngine>, config: CatalogConfig) -> Self {
        Catalog {
            cache,
            start,
            config,
            entries: Mutex::new(BTreeMap::new()),
            created: Instant::now(),
        }
    }

    pub fn uptime(&self) -> Duration {
        self.created.elapsed()
    }

    pub fn config(&self) -> &CatalogConfig {
        &self.config
    }

    /// The names in the cache, sorted (an unreadable cache lists nothing and says so).
    pub fn names(&self) -> Vec<String> {
        match self.cache.list() {
            Ok(entries) => entries.into_iter().map(|e| e.manifest.name).collect(),
            Err(e) => {
                tracing::warn!("cannot list the model cache: {e:#}");
                Vec::new()
            }
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Entry>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The engines loaded now, by name.
    pub fn started(&self) -> Vec<(String, EngineHandle)> {
        self.entries()
            .iter()
            .map(|(n, e)| (n.clone(), e.handle.clone()))
            .collect()
    }

    /// The loaded models, by name.
    pub fn status(&self) -> Vec<ModelStatus> {
        self.entries()
            .iter()
            .map(|(name, e)| {
                let (state, error) = match &*e.handle.state.borrow() {
                    ModelState::Loading => ("loading", None),
                    ModelState::Ready(_) => ("ready", None),
                    ModelState::Failed(why) => ("failed", Some(why.clone())),
                };
                let in_flight = e.in_flight();
                let busy = in_flight.min(e.settings.slots);
                let idle = if in_flight > 0 {
                    Duration::ZERO
                } else {
                    e.idle()
                };
                ModelStatus {
                    name: name.clone(),
                    state,
                    error,
                    settings: e.settings.clone(),
                    memory: e.estimate,
                    busy_slots: busy,
                    queued: in_flight - busy,
                    idle_seconds: idle.as_secs_f64(),
                    ttl_left_seconds: e.settings.ttl.map(|t| t.saturating_sub(idle).as_secs_f64()),
                    loaded_at: e.loaded_at.into(),
                }
            })
            .collect()
    }

    /// Bytes the loaded models hold, by their estimates.
    pub fn in_use_bytes(&self) -> u64 {
        self.entries()
            .values()
            .fold(0u64, |s, e| s.saturating_add(e.holds()))
    }

    /// The engine for `name`, loaded now with its defaults if it is not loaded. The blob is
    /// checked with [`Check::Quick`] first; a blob that fails never reaches the engine.
    /// Returns as soon as the engine thread runs: the caller waits for it to be ready.
    pub async fn engine(self: &Arc<Self>, name: &str) -> Result<EngineHandle, ApiError> {
        if let Some(e) = self.entries().get(name) {
            e.touch();
            return Ok(e.handle.clone());
        }
        match self.load(name, LoadRequest::default()).await {
            Ok(_) => {}
            // Another request loaded it meanwhile with other settings: use that engine.
            Err(LoadError::Conflict(_)) => {}
            Err(e) => return Err(e.into_api()),
        }
        self.entries()
            .get(name)
            .map(|e| e.handle.clone())
            .ok_or_else(|| ApiError::NotReady(format!("the model {name} was unloaded")))
    }

    /// The settings `name` would run with under `req`.
    pub fn settings(&self, name: &str, req: &LoadRequest) -> Settings {
        let defaults = self.config.defaults.get(name);
        Settings {
            ctx: req
                .ctx
                .or_else(|| defaults.and_then(|d| d.context).map(|c| c as usize))
                .unwrap_or(self.config.ctx),
            slots: self.config.slots,
            gpu_layers: req
                .gpu_layers
                .or_else(|| defaults.and_then(|d| d.gpu_layers))
                .unwrap_or(self.config.gpu_layers),
            ttl: req
                .ttl
                .or_else(|| defaults.and_then(|d| d.ttl).map(|t| t.as_std()))
                .or(self.config.ttl),
        }
    }

    /// Check the blob and read its header; off the async threads (it hashes on first use).
    async fn resolve(self: &Arc<Self>, name: &str) -> Result<(PathBuf, Shape), ApiError> {
        let this = self.clone();
        let owned = name.to_string();
        let verified =
            tokio::task::spawn_blocking(move || this.cache.resolve(&owned, Check::Quick))
                .await
                .map_err(|e| ApiError::NotReady(format!("the model check stopped: {e}")))?
                .map_err(|e| resolve_error(name, e))?;
        let path = verified.path.clone();
        let header = tokio::task::spawn_blocking(move || super::gguf::parse_file(&path))
            .await
            .map_err(|e| ApiError::NotReady(format!("the header check stopped: {e}")))?
            .map_err(|e| ApiError::NotReady(format!("the model {name}: {e}")))?;
        let shape = Shape::of(&header)
            .map_err(|e| ApiError::NotReady(format!("cannot estimate the model {name}: {e}")))?;
        Ok((verified.path, shape))
    }

    /// The estimate for `name` under `req`, weighed against the free memory, loading
    /// nothing.
    pub async fn weigh(
        self: &Arc<Self>,
        name: &str,
        req: &LoadRequest,
    ) -> Result<Weighed, LoadError> {
        let (_, shape) = self.resolve(name).await?;
        let settings = self.settings(name, req);
        let in_use = {
            let entries = self.entries();
            entries
                .iter()
                .filter(|(n, _)| n.as_str() != name)
                .fold(0u64, |s, (_, e)| s.saturating_add(e.holds()))
        };
        Ok(self.weighed(name, &shape, settings, in_use))
    }

    fn weighed(&self, name: &str, shape: &Shape, settings: Settings, in_use: u64) -> Weighed {
        let needed = estimate(
            shape,
            settings.ctx as u64,
            settings.slots as u64,
            self.config.batch as u64,
        );
        let available = (self.config.budget)(settings.gpu_layers, shape.layers);
        let refusal = available.check(name, &needed, in_use).err();
        Weighed {
            model: name.to_string(),
            settings,
            needed,
            free_bytes: available.total().saturating_sub(in_use),
            available,
            in_use_bytes: in_use,
            fits: refusal.is_none(),
            refusal,
        }
    }

    /// Load `name` (idempotent: loaded with the same context and offload is success, and a
    /// TTL given replaces the old one; with none the old one stays). Refused with the
    /// numbers when the estimate does not fit the free memory, unless forced. Returns once
    /// the engine thread runs.
    pub async fn load(self: &Arc<Self>, name: &str, req: LoadRequest) -> Result<Loaded, LoadError> {
        let (path, shape) = self.resolve(name).await?;
        let settings = self.settings(name, &req);
        let mut entries = self.entries();
        if let Some(e) = entries.get(name) {
            let failed = matches!(&*e.handle.state.borrow(), ModelState::Failed(_));
            if !failed {
                if e.settings.ctx != settings.ctx || e.settings.gpu_layers != settings.gpu_layers {
                    return Err(LoadError::Conflict(format!(
                        "the model {name} is loaded with context {} and gpu_layers {}, not context {} and gpu_layers {}; unload it first (`sovereign model unload {name}`)",
                        e.settings.ctx, e.settings.gpu_layers, settings.ctx, settings.gpu_layers
                    )));
                }
                // A TTL given replaces the old one; none given keeps it.
                let e = Entry::clone_with_ttl(e, req.ttl.or(e.settings.ttl));
                let in_use = entries
                    .iter()
                    .filter(|(n, _)| n.as_str() != name)
                    .fold(0u64, |s, (_, e)| s.saturating_add(e.holds()));
                let weighed = self.weighed(name, &shape, e.settings.clone(), in_use);
                entries.insert(name.to_string(), Arc::new(e));
                return Ok(Loaded {
                    weighed,
                    already_loaded: true,
                    evicted: Vec::new(),
                });
            }
            entries.remove(name);
        }
        // The least recently used models that must go for this one to stay within
        // --max-loaded, idle ones before busy ones.
        let mut victims: Vec<(String, (bool, std::cmp::Reverse<Duration>))> = entries
            .iter()
            .map(|(n, e)| (n.clone(), (e.in_flight() > 0, std::cmp::Reverse(e.idle()))))
            .collect();
        victims.sort_by_key(|v| v.1);
        let excess = self
            .config
            .max_loaded
            .map_or(0, |max| (entries.len() + 1).saturating_sub(max.max(1)));
        victims.truncate(excess);
        let in_use = entries
            .iter()
            .filter(|(n, _)| !victims.iter().any(|(v, _)| v == *n))
            .fold(0u64, |s, (_, e)| s.saturating_add(e.holds()));
        let weighed = self.weighed(name, &shape, settings.clone(), in_use);
        if !weighed.fits {
            if !req.force {
                return Err(LoadError::NoFit(Box::new(weighed)));
            }
            tracing::warn!(model = name, "loading past the memory estimate (forced)");
        }
        let evicted: Vec<String> = victims.into_iter().map(|(n, _)| n).collect();
        for v in &evicted {
            entries.remove(v);
            tracing::info!(model = %v, "unloaded: --max-loaded reached");
        }
        tracing::info!(model = name, path = %path.display(), ctx = settings.ctx, "starting the engine");
        let handle = (self.start)(name, path, &settings)
            .map_err(|e| ApiError::NotReady(format!("cannot start the engine: {e}")))?;
        let entry = Entry {
            capacity: handle.permits.available_permits(),
            handle,
            settings,
            estimate: weighed.needed,
            loaded_at: SystemTime::now(),
            last_used: Mutex::new(Instant::now()),
        };
        entries.insert(name.to_string(), Arc::new(entry));
        Ok(Loaded {
            weighed,
            already_loaded: false,
            evicted,
        })
    }

    /// Unload `name`; false when it was not loaded. Requests in flight finish first.
    pub fn unload(&self, name: &str) -> bool {
        let gone = self.entries().remove(name).is_some();
        if gone {
            tracing::info!(model = name, "unloaded");
        }
        gone
    }

    /// Unload every model; returns their names.
    pub fn unload_all(&self) -> Vec<String> {
        let gone = std::mem::take(&mut *self.entries());
        gone.into_keys().collect()
    }

    /// Unload the models idle past their TTL; returns their names. A model with requests
    /// in flight is not idle: its idle time starts again.
    pub fn reap(&self) -> Vec<String> {
        let mut entries = self.entries();
        let expired: Vec<String> = entries
            .iter()
            .filter_map(|(name, e)| {
                let ttl = e.settings.ttl?;
                if e.in_flight() > 0 {
                    e.touch();
                    return None;
                }
                (e.idle() >= ttl).then(|| name.clone())
            })
            .collect();
        for name in &expired {
            entries.remove(name);
            tracing::info!(model = %name, "unloaded: idle past its TTL");
        }
        expired
    }
}

impl Entry {
    /// The same engine with a new TTL, used just now.
    fn clone_with_ttl(e: &Entry, ttl: Option<Duration>) -> Entry {
        Entry {
            handle: e.handle.clone(),
            settings: Settings {
                ttl,
                ..e.settings.clone()
            },
            estimate: e.estimate,
            capacity: e.capacity,
            loaded_at: e.loaded_at,
            last_used: Mutex::new(Instant::now()),
        }
    }
}

/// The HTTP answer for a model the cache cannot hand out.
fn resolve_error(name: &str, e: ResolveError) -> ApiError {
    match e {
        ResolveError::NotFound { .. } => ApiError::UnknownModel(name.to_string()),
        ResolveError::InvalidName(e) => ApiError::bad("model", e.to_string()),
        other => ApiError::NotReady(other.to_string()),
    }
}
