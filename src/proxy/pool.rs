//! The upstream connection pool of one worker runtime: HTTP/1.1 connections on Tollgate's own
//! client codec ([`super::h1`]), kept idle per upstream target and reused most recently used
//! first. A connection goes back to the pool the moment its response body has been read to
//! the end, so the next request can take it while the client is still receiving this one.
//!
//! What a pool needs besides:
//! - an idle connection the upstream has closed is noticed before a request is written on
//!   it (when the close has reached us), and skipped;
//! - a request that was written on a kept-alive connection and got not one byte of answer
//!   before it closed is [`SendError::Closed`]: the caller, which knows whether the request
//!   may be repeated, sends it again with [`Reuse::NewOnly`];
//! - connections idle longer than [`IDLE_TIMEOUT`] (counted in sweeps, so give or take one
//!   [`SWEEP_EVERY`]: no clock is read per request) are closed; at most
//!   [`MAX_IDLE_PER_TARGET`] are kept; one whose response said `Connection: close`, was
//!   HTTP/1.0 without keep-alive or ended with the connection is not kept at all.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Empty};
#[cfg(test)]
use hyper::Request;
use hyper::Response;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use rustc_hash::FxBuildHasher;

use super::h1::{self, Conn, Decoder, Head, Outgoing, RequestHead};
// The tests' hyper upstreams (they came before this codec, and stay as they were).
#[cfg(test)]
use hyper_util::rt::TokioIo;

/// Body sent upstream: the client's own, or nothing (a retried request without a body).
pub type OutboundBody = Either<Incoming, Empty<Bytes>>;

/// Idle connections older than this are closed (nginx's upstream `keepalive_timeout` is 60 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per target and worker; more are closed when handed back.
const MAX_IDLE_PER_TARGET: usize = 1024;
/// How often idle connections are looked over for age and upstream closes.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Where to connect: one upstream target (identified by the id it got when the config was
/// compiled, so a reload starts fresh connections and the old ones age out).
pub struct Endpoint<'a> {
    pub id: u64,
    pub host: &'a str,
    pub port: u16,
    /// `Some` for `https://` upstreams: the TLS config to verify them with.
    pub tls: Option<&'a Arc<rustls::ClientConfig>>,
}

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be made: safe to try another upstream.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// A kept-alive connection closed before any answer: the upstream dropped it while it
    /// sat idle. The request was sent, so only an idempotent one may be sent again.
    #[error("idle connection closed by the upstream: {0}")]
    Closed(h1::Error),
    /// The request failed on an established connection, or the response was malformed.
    #[error("{0}")]
    Request(h1::Error),
}

/// Which connections a request may go out on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// An idle one if there is one, else a new one.
    Idle,
    /// A new one: the request is being sent again after an idle connection closed under it.
    NewOnly,
}

struct Idle {
    conn: Box<Conn>,
    /// The sweep count when it was handed back.
    since: u64,
}

/// Sweeps an idle connection may see before it is closed.
const IDLE_SWEEPS: u64 = IDLE_TIMEOUT.as_secs() / SWEEP_EVERY.as_secs();

#[derive(Default)]
struct Shared {
    idle: Mutex<HashMap<u64, Vec<Idle>, FxBuildHasher>>,
    /// Whether the sweeper runs (started with the first idle connection).
    sweeping: AtomicBool,
    /// Sweeps so far: the pool's clock.
    sweeps: AtomicU64,
}

impl Shared {
    fn take(&self, id: u64) -> Option<Box<Conn>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(&id)?;
        let now = self.sweeps.load(Ordering::Relaxed);
        while let Some(mut idle) = list.pop() {
            if now - idle.since < IDLE_SWEEPS && idle.conn.is_reusable() {
                return Some(idle.conn);
            }
        }
        None
    }

    fn give_back(self: &Arc<Self>, id: u64, conn: Box<Conn>) {
        if !self.sweeping.swap(true, Ordering::Relaxed) {
            tokio::spawn(sweeper(Arc::downgrade(self)));
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(id).or_default();
        if list.len() < MAX_IDLE_PER_TARGET {
            list.push(Idle {
                conn,
                since: self.sweeps.load(Ordering::Relaxed),
            });
        }
    }

    /// Drops connections that aged out or that the upstream closed, and empty lists.
    fn sweep(&self) {
        let now = self.sweeps.fetch_add(1, Ordering::Relaxed) + 1;
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|_, list| {
            list.retain_mut(|c| now - c.since < IDLE_SWEEPS && c.conn.is_reusable());
            !list.is_empty()
        });
    }
}

