//! `fuzz-schema`: mutates the JSON schemas in `fuzz/corpus/schema/` (structurally: wrapped
//! subschemas, `$ref` chains and spellings, long enums and patterns) and runs each through
//! the schema limits, the keyword allow-list, the `$ref` check and the request path; a
//! panic, or an input taking more than a second, is a finding, saved under
//! `fuzz/artifacts/schema/`.
//!
//!     cargo run --release -p sovereign-fuzz --bin fuzz-schema -- --seconds 60

fn main() {
    std::process::exit(sovereign_fuzz::driver::main(
        &sovereign_fuzz::targets::SCHEMA,
    ));
}
