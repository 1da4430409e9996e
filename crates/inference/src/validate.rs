//! Parse, don't validate: a request body becomes a [`ParsedRequest`] with every field
//! type-checked and bounded, and then, against the model, a [`ValidRequest`] with the prompt
//! tokenized and the context budget checked. Only a `ValidRequest` reaches the engine.

use std::ops::RangeInclusive;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::error::ApiError;
use super::grammar::{self, Compiled, GrammarSpec};
use super::template::ChatMessage;

/// Most messages in one chat request.
pub const MAX_MESSAGES: usize = 1024;
/// Most stop strings, and the longest one in bytes.
pub const MAX_STOPS: usize = 8;
pub const MAX_STOP_LEN: usize = 256;
/// Largest top_k accepted.
pub const MAX_TOP_K: i64 = 100_000;

// The sampling ranges, defined once: [`parse`] checks requests against them, and the
// task Cards (`crate::card`) check their sampling and write their schema from them.
/// `temperature` (0 is greedy).
pub const TEMPERATURE: RangeInclusive<f32> = 0.0..=2.0;
/// `top_p` (1 disables it).
pub const TOP_P: RangeInclusive<f32> = 0.0..=1.0;
/// `top_k` (0 disables it).
pub const TOP_K: RangeInclusive<i64> = 0..=MAX_TOP_K;
/// `min_p` (0 disables it).
pub const MIN_P: RangeInclusive<f32> = 0.0..=1.0;
/// `presence_penalty` (0 disables it).
pub const PRESENCE_PENALTY: RangeInclusive<f32> = -2.0..=2.0;
/// `frequency_penalty` (0 disables it).
pub const FREQUENCY_PENALTY: RangeInclusive<f32> = -2.0..=2.0;
/// `max_tokens` and `max_completion_tokens`: an explicit generation budget.
pub const MAX_TOKENS: RangeInclusive<i64> = 1..=1 << 20;
/// `repeat_penalty`, llama.cpp's penalty on recently generated tokens (1 disables it).
/// Only Cards set it so far; a request has no such parameter yet.
pub const REPEAT_PENALTY: RangeInclusive<f32> = 0.0..=2.0;
/// The `repeat_penalty` the daemon samples with unless told otherwise: none.
pub const REPEAT_PENALTY_DEFAULT: f32 = 1.0;

/// llama.cpp seeds with 32 bits; larger seeds fold into them.
pub fn fold_seed(v: i64) -> u32 {
    (v as u64 ^ ((v as u64) >> 32)) as u32
}

/// Sampling parameters, all checked to be in range.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// 0 means greedy.
    pub temperature: f32,
    pub top_p: f32,
    /// 0 disables top-k.
    pub top_k: i32,
    pub min_p: f32,
    /// `None`: a random seed per request.
    pub seed: Option<u32>,
    /// 1 disables it.
    pub repeat_penalty: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            seed: None,
            repeat_penalty: REPEAT_PENALTY_DEFAULT,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
        }
    }
}

/// The prompt of a request before the model formats and tokenizes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Chat messages, formatted by the model's chat template.
    Chat(Vec<ChatMessage>),
    /// Raw completion text.
    Text(String),
}

/// A request with every field checked, not yet tied to a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedRequest {
    pub model: String,
    pub prompt: Prompt,
    /// Explicit generation budget; `None` means "what the context leaves".
    pub max_tokens: Option<usize>,
    pub sampling: Sampling,
    pub stop: Vec<String>,
    pub stream: bool,
    pub include_usage: bool,
    /// What the output must follow (`response_format` or `grammar`), checked, not compiled.
    pub constraint: Option<GrammarSpec>,
    /// `cache_prompt` (llama-server's name): `false` neither reuses cached KV cells nor
    /// leaves this prompt's cells for later requests.
    pub cache_prompt: bool,
    /// The adapter set a served Card decodes under; never from the request's body.
    pub adapter_set: Option<String>,
}

