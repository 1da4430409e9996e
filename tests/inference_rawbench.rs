//! The benchmark's baseline loop (`sovereign serve --raw-bench`): it decodes what it says,
//! in the daemon's context shape, and refuses a malformed spec.
#![allow(clippy::disallowed_methods)]
// Needs llama.cpp: built only with the `engine` feature (the default).
#![cfg(feature = "engine")]

mod inference_support;

use std::process::Output;

use inference_support::{sovereign, tiny};

fn raw_bench(spec: &str, slots: &str) -> Output {
    sovereign()
        .args([
            "serve",
            "--threads",
            "2",
            "--context",
            "256",
            "--slots",
            slots,
        ])
        .args(["--raw-bench", spec, "--model"])
        .arg(format!("tiny={}", tiny().display()))
        .output()
        .unwrap()
}

/// The figures of a run that must succeed.
fn figures(spec: &str, slots: &str) -> serde_json::Value {
    let run = raw_bench(spec, slots);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_slice(&run.stdout).unwrap()
}

#[test]
fn decodes_every_sequence_and_reports_figures() {
    // Three sequences in a context made for four, as the daemon's would be.
    let f = figures("12:5:3", "4");
    assert_eq!(f["prompt_tokens"], 12);
    assert_eq!(f["sequences"], 3);
    assert_eq!(f["generated_tokens"], 15);
    for key in ["prompt_tps", "gen_tps", "prompt_ms"] {
        let v = f[key].as_f64().unwrap();
        assert!(v.is_finite() && v > 0.0, "{key} = {v}");
    }
    assert_eq!(f["model_bytes"].as_u64().map(|b| b > 0), Some(true), "{f}");
}

#[test]
fn more_sequences_than_slots_widen_the_context() {
    let f = figures("8:2:3", "1");
    assert_eq!(f["generated_tokens"], 6);
}

#[test]
fn a_malformed_spec_names_the_format() {
    for spec in ["12", "0:5", "12:x", "12:5:0"] {
        let run = raw_bench(spec, "4");
        assert!(!run.status.success(), "{spec} was accepted");
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(err.contains("--raw-bench"), "{spec}: {err}");
    }
}
