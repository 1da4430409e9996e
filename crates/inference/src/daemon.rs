//! Starting the daemon: the API key (file or environment, never argv), the loopback rule,
//! the engines, and serving until SIGTERM or Ctrl-C.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::model_options::ModelOptions;

/// Everything `sovereign serve` decides before starting.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub listen: SocketAddr,
    /// The key, already read and trimmed; `None` only on loopback.
    pub api_key: Option<String>,
    /// Served models: name and GGUF path.
    pub models: Vec<(String, PathBuf)>,
    /// Served Cards: name and Card file (`--card`).
    pub cards: Vec<(String, PathBuf)>,
    /// The root whose model cache holds every Card's base (`/` or `--root`).
    pub store: PathBuf,
    /// With no `models`: serve the model cache under this root, each model loaded on use.
    pub cache_root: Option<PathBuf>,
    /// Cached models to load at start rather than on their first request.
    pub preload: Vec<String>,
    pub slots: usize,
    pub ctx: usize,
    pub threads: usize,
    /// `None`: offload every layer the build can.
    pub gpu_layers: Option<u32>,
    pub mlock: bool,
    pub mmap: bool,
    /// Prefix reuse of the KV cache ([`super::limits::PROMPT_CACHE`]).
    pub prompt_cache: bool,
    /// Most cached models loaded at once (`--max-loaded`).
    pub max_loaded: Option<usize>,
    /// Idle TTL of cached models loaded without one (`--ttl`).
    pub ttl: Option<std::time::Duration>,
    /// Per-model defaults (`--models FILE`).
    pub model_defaults: BTreeMap<String, ModelOptions>,
    /// The memory budget instead of the detected one (`--memory-limit`, for tests).
    pub memory_limit: Option<u64>,
    /// Reads the machine's memory for the budget (without `memory_limit`), at start: the
    /// caller's hardware detection, since this crate detects nothing itself.
    pub detect_machine: fn() -> Result<super::estimate::Machine, String>,
    /// Deadlines, the connection cap and the compile budget.
    pub limits: super::limits::ServerLimits,
}

/// Read the key file, refusing one that group or others can read.
pub fn read_key_file(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read the API key file {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "the API key file {} has mode {mode:03o}, readable by others; run `chmod 600 {}`",
                path.display(),
                path.display()
            ));
        }
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the API key file {}: {e}", path.display()))?;
    non_empty_key(&text, &path.display().to_string())
}

/// The environment variable that may hold the API key.
pub const KEY_ENV: &str = "SOVEREIGN_API_KEY";

/// The API key from `file` (`--api-key-file`), else [`KEY_ENV`], else the file `fallback`
/// (systemd's credential for the daemon); `None` when none of them gives one.
pub fn resolve_key(file: Option<&Path>, fallback: Option<&Path>) -> Result<Option<String>, String> {
    if let Some(file) = file {
        return read_key_file(file).map(Some);
    }
    if let Ok(env) = std::env::var(KEY_ENV) {
        return non_empty_key(&env, KEY_ENV).map(Some);
    }
    fallback.map(read_key_file).transpose()
}

/// Trim surrounding whitespace and the final newline; an empty key is an error.
pub fn non_empty_key(raw: &str, origin: &str) -> Result<String, String> {
    let key = raw.trim();
    if key.is_empty() {
        return Err(format!("the API key from {origin} is empty"));
    }
    Ok(key.to_string())
}

/// Refuse to expose the API beyond this machine without a key.
pub fn check_listen(listen: &SocketAddr, has_key: bool) -> Result<(), String> {
    if !listen.ip().is_loopback() && !has_key {
        return Err(format!(
            "refusing to listen on {listen} without an API key: it is reachable from other machines; give --api-key-file FILE or SOVEREIGN_API_KEY, or listen on 127.0.0.1"
        ));
    }
    Ok(())
}

