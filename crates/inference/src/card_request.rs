//! What a served Card does to a request that names it as its `model`: the Card's system
//! prompt comes first, its sampling fills what the request leaves out (or, locked, refuses
//! what the request sets), its response constraint binds every answer, its template and
//! context replace the model's. The request then runs on the Card's base model.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::card::Card;
use super::error::ApiError;
use super::template::ChatMessage;
use super::validate::{ParsedRequest, Prompt, fold_seed};

/// A Card the daemon serves under `name`, on the served model `base`.
#[derive(Debug, Clone)]
pub struct ServedCard {
    /// The name clients give as `model`.
    pub name: String,
    /// The served model it runs on.
    pub base: String,
    /// The checked Card.
    pub card: Card,
}

/// Request parameters that set sampling: a locked Card refuses each of them.
const SAMPLING_PARAMS: &[&str] = &[
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "seed",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
    "stop",
    "max_tokens",
    "max_completion_tokens",
];

/// A request with its Card applied, and what formatting it needs from the Card.
#[derive(Debug)]
pub struct CardRequest {
    pub parsed: ParsedRequest,
    /// The Card's chat template instead of the model's.
    pub template: Option<String>,
    /// The Card's context: prompt and answer must fit it (and the slot).
    pub context: Option<usize>,
}

/// Apply `served` to `parsed`, the request whose body was `body`.
pub fn apply(
    served: &ServedCard,
    mut parsed: ParsedRequest,
    body: &Map<String, Value>,
) -> Result<CardRequest, ApiError> {
    let spec = &served.card.spec;
    let given = |k: &str| body.get(k).is_some_and(|v| !v.is_null());
    if spec.sampling_locked {
        let set: Vec<&str> = SAMPLING_PARAMS
            .iter()
            .copied()
            .filter(|k| given(k))
            .collect();
        if let Some(first) = set.first() {
            return Err(ApiError::bad(
                first,
                format!(
                    "the Card {:?} locks its sampling: remove {} from the request",
                    served.name,
                    set.join(", ")
                ),
            ));
        }
    }
    if let Some(s) = &spec.sampling {
        let t = &mut parsed.sampling;
        let f = |v: Option<f64>| v.map(|v| v as f32);
        if !given("temperature") {
            t.temperature = f(s.temperature).unwrap_or(t.temperature);
        }
        if !given("top_p") {
            t.top_p = f(s.top_p).unwrap_or(t.top_p);
        }
        if !given("top_k") {
            t.top_k = s.top_k.map_or(t.top_k, |k| k as i32);
        }
        if !given("min_p") {
            t.min_p = f(s.min_p).unwrap_or(t.min_p);
        }
        if !given("repeat_penalty") {
            t.repeat_penalty = f(s.repeat_penalty).unwrap_or(t.repeat_penalty);
        }
        if !given("presence_penalty") {
            t.presence_penalty = f(s.presence_penalty).unwrap_or(t.presence_penalty);
        }
        if !given("frequency_penalty") {
            t.frequency_penalty = f(s.frequency_penalty).unwrap_or(t.frequency_penalty);
        }
        if !given("seed") {
            // The Card's check kept the seed within what a request may give.
            t.seed = s.seed.map(|v| fold_seed(v as i64)).or(t.seed);
        }
        if !given("stop") {
            if let Some(stop) = &s.stop {
                parsed.stop = stop.clone();
            }
        }
        if !given("max_tokens") && !given("max_completion_tokens") {
            parsed.max_tokens = s.max_tokens.map(|m| m as usize).or(parsed.max_tokens);
        }
    }
    if let Some(card) = &served.card.constraint {
        match &parsed.constraint {
            Some(own) if own != card => {
                let param = if given("grammar") {
                    "grammar"
                } else {
                    "response_format"
                };
                return Err(ApiError::bad(
                    param,
                    format!(
                        "the Card {:?} constrains every answer to its own response; remove {param} from the request (or give exactly the Card's)",
                        served.name
                    ),
                ));
            }
            _ => parsed.constraint = Some(card.clone()),
        }
    }
    if let Some(system) = &spec.system {
        match &mut parsed.prompt {
            Prompt::Chat(messages) => messages.insert(
                0,
                ChatMessage {
                    role: "system".into(),
                    content: system.clone(),
                },
            ),
            // A completion has no roles: the system prompt and a blank line come first.
            Prompt::Text(text) => *text = format!("{system}\n\n{text}"),
        }
    }
    Ok(CardRequest {
        parsed,
        template: spec.template.clone(),
        context: spec.context.map(|c| c as usize),
    })
}

