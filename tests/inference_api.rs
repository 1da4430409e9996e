//! The HTTP API against real llama.cpp and the generated tiny model: chat and completions,
//! streaming, determinism, concurrency, stop strings, and every rejection in OpenAI's shape.
// Needs llama.cpp: built only with the `engine` feature (the default).
#![cfg(feature = "engine")]

mod inference_support;

use inference_support::{ServerOptions, chat_body, start};
use serde_json::{Value, json};

#[test]
fn chat_non_streamed_has_text_usage_and_finish_reason() {
    let s = start(ServerOptions::default());
    let r = s.post(
        "/v1/chat/completions",
        &chat_body("hello", json!({"max_tokens": 24, "temperature": 0})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "tiny");
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!content.is_empty(), "{v}");
    let finish = v["choices"][0]["finish_reason"].as_str().unwrap();
    assert!(finish == "stop" || finish == "length");
    let u = &v["usage"];
    let (p, c) = (
        u["prompt_tokens"].as_u64().unwrap(),
        u["completion_tokens"].as_u64().unwrap(),
    );
    assert!(p > 3 && (1..=24).contains(&c), "{u}");
    assert_eq!(u["total_tokens"].as_u64().unwrap(), p + c);
    // The daemon's own tokens are counted in /metrics.
    assert!(s.metric("sovereign_generated_tokens_total") >= c as f64);
}

#[test]
fn greedy_chat_ends_by_itself_with_the_same_text() {
    let s = start(ServerOptions::default());
    let ask = |max_tokens: u64| {
        let r = s.post(
            "/v1/chat/completions",
            &chat_body("hello", json!({"max_tokens": max_tokens, "temperature": 0})),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        let text = v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string();
        let finish = v["choices"][0]["finish_reason"]
            .as_str()
            .unwrap()
            .to_string();
        (text, finish)
    };
    let (text, finish) = ask(1000);
    assert_eq!(finish, "stop", "{text:?}");
    assert!(text.trim().chars().count() >= 10, "{text:?}");
    // The text the model was built to write (xtask's generator designs the weights).
    assert_eq!(text, inference_support::gguf::PATH_TEXT);
    // The end token never shows in the text.
    assert!(
        !text.contains("<|im_end|>") && !text.contains("</s>"),
        "{text:?}"
    );
    assert_eq!(ask(1000), (text, finish));
    let (short, finish) = ask(3);
    assert_eq!(finish, "length", "{short:?}");
}

#[test]
fn chat_streamed_matches_non_streamed_and_ends_with_done_and_usage() {
    let s = start(ServerOptions::default());
    let params = json!({"max_tokens": 32, "temperature": 0});
    let whole = s
        .post(
            "/v1/chat/completions",
            &chat_body("tell me", params.clone()),
        )
        .json();
    let expected = whole["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();

    let mut p = params.clone();
    p["stream"] = json!(true);
    p["stream_options"] = json!({"include_usage": true});
    let r = s.post("/v1/chat/completions", &chat_body("tell me", p));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.headers.to_ascii_lowercase().contains("text/event-stream"),
        "{}",
        r.headers
    );
    let data = r.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, expected);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"].as_array().unwrap().len(), 0);
    // The same counts; the second request found the first's prompt cached.
    for k in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert_eq!(usage["usage"][k], whole["usage"][k], "{k}");
    }
    assert_eq!(
        usage["usage"]["prompt_tokens_details"]["cached_tokens"],
        json!(whole["usage"]["prompt_tokens"].as_u64().unwrap() - 1)
    );
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, vec![&whole["choices"][0]["finish_reason"]]);
    for c in &chunks {
        assert_eq!(c["id"], chunks[0]["id"]);
    }
}

#[test]
fn repeated_seeded_request_gives_identical_output() {
    let s = start(ServerOptions::default());
    for params in [
        json!({"max_tokens": 40, "temperature": 0}),
        json!({"max_tokens": 40, "temperature": 0.9, "top_p": 0.95, "top_k": 50, "min_p": 0.01, "seed": 1234, "presence_penalty": 0.5, "frequency_penalty": 0.3}),
    ] {
        let a = s
            .post("/v1/chat/completions", &chat_body("same", params.clone()))
            .json();
        let b = s
            .post("/v1/chat/completions", &chat_body("same", params.clone()))
            .json();
        assert_eq!(a["choices"], b["choices"], "{params}");
        for k in ["prompt_tokens", "completion_tokens"] {
            assert_eq!(a["usage"][k], b["usage"][k], "{k}");
        }
    }
}

