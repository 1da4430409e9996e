//! sovereign's one GGUF reader and writer. The reader validates headers with the
//! project's own bounded parser, so that a hostile file is rejected with a clear error
//! before llama.cpp reads a byte of it; the writer ([`write`]) builds files for tests, the
//! fuzzer's corpus and benchmarks, and [`model`] generates whole llama models with it
//! (`cargo xtask gen-model`, the inference tests); [`lora`] reads, generates and merges
//! LoRA adapters for them.
//!
//! **Architecture Invariant:** nothing in the reader panics or allocates by a count the
//! file states before that count is checked against a limit and the file's length.

mod error;
pub mod lora;
pub mod model;
mod parse;
mod reader;
mod summary;
mod types;
pub mod write;

pub use error::{ErrorKind, GgufError};
pub use parse::{
    DEFAULT_ALIGNMENT, Header, TensorInfo, Value, limits, parse, parse_bytes, parse_file,
};
pub use summary::{Summary, human_count};
pub use types::{GgmlType, ValueType, file_type_name};
