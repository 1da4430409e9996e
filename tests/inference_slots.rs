//! Admission and slots against real llama.cpp: a full queue answers 429, and a client that
//! hangs up mid-stream frees its slot at once (the generation does not run to its end).
// Needs llama.cpp: built only with the `engine` feature (the default).
#![cfg(feature = "engine")]

mod inference_support;

use std::io::BufRead;
use std::time::{Duration, Instant};

use inference_support::{ServerOptions, chat_body, endless_completion, start};
use serde_json::json;

/// A request that would generate for a long time if nothing stopped it.
fn long_stream() -> serde_json::Value {
    endless_completion(json!({"max_tokens": 3500, "stream": true}))
}

#[test]
fn queue_full_is_429_and_the_daemon_recovers() {
    let s = start(ServerOptions {
        slots: 1,
        queue: 1,
        ctx: 4096,
        ..Default::default()
    });
    let (st1, r1) = s.open_stream("/v1/completions", &long_stream());
    let (st2, r2) = s.open_stream("/v1/completions", &long_stream());
    assert_eq!((st1, st2), (200, 200));
    let r = s.post(
        "/v1/chat/completions",
        &chat_body("one more", json!({"max_tokens": 4})),
    );
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.error().1.as_deref(), Some("queue_full"));
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    drop((r1, r2));
    // Both hung up: their places free and the next request is served.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = s.post(
            "/v1/chat/completions",
            &chat_body("again", json!({"max_tokens": 4})),
        );
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 429, "{}", r.body);
        assert!(Instant::now() < deadline, "the queue never drained");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn disconnect_mid_stream_frees_the_slot() {
    let s = start(ServerOptions {
        slots: 1,
        queue: 0,
        ctx: 4096,
        ..Default::default()
    });
    let (status, mut reader) = s.open_stream("/v1/completions", &long_stream());
    assert_eq!(status, 200);
    // Read until some generated text arrived, then hang up.
    let mut line = String::new();
    let mut content_chunks = 0;
    while content_chunks < 3 {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line.contains("\"text\":\"") && !line.contains("\"text\":\"\"") {
            content_chunks += 1;
        }
    }
    assert_eq!(s.metric("sovereign_busy_slots"), 1.0);
    drop(reader);
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.metric("sovereign_busy_slots") != 0.0 {
        assert!(Instant::now() < deadline, "the slot was never freed");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Freed long before the 3500-token budget was spent.
    let generated = s.metric("sovereign_generated_tokens_total");
    assert!(
        generated < 3000.0,
        "{generated} tokens generated after the client left"
    );
    // The single slot serves the next request.
    let r = s.post(
        "/v1/chat/completions",
        &chat_body("next", json!({"max_tokens": 4})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}
