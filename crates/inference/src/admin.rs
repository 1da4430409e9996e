//! The daemon's admin API under `/v1/sovereign/`, behind the same Bearer key as the rest:
//! load (or only weigh) a cached model, unload one or all, list the loaded models, and the
//! daemon's status. Errors keep OpenAI's shape; a load that would not fit is 409 with the
//! estimate and the free memory under `error.details`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::catalog::{Catalog, LoadError, LoadRequest};
use super::error::ApiError;
use super::job::ModelState;
use super::model_options::{CTX_RANGE, GpuLayers};
use super::server::ServerState;
use crate::units::Duration as TextDuration;

type AppState = Arc<ServerState>;

/// `POST /v1/sovereign/models/load`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadBody {
    model: String,
    /// Context length per slot; `ctx`, the old spelling, is read too.
    #[serde(default, alias = "ctx")]
    context: Option<u32>,
    #[serde(default)]
    gpu_layers: Option<GpuLayers>,
    #[serde(default)]
    ttl: Option<TextDuration>,
    #[serde(default)]
    estimate_only: bool,
    #[serde(default)]
    force: bool,
}

/// `POST /v1/sovereign/models/unload`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UnloadBody {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    all: bool,
}

/// The body as the typed request, with the daemon's own rejections (413 past the limit).
async fn body<T: serde::de::DeserializeOwned>(
    state: &ServerState,
    raw: Body,
) -> Result<T, ApiError> {
    let value = super::server::json_body(state, raw).await?;
    serde_json::from_value(value).map_err(|e| ApiError::BadRequest {
        message: format!("the body is not a valid request: {e}"),
        param: None,
    })
}

fn catalog(state: &ServerState) -> Result<&Arc<Catalog>, ApiError> {
    state.catalog.as_ref().ok_or_else(|| {
        ApiError::bad(
            "model",
            "this daemon serves fixed models (--model NAME=PATH); loading and unloading need the model cache (serve without --model)",
        )
    })
}

/// A load error as an HTTP answer.
fn load_error(e: LoadError) -> Response {
    match e {
        LoadError::Api(e) => e,
        LoadError::NoFit(w) => ApiError::InsufficientMemory {
            message: w.refusal.clone().unwrap_or_default(),
            details: serde_json::to_value(&*w).unwrap_or_default(),
        },
        LoadError::Conflict(message) => ApiError::LoadedWithOtherOptions(message),
    }
    .into_response()
}

pub async fn load(State(state): State<AppState>, raw: Body) -> Response {
    let req: LoadBody = match body(&state, raw).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if let Some(context) = req.context {
        if !CTX_RANGE.contains(&context) {
            return ApiError::bad(
                "context",
                format!(
                    "context {context} is outside {}..={}",
                    CTX_RANGE.start(),
                    CTX_RANGE.end()
                ),
            )
            .into_response();
        }
    }
    if let Some(why) = req
        .ttl
        .and_then(|t| super::limits::ttl_problem("ttl", t.as_std()))
    {
        return ApiError::bad("ttl", why).into_response();
    }
    if state.catalog.is_none() && state.models.contains_key(&req.model) && !req.estimate_only {
        // Fixed models are loaded for the daemon's life: loading one is already done.
        return axum::Json(json!({"model": req.model, "already_loaded": true})).into_response();
    }
    let catalog = match catalog(&state) {
        Ok(c) => c.clone(),
        Err(e) => return e.into_response(),
    };
    let load = LoadRequest {
        ctx: req.context.map(|c| c as usize),
        gpu_layers: req.gpu_layers,
        ttl: req.ttl.map(TextDuration::as_std),
        force: req.force,
    };
    if req.estimate_only {
        return match catalog.weigh(&req.model, &load).await {
            Ok(w) => axum::Json(w).into_response(),
            Err(e) => load_error(e),
        };
    }
    let loaded = match catalog.load(&req.model, load).await {
        Ok(l) => l,
        Err(e) => return load_error(e),
    };
    // Answer once the model is ready, so `model load` means usable.
    if let Some((_, handle)) = catalog.started().into_iter().find(|(n, _)| n == &req.model) {
        let mut ready = handle.state.clone();
        let _ = ready.wait_for(|s| !matches!(s, ModelState::Loading)).await;
        let failed = match &*handle.state.borrow() {
            ModelState::Failed(why) => Some(why.clone()),
            _ => None,
        };
        if let Some(why) = failed {
            catalog.unload(&req.model);
            return ApiError::NotReady(format!("the model {} failed to load: {why}", req.model))
                .into_response();
        }
    }
    axum::Json(loaded).into_response()
}

