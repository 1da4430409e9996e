//! Connections: the accept loop with its cap, a watchdog per connection that enforces the
//! head deadline, the idle keep-alive timeout and the stalled-reader timeout, OpenAI-shaped
//! bodies on the HTTP parser's own rejections, and graceful shutdown with a deadline.
//!
//! axum's `serve` has none of these bounds (a client sending one byte a second is never
//! dropped, and one half-sent request holds shutdown forever), so the daemon drives
//! hyper's HTTP/1.1 connections itself.
//!
//! **Invariant:** every connection holds a permit of the cap from accept to close, and
//! every state it can stay in has a deadline: waiting for a head (`header_timeout`, counted
//! from accept or from its first byte), idle between requests (`idle_timeout`), reading a
//! body (`body_timeout`, in the handler), blocked writing to a client that does not read
//! (`body_timeout`). Only generation itself is unbounded in time, and it is bounded in
//! tokens.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

use super::error::ApiError;
use super::limits::ServerLimits;

/// Largest request head (request line and headers) hyper buffers; beyond it is a 431.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most headers in one request; more is a 431.
pub const MAX_HEADERS: usize = 100;
/// After the shutdown deadline, how long responses ended with an error get to be written.
const FLUSH_GRACE: Duration = Duration::from_secs(2);

/// Serve `app` on `listener` until `shutdown` resolves. Then stop accepting, let
/// in-flight requests finish for `limits.shutdown_timeout`, call `abort` (handlers end
/// what is left with an error), give those answers [`FLUSH_GRACE`] to go out, and drop
/// every connection still open.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    abort: impl FnOnce() + Send + 'static,
) -> io::Result<()> {
    let limits = Arc::new(limits);
    let cap = Arc::new(Semaphore::new(limits.max_connections));
    let refusal = refusal_bytes();
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => match cap.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let (app, limits, closing) = (app.clone(), limits.clone(), closing_rx.clone());
                        conns.spawn(async move {
                            connection(stream, app, &limits, closing).await;
                            drop(permit);
                        });
                    }
                    // At the cap: answer at once and close, so the descriptor is freed now
                    // rather than when a slow client gives up. A fresh socket's send buffer
                    // takes the few bytes without blocking; a client that cannot take them
                    // gets nothing, which is no worse.
                    Err(_) => {
                        let _partial = stream.try_write(&refusal);
                        tracing::warn!("connection refused: {} connections open", limits.max_connections);
                    }
                },
                Err(e) => {
                    // Out of descriptors (EMFILE) or a connection reset before accept: do
                    // not spin; the next accept may succeed.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    let _no_receivers = closing_tx.send(true);
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.shutdown_timeout, drain)
        .await
        .is_err()
    {
        tracing::warn!(
            "{} connection(s) still busy after the shutdown deadline of {}s; ending them",
            conns.len(),
            limits.shutdown_timeout.as_secs()
        );
        abort();
        let flush = async { while conns.join_next().await.is_some() {} };
        if tokio::time::timeout(FLUSH_GRACE, flush).await.is_err() {
            conns.abort_all();
        }
    }
    Ok(())
}

