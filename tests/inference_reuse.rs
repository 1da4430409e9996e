//! Prefix reuse against real llama.cpp: a conversation's next turn and a prompt sharing a
//! prefix with a cached one decode only the rest, a busy slot's prefix is copied into a
//! free one, and every answer is byte for byte the answer of a cleared slot (greedy).
//!
//! The model is the tiny shape with random weights: its greedy answer depends on the whole
//! context, so a wrong cell would change it (one test checks that a different middle with
//! the same ending does change it).
// Needs llama.cpp: built only with the `engine` feature (the default).
#![cfg(feature = "engine")]

mod inference_support;

use std::io::BufRead;

use inference_support::{
    Served, ServerOptions, TestServer, free_port, sovereign, start, tiny_random,
};
use serde_json::{Value, json};

const MODEL: &str = "r";

fn server(slots: usize) -> TestServer {
    start(ServerOptions {
        models: vec![(MODEL.into(), tiny_random())],
        slots,
        queue: 4,
        ctx: 2048,
        ..Default::default()
    })
}

/// One answer: its text and usage.
#[derive(Debug)]
struct Answer {
    text: String,
    prompt: u64,
    cached: u64,
}

fn answer(r: &inference_support::Response, chat: bool) -> Answer {
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let text = if chat {
        v["choices"][0]["message"]["content"].as_str()
    } else {
        v["choices"][0]["text"].as_str()
    }
    .expect("answer text")
    .to_string();
    Answer {
        text,
        prompt: v["usage"]["prompt_tokens"].as_u64().expect("prompt_tokens"),
        cached: v["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .expect("usage.prompt_tokens_details.cached_tokens"),
    }
}

fn with(mut body: Value, extra: &Value) -> Value {
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

fn complete(s: &TestServer, prompt: &str, extra: Value) -> Answer {
    let body = json!({"model": MODEL, "prompt": prompt, "temperature": 0, "max_tokens": 24});
    answer(&s.post("/v1/completions", &with(body, &extra)), false)
}

fn chat(s: &TestServer, messages: &Value, extra: Value) -> Answer {
    let body = json!({"model": MODEL, "messages": messages, "temperature": 0, "max_tokens": 16});
    answer(&s.post("/v1/chat/completions", &with(body, &extra)), true)
}

/// `n` words of text that differs with `seed`.
fn words(seed: u64, n: usize) -> String {
    const W: &[&str] = &[
        "the", "quiet", "river", "green", "stone", "light", "local", "machine", "data", "time",
        "server", "model", "token", "stream", "reply", "text",
    ];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            W[(x % W.len() as u64) as usize]
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn cleared() -> Value {
    json!({"cache_prompt": false})
}

#[test]
fn a_conversation_reuses_its_earlier_turns_and_answers_as_a_cleared_slot_would() {
    let s = server(2);
    let mut messages = json!([
        {"role": "system", "content": words(1, 120)},
        {"role": "user", "content": "what does the river say?"}
    ]);
    let mut previous_prompt = 0;
    let mut reused = 0;
    for turn in 1..=4 {
        let r = chat(&s, &messages, json!({}));
        let c = chat(&s, &messages, cleared());
        assert_eq!(r.text, c.text, "turn {turn}: reuse changed the answer");
        assert_eq!(
            c.cached, 0,
            "turn {turn}: an opted-out request reused cells"
        );
        if turn == 1 {
            assert_eq!(r.cached, 0);
        } else {
            // The whole previous turn (at most its last token or two, where the answer's
            // text tokenizes differently from the tokens generated) is reused.
            assert!(
                r.cached + 2 >= previous_prompt && r.cached < r.prompt,
                "turn {turn}: {} of {} cached, the previous prompt had {previous_prompt}",
                r.cached,
                r.prompt
            );
        }
        reused += r.cached;
        previous_prompt = r.prompt;
        let history = messages.as_array_mut().unwrap();
        history.push(json!({"role": "assistant", "content": r.text}));
        history.push(json!({"role": "user", "content": format!("and then, {}?", words(turn, 6))}));
    }
    assert_eq!(
        s.metric("sovereign_prompt_tokens_cached_total"),
        reused as f64
    );
}

#[test]
fn a_prompt_that_diverges_in_the_middle_reuses_only_the_shared_part() {
    let s = server(1);
    let (head, end) = (words(2, 100), words(3, 20));
    let a = format!("{head} {} {end}", words(4, 60));
    let b = format!("{head} {} {end}", words(5, 60));
    let ra = complete(&s, &a, json!({}));
    let rb = complete(&s, &b, json!({}));
    let cb = complete(&s, &b, cleared());
    assert_eq!(rb.text, cb.text, "reuse changed the answer");
    // The same ending after another middle answers otherwise: the answer depends on the
    // cells of the middle, so reusing the wrong ones would have shown.
    assert_ne!(ra.text, rb.text);
    let head_tokens = complete(&s, &head, cleared()).prompt;
    assert!(
        rb.cached + 2 >= head_tokens && rb.cached < head_tokens + 5,
        "{} cached; the shared head has {head_tokens} tokens",
        rb.cached
    );
}

#[test]
fn stop_strings_constrained_answers_and_a_whole_cached_prompt_answer_as_a_cleared_slot() {
    let s = server(2);
    let prompt = words(6, 150);
    let full = complete(&s, &prompt, cleared()).text;
    let stop: String = full.chars().skip(12).take(3).collect();
    let stopped = json!({"stop": [stop]});
    // First, then the same prompt again: held whole, its last token is decoded again.
    let first = complete(&s, &prompt, stopped.clone());
    let again = complete(&s, &prompt, stopped.clone());
    let c = complete(&s, &prompt, with(stopped, &cleared()));
    assert_eq!((&first.text, &again.text), (&c.text, &c.text));
    assert!(
        c.text.len() < full.len(),
        "the stop string {stop:?} did not cut {full:?}"
    );
    assert_eq!(again.cached, again.prompt - 1);

    let schema = json!({"response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {
        "type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}}}});
    let first = complete(&s, &prompt, schema.clone());
    let again = complete(&s, &prompt, schema.clone());
    let c = complete(&s, &prompt, with(schema, &cleared()));
    assert!(c.text.starts_with('{'), "{}", c.text);
    assert_eq!((&first.text, &again.text), (&c.text, &c.text));
    assert!(again.cached > 0);
}

#[test]
fn a_busy_slots_prefix_is_copied_into_a_free_slot() {
    let s = server(4);
    let system = words(7, 300);
    // A long generation holds slot 0 with the system prompt decoded.
    let (status, mut reader) = s.open_stream(
        "/v1/completions",
        &json!({"model": MODEL, "prompt": format!("{system} first"), "temperature": 0,
                "max_tokens": 1500, "stream": true}),
    );
    assert_eq!(status, 200);
    let mut line = String::new();
    while !line.contains("\"text\":\"") || line.contains("\"text\":\"\"") {
        line.clear();
        reader.read_line(&mut line).expect("stream");
    }
    // The other slots are empty: what this request reuses was copied from slot 0.
    let prompt = format!("{system} second question");
    let copied = complete(&s, &prompt, json!({}));
    let system_tokens = complete(&s, &system, cleared()).prompt;
    assert!(
        copied.cached + 2 >= system_tokens,
        "{} cached; the system prompt has {system_tokens} tokens",
        copied.cached
    );
    drop(reader);
    let c = complete(&s, &prompt, cleared());
    assert_eq!(copied.text, c.text, "the copied cells changed the answer");
}

#[test]
fn concurrent_requests_decode_a_shared_system_prompt_once() {
    let s = server(4);
    let system = words(11, 400);
    let system_tokens = complete(&s, &system, cleared()).prompt;
    let prompts: Vec<String> = (0..4)
        .map(|q| format!("{system} question {q}: {}", words(20 + q, 3)))
        .collect();
    let before = s.metric("sovereign_prompt_tokens_total");
    // However they arrive (together, or while another still decodes the system prompt, or
    // after), the system prompt is decoded by one of them and reused by the others.
    let answers: Vec<Answer> = std::thread::scope(|scope| {
        let hs: Vec<_> = prompts
            .iter()
            .map(|p| scope.spawn(|| complete(&s, p, json!({}))))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let decoded = s.metric("sovereign_prompt_tokens_total") - before;
    let total: u64 = answers.iter().map(|a| a.prompt).sum();
    assert!(
        decoded < (system_tokens + 4 * (total / 4 - system_tokens + 3)) as f64,
        "{decoded} prompt tokens decoded for 4 prompts of {} sharing {system_tokens}",
        total / 4
    );
    for (p, a) in prompts.iter().zip(&answers) {
        assert_eq!(
            a.text,
            complete(&s, p, cleared()).text,
            "reuse changed an answer"
        );
    }
}

#[test]
fn streamed_usage_reports_cached_tokens() {
    let s = server(1);
    let prompt = words(8, 80);
    complete(&s, &prompt, json!({}));
    let r = s.post(
        "/v1/completions",
        &json!({"model": MODEL, "prompt": prompt, "temperature": 0, "max_tokens": 4,
                "stream": true, "stream_options": {"include_usage": true}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let usage: Value = r
        .sse_data()
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .find(|v| !v["usage"].is_null())
        .expect("a usage chunk")["usage"]
        .clone();
    let prompt_tokens = usage["prompt_tokens"].as_u64().unwrap();
    assert_eq!(
        usage["prompt_tokens_details"]["cached_tokens"],
        json!(prompt_tokens - 1)
    );
}

#[test]
fn a_request_that_opts_out_neither_reuses_nor_leaves_its_cells() {
    let s = server(1);
    let prompt = words(9, 80);
    assert_eq!(complete(&s, &prompt, cleared()).cached, 0);
    assert_eq!(
        complete(&s, &prompt, json!({})).cached,
        0,
        "the opted-out request left cells"
    );
    let r = complete(&s, &prompt, json!({}));
    assert_eq!(r.cached, r.prompt - 1);
    let bad = s.post(
        "/v1/completions",
        &json!({"model": MODEL, "prompt": "x", "cache_prompt": "no"}),
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
}

#[test]
fn serve_no_prompt_cache_decodes_every_prompt_whole() {
    let port = free_port();
    let mut cmd = sovereign();
    cmd.args([
        "serve",
        "--no-prompt-cache",
        "--slots",
        "1",
        "--context",
        "1024",
    ])
    .args(["--listen", &format!("127.0.0.1:{port}")])
    .arg("--model")
    .arg(format!("{MODEL}={}", tiny_random().display()));
    let d = Served::start(cmd, port, tempfile::tempdir().unwrap(), None);
    let body = json!({"model": MODEL, "prompt": words(10, 60), "temperature": 0, "max_tokens": 4});
    for _ in 0..2 {
        let (status, text) =
            inference_support::call(d.port, "POST", "/v1/completions", None, Some(&body));
        assert_eq!(status, 200, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    }
}
