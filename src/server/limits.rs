//! Per-connection limits of the listeners (SPEC §12): the header and idle timeouts, and the
//! permit each connection holds against `max_connections`. The framing check of request heads
//! lives in [`framing`].
//!
//! hyper has one timer for both timeouts (`header_read_timeout`, which also runs while a
//! kept-alive connection waits for its next request), and none while hyper-util's auto
//! builder picks the protocol. So the timeouts are kept here instead, on the connection's
//! reads, in the way of nginx and Go: the first request head must be complete within
//! `header_timeout` of the accept (TLS handshake included); a later one within
//! `header_timeout` of its first byte; and a connection with no request in flight is closed
//! after `idle_timeout`. "In flight" runs from the moment hyper hands a request to the
//! service until its response body is dropped, counted by [`Activity`].
//!
//! The phase deadlines move with every request, but the connection's timer does not follow
//! them (a reset per request costs a timer-wheel removal and insertion). It fires at the
//! earliest moment any deadline could fall, at most `min(header_timeout, idle_timeout)` after
//! it was armed, and is then armed again for the current phase's deadline: a request that
//! starts later cannot have an earlier deadline than that. So a connection wakes at most once
//! per that step while it is busy or idle, never per request.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::framing::HeadScanner;
use crate::config::Limits;

/// Requests of one connection that have been handed to the service and whose responses are
/// not finished yet, and when the last one finished.
pub struct Activity {
    in_flight: AtomicUsize,
    /// When a request last finished, in nanoseconds after `since`. Written before the count
    /// goes down, so whoever sees the count at zero sees a stamp at least that recent.
    ended: AtomicU64,
    since: Instant,
}

impl Activity {
    /// `since`: a moment before the connection's first request (its accept).
    pub fn new(since: Instant) -> Activity {
        Activity {
            in_flight: AtomicUsize::new(0),
            ended: AtomicU64::new(0),
            since,
        }
    }

    /// Marks a request as started; the request stays in flight until the guard is dropped
    /// (with the response body it is moved into, see [`Tracked`]).
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// When the last request finished (the accept, before any).
    fn ended(&self) -> Instant {
        self.since + Duration::from_nanos(self.ended.load(Ordering::Relaxed))
    }
}

/// One request in flight on its connection.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        let now = u64::try_from(activity.since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        activity.ended.fetch_max(now, Ordering::Relaxed);
        activity.in_flight.fetch_sub(1, Ordering::Release);
    }
}

/// A response body that keeps its request in flight until it is dropped, which hyper does
/// once the body is written out (or the connection ends).
pub struct Tracked<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B> Tracked<B> {
    pub fn new(inner: B, in_flight: InFlight) -> Tracked<B> {
        Tracked {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Where a connection is, as far as its timeouts go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A request head is being received: it must be complete by the deadline.
    Head,
    /// A request is in flight: no deadline here (the route's timeout covers the upstream).
    Busy,
    /// Nothing in flight: closed at the deadline unless a request starts.
    Idle,
}

/// A client connection's stream with the timeouts and the framing check applied to its reads.
pub struct Guarded<S> {
    inner: S,
    limits: Limits,
    activity: Arc<Activity>,
    phase: Phase,
    /// The current phase's deadline (none while busy).
    deadline: Instant,
    /// Armed no later than any deadline the connection can have until it fires.
    timer: Pin<Box<Sleep>>,
    /// HTTP/2: idle time only; bytes between requests (pings, settings) start no head.
    h2: bool,
    scanner: HeadScanner,
}

impl<S> Guarded<S> {
    /// `accepted`: when the TCP connection was accepted (the first head's clock starts there);
    /// `h2`: HTTP/2 was negotiated by ALPN.
    pub fn new(
        inner: S,
        limits: Limits,
        activity: Arc<Activity>,
        accepted: Instant,
        h2: bool,
    ) -> Guarded<S> {
        Guarded {
            inner,
            limits,
            activity,
            phase: Phase::Head,
            deadline: accepted + limits.header_timeout,
            timer: Box::pin(tokio::time::sleep_until(accepted + step(&limits))),
            h2,
            scanner: if h2 {
                HeadScanner::off()
            } else {
                HeadScanner::new()
            },
        }
    }

    /// Moves between phases as requests start and finish.
    fn observe(&mut self) {
        let busy = self.activity.busy();
        match self.phase {
            Phase::Head | Phase::Idle if busy => self.phase = Phase::Busy,
            Phase::Busy if !busy => {
                self.phase = Phase::Idle;
                self.deadline = self.activity.ended() + self.limits.idle_timeout;
            }
            _ => {}
        }
    }

    /// Waits for the deadline of the current phase; `Ready` when it has passed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            ready!(self.timer.as_mut().poll(cx));
            self.observe();
            if self.phase == Phase::Idle && !self.activity.busy() {
                // A request that began and ended between two reads left no Busy phase to
                // see; its stamp still moves the idle deadline.
                self.deadline = self
                    .deadline
                    .max(self.activity.ended() + self.limits.idle_timeout);
            }
            let now = Instant::now();
            let mut next = now + step(&self.limits);
            if self.phase != Phase::Busy {
                if self.deadline <= now {
                    return Poll::Ready(());
                }
                next = next.min(self.deadline);
            }
            self.timer.as_mut().reset(next);
        }
    }
}

/// The longest the connection's timer may sleep: no deadline set later can fall earlier.
fn step(limits: &Limits) -> Duration {
    limits.header_timeout.min(limits.idle_timeout)
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.observe();
        let before = buf.filled().len();
        // A head is handed to hyper no further than `max_header_bytes`: one larger is then
        // still incomplete at hyper's buffer limit (set to the same size), which answers 431.
        let room = this
            .scanner
            .head_bytes()
            .map(|seen| this.limits.max_header_bytes.saturating_sub(seen))
            .filter(|&room| room > 0 && room < buf.remaining());
        let polled = match room {
            None => Pin::new(&mut this.inner).poll_read(cx, buf),
            Some(room) => {
                let mut part = ReadBuf::new(buf.initialize_unfilled_to(room));
                let polled = Pin::new(&mut this.inner).poll_read(cx, &mut part);
                let n = part.filled().len();
                buf.advance(n);
                polled
            }
        };
        match polled {
            Poll::Ready(Ok(())) => {
                let read = &mut buf.filled_mut()[before..];
                if !read.is_empty() {
                    if this.phase == Phase::Idle && !this.h2 {
                        this.phase = Phase::Head;
                        this.deadline = Instant::now() + this.limits.header_timeout;
                    }
                    this.scanner.scan(read);
                    if this.scanner.is_h2() {
                        this.h2 = true;
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                ready!(this.poll_deadline(cx));
                let why = match this.phase {
                    Phase::Head => "request head not received within [server].header_timeout",
                    _ => "connection idle for [server].idle_timeout",
                };
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
