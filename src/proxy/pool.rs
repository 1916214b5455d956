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
//!   HTTP/1.0 without keep-alive or ended with the connection is not kept at all;
//! - a response body that stops coming for longer than its read timeout (the route's
//!   `timeout`, counted between two reads like nginx's `proxy_read_timeout`) fails, so a
//!   client is never left waiting on an upstream that stalled mid-body.

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
use tokio::time::Sleep;

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
            read_timeout: None,
            stall: None,
            progressed: false,
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
    /// The longest wait for the next piece of the body; `None`: no limit.
    read_timeout: Option<Duration>,
    /// The read timeout's timer: made the first time a read has to wait (most bodies come
    /// whole with their head and never need one), and set again after every piece.
    stall: Option<Pin<Box<Sleep>>>,
    /// A piece came since the timer was last set.
    progressed: bool,
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

    /// Fails the body if the upstream has sent nothing more for `timeout` while it is being
    /// read (time the client's side spends not asking for more does not count).
    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.read_timeout = Some(timeout);
    }

    /// A read has to wait: `Pending`, or the failure once the read timeout has passed.
    fn poll_stalled(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h1::Error>>> {
        let Some(limit) = self.read_timeout else {
            return Poll::Pending;
        };
        let timer = match &mut self.stall {
            Some(timer) if !self.progressed => timer,
            Some(timer) => {
                timer.as_mut().reset(tokio::time::Instant::now() + limit);
                timer
            }
            None => self.stall.insert(Box::pin(tokio::time::sleep(limit))),
        };
        self.progressed = false;
        ready!(timer.as_mut().poll(cx));
        tracing::warn!(timeout = ?limit, "upstream stopped sending the response body; cutting the response off");
        self.conn = None;
        self.outgoing = None;
        self.failed = true;
        Poll::Ready(Some(Err(h1::Error::Stalled(limit))))
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
        let Poll::Ready(polled) = conn.poll_response(cx, &mut this.decoder, &mut this.outgoing)
        else {
            if this.outgoing.is_some() {
                // The request body is still going out (an upstream may answer before it has
                // read it all): like nginx, the read timeout starts once the request is sent.
                this.progressed = true;
                return Poll::Pending;
            }
            return this.poll_stalled(cx);
        };
        this.progressed = true;
        match polled {
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
mod tests;
