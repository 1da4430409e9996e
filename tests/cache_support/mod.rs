//! Shared by the cache tests: a tiny HTTP/1.1 file server on 127.0.0.1:0 that honours
//! Range and If-Range, records every request, and can cut its first transfer midway;
//! and helpers to build GGUF files and run the binary.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sovereign_gguf::write::{GgufBuilder, LlamaShape};

/// A request as the server saw it, and what it answered.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    /// Header names lowercased.
    pub headers: HashMap<String, String>,
    pub status: u16,
    /// Body bytes actually written.
    pub body_sent: u64,
}

/// The server's files and behaviour; shared with its thread.
struct State {
    /// URL path -> (bytes, ETag).
    files: HashMap<String, (Vec<u8>, String)>,
    /// Cut the next transfer after this many body bytes (then serve normally).
    cut_next_after: Option<u64>,
    seen: Vec<Seen>,
}

pub struct Server {
    pub base: String,
    state: Arc<Mutex<State>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let state = Arc::new(Mutex::new(State {
            files: HashMap::new(),
            cut_next_after: None,
            seen: Vec::new(),
        }));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                // A client that hangs up early is its business, not the server's.
                let _client_gone = serve(stream, &shared);
            }
        });
        Server { base, state }
    }

    /// Serve `bytes` at `path` with a strong ETag derived from `tag`.
    pub fn put(&self, path: &str, bytes: Vec<u8>, tag: &str) -> String {
        self.state
            .lock()
            .unwrap()
            .files
            .insert(path.to_owned(), (bytes, format!("\"{tag}\"")));
        format!("{}{path}", self.base)
    }

    pub fn cut_next_after(&self, bytes: u64) {
        self.state.lock().unwrap().cut_next_after = Some(bytes);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let (file, cut) = {
        let mut s = state.lock().unwrap();
        let file = s.files.get(&path).cloned();
        (file, s.cut_next_after.take())
    };
    let mut out = stream;
    let Some((bytes, etag)) = file else {
        out.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")?;
        record(state, path, headers, 404, 0);
        return Ok(());
    };
    let len = bytes.len() as u64;
    let range_start = headers
        .get("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<u64>().ok());
    let if_range_ok = headers.get("if-range").is_none_or(|v| *v == etag);
    let (status, start) = match range_start {
        Some(s) if s >= len => {
            out.write_all(format!("HTTP/1.1 416 Range Not Satisfiable\r\ncontent-range: bytes */{len}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes())?;
            record(state, path, headers, 416, 0);
            return Ok(());
        }
        Some(s) if if_range_ok => (206, s),
        _ => (200, 0),
    };
    let mut head = if status == 206 {
        format!(
            "HTTP/1.1 206 Partial Content\r\ncontent-range: bytes {start}-{}/{len}\r\n",
            len - 1
        )
    } else {
        "HTTP/1.1 200 OK\r\naccept-ranges: bytes\r\n".to_owned()
    };
    head.push_str(&format!(
        "content-length: {}\r\netag: {etag}\r\nconnection: close\r\n\r\n",
        len - start
    ));
    out.write_all(head.as_bytes())?;
    let body = &bytes[start as usize..];
    let n = cut.map_or(body.len(), |c| (c as usize).min(body.len()));
    out.write_all(&body[..n])?;
    out.flush()?;
    record(state, path, headers, status, n as u64);
    out.shutdown(std::net::Shutdown::Both)?;
    // Drain what the client may still send so the close is clean.
    let mut sink = Vec::new();
    let _already_closed = reader.read_to_end(&mut sink);
    Ok(())
}

fn record(
    state: &Mutex<State>,
    path: String,
    headers: HashMap<String, String>,
    status: u16,
    body_sent: u64,
) {
    state.lock().unwrap().seen.push(Seen {
        path,
        headers,
        status,
        body_sent,
    });
}

/// A small valid llama-shaped GGUF.
pub fn tiny_gguf() -> Vec<u8> {
    GgufBuilder::llama(LlamaShape::tiny()).to_bytes()
}

pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write test file");
    path
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Names of the files in a directory (empty when it does not exist).
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
