//! The inference domain's health check against a real daemon: the real HTTP server and
//! llama.cpp on the generated tiny model, on 127.0.0.1. (Apply runs it where systemd
//! starts the daemon; here PID 1 is not systemd, so the check is driven directly.)
#![allow(clippy::disallowed_methods)]
// Needs llama.cpp: built only with the `engine` feature (the default).
#![cfg(feature = "engine")]

mod inference_support;

use std::time::Duration;

use inference_support::{ServerOptions, start};
use sovereign::domains::deployment::health::probe_daemon;

#[test]
fn the_check_passes_when_the_daemon_lists_every_declared_model() {
    let server = start(ServerOptions::default());
    let listen = server.addr.to_string();
    let seen = probe_daemon(
        &listen,
        Some("test-key"),
        &["tiny"],
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(seen.contains("/v1/models lists tiny"), "{seen}");

    let missing = probe_daemon(
        &listen,
        Some("test-key"),
        &["tiny", "coder"],
        Duration::from_secs(30),
    )
    .unwrap_err();
    let text = format!("{missing:#}");
    assert!(text.contains("does not list coder"), "{text}");
    assert!(text.contains("it lists: tiny"), "{text}");

    let wrong_key =
        probe_daemon(&listen, Some("nope"), &["tiny"], Duration::from_secs(30)).unwrap_err();
    assert!(format!("{wrong_key:#}").contains("401"), "{wrong_key:#}");
}

#[test]
fn the_check_fails_naming_the_address_when_nothing_answers() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = probe_daemon(
        &format!("127.0.0.1:{port}"),
        None,
        &["tiny"],
        Duration::from_secs(1),
    )
    .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains(&format!(
            "http://127.0.0.1:{port}/health did not answer 200 within 1s"
        )),
        "{text}"
    );
}
