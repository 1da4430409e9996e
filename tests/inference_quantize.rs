//! `sovereign model quantize` through llama.cpp: the output is smaller, loads, and serves.
#![allow(clippy::disallowed_methods)]
// Needs llama.cpp: built only with the `engine` feature (the default).
#![cfg(feature = "engine")]

mod inference_support;

use std::process::Command;

use inference_support::{ServerOptions, chat_body, start, tiny};
use serde_json::json;

#[test]
fn quantized_models_are_smaller_and_serve() {
    let dir = tempfile::tempdir().unwrap();
    let input = tiny();
    let in_size = std::fs::metadata(&input).unwrap().len();
    let mut models = Vec::new();
    for kind in ["q8_0", "q4_0", "q4_k_m"] {
        let out = dir.path().join(format!("tiny-{kind}.gguf"));
        let run = Command::new(env!("CARGO_BIN_EXE_sovereign"))
            .args(["model", "quantize", "--json", "--type", kind])
            .arg(&input)
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{kind}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        assert_eq!(report["type"], kind);
        let size = std::fs::metadata(&out).unwrap().len();
        assert_eq!(report["output_bytes"].as_u64(), Some(size));
        assert!(
            size < in_size * 3 / 4,
            "{kind}: {size} bytes from {in_size}"
        );
        assert!(
            !dir.path()
                .join(format!("tiny-{kind}.gguf.partial"))
                .exists()
        );
        models.push((kind.to_string(), out));
    }
    let s = start(ServerOptions {
        models,
        ..Default::default()
    });
    for kind in ["q8_0", "q4_0", "q4_k_m"] {
        let mut b = chat_body("hello", json!({"max_tokens": 8, "temperature": 0}));
        b["model"] = json!(kind);
        let r = s.post("/v1/chat/completions", &b);
        assert_eq!(r.status, 200, "{kind}: {}", r.body);
    }
    // A file that is not a model is a clear error.
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"not a model").unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_sovereign"))
        .args(["model", "quantize", "--type", "q8_0"])
        .arg(&junk)
        .arg(dir.path().join("out.gguf"))
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("could not quantize"));
}
