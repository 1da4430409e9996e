//! Models served from the cache by name: each is checked (size, recorded hash, header) and its
//! engine started on the first request for it, or at start when preloaded.
//!
//! One cell per model name: a request waits only on the model it asked for, so a model
//! that is loading never holds up requests for another.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::cache::{Cache, Check, ResolveError};
use super::error::ApiError;
use super::job::EngineHandle;

/// Starts an engine for a verified blob: `(name, path)`. The daemon passes its llama.cpp
/// engine; the closure must not block for the load itself (the engine loads on its thread).
pub type StartEngine = dyn Fn(&str, PathBuf) -> std::io::Result<EngineHandle> + Send + Sync;

/// The cache's models, started lazily.
pub struct Catalog {
    /// Where the names and blobs come from.
    cache: Cache,
    /// How an engine is started once a blob passed its checks.
    start: Box<StartEngine>,
    /// One cell per model that passed resolve at least once; filled when its engine started.
    engines: Mutex<BTreeMap<String, Arc<OnceCell<EngineHandle>>>>,
}

impl Catalog {
    pub fn new(cache: Cache, start: Box<StartEngine>) -> Self {
        Catalog {
            cache,
            start,
            engines: Mutex::new(BTreeMap::new()),
        }
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

    /// The engines started so far, by name.
    pub fn started(&self) -> Vec<(String, EngineHandle)> {
        let engines = self.engines.lock().unwrap_or_else(|p| p.into_inner());
        engines
            .iter()
            .filter_map(|(n, c)| c.get().map(|h| (n.clone(), h.clone())))
            .collect()
    }

    /// The engine for `name`, started now if this is the first request for it. The blob is
    /// checked with [`Check::Quick`] first; a blob that fails never reaches the engine.
    /// Returns as soon as the engine thread runs: the caller waits for it to be ready.
    pub async fn engine(self: &Arc<Self>, name: &str) -> Result<EngineHandle, ApiError> {
        if let Some(h) = self.cell(name, false).and_then(|c| c.get().cloned()) {
            return Ok(h);
        }
        let this = self.clone();
        let owned = name.to_string();
        let verified =
            tokio::task::spawn_blocking(move || this.cache.resolve(&owned, Check::Quick))
                .await
                .map_err(|e| ApiError::NotReady(format!("the model check stopped: {e}")))?
                .map_err(|e| resolve_error(name, e))?;
        let cell = self.cell(name, true).expect("inserted");
        let handle = cell
            .get_or_try_init(|| async {
                tracing::info!(model = name, path = %verified.path.display(), "starting the engine");
                (self.start)(name, verified.path.clone())
                    .map_err(|e| ApiError::NotReady(format!("cannot start the engine: {e}")))
            })
            .await?;
        Ok(handle.clone())
    }

    /// The cell for `name`; with `insert`, made if missing (only for names that resolved, so
    /// requests for names not in the cache leave nothing behind).
    fn cell(&self, name: &str, insert: bool) -> Option<Arc<OnceCell<EngineHandle>>> {
        let mut engines = self.engines.lock().unwrap_or_else(|p| p.into_inner());
        if insert {
            Some(engines.entry(name.to_string()).or_default().clone())
        } else {
            engines.get(name).cloned()
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
