//! Shared by the inference tests: the generated tiny model (written once per test binary
//! with the project's one GGUF writer, crates/gguf), in-process servers on 127.0.0.1:0, and a minimal
//! blocking HTTP/1.1 client over a raw socket (so a test can also hang up mid-stream).
// Tests build their own worlds (files, folders) directly.
#![allow(clippy::disallowed_methods)]
#![allow(dead_code)]

/// The generated models, from the project's one GGUF writer.
pub use sovereign_gguf::model as gguf;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use sovereign_inference::engine::{self, EngineConfig};
use sovereign_inference::job::ModelState;
use sovereign_inference::limits::ServerLimits;
use sovereign_inference::metrics::Metrics;
use sovereign_inference::server::{self, ApiKey, ServerState};

/// The `sovereign` binary, cleared of the environment a developer's shell may carry
/// (key, server, credentials, memory budget), so each test states what it gives.
#[allow(clippy::disallowed_methods)]
pub fn sovereign() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_sovereign"));
    c.env_remove("SOVEREIGN_API_KEY")
        .env_remove("SOVEREIGN_SERVER")
        .env_remove("SOVEREIGN_TEST_MEMORY")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env("NO_COLOR", "1");
    c
}

/// A daemon run as its own process on a loopback port, its stderr in a log file; killed
/// when the test ends, passed or not.
pub struct Served {
    pub child: std::process::Child,
    pub port: u16,
    /// The daemon's stderr.
    pub log: PathBuf,
    /// Holds the log and whatever the test put beside it.
    pub dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Start `cmd` (a `sovereign serve` listening on 127.0.0.1:`port`) with its stderr in
    /// `dir`/serve.log, and wait until `/health` answers 200 (`key` is sent with it).
    pub fn start(
        mut cmd: std::process::Command,
        port: u16,
        dir: tempfile::TempDir,
        key: Option<&str>,
    ) -> Served {
        let log = dir.path().join("serve.log");
        let child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn sovereign serve");
        let mut d = Served {
            child,
            port,
            log,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while call(port, "GET", "/health", key, None).0 != 200 {
            assert!(d.running(), "the daemon exited: {}", d.log_text());
            assert!(Instant::now() < deadline, "never healthy: {}", d.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A loopback port free right now, for a daemon started as a separate process. Taken below
/// the kernel's ephemeral range (32768 and up): a port from `bind(0)` could be handed to
/// another test's `bind(0)` or outgoing connection before the daemon binds it. Unique within
/// this process; the pid spreads concurrent test processes apart.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id().wrapping_mul(97);
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + offset.wrapping_add(n) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {FIRST} and {}", FIRST + SPAN)
}

/// The directory holding this process's generated models.
fn model_dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
}

/// Write a model from `spec` (once per file name per process).
pub fn model_file(file: &str, spec: gguf::ModelSpec) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let path = model_dir().path().join(file);
    if !path.exists() {
        let f = std::fs::File::create(&path).expect("create model");
        gguf::write_model(&spec, f).expect("write model");
    }
    path
}

/// The tiny model's shape with random weights and sharp attention: greedy decoding
/// depends on every earlier token (a different middle of a long prompt changes the answer),
/// and never stops by itself.
pub fn tiny_random() -> PathBuf {
    model_file(
        "tiny-random.gguf",
        gguf::ModelSpec {
            greedy_path: false,
            attention_gain: 3.0,
            ..gguf::ModelSpec::tiny(7)
        },
    )
}

/// The tiny test model with the default seed.
pub fn tiny() -> PathBuf {
    model_file("tiny.gguf", gguf::ModelSpec::tiny(42))
}

/// How to start a test server.
pub struct ServerOptions {
    pub models: Vec<(String, PathBuf)>,
    pub slots: usize,
    pub queue: usize,
    pub ctx: usize,
    pub key: Option<String>,
    pub body_limit: usize,
    /// Deadlines, the connection cap and the compile budget.
    pub limits: ServerLimits,
    /// Prefix reuse of the KV cache (`serve --no-prompt-cache` turns it off).
    pub prompt_cache: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            models: vec![("tiny".into(), tiny())],
            slots: 2,
            queue: 2,
            ctx: 1024,
            key: Some("test-key".into()),
            body_limit: server::DEFAULT_BODY_LIMIT,
            limits: ServerLimits::default(),
            prompt_cache: true,
        }
    }
}

/// A server running on its own runtime thread; dropping it shuts the server down.
pub struct TestServer {
    pub addr: SocketAddr,
    pub key: Option<String>,
    /// Fires the shutdown future.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _gone = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _joined = t.join();
        }
    }
}

