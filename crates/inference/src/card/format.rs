//! The Card file format as serde and schemars types: what a Card file says, before any rule
//! beyond its shape is checked. The JSON Schema (`sovereign schema --card`) is generated
//! from these types, and its ranges come from the daemon's own definitions
//! ([`crate::validate`], [`crate::limits`]), so the schema, the checks and the daemon agree.

use std::ops::RangeInclusive;
use std::sync::OnceLock;

use schemars::{JsonSchema, Schema, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::number;
use crate::validate::{self, Sampling};

/// Most adapters one Card stacks on its base model.
pub const MAX_ADAPTERS: usize = 8;
/// The scales an adapter may be applied with (0 turns it off, 1 is as trained).
pub const ADAPTER_SCALE: RangeInclusive<f64> = 0.0..=4.0;
/// The scale an adapter is applied with unless the Card says otherwise: as trained.
pub const ADAPTER_SCALE_DEFAULT: f64 = 1.0;
/// A sha256 as a Card writes it: 64 hexadecimal digits, either case.
pub const SHA256_PATTERN: &str = "^[0-9a-fA-F]{64}$";

/// A Card: one task's inference behaviour (base model, adapters, system prompt, sampling,
/// constrained output), checked before anything is served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "sovereign card")]
pub struct CardFile {
    /// The model the Card runs on: a name in the model cache, pinned by its sha256.
    pub base: Base,
    /// What the Card is for, in a sentence, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The system prompt every conversation of the Card starts with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Sampling parameters, each within the range the daemon accepts in a request; what is
    /// left out takes the daemon's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<CardSampling>,
    /// When true, a request may not override the Card's sampling. Default: false.
    #[serde(default)]
    pub sampling_locked: bool,
    /// What every answer of the Card is constrained to: exactly one of `json_schema` or
    /// `grammar`, checked as a request's `response_format` or `grammar` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Response>,
    /// LoRA adapters in GGUF applied over the base model, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("maxItems" = MAX_ADAPTERS))]
    pub adapters: Vec<Adapter>,
    /// A chat template (Jinja, like a GGUF's `tokenizer.chat_template`) used instead of
    /// the model's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Context length of each slot, in tokens, within the daemon's range. Default: the
    /// daemon's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::limits::context_schema)]
    pub context: Option<u32>,
}

/// The base model: a cache name and the digest it must have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Base {
    /// The model's name in the model cache (`sovereign model ls`).
    pub model: String,
    /// The sha256 the cached model must have (64 hexadecimal digits): a Card never runs on
    /// another file under the same name.
    #[schemars(transform = sha256_schema)]
    pub sha256: String,
}

/// Sampling parameters. Each range is the daemon's own for a request's parameter of the
/// same name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Sampling")]
pub struct CardSampling {
    /// Randomness of sampling; 0 is greedy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = temperature_schema)]
    pub temperature: Option<f64>,
    /// Nucleus sampling: keep the likeliest tokens whose probabilities add up to this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = top_p_schema)]
    pub top_p: Option<f64>,
    /// Keep only the k likeliest tokens; 0 turns it off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = top_k_schema)]
    pub top_k: Option<u32>,
    /// Drop tokens less likely than this fraction of the likeliest one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = min_p_schema)]
    pub min_p: Option<f64>,
    /// Penalty on tokens generated recently; 1 turns it off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = repeat_penalty_schema)]
    pub repeat_penalty: Option<f64>,
    /// Penalty on tokens that appeared at all, as OpenAI's API defines it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = presence_penalty_schema)]
    pub presence_penalty: Option<f64>,
    /// Penalty growing with how often a token appeared, as OpenAI's API defines it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = frequency_penalty_schema)]
    pub frequency_penalty: Option<f64>,
    /// Seed of the sampler, any integer (llama.cpp uses 32 bits; larger seeds fold into
    /// them). Default: a random seed per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "seed_schema")]
    pub seed: Option<i128>,
    /// Strings that end the answer when generated (not included in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = stop_schema)]
    pub stop: Option<Vec<String>>,
    /// The default generation budget in tokens. Default: what the context leaves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = max_tokens_schema)]
    pub max_tokens: Option<u32>,
}

/// The constraint on every answer: exactly one of the two keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = response_schema)]
pub struct Response {
    /// A JSON Schema the answer must be valid against, within the keywords and limits of a
    /// request's `response_format` of type `json_schema`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "json_schema_schema")]
    pub json_schema: Option<Value>,
    /// A grammar the answer must follow: GBNF, or Lark when it starts with `%llguidance`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grammar: Option<String>,
}

/// A LoRA adapter in GGUF: a cache name or a source, exactly one of the two.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = adapter_schema)]
pub struct Adapter {
    /// The adapter's name in the model cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Where the adapter comes from: an https:// or http:// URL, or an absolute path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The sha256 the adapter file must have (64 hexadecimal digits); required with
    /// `source`, optional with `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = sha256_schema)]
    pub sha256: Option<String>,
    /// How strongly the adapter is applied (0 turns it off, 1 is as trained).
    #[serde(default = "default_scale")]
    #[schemars(transform = scale_schema)]
    pub scale: f64,
}

fn default_scale() -> f64 {
    ADAPTER_SCALE_DEFAULT
}

/// The Card's JSON Schema (draft 2020-12, definitions under `$defs`, no nulls).
pub fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(crate::json_schema::schema_for::<CardFile>)
}