/// The Card as `/v1/models` lists it: the model object with its base and adapters.
pub fn model_object(served: &ServedCard, created: u64) -> Value {
    let spec = &served.card.spec;
    let adapters: Vec<Value> = spec
        .adapters
        .iter()
        .map(|a| serde_json::to_value(a).unwrap_or(Value::Null))
        .collect();
    serde_json::json!({
        "id": served.name,
        "object": "model",
        "created": created,
        "owned_by": "sovereign",
        "metadata": {
            "kind": "card",
            "description": spec.description,
            "base": {"model": spec.base.model, "sha256": spec.base.sha256, "served_as": served.base},
            "adapters": adapters,
            "sampling_locked": spec.sampling_locked,
            "response": spec.response.is_some(),
        }
    })
}

/// Served Cards, and the bases to start as engines of their own (name, cached file).
pub type LoadedCards = (Vec<ServedCard>, Vec<(String, PathBuf)>);

/// The Cards `serve --card NAME=FILE` names, checked and resolved against the model cache
/// under `root`, and the models the daemon must start for them. `models` are the
/// `--model` names: empty when the daemon serves the cache, whose catalog then loads each
/// Card's base by name; with `--model`, each base is started from its cached file under its
/// cache name. Every error of every Card at once.
pub fn load_cards(
    cards: &[(String, PathBuf)],
    root: &Path,
    models: &[String],
) -> Result<LoadedCards, String> {
    let mut served = Vec::new();
    let mut engines: Vec<(String, PathBuf)> = Vec::new();
    let mut errors = Vec::new();
    for (name, path) in cards {
        if models.contains(name) {
            errors.push(format!(
                "--card {name}: a --model is served under that name; give the Card another"
            ));
            continue;
        }
        let card = match super::card::load(path) {
            Ok(card) => card,
            Err(e) => {
                errors.push(format!("--card {name}={}:\n{e}", path.display()));
                continue;
            }
        };
        if !card.spec.adapters.is_empty() {
            errors.push(card.error_at("/adapters", "this daemon does not apply LoRA adapters yet; serve the Card without its adapters".into()).to_string());
            continue;
        }
        let resolution = match super::card::resolve(&card, root) {
            Ok(r) => r,
            Err(e) => {
                errors.push(format!("--card {name}: cannot read the model cache: {e:#}"));
                continue;
            }
        };
        if !resolution.errors.is_empty() {
            errors.extend(resolution.errors.iter().map(ToString::to_string));
            continue;
        }
        let base = card.spec.base.model.clone();
        if !models.is_empty() {
            if models.contains(&base) {
                errors.push(card.error_at("/base/model", format!("the base {base:?} is also a --model name; a Card runs on the cached model of that name, so serve the --model under another")).to_string());
                continue;
            }
            if !engines.iter().any(|(n, _)| *n == base) {
                let cache = super::cache::Cache::open(root).map_err(|e| format!("{e:#}"))?;
                engines.push((base.clone(), cache.blob_path(&card.spec.base.sha256)));
            }
        }
        served.push(ServedCard {
            name: name.clone(),
            base,
            card,
        });
    }
    if errors.is_empty() {
        Ok((served, engines))
    } else {
        Err(errors.join("\n"))
    }
}
