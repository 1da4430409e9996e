//! Hostile clients against the real daemon: `sovereign serve` as its own process on the
//! generated tiny model, loopback, no key (the default any local user can reach). Each case
//! of the corpus is sent, then the daemon must still be running, `/health` must answer, and
//! a plain chat must answer within a bound taken from a baseline measured at the start of
//! the same test (a liveness bound, generous on purpose; speed lives in the benchmarks).
// Tests build their own worlds (files, folders) directly.
#![allow(clippy::disallowed_methods)]
// Needs llama.cpp: built only with the `engine` feature (the default).
#![cfg(feature = "engine")]

mod inference_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use inference_support::{Served, call, chat_body, endless_completion, free_port, sovereign, tiny};
use serde_json::{Value, json};

/// The daemon under attack.
struct Daemon(Served);

impl std::ops::Deref for Daemon {
    type Target = Served;
    fn deref(&self) -> &Served {
        &self.0
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut Served {
        &mut self.0
    }
}

impl Daemon {
    /// `serve` on the tiny model, loopback, no key, with `args`.
    fn start(args: &[&str]) -> Daemon {
        let port = free_port();
        let mut cmd = sovereign();
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--model")
            .arg(format!("tiny={}", tiny().display()))
            .args(["--slots", "2", "--context", "1024", "--threads", "2"])
            .args(args);
        Daemon(Served::start(cmd, port, tempfile::tempdir().unwrap(), None))
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (status, text) = call(self.port, "POST", path, None, Some(body));
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    /// One plain chat; its latency.
    fn plain(&self) -> Duration {
        let start = Instant::now();
        let (status, body) = self.post(
            "/v1/chat/completions",
            &chat_body("hello", json!({"max_tokens": 4, "temperature": 0})),
        );
        assert_eq!(status, 200, "a plain chat failed: {body}");
        start.elapsed()
    }

    /// After a hostile case: the process lives, health answers, a plain chat answers
    /// within `bound`.
    fn assert_alive(&mut self, case: &str, bound: Duration) {
        assert!(
            self.running(),
            "{case}: the daemon died:\n{}",
            self.log_text()
        );
        assert_eq!(
            call(self.port, "GET", "/health", None, None).0,
            200,
            "{case}: /health"
        );
        let took = self.plain();
        assert!(
            took <= bound,
            "{case}: a plain chat took {took:?}, beyond {bound:?}"
        );
    }
}

/// The liveness bound: twenty times the median of five plain chats, plus two seconds.
fn baseline(d: &Daemon) -> Duration {
    let mut v: Vec<Duration> = (0..5).map(|_| d.plain()).collect();
    v.sort();
    v[2] * 20 + Duration::from_secs(2)
}

fn gbnf(grammar: String) -> Value {
    chat_body(
        "hi",
        json!({"grammar": grammar, "max_tokens": 4, "temperature": 0}),
    )
}

fn schema(s: Value) -> Value {
    chat_body(
        "hi",
        json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": s}}, "max_tokens": 4, "temperature": 0}),
    )
}

/// `$defs` d0 .. d{n-1}, each referring to the next: flat for serde, deep for a compiler.
fn ref_chain(n: usize) -> Value {
    let mut defs = serde_json::Map::new();
    for i in 0..n {
        let next = if i + 1 < n {
            json!({"type": "object", "properties": {"n": {"$ref": format!("#/$defs/d{}", i + 1)}}})
        } else {
            json!({"type": "integer"})
        };
        defs.insert(format!("d{i}"), next);
    }
    json!({"$defs": defs, "$ref": "#/$defs/d0"})
}

fn nested_properties(n: usize) -> Value {
    let mut s = json!({"type": "integer"});
    for _ in 0..n {
        s = json!({"type": "object", "properties": {"a": s}, "required": ["a"]});
    }
    s
}

/// `(((...)))` `n` deep in GBNF.
fn gbnf_nested(n: usize) -> String {
    format!("root ::= {}\"a\"{}", "(".repeat(n), ")".repeat(n))
}

/// `rK ::= "a" rK+1 | "b"`, `n` rules.
fn gbnf_chain(n: usize) -> String {
    let mut g = String::from("root ::= r0\n");
    for k in 0..n {
        if k + 1 < n {
            g.push_str(&format!("r{k} ::= \"a\" r{} | \"b\"\n", k + 1));
        } else {
            g.push_str(&format!("r{k} ::= \"b\"\n"));
        }
    }
    g
}

fn lark_chain(n: usize) -> String {
    let mut g = String::from("%llguidance {}\nstart: r0\n");
    for k in 0..n {
        if k + 1 < n {
            g.push_str(&format!("r{k}: \"a\" r{} | \"b\"\n", k + 1));
        } else {
            g.push_str(&format!("r{k}: \"b\"\n"));
        }
    }
    g
}

/// A 400 in OpenAI's shape whose message says which limit and what was given.
fn assert_limit_400(case: &str, (status, body): (u16, Value)) {
    assert_eq!(status, 400, "{case}: {body}");
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("limit"), "{case}: {msg}");
    assert!(
        body["error"]["type"] == "invalid_request_error",
        "{case}: {body}"
    );
}

/// Any answer but a crash: the case may be refused (4xx) or served (200), never a 500 and
/// never silence.
fn assert_answered(case: &str, (status, body): (u16, Value)) {
    assert!(
        status == 200 || (400..500).contains(&status) || status == 503,
        "{case}: {status} {body}"
    );
    if status != 200 {
        assert!(body["error"]["message"].is_string(), "{case}: {body}");
    }
}

/// Write `raw` on a fresh connection and read the answer to the end (the server closes).
fn raw_exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // The server may answer before it read everything.
    let _ = s.write_all(raw);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The status and the OpenAI error object of a raw answer.
fn error_of(answer: &str) -> (u16, Value) {
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not a JSON body ({e}): {answer:?}"));
    assert!(v["error"]["message"].is_string(), "{answer}");
    assert!(v["error"].get("type").is_some() && v["error"].get("code").is_some());
    (status, v)
}

#[test]
fn grammar_and_schema_bombs_are_refused_or_served_and_the_daemon_lives() {
    let mut d = Daemon::start(&["--grammar-compile-timeout", "60s"]);
    let bound = baseline(&d);
    let chat = "/v1/chat/completions";

    // Deep nesting of each kind.
    for n in [3_000, 100_000] {
        assert_limit_400(
            &format!("GBNF groups {n} deep"),
            d.post(chat, &gbnf(gbnf_nested(n))),
        );
        d.assert_alive("GBNF nesting", bound);
    }
    let lark_nested = format!(
        "%llguidance {{}}\nstart: {}\"a\"{}",
        "(".repeat(5_000),
        ")".repeat(5_000)
    );
    assert_limit_400("Lark groups 5000 deep", d.post(chat, &gbnf(lark_nested)));
    d.assert_alive("Lark nesting", bound);
    assert_limit_400(
        "properties 100 deep",
        d.post(chat, &schema(nested_properties(100))),
    );
    d.assert_alive("schema nesting", bound);
    // Past serde's own nesting limit: the body itself is refused.
    let deep_json = format!(
        "{{\"model\":\"tiny\",\"messages\":{}{}}}",
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    let answer = raw_exchange(
        d.addr(),
        format!(
            "POST {chat} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{deep_json}",
            deep_json.len()
        )
        .as_bytes(),
    );
    assert_eq!(error_of(&answer).0, 400, "{answer}");
    d.assert_alive("JSON nested 20000 deep", bound);

    // Long rule and reference chains: the crash sizes from the field, and beyond the limits.
    for n in [700, 1_000] {
        assert_answered(
            &format!("GBNF chain of {n} rules"),
            d.post(chat, &gbnf(gbnf_chain(n))),
        );
        d.assert_alive("GBNF chain", bound);
    }
    assert_limit_400(
        "GBNF chain of 5000 rules",
        d.post(chat, &gbnf(gbnf_chain(5_000))),
    );
    assert_answered(
        "Lark chain of 700 rules",
        d.post(chat, &gbnf(lark_chain(700))),
    );
    assert_limit_400(
        "Lark chain of 5000 rules",
        d.post(chat, &gbnf(lark_chain(5_000))),
    );
    d.assert_alive("Lark chain", bound);
    assert_limit_400("$ref chain of 500", d.post(chat, &schema(ref_chain(500))));
    assert_limit_400(
        "$ref chain of 5000",
        d.post(chat, &schema(ref_chain(5_000))),
    );
    d.assert_alive("$ref chain", bound);
    let (status, body) = d.post(chat, &schema(ref_chain(20)));
    assert_eq!(
        status, 200,
        "a $ref chain of 20 is an ordinary schema: {body}"
    );

    // Huge enums and patterns, pathological regexes.
    let words: Vec<String> = (0..50_000).map(|i| format!("w{i}")).collect();
    assert_limit_400(
        "an enum of 50000",
        d.post(chat, &schema(json!({"enum": words}))),
    );
    let words: Vec<String> = (0..2_000).map(|i| format!("word{i}")).collect();
    assert_answered(
        "an enum of 2000",
        d.post(chat, &schema(json!({"enum": words}))),
    );
    assert_limit_400(
        "a 100 KB pattern",
        d.post(
            chat,
            &schema(json!({"type": "string", "pattern": "a".repeat(100_000)})),
        ),
    );
    for pattern in [
        "(a*)*b",
        "(a|a)*$",
        "^(a+)+$",
        "a{1000}{1000}",
        "[\\s\\S]{0,60000}",
        "(x{0,500}){0,500}",
        "((((((((((a*)*)*)*)*)*)*)*)*)*)*",
    ] {
        assert_answered(
            &format!("pattern {pattern}"),
            d.post(chat, &schema(json!({"type": "string", "pattern": pattern}))),
        );
        d.assert_alive(pattern, bound);
    }
    assert!(d.running(), "{}", d.log_text());
}

#[test]
fn slow_heads_slow_bodies_idle_connections_and_bad_heads_are_bounded() {
    let mut d = Daemon::start(&[
        "--header-timeout",
        "2s",
        "--body-timeout",
        "2s",
        "--idle-timeout",
        "3s",
        "--max-connections",
        "64",
    ]);
    let bound = baseline(&d);

    // A head sent one byte every 200 ms is cut at the head deadline, whatever it sends.
    let mut slow = TcpStream::connect(d.addr()).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    let head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let mut closed = false;
    for b in head.iter().cycle().take(400) {
        if slow.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        if matches!(slow.read(&mut buf), Ok(0)) {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(closed, "a trickled head was never cut");
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "cut only after {:?}",
        start.elapsed()
    );
    d.assert_alive("slow head", bound);

    // A body that stops is a 408 in OpenAI's shape.
    let answer = raw_exchange(
        d.addr(),
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\":",
    );
    let (status, err) = error_of(&answer);
    assert_eq!(status, 408, "{answer}");
    assert_eq!(err["error"]["code"], "request_timeout");
    d.assert_alive("slow body", bound);

    // Many idle connections (fewer than the cap) do not slow anyone, and are closed.
    let idle: Vec<TcpStream> = (0..48)
        .map(|_| TcpStream::connect(d.addr()).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    d.assert_alive("48 idle connections", bound);
    std::thread::sleep(Duration::from_secs(4));
    for mut c in idle {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 16];
        assert!(
            matches!(c.read(&mut buf), Ok(0) | Err(_)),
            "an idle connection was kept past the deadlines"
        );
    }

    // Malformed and oversized heads: the parser's own rejections, in OpenAI's shape.
    let big_header = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    let (status, _) = error_of(&raw_exchange(d.addr(), big_header.as_bytes()));
    assert_eq!(status, 431);
    let many: String = (0..300).map(|i| format!("X-H{i}: v\r\n")).collect();
    let (status, _) = error_of(&raw_exchange(
        d.addr(),
        format!("GET /health HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes(),
    ));
    assert_eq!(status, 431);
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "u".repeat(70_000));
    let (status, _) = error_of(&raw_exchange(d.addr(), long_uri.as_bytes()));
    assert!(status == 414 || status == 431, "{status}");
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nBad Header Without Colon\r\n\r\n",
        b"\xff\xfe\x00\x01\r\n\r\n",
    ] {
        let (status, _) = error_of(&raw_exchange(d.addr(), garbage));
        assert_eq!(status, 400);
    }
    d.assert_alive("bad heads", bound);

    // A client that goes away mid-stream frees its slot.
    for _ in 0..4 {
        let mut s = TcpStream::connect(d.addr()).unwrap();
        let body = endless_completion(json!({"stream": true, "max_tokens": 500})).to_string();
        s.write_all(
            format!(
                "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
        let mut buf = [0u8; 256];
        let _ = s.read(&mut buf);
    }
    d.assert_alive("disconnects mid-stream", bound);
}

#[test]
fn a_flood_beyond_the_cap_is_answered_503_and_the_daemon_recovers() {
    // A long head deadline: the held connections must stay held while the flood is sent,
    // however slowly a loaded machine runs it.
    let mut d = Daemon::start(&["--max-connections", "8", "--header-timeout", "120s"]);
    let bound = baseline(&d);
    // Take every place of the cap. A connection of the baseline may still hold its place
    // for an instant after its client saw the end, so one taken too early is answered 503
    // at once: replace it until all eight stay silent.
    let mut held: Vec<TcpStream> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while held.len() < 8 {
        assert!(Instant::now() < deadline, "could not hold 8 connections");
        let c = TcpStream::connect(d.addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 16];
        match (&c).read(&mut buf) {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                held.push(c)
            }
            _ => {}
        }
    }
    let mut refused = 0;
    for _ in 0..40 {
        let answer = raw_exchange(d.addr(), b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        let (status, err) = error_of(&answer);
        assert_eq!(status, 503, "{answer}");
        assert_eq!(err["error"]["code"], "too_many_connections");
        refused += 1;
    }
    assert_eq!(refused, 40);
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    d.assert_alive("a flood beyond the cap", bound);
}

/// Sets the flag when dropped, so the compile clients stop even when an assertion of the
/// main thread fails (otherwise the scope would wait for them for ever).
struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn concurrent_worst_case_compiles_leave_plain_chats_answering() {
    let mut d = Daemon::start(&[]);
    let bound = baseline(&d);
    let chat = "/v1/chat/completions";
    let stop = std::sync::atomic::AtomicBool::new(false);
    let outcomes = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|sc| {
        let _stop = StopOnDrop(&stop);
        for t in 0..6 {
            let (d, stop, outcomes) = (&d, &stop, &outcomes);
            sc.spawn(move || {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // A distinct heavy schema each time, so the cache never answers; one
                    // token, so what is measured is the compile, not constrained decoding.
                    let props: serde_json::Map<String, Value> = (0..60)
                        .map(|k| {
                            (
                                format!("f{t}_{i}_{k}"),
                                json!({"type": "string", "pattern": format!("^[a-z]{{1,{}}}(-[0-9]{{2,4}})*$", 20 + k)}),
                            )
                        })
                        .collect();
                    let mut body = schema(json!({"type": "object", "properties": props}));
                    body["max_tokens"] = json!(1);
                    let (status, body) = d.post(chat, &body);
                    outcomes.lock().unwrap().push(status);
                    assert!(
                        [200, 429, 503].contains(&status),
                        "compile request: {status} {body}"
                    );
                    i += 1;
                }
            });
        }
        std::thread::sleep(Duration::from_millis(500));
        for _ in 0..10 {
            let took = d.plain();
            assert!(took <= bound, "a plain chat beside compiles took {took:?}");
        }
    });
    assert!(!outcomes.lock().unwrap().is_empty());
    d.assert_alive("concurrent compiles", bound);
}

#[test]
fn shutdown_ends_what_is_left_at_its_deadline_and_exits_0() {
    let mut d = Daemon::start(&["--shutdown-timeout", "2s", "--body-timeout", "120s"]);
    // A request whose body never finishes, and a head that never finishes.
    let mut in_flight = TcpStream::connect(d.addr()).unwrap();
    in_flight
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\":")
        .unwrap();
    let mut half = TcpStream::connect(d.addr()).unwrap();
    half.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let pid = d.child.id() as i32;
    // SAFETY: kill only sends a signal to the daemon this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = loop {
        if let Some(s) = d.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "still running 20 s after SIGTERM:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit {status:?}:\n{}", d.log_text());
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "it did not wait for the deadline"
    );
    in_flight
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = String::new();
    let _ = in_flight.read_to_string(&mut answer);
    let (code, err) = error_of(&answer);
    assert_eq!(code, 503, "{answer}");
    assert_eq!(err["error"]["code"], "shutting_down");
    assert!(d.log_text().contains("stopped"), "{}", d.log_text());
}

#[test]
fn a_model_file_that_is_not_gguf_never_reaches_llama_cpp() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.gguf");
    let mut bytes = b"GGUF".to_vec();
    bytes.extend_from_slice(&3u32.to_le_bytes());
    bytes.extend_from_slice(&u64::MAX.to_le_bytes());
    bytes.extend_from_slice(&[0xAB; 64]);
    std::fs::write(&bad, &bytes).unwrap();
    let out = sovereign()
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--model")
        .arg(format!("bad={}", bad.display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a valid GGUF file") && err.contains(&*bad.display().to_string()),
        "{err}"
    );
}