#[test]
fn completions_and_models() {
    let s = start(ServerOptions::default());
    let r = s.post(
        "/v1/completions",
        &json!({"model": "tiny", "prompt": "the river", "max_tokens": 8, "temperature": 0}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["object"], "text_completion");
    assert!(v["choices"][0]["text"].is_string());
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() <= 8);
    let m = s.get("/v1/models").json();
    assert_eq!(m["object"], "list");
    assert_eq!(m["data"][0]["id"], "tiny");
}

#[test]
fn four_concurrent_requests_all_complete() {
    let s = start(ServerOptions {
        slots: 4,
        ..Default::default()
    });
    let results: Vec<(u16, Value, bool)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..4)
            .map(|i| {
                let s = &s;
                sc.spawn(move || {
                    let stream = i % 2 == 0;
                    let body = chat_body(
                        &format!("request {i}"),
                        json!({"max_tokens": 30, "temperature": 0.7, "seed": i, "stream": stream}),
                    );
                    let r = s.post("/v1/chat/completions", &body);
                    let v = if stream {
                        let data = r.sse_data();
                        assert_eq!(
                            data.last().map(String::as_str),
                            Some("[DONE]"),
                            "{}",
                            r.body
                        );
                        json!(
                            data[..data.len() - 1]
                                .iter()
                                .map(|d| serde_json::from_str::<Value>(d).unwrap())
                                .collect::<Vec<_>>()
                        )
                    } else {
                        r.json()
                    };
                    (r.status, v, stream)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, v, stream) in results {
        assert_eq!(status, 200, "{v}");
        if stream {
            let chunks = v.as_array().unwrap();
            assert!(
                chunks
                    .iter()
                    .any(|c| !c["choices"][0]["finish_reason"].is_null()),
                "{v}"
            );
        } else {
            assert!(v["choices"][0]["message"]["content"].is_string(), "{v}");
            assert!(v["usage"]["completion_tokens"].as_u64().unwrap() <= 30);
        }
    }
    assert_eq!(s.metric("sovereign_busy_slots"), 0.0);
}

#[test]
fn stop_string_spanning_tokens_cuts_the_text() {
    let s = start(ServerOptions::default());
    // The streamed pieces show where token boundaries fall.
    let r = s.post("/v1/completions", &json!({"model": "tiny", "prompt": "hello world", "max_tokens": 40, "temperature": 0, "stream": true}));
    let pieces: Vec<String> = r
        .sse_data()
        .iter()
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| {
            serde_json::from_str::<Value>(d).ok()?["choices"][0]["text"]
                .as_str()
                .map(str::to_string)
        })
        .filter(|t| !t.is_empty())
        .collect();
    let full: String = pieces.concat();
    // A stop string made of the end of one piece and the start of the next.
    let k = pieces.len() / 2;
    assert!(
        pieces.len() >= 4,
        "too little output to test with: {pieces:?}"
    );
    let left: String = pieces[k]
        .chars()
        .rev()
        .take(2)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let right: String = pieces[k + 1].chars().take(2).collect();
    let stop = format!("{left}{right}");
    let cut = full.find(&stop).unwrap();
    for stream in [false, true] {
        let r = s.post("/v1/completions", &json!({"model": "tiny", "prompt": "hello world", "max_tokens": 40, "temperature": 0, "stop": [stop.clone()], "stream": stream}));
        assert_eq!(r.status, 200, "{}", r.body);
        let (text, finish) = if stream {
            let chunks: Vec<Value> = r
                .sse_data()
                .iter()
                .filter(|d| *d != "[DONE]")
                .map(|d| serde_json::from_str(d).unwrap())
                .collect();
            let text: String = chunks
                .iter()
                .filter_map(|c| c["choices"][0]["text"].as_str())
                .collect();
            let finish = chunks
                .iter()
                .find_map(|c| {
                    c["choices"][0]["finish_reason"]
                        .as_str()
                        .map(str::to_string)
                })
                .unwrap();
            (text, finish)
        } else {
            let v = r.json();
            (
                v["choices"][0]["text"].as_str().unwrap().to_string(),
                v["choices"][0]["finish_reason"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        };
        assert_eq!(text, full[..cut], "stop {stop:?} in {full:?}");
        assert_eq!(finish, "stop");
    }
}

#[test]
fn rejections_have_openai_shape_and_the_daemon_keeps_serving() {
    let s = start(ServerOptions {
        body_limit: 4096,
        ..Default::default()
    });
    let ok = chat_body("hi", json!({"max_tokens": 4}));
    // Authentication.
    for auth in ["", "wrong-key"] {
        let r = s.raw(
            "POST",
            "/v1/chat/completions",
            Some(auth),
            Some(ok.to_string().as_bytes()),
        );
        assert_eq!(r.status, 401, "{}", r.body);
        assert_eq!(r.error().1.as_deref(), Some("invalid_api_key"));
        assert_eq!(s.raw("GET", "/v1/models", Some(auth), None).status, 401);
        assert_eq!(s.raw("GET", "/metrics", Some(auth), None).status, 401);
    }
    // /health needs no key.
    assert_eq!(s.raw("GET", "/health", Some(""), None).status, 200);
    // Malformed JSON and wrong types.
    let r = s.raw(
        "POST",
        "/v1/chat/completions",
        None,
        Some(b"{\"model\": \"tiny\", "),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    r.error();
    for (k, v) in [
        ("temperature", json!("hot")),
        ("max_tokens", json!("ten")),
        ("messages", json!({"role": "user"})),
        ("stream", json!(1)),
    ] {
        let mut b = ok.clone();
        b[k] = v;
        let r = s.post("/v1/chat/completions", &b);
        assert_eq!(r.status, 400, "{k}: {}", r.body);
        assert_eq!(r.error().0.as_deref(), Some(k));
    }
    // Oversize body.
    let big = chat_body(&"x".repeat(10_000), json!({}));
    let r = s.post("/v1/chat/completions", &big);
    assert_eq!(r.status, 413, "{}", r.body);
    r.error();
    // The admin API too.
    let r = s.post(
        "/v1/sovereign/models/load",
        &json!({"model": "x".repeat(10_000)}),
    );
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.error().1.as_deref(), Some("request_too_large"));
    // Unknown model and route.
    let mut b = ok.clone();
    b["model"] = json!("nope");
    let r = s.post("/v1/chat/completions", &b);
    assert_eq!(r.status, 404);
    assert_eq!(r.error().1.as_deref(), Some("model_not_found"));
    assert_eq!(s.get("/v1/nothing").status, 404);
    // A known route with the wrong method: 405 in the same shape, with Allow.
    let r = s.get("/v1/chat/completions");
    assert_eq!(r.status, 405, "{}", r.body);
    assert_eq!(r.error().1.as_deref(), Some("method_not_allowed"));
    assert!(
        r.headers.to_ascii_lowercase().contains("allow: post"),
        "{}",
        r.headers
    );
    let r = s.raw("DELETE", "/health", Some(""), None);
    assert_eq!(r.status, 405, "{}", r.body);
    assert_eq!(r.error().1.as_deref(), Some("method_not_allowed"));
    // Absurd and negative parameters.
    for (k, v) in [
        ("temperature", json!(-0.5)),
        ("temperature", json!(1e30)),
        ("top_p", json!(7)),
        ("top_k", json!(-1)),
        ("max_tokens", json!(-3)),
        ("max_tokens", json!(0)),
        ("min_p", json!(-0.1)),
        ("frequency_penalty", json!(100)),
    ] {
        let mut b = ok.clone();
        b[k] = v.clone();
        let r = s.post("/v1/chat/completions", &b);
        assert_eq!(r.status, 400, "{k}={v}: {}", r.body);
        assert_eq!(r.error().0.as_deref(), Some(k));
    }
    // Unsupported parameters are named, never ignored.
    for (k, v) in [
        ("n", json!(3)),
        ("logprobs", json!(true)),
        (
            "tools",
            json!([{"type": "function", "function": {"name": "f"}}]),
        ),
        // json_object is supported now (tests/inference_grammar.rs); a bare string is not.
        ("response_format", json!("json_object")),
    ] {
        let mut b = ok.clone();
        b[k] = v;
        let r = s.post("/v1/chat/completions", &b);
        assert_eq!(r.status, 400, "{k}: {}", r.body);
        assert_eq!(r.error().0.as_deref(), Some(k));
    }
    // Prompt plus max_tokens beyond the slot context: both numbers in the message.
    let mut b = ok.clone();
    b["max_tokens"] = json!(1020);
    let r = s.post("/v1/chat/completions", &b);
    assert_eq!(r.status, 400, "{}", r.body);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("1020") && msg.contains("1024"), "{msg}");
    // After all of that, a good request still works.
    let r = s.post("/v1/chat/completions", &ok);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(s.metric("sovereign_requests_total{status=\"400\"}") >= 10.0);
}
