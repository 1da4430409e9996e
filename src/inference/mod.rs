//! The compute node: the llama.cpp daemon, its OpenAI-compatible HTTP API and the model cache.

pub mod cache;
pub mod gguf;
