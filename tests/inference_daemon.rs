//! `sovereign serve` as a process: the loopback rule, the key file's permissions, the key
//! kept out of logs, and SIGTERM with a request in flight.
#![allow(clippy::disallowed_methods)]
// Needs llama.cpp: built only with the `engine` feature (the default).
#![cfg(feature = "engine")]

mod inference_support;

use std::io::{BufRead, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use inference_support::{free_port, sovereign, tiny};

#[test]
fn non_loopback_without_a_key_is_refused_at_start() {
    let out = sovereign()
        .args(["serve", "--listen", "0.0.0.0:0", "--model"])
        .arg(format!("tiny={}", tiny().display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without an API key"), "{err}");
}

#[test]
fn readable_key_file_is_refused_without_showing_the_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "very-secret-key\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = sovereign()
        .args(["serve", "--listen", "0.0.0.0:0", "--api-key-file"])
        .arg(&key)
        .arg("--model")
        .arg(format!("tiny={}", tiny().display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chmod 600"), "{err}");
    assert!(!err.contains("very-secret-key"), "{err}");
}

fn http(port: u16, req: &str) -> String {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn sigterm_finishes_the_request_in_flight_and_exits_zero() {
    let port = free_port();
    let mut child = sovereign()
        .env("SOVEREIGN_API_KEY", "  term-test-key\n")
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--slots",
            "1",
            "--context",
            "1024",
            "--threads",
            "2",
            "--model",
        ])
        .arg(format!("tiny={}", tiny().display()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && http(
                port,
                "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .starts_with("HTTP/1.1 200");
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "the daemon never became healthy");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the daemon exited early"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The key was trimmed: the bare key is accepted.
    // A prompt ending with "~" keeps the tiny model generating until max_tokens.
    let body = r#"{"model":"tiny","prompt":"hi ~","max_tokens":300,"temperature":0,"stream":true}"#;
    let req = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer term-test-key\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::io::Write::write_all(&mut s, req.as_bytes()).unwrap();
    let mut reader = std::io::BufReader::new(s);
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // Some generated text has arrived: the request is in flight.
    let mut line = String::new();
    while !line.contains("\"text\"") {
        line.clear();
        reader.read_line(&mut line).unwrap();
    }
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert!(
        rest.contains("data: [DONE]"),
        "the stream did not finish: {rest}"
    );
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.contains("POST /v1/completions 200"),
        "no access log line: {err}"
    );
    assert!(!err.contains("term-test-key"), "the key was logged: {err}");
}
