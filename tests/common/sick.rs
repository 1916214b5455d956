//! Sick upstreams as small raw TCP servers (each misbehaves in one way after reading a
//! request head), and an HTTPS client that speaks HTTP/2 on one shared connection or
//! HTTP/1.1, and reports the response head and the body's fate separately, bounded in time.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper::{Request, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use super::{Resp, client_config, connect_tls};

/// How a [`SickUpstream`] treats every request, once it has read the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sick {
    /// Closes with `SO_LINGER` 0: the gateway gets a TCP reset, no response.
    Reset,
    /// Never answers; the connection stays open.
    Stall,
    /// `200` with `Content-Length: 1000`, ten bytes of body, then a clean close.
    ShortBody,
    /// `200` with `Content-Length: 1000`, ten bytes of body, then nothing; stays open.
    StallMidBody,
}

/// The ten body bytes the sick upstreams send after their head.
pub const FIRST_BYTES: &[u8] = b"0123456789";

/// A raw TCP upstream that is sick in one way. Connections it holds open stay open until it
/// is dropped.
pub struct SickUpstream {
    addr: std::net::SocketAddr,
    requests: Arc<AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl SickUpstream {
    pub async fn start(sick: Sick) -> SickUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind sick upstream");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&requests);
        let accept = tokio::spawn(async move {
            // Owned here, so aborting the accept loop drops (closes) every held connection.
            let mut held = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let counter = Arc::clone(&counter);
                held.spawn(serve(stream, sick, counter));
                while held.try_join_next().is_some() {}
            }
        });
        SickUpstream {
            addr,
            requests,
            accept,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Request heads read so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for SickUpstream {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn serve(mut stream: tokio::net::TcpStream, sick: Sick, requests: Arc<AtomicUsize>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let partial = [
        &b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1000\r\n\r\n"[..],
        FIRST_BYTES,
    ]
    .concat();
    match sick {
        Sick::Reset => {
            let _ = stream.set_zero_linger();
            drop(stream);
        }
        Sick::Stall => std::future::pending().await,
        Sick::ShortBody => {
            let _ = stream.write_all(&partial).await;
            let _ = stream.shutdown().await;
        }
        Sick::StallMidBody => {
            let _ = stream.write_all(&partial).await;
            std::future::pending().await
        }
    }
}

/// What one exchange got: the head (or why none came) and the body (or why it did not end).
#[derive(Debug)]
pub struct Reply {
    pub status: Result<u16, String>,
    pub body: Result<Bytes, String>,
    /// Until the head, or until the exchange failed without one.
    pub head_after: Duration,
    /// Until the body ended, failed, or the deadline passed.
    pub took: Duration,
}

impl Reply {
    /// As a [`Resp`] when the exchange completed, for [`super::Load`].
    pub fn into_resp(self) -> Result<Resp, String> {
        let status = self.status?;
        let body = self.body.map_err(|e| format!("{status} then body: {e}"))?;
        Ok(Resp {
            status,
            headers: Default::default(),
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// HTTPS to the gateway (SNI `localhost`), trusting one CA: either one HTTP/2 connection
/// that every clone shares (streams multiplexed on it), or HTTP/1.1 on a new connection per
/// request.
#[derive(Clone)]
pub struct TlsClient {
    addr: std::net::SocketAddr,
    h2: Option<SendRequest<Full<Bytes>>>,
    connector: TlsConnector,
}

impl TlsClient {
    /// Opens one HTTP/2 connection (ALPN `h2` only).
    pub async fn h2(addr: std::net::SocketAddr, ca: &Path) -> TlsClient {
        let connector = TlsConnector::from(Arc::new(client_config(&[ca], &["h2"])));
        let io = tls(&connector, addr).await.expect("TLS to the gateway");
        let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .expect("HTTP/2 handshake");
        tokio::spawn(conn);
        TlsClient {
            addr,
            h2: Some(sender),
            connector,
        }
    }

    /// HTTP/1.1 (ALPN `http/1.1` only), a new connection per request.
    pub fn h1(addr: std::net::SocketAddr, ca: &Path) -> TlsClient {
        TlsClient {
            addr,
            h2: None,
            connector: TlsConnector::from(Arc::new(client_config(&[ca], &["http/1.1"]))),
        }
    }

    pub fn protocol(&self) -> &'static str {
        if self.h2.is_some() { "h2" } else { "h1" }
    }

    /// `GET path`, everything within `within`.
    pub async fn get(&self, path: &str, within: Duration) -> Reply {
        let start = Instant::now();
        let mut head_after = None;
        let outcome =
            tokio::time::timeout(within, self.exchange(path, start, &mut head_after)).await;
        match outcome {
            Ok(reply) => reply,
            Err(_) => Reply {
                status: head_after
                    .map(|(status, _)| Ok(status))
                    .unwrap_or_else(|| Err(format!("no head within {within:?}"))),
                body: Err(format!("body not ended within {within:?}")),
                head_after: head_after.map_or(within, |(_, at)| at),
                took: start.elapsed(),
            },
        }
    }

    async fn exchange(
        &self,
        path: &str,
        start: Instant,
        head: &mut Option<(u16, Duration)>,
    ) -> Reply {
        let failed = |why: String| Reply {
            status: Err(why.clone()),
            body: Err(why),
            head_after: start.elapsed(),
            took: start.elapsed(),
        };
        let uri = format!("https://localhost:{}{path}", self.addr.port());
        let response = match &self.h2 {
            Some(sender) => {
                let mut sender = sender.clone();
                let request = Request::get(uri)
                    .version(Version::HTTP_2)
                    .body(Full::new(Bytes::new()))
                    .expect("request");
                if let Err(e) = sender.ready().await {
                    return failed(format!("h2 connection unusable: {e}"));
                }
                sender.send_request(request).await
            }
            None => {
                let io = match tls(&self.connector, self.addr).await {
                    Ok(io) => io,
                    Err(e) => return failed(e),
                };
                let (mut sender, conn) = match hyper::client::conn::http1::handshake(io).await {
                    Ok(pair) => pair,
                    Err(e) => return failed(format!("HTTP/1.1 handshake: {e}")),
                };
                tokio::spawn(conn);
                let request = Request::get(uri)
                    .header("host", format!("localhost:{}", self.addr.port()))
                    .body(Full::new(Bytes::new()))
                    .expect("request");
                sender.send_request(request).await
            }
        };
        let response = match response {
            Ok(response) => response,
            Err(e) => return failed(format!("no response: {e}")),
        };
        let status = response.status().as_u16();
        let head_after = start.elapsed();
        *head = Some((status, head_after));
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| format!("body: {e:?}"));
        Reply {
            status: Ok(status),
            body,
            head_after,
            took: start.elapsed(),
        }
    }
}

async fn tls(
    connector: &TlsConnector,
    addr: std::net::SocketAddr,
) -> Result<TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>, String> {
    connect_tls(connector, addr).await.map(TokioIo::new)
}
