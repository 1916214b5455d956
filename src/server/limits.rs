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

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::framing::HeadScanner;
use crate::config::Limits;

/// Requests of one connection that have been handed to the service and whose responses are
/// not finished yet.
#[derive(Default)]
pub struct Activity {
    in_flight: AtomicUsize,
    /// The connection's reader, woken when the last request finishes: hyper may have
    /// polled the read side for the last time before that, and the idle clock must start.
    reader: AtomicWaker,
}

impl Activity {
    /// Marks a request as started; the request stays in flight until the guard is dropped
    /// (with the response body it is moved into, see [`Tracked`]).
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) > 0
    }
}

/// One request in flight on its connection.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.reader.wake();
        }
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
    deadline: Instant,
    timer: Option<Pin<Box<Sleep>>>,
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
            timer: None,
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
                self.deadline = Instant::now() + self.limits.idle_timeout;
            }
            _ => {}
        }
    }

    /// Waits for the deadline of the current phase; `Ready` when it has passed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.phase == Phase::Busy {
            self.activity.reader.register(cx.waker());
            // It may have finished just now, before the waker was in place.
            if self.activity.busy() {
                return Poll::Pending;
            }
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let deadline = self.deadline;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().poll(cx)
    }
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