/// Serve one connection until it ends, its watchdog expires, or shutdown has let its
/// request finish.
async fn connection(
    stream: TcpStream,
    app: Router,
    limits: &ServerLimits,
    mut closing: watch::Receiver<bool>,
) {
    let _nodelay = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = hyper_util::rt::TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
        pending: Vec::new(),
        written: 0,
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let app = app.clone();
            let guard = InFlight::start(activity.clone());
            async move {
                let resp = app.oneshot(req.map(Body::new)).await?;
                // The request counts as in flight until hyper drops the response body,
                // which it does once the last byte is written or the client is gone.
                Ok::<_, std::convert::Infallible>(
                    resp.map(|b| Body::new(Guarded { b, _guard: guard })),
                )
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        // Both: the buffer bound alone lets a head through that arrived in one large read.
        .max_buf_size(MAX_HEAD_BYTES)
        .max_header_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        // The watchdog below enforces the head deadline; hyper's own needs a timer and
        // would also cut idle keep-alive connections at the same instant.
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let tick = watchdog_tick(limits);
    let mut shutting_down = *closing.borrow();
    if shutting_down {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            changed = closing.changed(), if !shutting_down => {
                // A closed channel means the server is gone: shut down too.
                let _ = changed;
                shutting_down = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep(tick) => {
                if let Some(why) = activity.expired(limits) {
                    tracing::debug!("closing a connection: {why}");
                    return;
                }
            }
        }
    }
}

/// How often a connection's deadlines are checked: often enough that none is overrun by
/// more than a quarter of itself (and a second at most), rarely enough to cost nothing.
fn watchdog_tick(limits: &ServerLimits) -> Duration {
    let shortest = limits
        .header_timeout
        .min(limits.idle_timeout)
        .min(limits.body_timeout);
    (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

/// What a connection is doing, as its reads, writes and requests report it.
struct Activity {
    /// The origin of the millisecond stamps below.
    epoch: Instant,
    /// Requests handed to the router whose response body is not yet dropped.
    inflight: AtomicUsize,
    /// When the head now awaited began (accept, or its first byte); 0 when none is.
    head_since: AtomicU64,
    /// When the connection went idle after a response; 0 while not idle.
    idle_since: AtomicU64,
    /// When a write first found the client's window closed; 0 while writes go through.
    blocked_since: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        let a = Activity {
            epoch: Instant::now(),
            inflight: AtomicUsize::new(0),
            head_since: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            blocked_since: AtomicU64::new(0),
        };
        // A fresh connection owes its first head within the head deadline.
        a.head_since.store(a.stamp(), Ordering::Relaxed);
        a
    }

    /// Milliseconds since the epoch, plus one so that 0 can mean "none".
    fn stamp(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn read(&self) {
        if self.inflight.load(Ordering::Relaxed) == 0
            && self.head_since.load(Ordering::Relaxed) == 0
        {
            self.head_since.store(self.stamp(), Ordering::Relaxed);
            self.idle_since.store(0, Ordering::Relaxed);
        }
    }

    fn write_blocked(&self, blocked: bool) {
        if !blocked {
            self.blocked_since.store(0, Ordering::Relaxed);
        } else if self.blocked_since.load(Ordering::Relaxed) == 0 {
            self.blocked_since.store(self.stamp(), Ordering::Relaxed);
        }
    }

    /// Why the connection should close now, if a deadline has passed.
    fn expired(&self, limits: &ServerLimits) -> Option<&'static str> {
        let now = self.stamp();
        let past = |since: u64, limit: Duration| {
            since != 0 && now.saturating_sub(since) > limit.as_millis() as u64
        };
        if past(
            self.blocked_since.load(Ordering::Relaxed),
            limits.body_timeout,
        ) {
            return Some("the client stopped reading its response");
        }
        if self.inflight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        if past(
            self.head_since.load(Ordering::Relaxed),
            limits.header_timeout,
        ) {
            return Some("the request head did not arrive in time");
        }
        if past(self.idle_since.load(Ordering::Relaxed), limits.idle_timeout) {
            return Some("idle keep-alive timeout");
        }
        None
    }
}

/// A request in flight on a connection; dropping it marks the connection idle.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(a: Arc<Activity>) -> Self {
        a.inflight.fetch_add(1, Ordering::Relaxed);
        a.head_since.store(0, Ordering::Relaxed);
        a.idle_since.store(0, Ordering::Relaxed);
        InFlight(a)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.idle_since.store(self.0.stamp(), Ordering::Relaxed);
        }
    }
}

/// A response body that keeps its request counted as in flight until it is dropped.
struct Guarded {
    b: Body,
    /// Dropped with the body: that is its whole job.
    _guard: InFlight,
}

impl hyper::body::Body for Guarded {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.b).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.b.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.b.size_hint()
    }
}