/// Load the engines and serve until SIGTERM or Ctrl-C; in-flight requests finish first.
#[cfg(feature = "engine")]
pub fn serve(opts: DaemonOptions) -> Result<(), String> {
    use super::metrics::Metrics;
    use super::server::{ApiKey, ServerState};
    use std::sync::Arc;

    check_listen(&opts.listen, opts.api_key.is_some())?;
    // A `--model` file gets the same header check as a cached one, before anything starts.
    for (name, path) in &opts.models {
        if !path.is_file() {
            return Err(format!("--model {name}={}: no such file", path.display()));
        }
        super::gguf::parse_file(path).map_err(|e| {
            format!(
                "--model {name}={}: not a valid GGUF file: {e}",
                path.display()
            )
        })?;
    }
    let names: Vec<String> = opts.models.iter().map(|(n, _)| n.clone()).collect();
    // Merged adapter files live as long as the process; the unit's private /tmp holds them.
    let scratch = std::env::temp_dir().join(format!("sovereign-adapters-{}", std::process::id()));
    let loaded = super::card_request::load_cards(&opts.cards, &opts.store, &names, &scratch)?;
    let sets = Arc::new(loaded.sets);
    fit_descriptors(opts.limits.max_connections as u64);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let served = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", opts.listen))?;
        let metrics = Arc::new(Metrics::default());
        let config = {
            let opts = opts.clone();
            let sets = sets.clone();
            Arc::new(
                move |name: &str, path: PathBuf| super::engine::EngineConfig {
                    path,
                    slots: opts.slots,
                    ctx: opts.ctx,
                    queue: opts.slots * 4,
                    threads: opts.threads,
                    gpu_layers: opts.gpu_layers,
                    mlock: opts.mlock,
                    mmap: opts.mmap,
                    batch: super::limits::batch_for(opts.slots),
                    prompt_cache: opts.prompt_cache,
                    adapters: sets.get(name).cloned().unwrap_or_default(),
                },
            )
        };
        let mut models = BTreeMap::new();
        for (name, path) in opts.models.iter().chain(&loaded.engines) {
            let handle = super::engine::spawn(name, config(name, path.clone()), metrics.clone())
                .map_err(|e| format!("cannot start the engine thread: {e}"))?;
            models.insert(name.clone(), handle);
        }
        let catalog = match &opts.cache_root {
            Some(root) => {
                let cache = super::cache::Cache::open(root).map_err(|e| format!("{e:#}"))?;
                let engine_metrics = metrics.clone();
                let base = config.clone();
                let start = move |name: &str, path: PathBuf, s: &super::catalog::Settings| {
                    let mut cfg = base(name, path);
                    cfg.ctx = s.ctx;
                    cfg.gpu_layers = s.gpu_layers.as_option();
                    super::engine::spawn(name, cfg, engine_metrics.clone())
                };
                let catalog = Arc::new(super::catalog::Catalog::new(
                    cache,
                    Box::new(start),
                    catalog_config(&opts)?,
                ));
                let preload = opts.preload.iter().map(|n| (n, "--preload")).chain(
                    opts.model_defaults
                        .iter()
                        .filter(|(_, o)| o.preload)
                        .map(|(n, _)| (n, "preload in --models")),
                );
                for (name, origin) in preload {
                    catalog
                        .load(name, super::catalog::LoadRequest::default())
                        .await
                        .map_err(|e| format!("{origin} {name}: {}", e.into_api().message()))?;
                }
                tokio::spawn(reap_idle(Arc::downgrade(&catalog)));
                Some(catalog)
            }
            None => None,
        };
        let served = match &catalog {
            Some(c) => format!("the model cache, {} model(s)", c.names().len()),
            None => format!("{} model(s)", opts.models.len()),
        };
        let state = Arc::new(ServerState {
            log_requests: true,
            cards: loaded
                .cards
                .into_iter()
                .map(|c| (c.name.clone(), Arc::new(c)))
                .collect(),
            ..ServerState::new(
                models,
                catalog,
                opts.api_key.as_deref().map(ApiKey::new),
                metrics,
                opts.limits.clone(),
            )
        });
        eprintln!(
            "sovereign serve: listening on http://{} ({served}, {} slots of {} tokens)",
            // The bound address: with port 0 the kernel picked one.
            listener.local_addr().unwrap_or(opts.listen),
            opts.slots,
            opts.ctx
        );
        super::server::run(listener, state, shutdown_signal())
            .await
            .map_err(|e| format!("server error: {e}"))?;
        eprintln!("sovereign serve: stopped");
        Ok(())
    });
    // Blocking tasks still running (a model check, a catalog scan) must not hold the exit.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    served
}