/// One worker's pool. Cheap to clone (shared inside). Its sweeper runs on the runtime that
/// first pools a connection, until the pool is dropped.
#[derive(Clone, Default)]
pub struct Pool {
    shared: Arc<Shared>,
}

impl Pool {
    /// Sends `req` (origin-form URI, `Host` set, hop-by-hop headers removed) as it is (the
    /// gateway uses [`Pool::send_head`]; this owned form is for tests).
    #[cfg(test)]
    pub async fn send(
        &self,
        to: &Endpoint<'_>,
        req: Request<OutboundBody>,
        reuse: Reuse,
    ) -> Result<Response<PooledBody>, SendError> {
        let (parts, body) = req.into_parts();
        self.send_head(to, &RequestHead::of(&parts), body, reuse)
            .await
    }

    /// Sends a request to `to`, on an idle connection when `reuse` allows and there is one,
    /// else on a new one. The head is borrowed: the caller keeps what it needs for a resend
    /// (another upstream, a fresh connection, a renewed credential) without a copy per
    /// request that might need one.
    pub async fn send_head(
        &self,
        to: &Endpoint<'_>,
        req: &RequestHead<'_>,
        body: OutboundBody,
        reuse: Reuse,
    ) -> Result<Response<PooledBody>, SendError> {
        let idle = match reuse {
            Reuse::Idle => self.shared.take(to.id),
            Reuse::NewOnly => None,
        };
        let reused = idle.is_some();
        let mut conn = match idle {
            Some(conn) => conn,
            // Boxed: connecting (TCP, TLS) is rare and its future is large.
            None => Box::pin(Conn::connect(to.host, to.port, to.tls))
                .await
                .map_err(SendError::Connect)?,
        };
        match conn.send(req, body).await {
            Ok((head, outgoing)) => Ok(self.lease(to.id, conn, head, outgoing)),
            Err(e @ h1::Error::Unanswered(_)) if reused => Err(SendError::Closed(e)),
            Err(e) => Err(SendError::Request(e)),
        }
    }

    fn lease(
        &self,
        id: u64,
        conn: Box<Conn>,
        head: Head,
        outgoing: Option<Box<Outgoing<OutboundBody>>>,
    ) -> Response<PooledBody> {
        let mut body = PooledBody {
            conn: Some(conn),
            decoder: head.body,
            outgoing,
            keep_alive: head.keep_alive,
            failed: false,
            pool: Arc::clone(&self.shared),
            id,
        };
        // A response without a body (204, 304, HEAD, Content-Length: 0) is complete now.
        if body.decoder.is_done() {
            body.release();
        }
        let mut resp = Response::new(body);
        *resp.status_mut() = head.status;
        *resp.version_mut() = head.version;
        *resp.headers_mut() = head.headers;
        if let Some(reason) = head
            .reason
            .and_then(|r| hyper::ext::ReasonPhrase::try_from(r).ok())
        {
            resp.extensions_mut().insert(reason);
        }
        resp
    }

    /// Idle connections held for target `id` (for tests).
    #[cfg(test)]
    pub(super) fn idle_count(&self, id: u64) -> usize {
        let idle = self.shared.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.get(&id).map_or(0, Vec::len)
    }

    /// What the sweeper does every [`SWEEP_EVERY`], now (for tests).
    #[cfg(test)]
    pub(super) fn sweep_now(&self) {
        self.shared.sweep();
    }
}

async fn sweeper(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        match shared.upgrade() {
            Some(shared) => shared.sweep(),
            None => return,
        }
    }
}

/// An upstream response body, read off its connection as hyper's server asks for it; the
/// connection goes back to the pool once the body is read to the end (and kept-alive).
/// Dropped before that (the client went away), it closes the connection instead. A body the
/// upstream cuts short, or frames wrongly, ends in an error, so the client's connection is
/// aborted rather than handed a truncated body as if it were whole.
pub struct PooledBody {
    /// `None` once released, dropped or failed.
    conn: Option<Box<Conn>>,
    decoder: Decoder,
    /// The request body still being sent (the response head came first). Boxed: rare.
    outgoing: Option<Box<Outgoing<OutboundBody>>>,
    keep_alive: bool,
    failed: bool,
    pool: Arc<Shared>,
    id: u64,
}

impl std::fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBody")
            .field("decoder", &self.decoder)
            .field("open", &self.conn.is_some())
            .finish()
    }
}