pub async fn unload(State(state): State<AppState>, raw: Body) -> Response {
    let req: UnloadBody = match body(&state, raw).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let catalog = match catalog(&state) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    match (req.model, req.all) {
        (None, true) => axum::Json(json!({"unloaded": catalog.unload_all()})).into_response(),
        (Some(name), false) => {
            if catalog.unload(&name) {
                axum::Json(json!({"unloaded": [name]})).into_response()
            } else {
                ApiError::NotLoaded(name).into_response()
            }
        }
        _ => ApiError::bad("model", "give either \"model\" or \"all\": true").into_response(),
    }
}

/// Fixed models (`--model NAME=PATH`) as `ps` lists them: always loaded, no TTL.
fn fixed(state: &ServerState) -> Vec<Value> {
    state
        .models
        .iter()
        .map(|(name, h)| {
            let st = match &*h.state.borrow() {
                ModelState::Loading => "loading",
                ModelState::Ready(_) => "ready",
                ModelState::Failed(_) => "failed",
            };
            json!({"name": name, "state": st, "slots": h.slots, "fixed": true})
        })
        .collect()
}

pub async fn models(State(state): State<AppState>) -> Response {
    let mut models: Vec<Value> = fixed(&state);
    if let Some(c) = &state.catalog {
        models.extend(
            c.status()
                .into_iter()
                .filter_map(|m| serde_json::to_value(m).ok()),
        );
    }
    // The Cards each model serves, and their adapter sets (decoded a step at a time each).
    for m in &mut models {
        let name = m["name"].as_str().unwrap_or_default().to_string();
        let on: Vec<&std::sync::Arc<super::card_request::ServedCard>> =
            state.cards.values().filter(|c| c.base == name).collect();
        m["cards"] = json!(on.iter().map(|c| &c.name).collect::<Vec<_>>());
        m["adapter_sets"] = json!(
            on.iter()
                .filter_map(|c| c.adapter_set.as_ref())
                .collect::<Vec<_>>()
        );
    }
    axum::Json(json!({"models": models})).into_response()
}

/// The served Cards: each with its file, base, adapters and adapter set, its sampling as its
/// requests get it, and its response constraint (what `sovereign card ls|show|test` read).
pub async fn cards(State(state): State<AppState>) -> Response {
    let cards: Vec<Value> = state
        .cards
        .values()
        .map(|c| {
            let sampling: serde_json::Map<String, Value> = c
                .card
                .sampling()
                .into_iter()
                .map(|s| (s.key.to_string(), s.value))
                .collect();
            json!({
                "name": c.name,
                "file": c.card.path,
                "base": {"model": c.card.spec.base.model, "sha256": c.card.spec.base.sha256, "served_as": c.base},
                "adapters": c.card.spec.adapters,
                "adapter_set": c.adapter_set,
                "description": c.card.spec.description,
                "sampling": sampling,
                "sampling_locked": c.card.spec.sampling_locked,
                "response": c.card.spec.response,
            })
        })
        .collect();
    axum::Json(json!({"cards": cards})).into_response()
}

pub async fn status(State(state): State<AppState>) -> Response {
    let mut body = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "fixed_models": state.models.keys().collect::<Vec<_>>(),
    });
    if let Some(c) = &state.catalog {
        let cfg = c.config();
        let names = tokio::task::spawn_blocking({
            let c = c.clone();
            move || c.names()
        })
        .await
        .unwrap_or_default();
        let loaded = c.status().len();
        // The budget at the default offload; a model loaded with another may see another.
        let budget = (cfg.budget)(cfg.gpu_layers, u64::MAX);
        let in_use = c.in_use_bytes();
        body["uptime_seconds"] = json!(c.uptime().as_secs_f64());
        body["models"] = json!({
            "loaded": loaded,
            "cached": names.len(),
            "max_loaded": cfg.max_loaded,
        });
        body["defaults"] = json!({
            "slots": cfg.slots,
            "context": cfg.ctx,
            "gpu_layers": cfg.gpu_layers,
            "ttl_seconds": cfg.ttl.map(|t: Duration| t.as_secs_f64()),
        });
        body["memory"] = json!({
            "kind": budget.kind,
            "devices": budget.devices,
            "total_bytes": budget.total(),
            "in_use_bytes": in_use,
            "free_bytes": budget.total().saturating_sub(in_use),
        });
    }
    axum::Json(body).into_response()
}