pub fn start(opts: ServerOptions) -> TestServer {
    let metrics = Arc::new(Metrics::default());
    let mut models = BTreeMap::new();
    for (name, path) in &opts.models {
        let cfg = EngineConfig {
            path: path.clone(),
            slots: opts.slots,
            ctx: opts.ctx,
            queue: opts.queue,
            threads: 2,
            gpu_layers: Some(0),
            mlock: false,
            mmap: true,
            batch: 512,
            prompt_cache: opts.prompt_cache,
            adapters: Vec::new(),
        };
        models.insert(
            name.clone(),
            engine::spawn(name, cfg, metrics.clone()).expect("engine thread"),
        );
    }
    // Wait until every model is loaded.
    for (name, h) in &models {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match &*h.state.borrow() {
                ModelState::Ready(_) => break,
                ModelState::Failed(why) => panic!("model {name} failed to load: {why}"),
                ModelState::Loading => {}
            }
            assert!(
                Instant::now() < deadline,
                "model {name} still loading after 60 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let state = Arc::new(ServerState {
        body_limit: opts.body_limit,
        ..ServerState::new(
            models,
            None,
            opts.key.as_deref().map(ApiKey::new),
            metrics,
            opts.limits.clone(),
        )
    });
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    std_listener.set_nonblocking(true).expect("nonblocking");
    let addr = std_listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
            server::run(listener, state, async move {
                let _ = stop_rx.await;
            })
            .await
            .expect("server");
        });
    });
    TestServer {
        addr,
        key: opts.key,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

/// Send one request with `Connection: close` and read the answer to the end.
fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&[u8]>,
) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(k) = key {
        req.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    if let Some(b) = body {
        // The server may answer (413) before reading everything.
        let _ = s.write_all(b);
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    Ok(raw)
}

/// One request to a daemon running as its own process on `port`: (status, body), or
/// (0, "") while nothing answers there (a daemon still starting).
pub fn call(
    port: u16,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> (u16, String) {
    let body = body.map(Value::to_string);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    match send(addr, method, path, key, body.as_deref().map(str::as_bytes)) {
        Ok(raw) if raw.windows(4).any(|w| w == b"\r\n\r\n") => {
            let r = parse_response(&raw);
            (r.status, r.body)
        }
        _ => (0, String::new()),
    }
}

/// A response read to the end.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    /// The `data:` payloads of an SSE body, in order.
    pub fn sse_data(&self) -> Vec<String> {
        self.body
            .lines()
            .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
            .map(str::to_string)
            .collect()
    }

    /// The error object's `param` and `code`, checking OpenAI's shape on the way.
    pub fn error(&self) -> (Option<String>, Option<String>) {
        let v = self.json();
        let e = v["error"]
            .as_object()
            .unwrap_or_else(|| panic!("not an OpenAI error: {}", self.body));
        for k in ["message", "type", "param", "code"] {
            assert!(e.contains_key(k), "error lacks {k}: {}", self.body);
        }
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
        (
            e["param"].as_str().map(str::to_string),
            e["code"].as_str().map(str::to_string),
        )
    }
}

impl TestServer {
    /// Send a request; `auth` overrides the server's key (`Some("")` sends none).
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<&[u8]>,
    ) -> Response {
        let key = match auth {
            Some("") => None,
            Some(k) => Some(k.to_string()),
            None => self.key.clone(),
        };
        let raw = send(self.addr, method, path, key.as_deref(), body).expect("connect");
        parse_response(&raw)
    }

    pub fn get(&self, path: &str) -> Response {
        self.raw("GET", path, None, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Response {
        self.raw("POST", path, None, Some(body.to_string().as_bytes()))
    }

    /// Start a streamed request and return the socket once the status line and headers
    /// arrived, with the status.
    pub fn open_stream(&self, path: &str, body: &Value) -> (u16, BufReader<TcpStream>) {
        let mut s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(120)))
            .expect("timeout");
        let b = body.to_string();
        let key = self
            .key
            .clone()
            .map(|k| format!("Authorization: Bearer {k}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{key}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        );
        s.write_all(req.as_bytes()).expect("write");
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).expect("status line");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("status");
        loop {
            line.clear();
            r.read_line(&mut line).expect("header");
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        (status, r)
    }

    /// Current value of a metric line (first sample with that exact name and labels).
    pub fn metric(&self, name: &str) -> f64 {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Response {
        status,
        headers: head,
        body: String::from_utf8(body).expect("body is UTF-8"),
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
    out
}

/// A chat body for the tiny model.
/// A completion request that keeps its slot busy until `max_tokens`: the tiny model's greedy
/// decoding follows a fixed path to an end token from any prompt, except one ending with
/// `gguf::LOOP_TRIGGER` ("~"), after which it cycles `^|~` for ever.
pub fn endless_completion(extra: Value) -> Value {
    let mut b = serde_json::json!({"model": "tiny", "prompt": format!("go on {}", gguf::LOOP_TRIGGER), "temperature": 0});
    b.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    b
}

pub fn chat_body(content: &str, extra: Value) -> Value {
    let mut b =
        serde_json::json!({"model": "tiny", "messages": [{"role": "user", "content": content}]});
    b.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    b
}