impl PooledBody {
    /// The body is done: the connection goes back to the pool if it may carry another
    /// request, else it is closed.
    fn release(&mut self) {
        if let Some(mut conn) = self.conn.take()
            && self.keep_alive
            && conn.is_reusable()
        {
            self.pool.give_back(self.id, conn);
        }
        self.outgoing = None;
    }
}

impl HttpBody for PooledBody {
    type Data = Bytes;
    type Error = h1::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h1::Error>>> {
        let this = &mut *self;
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(this.failed.then_some(Err(h1::Error::Failed)));
        };
        match ready!(conn.poll_response(cx, &mut this.decoder, &mut this.outgoing)) {
            Some(Ok(data)) => {
                if this.decoder.is_done() {
                    this.release();
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            None => {
                this.release();
                Poll::Ready(None)
            }
            Some(Err(e)) => {
                this.conn = None;
                this.failed = true;
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::AtomicUsize;

    use super::h1::tests::{get, local};

    /// An upstream that counts the connections it accepted and answers "ok" to each request;
    /// it closes a connection after `per_conn` requests when that is set.
    async fn upstream(per_conn: Option<usize>) -> (u16, Arc<AtomicUsize>) {
        super::h1::tests::upstream(move |stream| async move {
            let served = Arc::new(AtomicUsize::new(0));
            let svc = hyper::service::service_fn(move |_req| {
                let n = served.fetch_add(1, Ordering::SeqCst) + 1;
                let mut resp = Response::new(http_body_util::Full::new(Bytes::from("ok")));
                if per_conn == Some(n) {
                    resp.headers_mut().insert(
                        "connection",
                        hyper::header::HeaderValue::from_static("close"),
                    );
                }
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        })
        .await
    }

    async fn fetch(pool: &Pool, to: &Endpoint<'_>) -> Bytes {
        let resp = pool.send(to, get(), Reuse::Idle).await.expect("response");
        resp.into_body().collect().await.expect("body").to_bytes()
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_body_has_been_read() {
        let (port, accepted) = upstream(None).await;
        let pool = Pool::default();
        let to = local(port);
        for _ in 0..5 {
            assert_eq!(fetch(&pool, &to).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle_count(1), 1);
    }

    #[tokio::test]
    async fn an_unread_body_keeps_its_connection_from_others_and_drops_it() {
        let (port, accepted) = upstream(None).await;
        let pool = Pool::default();
        let to = local(port);
        let first = pool.send(&to, get(), Reuse::Idle).await.expect("first");
        // The first body is not read yet: the second request needs a connection of its own.
        assert_eq!(fetch(&pool, &to).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        drop(first);
        assert_eq!(
            pool.idle_count(1),
            1,
            "the abandoned connection is not pooled"
        );
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_is_replaced_without_an_error() {
        let (port, accepted) = upstream(Some(1)).await;
        let pool = Pool::default();
        let to = local(port);
        for _ in 0..4 {
            assert_eq!(fetch(&pool, &to).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_kept_alive_connection_closed_under_a_request_is_reported_and_a_resend_skips_idle_ones()
     {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // Answers the first request on a connection, then closes it when the next arrives.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = stream.read(&mut buf).await;
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                    let _ = stream.read(&mut buf).await;
                });
            }
        });
        let pool = Pool::default();
        let to = local(port);
        // Two connections answered once each, both idle now.
        let (a, b) = tokio::join!(
            pool.send(&to, get(), Reuse::Idle),
            pool.send(&to, get(), Reuse::Idle)
        );
        for resp in [a, b] {
            let body = resp.expect("response").into_body().collect().await;
            assert_eq!(body.expect("body").to_bytes(), "ok");
        }
        assert_eq!(pool.idle_count(1), 2);
        let err = pool
            .send(&to, get(), Reuse::Idle)
            .await
            .expect_err("closed");
        assert!(matches!(err, SendError::Closed(_)), "{err:?}");
        // The other idle connection would fail the same way: a resend skips it.
        let resp = pool.send(&to, get(), Reuse::NewOnly).await.expect("resend");
        assert_eq!(
            resp.into_body().collect().await.expect("body").to_bytes(),
            "ok"
        );
        assert_eq!(
            pool.idle_count(1),
            2,
            "the stale one is still idle, the new one joined"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let pool = Pool::default();
        let to = local(port);
        let err = pool
            .send(&to, get(), Reuse::Idle)
            .await
            .expect_err("refused");
        assert!(matches!(err, SendError::Connect(_)), "{err:?}");
    }
}