/// `minimum`, `maximum` and `default` of a number from its range and default, with the
/// range in the description for people.
fn bounded(schema: &mut Schema, min: Value, max: Value, default: Option<Value>) {
    if let Some(Value::String(d)) = schema.get_mut("description") {
        d.push_str(&format!(" From {} to {}.", number(&min), number(&max)));
        if let Some(default) = &default {
            d.push_str(&format!(" Default: {}.", number(default)));
        }
    }
    schema.insert("minimum".into(), min);
    schema.insert("maximum".into(), max);
    if let Some(default) = default {
        schema.insert("default".into(), default);
    }
}

fn float_range(schema: &mut Schema, range: &RangeInclusive<f32>, default: f32) {
    bounded(
        schema,
        json!(f64::from(*range.start())),
        json!(f64::from(*range.end())),
        Some(json!(f64::from(default))),
    );
}

fn temperature_schema(schema: &mut Schema) {
    float_range(
        schema,
        &validate::TEMPERATURE,
        Sampling::default().temperature,
    );
}
fn top_p_schema(schema: &mut Schema) {
    float_range(schema, &validate::TOP_P, Sampling::default().top_p);
}
fn top_k_schema(schema: &mut Schema) {
    let r = validate::TOP_K;
    let default = Sampling::default().top_k;
    bounded(
        schema,
        json!(r.start()),
        json!(r.end()),
        Some(json!(default)),
    );
}
fn min_p_schema(schema: &mut Schema) {
    float_range(schema, &validate::MIN_P, Sampling::default().min_p);
}
fn repeat_penalty_schema(schema: &mut Schema) {
    float_range(
        schema,
        &validate::REPEAT_PENALTY,
        validate::REPEAT_PENALTY_DEFAULT,
    );
}
fn presence_penalty_schema(schema: &mut Schema) {
    float_range(
        schema,
        &validate::PRESENCE_PENALTY,
        Sampling::default().presence_penalty,
    );
}
fn frequency_penalty_schema(schema: &mut Schema) {
    float_range(
        schema,
        &validate::FREQUENCY_PENALTY,
        Sampling::default().frequency_penalty,
    );
}
fn max_tokens_schema(schema: &mut Schema) {
    let r = validate::MAX_TOKENS;
    bounded(schema, json!(r.start()), json!(r.end()), None);
}
fn scale_schema(schema: &mut Schema) {
    bounded(
        schema,
        json!(ADAPTER_SCALE.start()),
        json!(ADAPTER_SCALE.end()),
        Some(json!(ADAPTER_SCALE_DEFAULT)),
    );
}

/// A request's seed: any integer an i64 or a u64 holds.
fn seed_schema(_: &mut schemars::SchemaGenerator) -> Schema {
    json_schema!({
        "type": "integer",
        "minimum": i64::MIN,
        "maximum": u64::MAX,
    })
}

/// The request's limits on stop strings. A string's limit is in bytes, which JSON Schema
/// cannot count (its `maxLength` counts characters): the description says it and the
/// Card's checks enforce it.
fn stop_schema(schema: &mut Schema) {
    if let Some(Value::String(d)) = schema.get_mut("description") {
        d.push_str(&format!(
            " At most {} strings of 1 to {} bytes.",
            validate::MAX_STOPS,
            validate::MAX_STOP_LEN
        ));
    }
    schema.insert("maxItems".into(), json!(validate::MAX_STOPS));
    schema.insert("items".into(), json!({"type": "string", "minLength": 1}));
}

fn sha256_schema(schema: &mut Schema) {
    schema.insert("pattern".into(), SHA256_PATTERN.into());
}

fn json_schema_schema(_: &mut schemars::SchemaGenerator) -> Schema {
    json_schema!({ "type": "object" })
}

/// `response`: exactly one of its two keys.
fn response_schema(schema: &mut Schema) {
    schema.insert(
        "oneOf".into(),
        json!([{"required": ["json_schema"]}, {"required": ["grammar"]}]),
    );
}

/// An adapter: exactly one of `model` and `source`, and a source pinned by its digest.
fn adapter_schema(schema: &mut Schema) {
    schema.insert(
        "oneOf".into(),
        json!([{"required": ["model"]}, {"required": ["source"]}]),
    );
    schema.insert("dependentRequired".into(), json!({"source": ["sha256"]}));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_come_from_the_daemon() {
        let s = schema();
        let t = &s["$defs"]["Sampling"]["properties"]["temperature"];
        assert_eq!(t["minimum"], json!(0.0));
        assert_eq!(t["maximum"], json!(2.0));
        assert_eq!(t["default"], json!(1.0));
        let k = &s["$defs"]["Sampling"]["properties"]["top_k"];
        assert_eq!(k["maximum"], json!(validate::MAX_TOP_K));
        let c = &s["properties"]["context"];
        let (lo, hi) = crate::limits::CONTEXT.kind.range();
        assert_eq!(
            (c["minimum"].as_u64(), c["maximum"].as_u64()),
            (Some(lo), Some(hi))
        );
    }

    #[test]
    fn the_schema_has_no_nulls_and_closes_every_object() {
        let s = schema();
        assert!(!s.to_string().contains("\"null\""), "{s}");
        assert_eq!(s["additionalProperties"], json!(false));
        for (name, def) in s["$defs"].as_object().unwrap() {
            assert_eq!(def["additionalProperties"], json!(false), "{name}");
        }
        assert_eq!(s["required"], json!(["base"]));
    }
}
