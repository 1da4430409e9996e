//! The one table from API failures to HTTP status codes and OpenAI's error shape
//! (`{"error": {"message", "type", "param", "code"}}`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Every way a request can be refused or fail.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// The body is not JSON, or a field has the wrong type or an out-of-range value.
    BadRequest {
        message: String,
        param: Option<String>,
    },
    /// A parameter the daemon does not support (never silently ignored).
    Unsupported { param: String, message: String },
    /// Prompt plus max_tokens exceed one slot's context.
    ContextOverflow {
        prompt: usize,
        max_tokens: usize,
        ctx: usize,
    },
    /// Missing or wrong API key.
    Unauthorized,
    /// No model by that name.
    UnknownModel(String),
    /// No such route.
    NotFound,
    /// A cached model is not loaded (unload).
    NotLoaded(String),
    /// The model does not fit in free memory; `details` holds the estimate and the devices.
    InsufficientMemory {
        message: String,
        details: serde_json::Value,
    },
    /// The model is loaded already, with other options.
    LoadedWithOtherOptions(String),
    /// The route exists but not for this method (the response's Allow header lists them).
    MethodNotAllowed { method: String, path: String },
    /// The body exceeds the limit.
    TooLarge { limit: usize },
    /// Slots and queue are full.
    QueueFull,
    /// The model is still loading, failed to load, or the daemon is shutting down.
    NotReady(String),
    /// The model's chat template failed for this conversation.
    Template(String),
    /// The engine failed while generating.
    Engine(String),
    /// hyper refused the request head (malformed 400, URI too long 414, head too large 431).
    HeadRejected(StatusCode),
    /// The connection cap is reached.
    TooManyConnections,
    /// The body did not arrive within the body deadline.
    BodyTimeout { seconds: u64 },
    /// Every grammar compiler is busy and the compile queue is full.
    CompileQueueFull,
    /// A grammar compile, or the wait for a compiler, ran past its time budget.
    CompileTimeout { seconds: u64, waiting: bool },
    /// The shutdown deadline passed while the request was in flight.
    ShuttingDown,
    /// A bug: a panic in the request's path, caught so the daemon lives on.
    Internal(String),
}

