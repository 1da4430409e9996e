//! `fuzz-gbnf`: mutates the grammars in `fuzz/corpus/gbnf/` (GBNF, and Lark starting with
//! `%llguidance`) and runs each through the GBNF reader, the Lark scanner and the request
//! path's grammar checks; a panic, or an input taking more than a second, is a finding,
//! saved under `fuzz/artifacts/gbnf/`.
//!
//!     cargo run --release -p sovereign-fuzz --bin fuzz-gbnf -- --seconds 60

fn main() {
    std::process::exit(sovereign_fuzz::driver::main(&sovereign_fuzz::targets::GBNF));
}
