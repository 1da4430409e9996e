//! sovereign's inference daemon: the bundled llama.cpp engine, its OpenAI-compatible HTTP API
//! and the verified model cache. A crate of its own that never imports the provisioning
//! crate: what it needs of the machine (its memory, its cores) the caller passes in.
//!
//! A request flows one way: [`server`] parses the body into a [`validate::ValidRequest`]
//! (formatting chat with [`template`]), [`job::EngineHandle::submit`] admits it or answers
//! 429, and the engine thread ([`engine`], behind the `engine` feature) decodes it in a slot
//! chosen by the [`scheduler`], streaming text cut by [`text`] back over a bounded channel.
//! [`error`] is the one table from failures to HTTP statuses.

pub mod adapter;
pub mod admin;
pub mod cache;
pub mod card;
pub mod card_request;
pub mod catalog;
pub mod conn;
pub mod daemon;
#[cfg(feature = "engine")]
pub mod engine;
pub mod error;
pub mod estimate;
pub mod grammar;
pub mod job;
pub mod json_schema;
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
pub mod units;
pub mod validate;

/// The one GGUF reader and writer, a crate of its own (`crates/gguf`): the daemon checks
/// every model file with it before llama.cpp reads a byte.
pub use sovereign_gguf as gguf;
