//! The byte stream under an upstream connection: plain TCP or TLS (tokio-rustls), with the
//! three operations the codec needs, reading straight into its `BytesMut`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Each step of opening a connection (TCP, then the TLS handshake) gets this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub enum Io {
    Tcp(TcpStream),
    /// Boxed: a TLS session is a kilobyte or more, and connections move in and out of the pool.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Io {
    /// Connects to `host:port`, with TLS when `tls` is given (verifying the name `host`).
    pub async fn connect(
        host: &str,
        port: u16,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> io::Result<Io> {
        let tcp = within_timeout("connect", TcpStream::connect((host, port))).await?;
        let _ = tcp.set_nodelay(true);
        let Some(config) = tls else {
            return Ok(Io::Tcp(tcp));
        };
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
        let tls = within_timeout("TLS handshake", connector.connect(name, tcp)).await?;
        Ok(Io::Tls(Box::new(tls)))
    }

    /// Reads what is there into `buf`'s spare capacity (which the caller has reserved),
    /// uninitialised, with tokio-util doing the one `unsafe` step. Through `AsyncRead`, so a
    /// read that leaves the kernel's buffer empty clears the socket's readiness, and the check
    /// before reuse ([`Io::is_idle_and_open`]) costs no system call. `Ok(0)`: the upstream
    /// closed.
    pub fn poll_read_buf(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        match self {
            Io::Tcp(tcp) => tokio_util::io::poll_read_buf(Pin::new(tcp), cx, buf),
            Io::Tls(tls) => tokio_util::io::poll_read_buf(Pin::new(&mut **tls), cx, buf),
        }
    }

    pub fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self {
            Io::Tcp(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Io::Tls(tls) => Pin::new(&mut **tls).poll_write_vectored(cx, bufs),
        }
    }

    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Io::Tcp(_) => Poll::Ready(Ok(())),
            Io::Tls(tls) => Pin::new(&mut **tls).poll_flush(cx),
        }
    }

    /// Whether an idle connection still looks open: nothing to read and no close seen. No
    /// system call unless the reactor has seen the socket become readable since the last
    /// read (an upstream's close, usually), so it is cheap enough before every reuse.
    pub fn is_idle_and_open(&mut self) -> bool {
        let mut probe = [0u8; 64];
        match self {
            Io::Tcp(tcp) => {
                matches!(tcp.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            // TLS may read records that carry no data (a TLS 1.3 session ticket) and still
            // be pending: that is an open connection too.
            Io::Tls(tls) => {
                let mut cx = Context::from_waker(Waker::noop());
                let mut read = ReadBuf::new(&mut probe);
                Pin::new(&mut **tls)
                    .poll_read(&mut cx, &mut read)
                    .is_pending()
            }
        }
    }
}

async fn within_timeout<T>(step: &str, io: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    match tokio::time::timeout(CONNECT_TIMEOUT, io).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{step} timed out"),
        )),
    }
}
