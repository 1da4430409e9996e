//! The profile's `[inference]` section: the daemon's options and the models it serves.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::profile::units::Duration;

/// `[inference] ctx`, the old spelling of `context`: the same schema, marked deprecated, so
/// that editors and `validate` read older profiles as serde does.
fn ctx_alias_schema(schema: &mut schemars::Schema) {
    let Some(props) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) else {
        return;
    };
    if let Some(mut context) = props.get("context").cloned() {
        if let Some(obj) = context.as_object_mut() {
            obj.insert("deprecated".into(), true.into());
            obj.insert(
                "description".into(),
                "The old spelling of `context`; give one of the two.".into(),
            );
        }
        props.insert("ctx".into(), context);
    }
}

/// The systemd unit `[inference]` runs the daemon as (a `[services]` entry cannot take it).
pub const INFERENCE_UNIT: &str = "sovereign-inference";
/// The template the daemon's unit renders from: a `templates/` folder above the profile
/// may carry its own, otherwise the binary's copy is used.
pub const INFERENCE_UNIT_TEMPLATE: &str = "sovereign-inference.service.j2";
/// The per-model options file `[inference]` writes for the daemon (a `[files]` entry
/// cannot take it).
pub const INFERENCE_MODELS_FILE: &str = "/etc/sovereign/inference/models.toml";
/// The folder `[inference]` writes each Card into for the daemon, as `NAME.json` (a
/// `[files]` entry cannot take one).
pub const INFERENCE_CARDS_DIR: &str = "/etc/sovereign/inference/cards";

/// Where the daemon reads the Card `[inference.cards.NAME]` (a machine path: relocated
/// under `--root` like any managed file, named as is in the unit).
pub fn inference_card_file(name: &str) -> String {
    format!("{INFERENCE_CARDS_DIR}/{name}.json")
}

/// The cache name apply pulls adapter `index` of the Card `[inference.cards.NAME]` under
/// when the Card gives it by `source`: derived from the Card's name and the adapter's place
/// (never from its source, so that a new source for the same adapter replaces it), and
/// written into the Card the daemon reads as `{"model": ...}`. Injective: the suffix is the
/// index (a Card has at most 8 adapters), so two places never share a name. `validate`
/// refuses one that is not a model name (a long Card name) or that another model has.
pub fn card_adapter_model(card: &str, index: usize) -> String {
    format!("card-{card}-adapter-{index}")
}

/// The Card file `file = ...` names, as written in the profile file `declared_in`: a path
/// relative to that file's folder (as imports are), or an absolute one. Lexically cleaned,
/// as import paths are shown.
pub fn card_source_path(declared_in: &Path, file: &str) -> PathBuf {
    let dir = declared_in.parent().unwrap_or(Path::new(""));
    crate::profile::load::normalize(&dir.join(file))
}

/// The inference daemon (`sovereign serve`) and its models.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = ctx_alias_schema)]
pub struct Inference {
    /// The address the OpenAI-compatible API listens on. Default "127.0.0.1:8080". A
    /// non-loopback address needs `api_key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,

    /// A file holding the API key (mode 0600 or stricter). The key itself never appears in
    /// a profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_file: Option<String>,

    /// Concurrent sequences decoded together. The schema's description, default and range
    /// come from the daemon's own definition (`inference::limits::SLOTS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::inference::limits::slots_schema)]
    pub slots: Option<u32>,

    /// Context length per slot, in tokens: each model's default. The schema's
    /// description, default and range come from the daemon's own definition
    /// (`inference::limits::CONTEXT`). `ctx`, its old spelling, is still read.
    #[serde(default, alias = "ctx", skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::inference::limits::ctx_schema)]
    pub context: Option<u32>,

    /// CPU threads for the engine. Default: the number of physical cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::inference::limits::threads_schema)]
    pub threads: Option<u32>,

    /// Most models loaded at once; the least recently used is unloaded first. Default: no
    /// limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::inference::limits::max_loaded_schema)]
    pub max_loaded: Option<u32>,

    /// Deadline for a request's whole head. The schema's description, default and range come from the daemon's
    /// own definition (`inference::limits`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::inference::limits::bound_schema::<0>)]
    pub header_timeout: Option<Duration>,

    /// Deadline for a request's body and for a client that stops reading. The schema's description, default and range come from the daemon's
    /// own definition (`inference::limits`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::inference::limits::bound_schema::<1>)]
    pub body_timeout: Option<Duration>,

    /// Idle keep-alive timeout. The schema's description, default and range come from the daemon's
    /// own definition (`inference::limits`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::inference::limits::bound_schema::<2>)]
    pub idle_timeout: Option<Duration>,

    /// Connections served at once. The schema's description, default and range come from the daemon's
    /// own definition (`inference::limits`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::inference::limits::bound_schema::<3>)]
    pub max_connections: Option<u32>,

    /// Shutdown deadline for in-flight requests. The schema's description, default and range come from the daemon's
    /// own definition (`inference::limits`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::inference::limits::bound_schema::<4>)]
    pub shutdown_timeout: Option<Duration>,

    /// Time budget of one grammar compile. The schema's description, default and range come from the daemon's
    /// own definition (`inference::limits`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::inference::limits::bound_schema::<5>)]
    pub grammar_compile_timeout: Option<Duration>,

    /// Prefix reuse of the KV cache. The schema's description and default come from the
    /// daemon's own definition (`inference::limits::PROMPT_CACHE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::inference::limits::prompt_cache_schema)]
    pub prompt_cache: Option<bool>,

    /// Models to pull, verify and serve, keyed by the name clients use.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, ModelSpec>,

    /// Cards the daemon serves as models, keyed by the name clients use (the rule of model
    /// names; not a name of `models`). Each Card's base model, and each adapter named by
    /// `model`, must be one of `models`, so that apply puts it in the cache; an adapter
    /// given by `source` is pulled as the model `card-NAME-adapter-I`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cards: BTreeMap<String, CardSpec>,
}

/// A Card (a JSON file: base model, system prompt, sampling, a constraint on every
/// answer) the daemon serves under its name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CardSpec {
    /// The Card file: a path relative to the profile file that declares it, or an
    /// absolute one. `validate` checks it as `sovereign card show` does; apply writes it to
    /// /etc/sovereign/inference/cards/NAME.json, which the daemon's unit serves.
    pub file: String,
}

/// A model served by the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Where the GGUF file comes from: an https URL or a local absolute path.
    pub source: String,

    /// The file's sha256 (64 hex digits). A file that does not match is never served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-fA-F]{64}$"))]
    pub sha256: Option<String>,

    /// Context length to load the model with, in tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::inference::limits::context_schema)]
    pub context: Option<u32>,

    /// Layers to offload to the GPU: a number, or "auto" for as many as fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_layers: Option<GpuLayers>,

    /// Unload the model after this long without a request, e.g. "30m".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,

    /// Load at daemon start instead of on the first request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub preload: bool,
}

/// GPU offload: a layer count or "auto".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum GpuLayers {
    Count(u32),
    Auto(AutoKeyword),
}

/// The keyword "auto".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AutoKeyword {
    Auto,
}