/// A request ready for the engine: tokens, budget and sampling.
#[derive(Debug, Clone)]
pub struct ValidRequest {
    /// The served model's name.
    pub model: String,
    /// Came from /v1/chat/completions.
    pub chat: bool,
    /// The formatted, tokenized prompt (never empty).
    pub prompt_tokens: Vec<i32>,
    /// Generation budget; prompt plus this fit one slot's context.
    pub max_tokens: usize,
    pub sampling: Sampling,
    /// Stop strings (1 to 8, each 1 to 256 bytes).
    pub stop: Vec<String>,
    /// Answer as server-sent events.
    pub stream: bool,
    /// Send a usage chunk at the end of the stream.
    pub include_usage: bool,
    /// The compiled constraint, set by the handler after [`ParsedRequest::into_valid`].
    pub grammar: Option<Arc<Compiled>>,
    /// Take part in prefix reuse (see [`ParsedRequest::cache_prompt`]).
    pub cache_prompt: bool,
    /// The adapter set it decodes under (a served Card's), by name; `None`: the base alone.
    pub adapter_set: Option<String>,
}

impl ParsedRequest {
    /// Tie to the model: `tokens` is the tokenized prompt, `ctx` one slot's context.
    pub fn into_valid(self, tokens: Vec<i32>, ctx: usize) -> Result<ValidRequest, ApiError> {
        if tokens.is_empty() {
            return Err(ApiError::bad("prompt", "the prompt is empty"));
        }
        let max_tokens = match self.max_tokens {
            Some(m) if tokens.len() + m > ctx => {
                return Err(ApiError::ContextOverflow {
                    prompt: tokens.len(),
                    max_tokens: m,
                    ctx,
                });
            }
            Some(m) => m,
            None if tokens.len() >= ctx => {
                return Err(ApiError::ContextOverflow {
                    prompt: tokens.len(),
                    max_tokens: 1,
                    ctx,
                });
            }
            None => ctx - tokens.len(),
        };
        Ok(ValidRequest {
            model: self.model,
            chat: matches!(self.prompt, Prompt::Chat(_)),
            prompt_tokens: tokens,
            max_tokens,
            sampling: self.sampling,
            stop: self.stop,
            stream: self.stream,
            include_usage: self.include_usage,
            grammar: None,
            cache_prompt: self.cache_prompt,
            adapter_set: self.adapter_set,
        })
    }
}

/// Which endpoint the body came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completion,
}

/// Parameters of OpenAI's API this daemon does not implement: a 400 naming them, unless
/// the value given is the one behaviour the daemon has.
fn check_unsupported(obj: &Map<String, Value>) -> Result<(), ApiError> {
    let unsupported = |param: &str, why: &str| {
        Err(ApiError::Unsupported {
            param: param.into(),
            message: format!("the parameter {param} is not supported{why}"),
        })
    };
    for (k, v) in obj {
        let harmless = match k.as_str() {
            "n" | "best_of" => v.as_u64() == Some(1),
            "logprobs" => v == &Value::Bool(false) || v.is_null(),
            "echo" => v == &Value::Bool(false),
            "logit_bias" => v.as_object().is_some_and(Map::is_empty) || v.is_null(),
            "tools" | "functions" => v.as_array().is_some_and(Vec::is_empty) || v.is_null(),
            "tool_choice" | "function_call" | "parallel_tool_calls" | "suffix" | "top_logprobs" => {
                v.is_null()
            }
            _ => continue,
        };
        if !harmless {
            let why = match k.as_str() {
                "n" | "best_of" => " (only 1 choice per request)",
                _ => "",
            };
            return unsupported(k, why);
        }
    }
    Ok(())
}

const CHAT_KEYS: &[&str] = &[
    "model",
    "messages",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "seed",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "stream",
    "stream_options",
    "user",
    "n",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "response_format",
    "grammar",
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "parallel_tool_calls",
    "cache_prompt",
    "repeat_penalty",
];
const COMPLETION_KEYS: &[&str] = &[
    "model",
    "prompt",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "seed",
    "max_tokens",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "stream",
    "stream_options",
    "user",
    "n",
    "best_of",
    "logprobs",
    "echo",
    "logit_bias",
    "suffix",
    "response_format",
    "grammar",
    "cache_prompt",
    "repeat_penalty",
];