/// The socket as hyper sees it: reads and writes report to [`Activity`], and hyper's own
/// bodiless rejections of a malformed head are rewritten into OpenAI's error shape.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    /// A rewritten response still to be written; hyper already counts it as sent.
    pending: Vec<u8>,
    /// How much of `pending` is written.
    written: usize,
}

impl Watched {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.activity.write_blocked(false);
                    self.written += n;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    self.activity.write_blocked(true);
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_pending(cx))?;
        if let Some(replacement) = rewrite_rejection(buf) {
            this.pending = replacement;
            this.written = 0;
            // Written now or on the next flush, which hyper always does.
            if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.activity.write_blocked(r.is_pending());
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// hyper answers a head it cannot parse (bad syntax 400, too large 431, URI too long 414)
/// itself, with an empty body and no hook to change it. Those answers are the only
/// bodiless 400/414/431 this server writes (every handler's error has a JSON body), so
/// such a write is replaced by the same status with OpenAI's error body.
fn rewrite_rejection(buf: &[u8]) -> Option<Vec<u8>> {
    let status = match buf.get(..13)? {
        b"HTTP/1.1 400 " => StatusCode::BAD_REQUEST,
        b"HTTP/1.1 414 " => StatusCode::URI_TOO_LONG,
        b"HTTP/1.1 431 " => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        _ => return None,
    };
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    if head_end != buf.len() {
        return None;
    }
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    if !head.contains("\r\ncontent-length: 0\r\n") {
        return None;
    }
    Some(response_bytes(&ApiError::HeadRejected(status)))
}

/// A whole HTTP/1.1 response for `err` that closes the connection.
fn response_bytes(err: &ApiError) -> Vec<u8> {
    let status = err.status();
    let body = err.body().to_string();
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes()
}

/// The answer to a connection beyond the cap.
fn refusal_bytes() -> Vec<u8> {
    response_bytes(&ApiError::TooManyConnections)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_bodiless_rejections_become_openai_errors() {
        for (raw, status) in [
            (
                "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n",
                431,
            ),
            ("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n", 400),
            (
                "HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n",
                414,
            ),
        ] {
            let out = String::from_utf8(rewrite_rejection(raw.as_bytes()).unwrap()).unwrap();
            assert!(out.starts_with(&format!("HTTP/1.1 {status} ")), "{out}");
            let body: serde_json::Value =
                serde_json::from_str(out.split("\r\n\r\n").nth(1).unwrap()).unwrap();
            assert!(
                body["error"]["message"].as_str().unwrap().len() > 10,
                "{body}"
            );
            assert!(out.contains(&format!("content-length: {}", body.to_string().len())));
        }
    }

    #[test]
    fn the_servers_own_answers_are_left_alone() {
        for raw in [
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 431 x\r\ncontent-length: 0\r\n\r\ntrailing",
        ] {
            assert!(rewrite_rejection(raw.as_bytes()).is_none(), "{raw}");
        }
    }

    #[test]
    fn deadlines_follow_the_connections_state() {
        let limits = ServerLimits {
            header_timeout: Duration::from_millis(20),
            idle_timeout: Duration::from_millis(40),
            body_timeout: Duration::from_millis(20),
            ..ServerLimits::default()
        };
        let a = Arc::new(Activity::new());
        assert_eq!(a.expired(&limits), None);
        std::thread::sleep(Duration::from_millis(30));
        assert!(a.expired(&limits).unwrap().contains("head"));
        // A request in flight is not cut by the head deadline...
        let req = InFlight::start(a.clone());
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(a.expired(&limits), None);
        // ...but a client that stops reading its response is.
        a.write_blocked(true);
        std::thread::sleep(Duration::from_millis(30));
        assert!(a.expired(&limits).unwrap().contains("reading"));
        a.write_blocked(false);
        drop(req);
        assert_eq!(a.expired(&limits), None, "idle, within the idle timeout");
        std::thread::sleep(Duration::from_millis(50));
        assert!(a.expired(&limits).unwrap().contains("idle"));
        // The first byte of the next head starts the head deadline.
        a.read();
        assert_eq!(a.expired(&limits), None);
    }
}
