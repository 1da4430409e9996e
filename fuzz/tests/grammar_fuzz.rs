//! Bounded, deterministic runs of the grammar and schema fuzzers inside the test suite:
//! the corpus judged as its file names say (`ok-` is accepted by the request path,
//! `refused-` is a 4xx), then each fuzzer's own loop for a few thousand mutants (a panic or
//! an input over a second fails the test, with the input in the message). The open-ended
//! runs are `cargo xtask fuzz`.

use std::path::{Path, PathBuf};

use sovereign_fuzz::driver::{self, Options, Target};
use sovereign_fuzz::targets;

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name)
}

fn judged_by_name(target: &Target) {
    let seeds = driver::read_named(&corpus(target.name)).unwrap();
    assert!(seeds.len() >= 5, "the {} corpus is missing", target.name);
    for (name, input) in seeds {
        let outcome = (target.run)(&input);
        // The request path's answer comes first in the outcome.
        let request = outcome.split(" | ").next().unwrap_or("");
        if name.starts_with("ok-") {
            assert!(request.starts_with("ok "), "{name}: {outcome}");
        } else {
            assert!(
                name.starts_with("refused-"),
                "{name}: name it ok- or refused-"
            );
            assert!(request.starts_with('4'), "{name}: {outcome}");
        }
    }
}

fn bounded(target: &Target, runs: u64) {
    let summary = driver::fuzz(
        target,
        &Options {
            seconds: None,
            runs: Some(runs),
            seed: 0x5eed,
            corpus: corpus(target.name),
            artifacts: None,
        },
    )
    .unwrap_or_else(|finding| panic!("fuzz-{}: {finding}", target.name));
    assert_eq!(summary.runs, runs);
    assert!(
        summary.outcomes > 20,
        "fuzz-{}: only {} distinct outcomes: the mutations are too weak",
        target.name,
        summary.outcomes
    );
}

#[test]
fn the_grammar_corpus_is_judged_as_its_names_say() {
    judged_by_name(&targets::GBNF);
}

#[test]
fn the_schema_corpus_is_judged_as_its_names_say() {
    judged_by_name(&targets::SCHEMA);
}

#[test]
fn thousands_of_grammar_mutants_never_panic_or_stall() {
    bounded(&targets::GBNF, 3000);
}

#[test]
fn thousands_of_schema_mutants_never_panic_or_stall() {
    bounded(&targets::SCHEMA, 2000);
}