/// Parse a request body (already JSON) for `endpoint`.
pub fn parse(endpoint: Endpoint, body: &Value) -> Result<ParsedRequest, ApiError> {
    let obj = body.as_object().ok_or_else(|| ApiError::BadRequest {
        message: "the body must be a JSON object".into(),
        param: None,
    })?;
    let known = match endpoint {
        Endpoint::Chat => CHAT_KEYS,
        Endpoint::Completion => COMPLETION_KEYS,
    };
    if let Some(k) = obj.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::Unsupported {
            param: k.clone(),
            message: format!("unknown or unsupported parameter {k}"),
        });
    }
    check_unsupported(obj)?;
    let model = match obj.get("model") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) | None => return Err(ApiError::bad("model", "model is required")),
        Some(other) => return Err(wrong_type("model", "a string", other)),
    };
    let prompt = match endpoint {
        Endpoint::Chat => Prompt::Chat(messages(obj.get("messages"))?),
        Endpoint::Completion => match obj.get("prompt") {
            Some(Value::String(s)) => Prompt::Text(s.clone()),
            Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
                Prompt::Text(a[0].as_str().unwrap_or_default().to_string())
            }
            Some(Value::Array(_)) => {
                return Err(ApiError::Unsupported {
                    param: "prompt".into(),
                    message: "only one prompt string per request is supported".into(),
                });
            }
            None => return Err(ApiError::bad("prompt", "prompt is required")),
            Some(other) => return Err(wrong_type("prompt", "a string", other)),
        },
    };
    let d = Sampling::default();
    let sampling = Sampling {
        temperature: float(obj, "temperature", &TEMPERATURE)?.unwrap_or(d.temperature),
        top_p: float(obj, "top_p", &TOP_P)?.unwrap_or(d.top_p),
        top_k: int(obj, "top_k", &TOP_K)?.map_or(d.top_k, |v| v as i32),
        min_p: float(obj, "min_p", &MIN_P)?.unwrap_or(d.min_p),
        seed: int(obj, "seed", &(i64::MIN..=i64::MAX))?
            .map(fold_seed)
            .or(d.seed),
        repeat_penalty: float(obj, "repeat_penalty", &REPEAT_PENALTY)?.unwrap_or(d.repeat_penalty),
        presence_penalty: float(obj, "presence_penalty", &PRESENCE_PENALTY)?.unwrap_or(0.0),
        frequency_penalty: float(obj, "frequency_penalty", &FREQUENCY_PENALTY)?.unwrap_or(0.0),
    };
    let max_tokens = match (
        int(obj, "max_tokens", &MAX_TOKENS)?,
        int(obj, "max_completion_tokens", &MAX_TOKENS)?,
    ) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad(
                "max_completion_tokens",
                "give max_tokens or max_completion_tokens, not both",
            ));
        }
        (a, b) => a.or(b).map(|v| v as usize),
    };
    let stop = match obj.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| wrong_type("stop", "a string or an array of strings", v))
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(wrong_type("stop", "a string or an array of strings", other)),
    };
    if stop.len() > MAX_STOPS {
        return Err(ApiError::bad(
            "stop",
            format!("at most {MAX_STOPS} stop strings, got {}", stop.len()),
        ));
    }
    if let Some(s) = stop.iter().find(|s| s.len() > MAX_STOP_LEN || s.is_empty()) {
        return Err(ApiError::bad(
            "stop",
            format!(
                "each stop string must be 1 to {MAX_STOP_LEN} bytes, got {} bytes",
                s.len()
            ),
        ));
    }
    let stream = boolean(obj, "stream")?.unwrap_or(false);
    let include_usage = match obj.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => {
            if let Some(k) = o.keys().find(|k| k.as_str() != "include_usage") {
                return Err(ApiError::Unsupported {
                    param: format!("stream_options.{k}"),
                    message: format!("stream_options.{k} is not supported"),
                });
            }
            boolean(o, "include_usage")?.unwrap_or(false)
        }
        Some(other) => return Err(wrong_type("stream_options", "an object", other)),
    };
    if include_usage && !stream {
        return Err(ApiError::bad(
            "stream_options",
            "stream_options is only allowed with stream: true",
        ));
    }
    if let Some(u) = obj.get("user") {
        if !u.is_string() {
            return Err(wrong_type("user", "a string", u));
        }
    }
    let constraint = grammar::from_request(obj)?;
    Ok(ParsedRequest {
        model,
        prompt,
        max_tokens,
        sampling,
        stop,
        stream,
        include_usage,
        constraint,
        cache_prompt: boolean(obj, "cache_prompt")?.unwrap_or(true),
        adapter_set: None,
    })
}