/// Raise the soft descriptor limit towards what `max_connections` needs (the hard limit
/// caps it), and warn when even that is short: past it, accept fails and every client
/// waits, `/health` included.
#[cfg(feature = "engine")]
fn fit_descriptors(max_connections: u64) {
    let need = super::limits::nofile_for(max_connections);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    if lim.rlim_cur >= need {
        return;
    }
    let raised = libc::rlimit {
        rlim_cur: need.min(lim.rlim_max),
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads the struct it is given; lowering nothing, raising the soft
    // limit within the hard one is always allowed.
    let ok = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0;
    let now = if ok { raised.rlim_cur } else { lim.rlim_cur };
    if now < need {
        eprintln!(
            "sovereign serve: warning: --max-connections {max_connections} needs {need} file descriptors but the limit is {now}; raise it (LimitNOFILE=, ulimit -n) or lower --max-connections"
        );
    }
}

/// Unload the models idle past their TTL, twice a second, while the catalog lives.
#[cfg(feature = "engine")]
async fn reap_idle(catalog: std::sync::Weak<super::catalog::Catalog>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    loop {
        tick.tick().await;
        let Some(catalog) = catalog.upgrade() else {
            return;
        };
        catalog.reap();
    }
}

/// The catalog's defaults and the memory budget: `--memory-limit`, else what hardware
/// detection finds at start (VRAM when the build offloads, unified memory on Apple Silicon,
/// else the RAM available).
#[cfg(feature = "engine")]
fn catalog_config(opts: &DaemonOptions) -> Result<super::catalog::CatalogConfig, String> {
    use super::estimate::{Budget, Offload};
    use super::model_options::GpuLayers;
    let budget: std::sync::Arc<dyn Fn(GpuLayers, u64) -> Budget + Send + Sync> =
        match opts.memory_limit {
            Some(bytes) => std::sync::Arc::new(move |_, _| Budget::limit(bytes)),
            None => {
                let machine = (opts.detect_machine)()
                    .map_err(|e| format!("cannot detect the machine's memory: {e}"))?;
                let offloads = super::engine::backend()?.supports_gpu_offload();
                std::sync::Arc::new(move |layers: GpuLayers, n_layer: u64| {
                    let offload = match layers {
                        _ if !offloads => Offload::None,
                        GpuLayers::Auto => Offload::Full,
                        GpuLayers::Count(0) => Offload::None,
                        GpuLayers::Count(n) if u64::from(n) >= n_layer => Offload::Full,
                        GpuLayers::Count(_) => Offload::Partial,
                    };
                    Budget::of(&machine, offload)
                })
            }
        };
    Ok(super::catalog::CatalogConfig {
        slots: opts.slots,
        ctx: opts.ctx,
        batch: super::limits::batch_for(opts.slots),
        gpu_layers: opts.gpu_layers.map_or(GpuLayers::Auto, GpuLayers::Count),
        ttl: opts.ttl,
        max_loaded: opts.max_loaded,
        budget,
        defaults: opts.model_defaults.clone(),
    })
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests build their own files
mod tests {
    use super::*;

    #[test]
    fn non_loopback_needs_a_key() {
        assert!(
            check_listen(&"0.0.0.0:8080".parse().unwrap(), false)
                .unwrap_err()
                .contains("without an API key")
        );
        assert!(check_listen(&"0.0.0.0:8080".parse().unwrap(), true).is_ok());
        assert!(check_listen(&"127.0.0.1:8080".parse().unwrap(), false).is_ok());
        assert!(check_listen(&"[::1]:8080".parse().unwrap(), false).is_ok());
    }

    #[test]
    fn key_file_must_be_private_and_is_trimmed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        std::fs::write(&p, "  s3cret \n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_key_file(&p).unwrap_err();
        assert!(e.contains("644") && e.contains("chmod 600"), "{e}");
        assert!(!e.contains("s3cret"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_key_file(&p).unwrap(), "s3cret");
        std::fs::write(&p, "\n").unwrap();
        assert!(read_key_file(&p).is_err());
    }
}
