//! A lean HTTP/1.1 client connection for upstreams, on `httparse`: the request head written
//! straight into one buffer, the response parsed in place, body chunks handed out as `Bytes`
//! split off the connection's read buffer. hyper's client codec cost a proxied request more
//! than everything else in the gateway together (issue 11); the inbound side stays on hyper.
//!
//! No task of its own: a connection is driven by whoever holds it, the request's task until
//! the response head and then the response body as hyper's server reads it. So dropping the
//! request (the route timeout fired, the client left) drops the connection with it: nothing
//! lingers reading or writing afterwards.
//!
//! Request and response bodies flow at the same time: whatever of the request body is left
//! when the response head arrives keeps going out while the response body is read.

mod body;
mod io;
mod request;
mod response;
#[cfg(test)]
pub(super) mod tests;

use std::error::Error as StdError;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

pub use self::body::Decoder;
pub use self::io::Io;
use self::request::{Encoder, RequestError};
pub use self::request::{RequestHead, header};
pub use self::response::{Head, ResponseError, is_hop_by_hop};
use bytes::{Buf, Bytes, BytesMut};
use hyper::Method;
use hyper::body::Body;

/// Read buffer: grown by this much when less than [`READ_MIN`] is free.
const READ_SIZE: usize = 16 * 1024;
const READ_MIN: usize = 4 * 1024;
/// Body bytes gathered into the write buffer before it is written out.
const WRITE_BATCH: usize = 64 * 1024;

type BoxError = Box<dyn StdError + Send + Sync>;