fn messages(v: Option<&Value>) -> Result<Vec<ChatMessage>, ApiError> {
    let arr = match v {
        Some(Value::Array(a)) => a,
        None => return Err(ApiError::bad("messages", "messages is required")),
        Some(other) => return Err(wrong_type("messages", "an array", other)),
    };
    if arr.is_empty() || arr.len() > MAX_MESSAGES {
        return Err(ApiError::bad(
            "messages",
            format!(
                "messages must hold 1 to {MAX_MESSAGES} messages, got {}",
                arr.len()
            ),
        ));
    }
    arr.iter()
        .enumerate()
        .map(|(i, m)| {
            let p = |f: &str| format!("messages[{i}].{f}");
            let o = m
                .as_object()
                .ok_or_else(|| wrong_type(&format!("messages[{i}]"), "an object", m))?;
            if let Some(k) = o
                .keys()
                .find(|k| !["role", "content", "name"].contains(&k.as_str()))
            {
                return Err(ApiError::Unsupported {
                    param: p(k),
                    message: format!("{} is not supported", p(k)),
                });
            }
            let role = match o.get("role") {
                Some(Value::String(r))
                    if ["system", "user", "assistant", "developer"].contains(&r.as_str()) =>
                {
                    r.clone()
                }
                Some(Value::String(r)) => {
                    return Err(ApiError::bad(
                        &p("role"),
                        format!("role {r:?} is not one of system, developer, user, assistant"),
                    ));
                }
                None => return Err(ApiError::bad(&p("role"), "role is required")),
                Some(other) => return Err(wrong_type(&p("role"), "a string", other)),
            };
            let content = match o.get("content") {
                Some(Value::String(c)) => c.clone(),
                // The parts form: only text parts.
                Some(Value::Array(parts)) => {
                    let mut text = String::new();
                    for part in parts {
                        match (
                            part.get("type").and_then(Value::as_str),
                            part.get("text").and_then(Value::as_str),
                        ) {
                            (Some("text"), Some(t)) => text.push_str(t),
                            _ => {
                                return Err(ApiError::Unsupported {
                                    param: p("content"),
                                    message: format!(
                                        "{}: only text content parts are supported",
                                        p("content")
                                    ),
                                });
                            }
                        }
                    }
                    text
                }
                None => return Err(ApiError::bad(&p("content"), "content is required")),
                Some(other) => return Err(wrong_type(&p("content"), "a string", other)),
            };
            Ok(ChatMessage { role, content })
        })
        .collect()
}

fn wrong_type(param: &str, expected: &str, got: &Value) -> ApiError {
    let kind = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    ApiError::bad(param, format!("{param} must be {expected}, got {kind}"))
}

fn float(
    obj: &Map<String, Value>,
    key: &str,
    range: &RangeInclusive<f32>,
) -> Result<Option<f32>, ApiError> {
    let (lo, hi) = (f64::from(*range.start()), f64::from(*range.end()));
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let v = n.as_f64().unwrap_or(f64::NAN);
            if !v.is_finite() || v < lo || v > hi {
                return Err(ApiError::bad(
                    key,
                    format!("{key} must be between {lo} and {hi}, got {n}"),
                ));
            }
            Ok(Some(v as f32))
        }
        Some(other) => Err(wrong_type(key, "a number", other)),
    }
}

