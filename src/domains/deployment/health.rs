//! The inference health check: the daemon answers `/health` and lists every declared
//! model in `/v1/models`. It feeds the engine's automatic rollback; where the service
//! cannot be started (no systemd), it is skipped and says so.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::Desired;
use crate::domain::{ApplyContext, HealthResult};

/// How long the daemon may take to come up after its (re)start.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// The pause between two `/health` attempts.
const POLL: Duration = Duration::from_millis(500);

pub fn check(cx: &ApplyContext<'_>, desired: &Desired) -> Vec<HealthResult> {
    if !desired.declared {
        return Vec::new();
    }
    let name = format!(
        "inference daemon answers on {} and lists its models",
        desired.listen
    );
    if let Some(why) = crate::host::systemd_unusable(cx.root, cx.host) {
        return vec![HealthResult::skipped(
            name,
            &format!("{why}, so the service cannot be started here"),
        )];
    }
    let result = probe(cx, desired);
    vec![match result {
        Ok(detail) => HealthResult {
            name,
            ok: true,
            detail,
        },
        Err(e) => HealthResult {
            name,
            ok: false,
            detail: format!("{e:#}"),
        },
    }]
}

/// Where to connect for a listen address: an unspecified one (0.0.0.0, ::) is reached on
/// loopback.
pub fn connect_to(listen: &str) -> anyhow::Result<SocketAddr> {
    let mut addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("inference.listen {listen:?} is not an address and port"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Ok(addr)
}

fn probe(cx: &ApplyContext<'_>, desired: &Desired) -> anyhow::Result<String> {
    let key = match &desired.api_key_file {
        Some(file) => Some(
            crate::inference::daemon::read_key_file(&cx.root.resolve(file)?)
                .map_err(anyhow::Error::msg)?,
        ),
        None => None,
    };
    // A Card's adapter is in the cache for the Card, not served as a model of its own.
    let models: Vec<&str> = desired
        .models
        .iter()
        .filter(|(_, m)| m.card_adapter.is_none())
        .map(|(name, _)| name.as_str())
        .collect();
    probe_daemon(&desired.listen, key.as_deref(), &models, READY_WITHIN)
}

/// Wait up to `ready_within` for the daemon at `listen` to answer `/health` with 200, then
/// check that `/v1/models` lists every name in `models`. Says what it saw.
pub fn probe_daemon(
    listen: &str,
    key: Option<&str>,
    models: &[&str],
    ready_within: Duration,
) -> anyhow::Result<String> {
    let addr = connect_to(listen)?;
    // reqwest is built without a default TLS provider; it needs one even for plain http.
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the health-check runtime")?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            // Plain http to this machine: no certificate store is read, so a fresh system
            // without ca-certificates is checked like any other.
            .tls_certs_only([])
            .build()
            .context("cannot build the HTTP client")?;
        let base = format!("http://{addr}");
        let start = Instant::now();
        loop {
            let answer = client.get(format!("{base}/health")).send().await;
            match answer {
                Ok(r) if r.status().is_success() => break,
                _ if start.elapsed() >= ready_within => bail!(
                    "{base}/health did not answer 200 within {}s ({})",
                    ready_within.as_secs(),
                    match answer {
                        Ok(r) => format!("status {}", r.status()),
                        Err(e) => e.to_string(),
                    }
                ),
                _ => tokio::time::sleep(POLL).await,
            }
        }
        let mut request = client.get(format!("{base}/v1/models"));
        if let Some(k) = key {
            request = request.bearer_auth(k);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{base}/v1/models did not answer"))?;
        let status = response.status();
        if !status.is_success() {
            bail!("{base}/v1/models answered {status}");
        }
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("{base}/v1/models did not answer"))?;
        let body: serde_json::Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("{base}/v1/models did not answer JSON"))?;
        let listed: Vec<&str> = body["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["id"].as_str())
            .collect();
        let missing: Vec<&str> = models
            .iter()
            .copied()
            .filter(|n| !listed.contains(n))
            .collect();
        if !missing.is_empty() {
            bail!(
                "{base}/v1/models does not list {} (it lists: {})",
                missing.join(", "),
                listed.join(", ")
            );
        }
        Ok(format!(
            "/health answered after {:.1}s; /v1/models lists {}",
            start.elapsed().as_secs_f64(),
            models.join(", ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listen_address_is_reached_on_loopback() {
        assert_eq!(
            connect_to("0.0.0.0:8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(connect_to("[::]:81").unwrap(), "[::1]:81".parse().unwrap());
        assert!(connect_to("nope").is_err());
    }
}
