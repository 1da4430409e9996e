//! Chat templates from the model file run in a sandbox: a template that loops forever or
//! tries to read a file fails that request only, and the daemon keeps serving.
// Needs llama.cpp: built only with the `engine` feature (the default).
#![cfg(feature = "engine")]

mod inference_support;

use inference_support::{ServerOptions, chat_body, gguf, model_file, start, tiny};
use serde_json::json;

#[test]
fn hostile_templates_fail_only_their_request() {
    let mut looping = gguf::ModelSpec::tiny(42);
    looping.chat_template = Some(
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}"
            .into(),
    );
    let mut reading = gguf::ModelSpec::tiny(42);
    reading.chat_template = Some("{% include '/etc/passwd' %}{{ messages[0]['content'] }}".into());
    let mut none = gguf::ModelSpec::tiny(42);
    none.chat_template = None;
    let s = start(ServerOptions {
        models: vec![
            ("tiny".into(), tiny()),
            ("looping".into(), model_file("looping.gguf", looping)),
            ("reading".into(), model_file("reading.gguf", reading)),
            ("plain".into(), model_file("plain.gguf", none)),
        ],
        ..Default::default()
    });
    for (model, why) in [("looping", "too long"), ("reading", "not allowed")] {
        let mut b = chat_body("hi", json!({"max_tokens": 4}));
        b["model"] = json!(model);
        let r = s.post("/v1/chat/completions", &b);
        assert_eq!(r.status, 400, "{model}: {}", r.body);
        assert_eq!(r.error().1.as_deref(), Some("chat_template_error"));
        let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains(why), "{model}: {msg}");
        assert!(!msg.contains("root:"), "file contents leaked: {msg}");
        // The same model still serves completions, which need no template.
        let r = s.post(
            "/v1/completions",
            &json!({"model": model, "prompt": "hi", "max_tokens": 4}),
        );
        assert_eq!(r.status, 200, "{model}: {}", r.body);
    }
    // A model without a template gets the documented ChatML default, same as tiny's own.
    let a = s
        .post(
            "/v1/chat/completions",
            &chat_body("same", json!({"max_tokens": 12, "temperature": 0})),
        )
        .json();
    let mut b = chat_body("same", json!({"max_tokens": 12, "temperature": 0}));
    b["model"] = json!("plain");
    let b = s.post("/v1/chat/completions", &b).json();
    assert_eq!(a["choices"], b["choices"]);
    assert_eq!(a["usage"], b["usage"]);
    // Every other model kept working.
    assert_eq!(s.get("/health").status, 200);
}
