//! The control commands' HTTP client for the running daemon's admin API: found through
//! `--server URL` or SOVEREIGN_SERVER, authenticated with the key from `--api-key-file` or
//! SOVEREIGN_API_KEY (never argv, never printed).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::inference::daemon;

/// Where the daemon is and how to authenticate.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// The daemon's address.
    #[arg(
        long,
        env = "SOVEREIGN_SERVER",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    pub server: String,
    /// File holding the API key (mode 600); else SOVEREIGN_API_KEY.
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
}

/// A connection to the daemon's admin API.
pub struct Client {
    base: reqwest::Url,
    key: Option<String>,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

/// A refusal from the daemon: its OpenAI-shaped error.
#[derive(Debug)]
pub struct Refused {
    pub body: Value,
}

impl Refused {
    pub fn message(&self) -> String {
        self.body["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| self.body.to_string())
    }
}

/// What a call can end in besides an answer.
pub enum CallError {
    /// The daemon answered with an error status.
    Refused(Refused),
    /// Nothing usable came back.
    Failed(miette::Report),
}

impl CallError {
    pub fn into_report(self) -> miette::Report {
        match self {
            CallError::Refused(r) => miette::miette!("{}", r.message()),
            CallError::Failed(r) => r,
        }
    }
}

impl Client {
    pub fn new(args: &ServerArgs) -> miette::Result<Client> {
        let base = reqwest::Url::parse(&args.server)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                miette::miette!(
                    "--server {:?} is not an http:// or https:// URL (e.g. http://127.0.0.1:8080)",
                    args.server
                )
            })?;
        let key = daemon::resolve_key(args.api_key_file.as_deref(), None)
            .map_err(|e| miette::miette!("{e}"))?;
        // Several clients may be built in one process; the first installation wins.
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| miette::miette!("cannot start the HTTP runtime: {e}"))?;
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // A load answers once the model is ready: loading a large one takes minutes.
            .read_timeout(Duration::from_secs(900))
            .user_agent(concat!("sovereign/", env!("CARGO_PKG_VERSION")));
        if base.scheme() == "http" {
            // No TLS on this connection: reading the system's certificates would only make
            // a machine without ca-certificates fail to talk to its own daemon.
            http = http.tls_certs_only([]);
        }
        let http = http
            .build()
            .map_err(|e| miette::miette!("cannot build the HTTP client: {e}"))?;
        Ok(Client {
            base,
            key,
            http,
            runtime,
        })
    }

    pub fn get(&self, path: &str) -> Result<Value, CallError> {
        self.call(reqwest::Method::GET, path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, CallError> {
        self.call(reqwest::Method::POST, path, Some(body))
    }

    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CallError> {
        let url = self
            .base
            .join(path)
            .map_err(|e| CallError::Failed(miette::miette!("cannot form the URL: {e}")))?;
        let mut req = self.http.request(method, url);
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        let server = self.base.as_str().trim_end_matches('/');
        self.runtime.block_on(async {
            let resp = req.send().await.map_err(|e| {
                CallError::Failed(if e.is_connect() {
                    miette::miette!(
                        "no daemon answers at {server}; start it with `sovereign serve` or pass --server"
                    )
                } else {
                    miette::miette!("the daemon at {server} did not answer: {e}")
                })
            })?;
            let status = resp.status();
            let bytes = resp.bytes().await.map_err(|e| {
                CallError::Failed(miette::miette!(
                    "the daemon at {server} broke off its answer: {e}"
                ))
            })?;
            let value: Value = serde_json::from_slice(&bytes).map_err(|_| {
                CallError::Failed(miette::miette!(
                    "the daemon at {server} answered {status} with something other than JSON; is --server the sovereign daemon?"
                ))
            })?;
            if status.is_success() {
                Ok(value)
            } else if status == reqwest::StatusCode::UNAUTHORIZED {
                Err(CallError::Failed(if self.key.is_some() {
                    miette::miette!("the daemon at {server} refused the API key; check --api-key-file or SOVEREIGN_API_KEY")
                } else {
                    miette::miette!("the daemon at {server} wants an API key: give --api-key-file FILE or SOVEREIGN_API_KEY")
                }))
            } else if status == reqwest::StatusCode::NOT_FOUND
                && value["error"]["code"] == "not_found"
            {
                Err(CallError::Failed(miette::miette!(
                    "the daemon at {server} has no admin API; it is an older sovereign or another server"
                )))
            } else {
                Err(CallError::Refused(Refused { body: value }))
            }
        })
    }
}

/// `12s`, `3m4s`: whole seconds as the profile writes durations.
pub fn seconds(s: f64) -> String {
    crate::profile::units::Duration(Duration::from_secs(s.max(0.0).round() as u64)).to_string()
}