/// Why an exchange with an upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection failed or closed before a single byte of a response came: on a
    /// kept-alive connection, the upstream most likely closed it while it sat idle.
    #[error("connection closed before any response: {0}")]
    Unanswered(std::io::Error),
    #[error("upstream connection: {0}")]
    Io(std::io::Error),
    #[error("{0}")]
    Response(#[from] ResponseError),
    #[error("{0}")]
    Request(#[from] RequestError),
    #[error("reading the request body: {0}")]
    RequestBody(BoxError),
    #[error("response body read again after it failed")]
    Failed,
    /// Nothing more of the response body came for this long (the route's `timeout`).
    #[error("upstream sent no more of the response body for {0:?}")]
    Stalled(std::time::Duration),
}

/// The request body still being sent, and how it is framed.
pub struct Outgoing<B> {
    /// `None` once every frame has been taken from it.
    body: Option<B>,
    encoder: Encoder,
}

/// One upstream connection with its buffers, which every request on it reuses.
pub struct Conn {
    io: Io,
    read: BytesMut,
    write: Vec<u8>,
    /// How much of `write` is written.
    written: usize,
    /// Body data to write right after `write` (too large to be worth copying into it).
    data: Bytes,
    /// A response byte has come since the current request was started.
    answered: bool,
    /// The current request could not be sent in full: the connection ends with its response.
    cut: bool,
}

impl Conn {
    pub async fn connect(
        host: &str,
        port: u16,
        tls: Option<&std::sync::Arc<rustls::ClientConfig>>,
    ) -> std::io::Result<Box<Conn>> {
        let io = Io::connect(host, port, tls).await?;
        Ok(Box::new(Conn {
            io,
            read: BytesMut::with_capacity(READ_SIZE),
            write: Vec::with_capacity(1024),
            written: 0,
            data: Bytes::new(),
            answered: false,
            cut: false,
        }))
    }

    /// Fit for another request: open, and nothing unread or unwritten left on it (an
    /// upstream that sent more than its response is not to be trusted with the next one).
    pub fn is_reusable(&mut self) -> bool {
        !self.cut
            && self.read.is_empty()
            && self.data.is_empty()
            && self.write.is_empty()
            && self.io.is_idle_and_open()
    }

    /// Sends the request and reads its response head. What is left of the request body, if
    /// the head came first, is returned to be sent on while the response body is read.
    pub async fn send<B>(
        &mut self,
        req: &RequestHead<'_>,
        body: B,
    ) -> Result<(Head, Option<Box<Outgoing<B>>>), Error>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        self.answered = false;
        self.cut = false;
        self.write.clear();
        self.written = 0;
        let empty = body.is_end_stream();
        let mut encoder =
            request::write_head(&mut self.write, req, empty, body.size_hint().exact())?;
        if empty {
            encoder.finish(&mut self.write)?;
        }
        let mut outgoing = Some(Outgoing {
            body: (!empty).then_some(body),
            encoder,
        });
        let head_request = *req.method == Method::HEAD;
        let mut write_error = None;
        let head = std::future::poll_fn(|cx| {
            if let Some(out) = outgoing.as_mut() {
                match self.poll_send(cx, out) {
                    Poll::Pending => {}
                    Poll::Ready(Ok(())) => outgoing = None,
                    // The upstream stopped reading; it may still have answered (a 413, say).
                    Poll::Ready(Err(Error::Io(e))) => {
                        write_error = Some(e);
                        self.cut = true;
                        outgoing = None;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                }
            }
            match ready!(self.poll_head(cx, head_request)) {
                Err(Error::Unanswered(e)) => {
                    Poll::Ready(Err(Error::Unanswered(write_error.take().unwrap_or(e))))
                }
                head => Poll::Ready(head),
            }
        })
        .await?;
        // Boxed only in the rare case that it is still going (it moves into the response body).
        Ok((head, outgoing.map(Box::new)))
    }

    /// The next piece of the response body (`None` at its end), sending on what is left of
    /// the request body meanwhile.
    pub fn poll_response<B>(
        &mut self,
        cx: &mut Context<'_>,
        body: &mut Decoder,
        outgoing: &mut Option<Box<Outgoing<B>>>,
    ) -> Poll<Option<Result<Bytes, Error>>>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        if let Some(out) = outgoing.as_mut() {
            match self.poll_send(cx, out) {
                Poll::Pending => {}
                Poll::Ready(Ok(())) => *outgoing = None,
                // The upstream stopped reading the request; its response may still be whole.
                Poll::Ready(Err(e)) => {
                    tracing::debug!(error = %e, "request body not sent in full");
                    self.cut = true;
                    *outgoing = None;
                }
            }
        }
        let polled = self.poll_body(cx, body);
        if body.is_done() && outgoing.take().is_some() {
            // The response ended before the request did: no request can follow this one.
            self.cut = true;
        }
        polled
    }

    /// Writes the request head and as much of the body as is ready; `Ready(Ok)` once all of
    /// it is written (and flushed, for TLS).
    fn poll_send<B>(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Outgoing<B>,
    ) -> Poll<Result<(), Error>>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        loop {
            // Gather first, so a small body goes out in the same write as the head.
            let mut waiting = false;
            while let Some(body) = out
                .body
                .as_mut()
                .filter(|_| self.data.is_empty() && self.write.len() < WRITE_BATCH)
            {
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Pending => {
                        waiting = true;
                        break;
                    }
                    Poll::Ready(Some(Err(e))) => {
                        return Poll::Ready(Err(Error::RequestBody(e.into())));
                    }
                    Poll::Ready(Some(Ok(frame))) => {
                        // Trailers are dropped: the `Trailer` header that announces them is
                        // hop-by-hop, removed before the request got here.
                        if let Ok(data) = frame.into_data()
                            && let Some(large) = out.encoder.data(&mut self.write, data)?
                        {
                            self.data = large;
                        }
                        if !body.is_end_stream() {
                            continue;
                        }
                        out.encoder.finish(&mut self.write)?;
                        out.body = None;
                    }
                    Poll::Ready(None) => {
                        out.encoder.finish(&mut self.write)?;
                        out.body = None;
                    }
                }
            }
            if self.written < self.write.len() || !self.data.is_empty() {
                ready!(self.poll_write(cx)).map_err(Error::Io)?;
                continue;
            }
            if out.body.is_none() || waiting {
                ready!(self.io.poll_flush(cx)).map_err(Error::Io)?;
                if out.body.is_none() {
                    return Poll::Ready(Ok(()));
                }
                return Poll::Pending;
            }
        }
    }

    /// Writes out the write buffer, then the data after it, in as few writes as the socket
    /// takes them.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.written < self.write.len() || !self.data.is_empty() {
            let bufs = [
                std::io::IoSlice::new(&self.write[self.written..]),
                std::io::IoSlice::new(&self.data),
            ];
            let n = ready!(self.io.poll_write_vectored(cx, &bufs))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            let from_write = n.min(self.write.len() - self.written);
            self.written += from_write;
            self.data.advance(n - from_write);
        }
        self.write.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Reads until a final response head is parsed.
    fn poll_head(&mut self, cx: &mut Context<'_>, head_request: bool) -> Poll<Result<Head, Error>> {
        loop {
            if !self.read.is_empty()
                && let Some(head) = response::parse_head(&mut self.read, head_request)?
            {
                return Poll::Ready(Ok(head));
            }
            match ready!(self.poll_read(cx)) {
                Ok(0) if !self.answered => {
                    return Poll::Ready(Err(Error::Unanswered(
                        std::io::ErrorKind::UnexpectedEof.into(),
                    )));
                }
                Ok(0) => return Poll::Ready(Err(ResponseError::Truncated.into())),
                Ok(_) => self.answered = true,
                Err(e) if !self.answered => return Poll::Ready(Err(Error::Unanswered(e))),
                Err(e) => return Poll::Ready(Err(Error::Io(e))),
            }
        }
    }

    /// The next piece of the response body; `None` at its end.
    fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
        body: &mut Decoder,
    ) -> Poll<Option<Result<Bytes, Error>>> {
        loop {
            match body.decode(&mut self.read) {
                Ok(body::Decoded::Data(data)) => return Poll::Ready(Some(Ok(data))),
                Ok(body::Decoded::End) => return Poll::Ready(None),
                Ok(body::Decoded::NeedMore) => {}
                Err(e) => return Poll::Ready(Some(Err(e.into()))),
            }
            match ready!(self.poll_read(cx)) {
                Ok(0) => {
                    return Poll::Ready(body.eof().err().map(|e| Err(e.into())));
                }
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(Error::Io(e)))),
            }
        }
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        // Reclaims the space of body chunks already handed out and dropped, when it can.
        if self.read.capacity() - self.read.len() < READ_MIN {
            self.read.reserve(READ_SIZE);
        }
        self.io.poll_read_buf(cx, &mut self.read)
    }
}