fn int(
    obj: &Map<String, Value>,
    key: &str,
    range: &RangeInclusive<i64>,
) -> Result<Option<i64>, ApiError> {
    let (lo, hi) = (*range.start(), *range.end());
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(v) if (lo..=hi).contains(&v) => Ok(Some(v)),
            _ if n.is_u64() && key == "seed" => Ok(n.as_u64().map(|v| v as i64)),
            _ => Err(ApiError::bad(
                key,
                format!("{key} must be an integer from {lo} to {hi}, got {n}"),
            )),
        },
        Some(other) => Err(wrong_type(key, "an integer", other)),
    }
}

fn boolean(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(wrong_type(key, "a boolean", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat(extra: Value) -> Result<ParsedRequest, ApiError> {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        parse(Endpoint::Chat, &body)
    }

    fn param_of(e: ApiError) -> String {
        e.body()["error"]["param"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn a_full_request_parses() {
        let r = chat(json!({"temperature": 0.5, "top_k": 40, "seed": 7, "max_tokens": 16, "stop": ["a", "b"], "stream": true, "stream_options": {"include_usage": true}})).unwrap();
        assert_eq!(r.sampling.temperature, 0.5);
        assert_eq!(r.sampling.top_k, 40);
        assert_eq!(r.sampling.seed, Some(7));
        assert_eq!(r.max_tokens, Some(16));
        assert_eq!(r.stop, vec!["a", "b"]);
        assert!(r.stream && r.include_usage);
    }

    #[test]
    fn absurd_and_negative_values_are_refused_naming_the_parameter() {
        for (k, v) in [
            ("temperature", json!(-1)),
            ("temperature", json!(1e300)),
            ("top_p", json!(1.5)),
            ("top_k", json!(-3)),
            ("max_tokens", json!(0)),
            ("max_tokens", json!(-5)),
            ("max_tokens", json!(1u64 << 40)),
            ("min_p", json!(2)),
            ("presence_penalty", json!(9)),
            ("top_k", json!(0.5)),
        ] {
            let e = chat(json!({ k: v })).unwrap_err();
            assert_eq!(e.status(), 400, "{k}={v}");
            assert_eq!(param_of(e), k);
        }
    }

    #[test]
    fn wrong_types_name_the_parameter() {
        for (k, v) in [
            ("temperature", json!("hot")),
            ("stream", json!("yes")),
            ("messages", json!("hi")),
            ("stop", json!(5)),
            ("model", json!(1)),
        ] {
            let e = chat(json!({ k: v })).unwrap_err();
            assert_eq!(param_of(e), k, "{k}");
        }
    }

    #[test]
    fn unsupported_parameters_are_named() {
        for (k, v) in [
            ("n", json!(2)),
            ("logprobs", json!(true)),
            ("tools", json!([{"type": "function"}])),
            ("frobnicate", json!(1)),
        ] {
            let e = chat(json!({ k: v })).unwrap_err();
            assert_eq!(e.status(), 400);
            assert_eq!(param_of(e), k);
        }
        assert!(chat(json!({"n": 1, "logprobs": false})).is_ok());
    }

    #[test]
    fn constraints_parse_on_both_endpoints() {
        let r = chat(json!({"response_format": {"type": "json_object"}})).unwrap();
        assert_eq!(
            r.constraint.as_ref().map(GrammarSpec::label),
            Some("json_object")
        );
        let body = json!({"model": "m", "prompt": "p", "grammar": "root ::= \"a\""});
        let r = parse(Endpoint::Completion, &body).unwrap();
        assert_eq!(r.constraint.as_ref().map(GrammarSpec::label), Some("gbnf"));
        assert_eq!(chat(json!({})).unwrap().constraint, None);
    }

    #[test]
    fn context_budget_checked_against_the_model() {
        let r = chat(json!({"max_tokens": 100})).unwrap();
        let e = r.clone().into_valid(vec![1; 50], 120).unwrap_err();
        assert_eq!(
            e,
            ApiError::ContextOverflow {
                prompt: 50,
                max_tokens: 100,
                ctx: 120
            }
        );
        let v = chat(json!({}))
            .unwrap()
            .into_valid(vec![1; 50], 120)
            .unwrap();
        assert_eq!(v.max_tokens, 70);
    }
}
