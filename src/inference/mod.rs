//! The compute node: the llama.cpp daemon, its OpenAI-compatible HTTP API and the model cache.
//!
//! A request flows one way: [`server`] parses the body into a [`validate::ValidRequest`]
//! (formatting chat with [`template`]), [`job::EngineHandle::submit`] admits it or answers
//! 429, and the engine thread ([`engine`], behind the `engine` feature) decodes it in a slot
//! chosen by the [`scheduler`], streaming text cut by [`text`] back over a bounded channel.
//! [`error`] is the one table from failures to HTTP statuses.

pub mod admin;
pub mod cache;
pub mod catalog;
pub mod conn;
pub mod daemon;
#[cfg(feature = "engine")]
pub mod engine;
pub mod error;
pub mod estimate;
pub mod gguf;
pub mod grammar;
pub mod job;
pub mod limits;
pub mod metrics;
pub mod model_options;
pub mod quantize;
#[cfg(feature = "engine")]
pub mod rawbench;
pub mod scheduler;
pub mod server;
pub mod template;
pub mod text;
pub mod validate;
