//! Stable-Rust mutation fuzzers for the parsers of what clients and files hand sovereign:
//! the GGUF header (`fuzz-gguf`, src/main.rs), grammar text (`fuzz-gbnf`: GBNF, and Lark
//! when it starts with `%llguidance`) and JSON schemas (`fuzz-schema`).
//!
//! The grammar and schema fuzzers share [`driver`] (the loop, the 1-second budget per
//! input, saving what failed) and [`mutate::Rng`]; [`text`] and [`json`] mutate with the
//! formats' own tokens and shapes, [`targets`] says what one input exercises. The bounded
//! runs in `tests/` put each loop in the test suite.

pub mod driver;
pub mod json;
// `Rng::next` is a generator's next number, not an iterator's (the file is shared with
// the GGUF fuzzer and its test as it is).
#[allow(clippy::should_implement_trait)]
pub mod mutate;
pub mod targets;
pub mod text;
