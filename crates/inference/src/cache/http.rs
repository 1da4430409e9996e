//! Resumable HTTP downloads: hash while streaming into `partial/`, and on a later run
//! continue where an interrupted transfer stopped (Range, guarded by If-Range so a file
//! that changed on the server starts over instead of being spliced).

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE};
use sha2::{Digest, Sha256};

use super::fsio;
use super::pull::{Fetched, Progress};

/// How long to wait for a connection. There is no deadline on the whole transfer:
/// models are many gigabytes and a slow link is not a failure.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a transfer may stall without a byte arriving.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// What a later run needs to resume: kept next to the partial file.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ResumeRecord {
    /// The URL the partial file came from.
    source: String,
    /// A strong ETag or a Last-Modified date, sent back as If-Range.
    validator: Option<String>,
}

/// Download `url` into `part` (resuming what it holds when the record allows).
pub(super) fn fetch(
    url: &str,
    part: &mut File,
    record_path: &Path,
    what: &str,
    progress: &dyn Progress,
) -> Result<Fetched> {
    // Several clients may be built in one process; the first installation wins.
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the download runtime")?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("sovereign/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client")?;
        match fetch_once(&client, url, part, record_path, what, progress).await? {
            Attempt::Done(fetched) => Ok(fetched),
            Attempt::StartOver => {
                part.set_len(0).context("cannot reset the partial file")?;
                fsio::remove_if_present(record_path)?;
                match fetch_once(&client, url, part, record_path, what, progress).await? {
                    Attempt::Done(fetched) => Ok(fetched),
                    Attempt::StartOver => bail!("{url}: the server refused the download twice"),
                }
            }
        }
    })
}

enum Attempt {
    Done(Fetched),
    /// The partial file cannot be resumed; discard it and start from zero.
    StartOver,
}

async fn fetch_once(
    client: &reqwest::Client,
    url: &str,
    part: &mut File,
    record_path: &Path,
    what: &str,
    progress: &dyn Progress,
) -> Result<Attempt> {
    let have = part
        .metadata()
        .context("cannot stat the partial file")?
        .len();
    let record = read_record(record_path).filter(|r| r.source == url);
    let validator = record.and_then(|r| r.validator).filter(|_| have > 0);

    let mut hasher = Sha256::new();
    let mut request = client.get(url);
    if let Some(v) = &validator {
        request = request
            .header(RANGE, format!("bytes={have}-"))
            .header(IF_RANGE, v.as_str());
    }
    let mut response = request
        .send()
        .await
        .with_context(|| format!("cannot download {url}"))?;
    let status = response.status();
    let start = match status {
        StatusCode::PARTIAL_CONTENT if validator.is_some() => {
            let range = header_str(&response, CONTENT_RANGE);
            if range_start(range.as_deref()) != Some(have) {
                return Ok(Attempt::StartOver);
            }
            // Hash what was kept, then continue after it.
            part.seek(SeekFrom::Start(0))
                .context("cannot read the partial file")?;
            fsio::pump(&mut (&*part).take(have), &mut hasher, None, &mut |_| {})
                .context("cannot read the partial file")?;
            have
        }
        StatusCode::RANGE_NOT_SATISFIABLE if validator.is_some() => return Ok(Attempt::StartOver),
        s if s.is_success() && s != StatusCode::PARTIAL_CONTENT => 0,
        s => bail!("cannot download {url}: the server answered {s}"),
    };
    let new_record = ResumeRecord {
        source: url.to_owned(),
        validator: validator_of(&response),
    };
    let can_resume = new_record.validator.is_some();
    let text = serde_json::to_vec(&new_record).context("cannot encode the resume record")?;
    fsio::write_atomic(record_path, &text)?;
    if start == 0 {
        part.set_len(0).context("cannot reset the partial file")?;
    }
    part.seek(SeekFrom::Start(start))
        .context("cannot seek in the partial file")?;

    let total = response.content_length().map(|n| n.saturating_add(start));
    progress.begin(what, total, start);
    let mut out = BufWriter::with_capacity(fsio::CHUNK, &*part);
    let mut received = start;
    let outcome = loop {
        match response.chunk().await {
            Ok(Some(bytes)) => {
                hasher.update(&bytes);
                if let Err(e) = out.write_all(&bytes) {
                    break Err(anyhow::Error::new(e).context("cannot write the partial file"));
                }
                received += bytes.len() as u64;
                progress.advance(bytes.len() as u64);
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(anyhow::Error::new(e)),
        }
    };
    progress.end();
    // Keep what arrived, even after an error: it is what a later run resumes from.
    out.flush().context("cannot write the partial file")?;
    drop(out);
    let short = total.filter(|&t| t != received);
    let failure = match (outcome, short) {
        (Err(e), _) => Some(format!("{e:#}")),
        (Ok(()), Some(t)) => Some(format!(
            "the server closed the connection at {received} of {t} bytes"
        )),
        (Ok(()), None) => None,
    };
    if let Some(why) = failure {
        let next = if can_resume {
            "run the same command again to resume"
        } else {
            "the server gave no ETag or Last-Modified, so a new attempt starts over"
        };
        bail!("download of {url} interrupted after {received} bytes ({why}); {next}");
    }
    Ok(Attempt::Done(Fetched {
        sha256: fsio::hex_digest(hasher),
        size: received,
        resumed_from: start,
    }))
}

fn read_record(path: &Path) -> Option<ResumeRecord> {
    let text = std::fs::read(path).ok()?;
    serde_json::from_slice(&text).ok()
}

fn header_str(response: &reqwest::Response, name: reqwest::header::HeaderName) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A validator If-Range accepts: a strong ETag, else a Last-Modified date.
fn validator_of(response: &reqwest::Response) -> Option<String> {
    header_str(response, ETAG)
        .filter(|e| !e.starts_with("W/"))
        .or_else(|| header_str(response, LAST_MODIFIED))
}

/// The first byte of `Content-Range: bytes START-END/TOTAL`.
fn range_start(value: Option<&str>) -> Option<u64> {
    value?
        .trim()
        .strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::range_start;

    #[test]
    fn reads_the_start_of_a_content_range() {
        assert_eq!(range_start(Some("bytes 100-199/200")), Some(100));
        assert_eq!(range_start(Some("bytes */200")), None);
        assert_eq!(range_start(None), None);
    }
}
