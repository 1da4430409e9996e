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
    /// The adapter set its requests decode under ([`AdapterSet::name`]); `None`: the base.
    pub adapter_set: Option<String>,
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
    parsed.adapter_set = served.adapter_set.clone();
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

/// One adapter set: a LoRA adapter file (several adapters arrive merged into one) applied
/// at `scale`, named for the requests that use it (a served Card's name).
#[derive(Debug, Clone)]
pub struct AdapterSet {
    pub name: String,
    pub path: PathBuf,
    pub scale: f32,
}

/// What `serve --card` starts with.
#[derive(Debug, Default)]
pub struct LoadedCards {
    pub cards: Vec<ServedCard>,
    /// Bases to start as engines of their own (name, cached file), beside `--model`.
    pub engines: Vec<(String, PathBuf)>,
    /// Each base's adapter sets, loaded with it.
    pub sets: std::collections::BTreeMap<String, Vec<AdapterSet>>,
}

/// The Cards `serve --card NAME=FILE` names, checked and resolved against the model cache
/// under `root`, and the models and adapter sets the daemon must start for them. `models`
/// are the `--model` names: empty when the daemon serves the cache, whose catalog then
/// loads each Card's base by name; with `--model`, each base is started from its cached
/// file under its cache name. A Card's adapters are checked against its base before
/// llama.cpp reads them; several are merged into one file under `scratch`. Every error of
/// every Card at once.
pub fn load_cards(
    cards: &[(String, PathBuf)],
    root: &Path,
    models: &[String],
    scratch: &Path,
) -> Result<LoadedCards, String> {
    let mut out = LoadedCards::default();
    let mut errors = Vec::new();
    // Opened once, and only where it exists: checking Cards creates nothing.
    let cache = root
        .join(super::cache::MODELS_DIR)
        .is_dir()
        .then(|| super::cache::Cache::open(root))
        .transpose()
        .map_err(|e| format!("cannot read the model cache: {e:#}"))?;
    // Serving the cache, every cached name is a model clients can ask for: a Card of the
    // same name would hide it.
    let cached: Vec<String> = match &cache {
        Some(c) if models.is_empty() => c
            .list()
            .map_err(|e| format!("cannot read the model cache: {e:#}"))?
            .into_iter()
            .map(|e| e.manifest.name.to_string())
            .collect(),
        _ => Vec::new(),
    };
    for (name, path) in cards {
        if models.contains(name) {
            errors.push(format!(
                "--card {name}: a --model is served under that name; give the Card another"
            ));
            continue;
        }
        if cached.contains(name) {
            errors.push(format!(
                "--card {name}: the model cache has a model of that name, which the Card would hide; give the Card another"
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
        // The base was found in the cache, so the cache exists.
        let Some(cache) = &cache else { continue };
        let base = card.spec.base.model.clone();
        let base_file = cache.blob_path(&card.spec.base.sha256);
        let set = match adapter_set(name, &card, &resolution, cache, &base_file, scratch) {
            Ok(set) => set,
            Err(mut why) => {
                errors.append(&mut why);
                continue;
            }
        };
        if !models.is_empty() {
            if models.contains(&base) {
                errors.push(card.error_at("/base/model", format!("the base {base:?} is also a --model name; a Card runs on the cached model of that name, so serve the --model under another")).to_string());
                continue;
            }
            if !out.engines.iter().any(|(n, _)| *n == base) {
                out.engines.push((base.clone(), base_file));
            }
        }
        let adapter_set = set.as_ref().map(|s| s.name.clone());
        if let Some(set) = set {
            out.sets.entry(base.clone()).or_default().push(set);
        }
        out.cards.push(ServedCard {
            name: name.clone(),
            base,
            card,
            adapter_set,
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors.join("\n"))
    }
}

/// The adapter set Card `name` decodes under, `None` without adapters: each adapter is a
/// cached file checked against the base; one is applied at its scale, several are merged
/// into one file applied at scale 1 (llama-cpp-2 sets one adapter per context).
// The daemon's own scratch folder for merged adapters, under its private temp dir.
#[allow(clippy::disallowed_methods)]
fn adapter_set(
    name: &str,
    card: &Card,
    resolution: &super::card::Resolution,
    cache: &super::cache::Cache,
    base_file: &Path,
    scratch: &Path,
) -> Result<Option<AdapterSet>, Vec<String>> {
    let mut errors = Vec::new();
    let mut files = Vec::new();
    for (i, (adapter, cached)) in card
        .spec
        .adapters
        .iter()
        .zip(&resolution.adapters)
        .enumerate()
    {
        let at = format!("/adapters/{i}");
        let Some(super::card::Cached::Present { sha256 }) = cached else {
            let source = adapter.source.as_deref().unwrap_or_default();
            errors.push(card.error_at(&format!("{at}/source"), format!("the daemon serves adapters from the model cache only; pull it first: sovereign model pull {source} --name NAME, then give {{\"model\": NAME}}")).to_string());
            continue;
        };
        let file = cache.blob_path(sha256);
        if let Err(why) = super::adapter::check(base_file, &file) {
            errors.push(
                card.error_at(&at, format!("the adapter does not fit the base: {why}"))
                    .to_string(),
            );
            continue;
        }
        files.push((file, adapter.scale as f32));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    match files.len() {
        0 => Ok(None),
        1 => {
            let (path, scale) = files.remove(0);
            Ok(Some(AdapterSet {
                name: name.to_string(),
                path,
                scale,
            }))
        }
        _ => {
            let merged = scratch.join(format!("{name}.gguf"));
            std::fs::create_dir_all(scratch)
                .map_err(|e| vec![format!("cannot create {}: {e}", scratch.display())])?;
            sovereign_gguf::lora::merge(&files, &merged).map_err(|why| {
                vec![
                    card.error_at("/adapters", format!("the adapters cannot be merged: {why}"))
                        .to_string(),
                ]
            })?;
            Ok(Some(AdapterSet {
                name: name.to_string(),
                path: merged,
                scale: 1.0,
            }))
        }
    }
}

/// Whether `answer` follows a Card's `response`: parsed as JSON and validated against the
/// schema; a grammar is the daemon's to enforce while decoding (it compiles only there), so
/// an answer under one is reported as such, not re-checked.
pub fn check_answer(
    response: &super::card::Response,
    answer: &str,
) -> Result<&'static str, String> {
    let Some(schema) = &response.json_schema else {
        return Ok("constrained by the Card's grammar while decoding");
    };
    let value: Value = serde_json::from_str(answer)
        .map_err(|e| format!("the answer is not JSON ({e}): {answer:?}"))?;
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| format!("the Card's schema does not compile: {e}"))?;
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok("valid against the Card's JSON schema")
    } else {
        Err(format!(
            "the answer does not follow the Card's schema: {}",
            errors.join("; ")
        ))
    }
}