impl ApiError {
    pub fn bad(param: &str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            param: Some(param.into()),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. }
            | ApiError::Unsupported { .. }
            | ApiError::ContextOverflow { .. }
            | ApiError::Template(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::UnknownModel(_) | ApiError::NotFound | ApiError::NotLoaded(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::InsufficientMemory { .. } | ApiError::LoadedWithOtherOptions(_) => {
                StatusCode::CONFLICT
            }
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::QueueFull | ApiError::CompileQueueFull => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotReady(_)
            | ApiError::TooManyConnections
            | ApiError::CompileTimeout { .. }
            | ApiError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Engine(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::HeadRejected(status) => *status,
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// The human message alone, as the body carries it.
    pub fn message(&self) -> String {
        self.body()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// OpenAI's `{"error": {...}}` object.
    pub fn body(&self) -> serde_json::Value {
        let (message, kind, param, code): (String, &str, Option<&str>, Option<&str>) = match self {
            ApiError::BadRequest { message, param } => (
                message.clone(),
                "invalid_request_error",
                param.as_deref(),
                None,
            ),
            ApiError::Unsupported { param, message } => (
                message.clone(),
                "invalid_request_error",
                Some(param.as_str()),
                Some("unsupported_parameter"),
            ),
            ApiError::ContextOverflow {
                prompt,
                max_tokens,
                ctx,
            } => (
                format!(
                    "the prompt has {prompt} tokens and max_tokens is {max_tokens}, {} in all, but a slot's context holds {ctx} tokens; shorten the prompt or lower max_tokens",
                    prompt + max_tokens
                ),
                "invalid_request_error",
                Some("max_tokens"),
                Some("context_length_exceeded"),
            ),
            ApiError::Unauthorized => (
                "missing or wrong API key: send `Authorization: Bearer <key>`".into(),
                "authentication_error",
                None,
                Some("invalid_api_key"),
            ),
            ApiError::UnknownModel(m) => (
                format!("the model {m:?} does not exist; GET /v1/models lists the served models"),
                "invalid_request_error",
                Some("model"),
                Some("model_not_found"),
            ),
            ApiError::NotFound => (
                "no such route".into(),
                "invalid_request_error",
                None,
                Some("not_found"),
            ),
            ApiError::NotLoaded(name) => (
                format!(
                    "the model {name:?} is not loaded; GET /v1/sovereign/models lists the loaded models"
                ),
                "invalid_request_error",
                Some("model"),
                Some("model_not_loaded"),
            ),
            ApiError::InsufficientMemory { message, .. } => (
                message.clone(),
                "invalid_request_error",
                Some("model"),
                Some("insufficient_memory"),
            ),
            ApiError::LoadedWithOtherOptions(message) => (
                message.clone(),
                "invalid_request_error",
                Some("model"),
                Some("loaded_with_other_options"),
            ),
            ApiError::MethodNotAllowed { method, path } => (
                format!(
                    "{path} does not take {method}; the Allow header lists the methods it takes"
                ),
                "invalid_request_error",
                None,
                Some("method_not_allowed"),
            ),
            ApiError::TooLarge { limit } => (
                format!("the request body exceeds {limit} bytes"),
                "invalid_request_error",
                None,
                Some("request_too_large"),
            ),
            ApiError::QueueFull => (
                "every slot is busy and the queue is full; retry later".into(),
                "rate_limit_error",
                None,
                Some("queue_full"),
            ),
            ApiError::NotReady(why) => (why.clone(), "server_error", None, Some("not_ready")),
            ApiError::Template(why) => (
                why.clone(),
                "invalid_request_error",
                Some("messages"),
                Some("chat_template_error"),
            ),
            ApiError::Engine(why) => (why.clone(), "server_error", None, None),
            ApiError::HeadRejected(status) => {
                let (message, code) = match status.as_u16() {
                    414 => ("the request URI is too long".to_string(), "uri_too_long"),
                    431 => (
                        format!(
                            "the request head is too large: at most {} headers and {} KiB in all",
                            super::conn::MAX_HEADERS,
                            super::conn::MAX_HEAD_BYTES / 1024
                        ),
                        "request_header_fields_too_large",
                    ),
                    _ => (
                        "the request is not valid HTTP/1.1".to_string(),
                        "malformed_request",
                    ),
                };
                (message, "invalid_request_error", None, Some(code))
            }
            ApiError::TooManyConnections => (
                "the server has as many connections open as it serves at once; retry later".into(),
                "server_error",
                None,
                Some("too_many_connections"),
            ),
            ApiError::BodyTimeout { seconds } => (
                format!("the request body did not arrive within {seconds}s"),
                "invalid_request_error",
                None,
                Some("request_timeout"),
            ),
            ApiError::CompileQueueFull => (
                "every grammar compiler is busy and the compile queue is full; retry later".into(),
                "rate_limit_error",
                None,
                Some("grammar_queue_full"),
            ),
            ApiError::CompileTimeout { seconds, waiting } => (
                if *waiting {
                    format!("no grammar compiler came free within {seconds}s; retry later")
                } else {
                    format!(
                        "compiling the grammar took longer than its budget of {seconds}s; simplify the schema or grammar"
                    )
                },
                "server_error",
                None,
                Some("grammar_compile_timeout"),
            ),
            ApiError::ShuttingDown => (
                "the daemon is shutting down and ended this request".into(),
                "server_error",
                None,
                Some("shutting_down"),
            ),
            ApiError::Internal(why) => (
                format!("internal error: {why}"),
                "server_error",
                None,
                Some("internal_error"),
            ),
        };
        let mut body =
            json!({"error": {"message": message, "type": kind, "param": param, "code": code}});
        if let ApiError::InsufficientMemory { details, .. } = self {
            body["error"]["details"] = details.clone();
        }
        body
    }
}

/// What a caught panic said (its `&str` or `String` payload), for the log.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), axum::Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_overflow_gives_both_numbers() {
        let e = ApiError::ContextOverflow {
            prompt: 4000,
            max_tokens: 200,
            ctx: 4096,
        };
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let msg = e.body()["error"]["message"].as_str().unwrap().to_string();
        assert!(
            msg.contains("4000") && msg.contains("200") && msg.contains("4096"),
            "{msg}"
        );
    }

    #[test]
    fn every_error_has_openai_shape() {
        for e in [
            ApiError::Unauthorized,
            ApiError::QueueFull,
            ApiError::NotFound,
            ApiError::MethodNotAllowed {
                method: "GET".into(),
                path: "/v1/completions".into(),
            },
            ApiError::bad("x", "y"),
        ] {
            let b = e.body();
            let o = b["error"].as_object().unwrap();
            for k in ["message", "type", "param", "code"] {
                assert!(o.contains_key(k), "{k} missing in {b}");
            }
        }
    }
}
