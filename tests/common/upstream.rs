//! A real HTTP/1.1 upstream (hyper 1.x) that records every request it receives, so tests
//! can assert exactly what the gateway forwarded, and what it never forwarded.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::TokioIo;

/// How long the upstream sits on a request whose path contains `/slow`.
pub const SLOW_DELAY: Duration = Duration::from_secs(2);

/// One request as the upstream saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query exactly as received in the request line.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    /// The path part of `uri`.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or_default()
    }

    /// The single value of header `name`; panics if it appears more than once.
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut values = self.headers.get_all(name).iter();
        let first = values.next()?;
        assert!(
            values.next().is_none(),
            "header {name} forwarded more than once"
        );
        Some(first.to_str().expect("ASCII header value"))
    }
}

/// A recording upstream in the test's tokio runtime. Answers `200` with header
/// `x-upstream: <name>` and body `upstream=<name> uri=<uri>`; requests whose path contains
/// `/slow` are answered after [`SLOW_DELAY`].
pub struct Upstream {
    name: Arc<str>,
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start(name: &str) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let name: Arc<str> = Arc::from(name);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let accept = tokio::spawn({
            let name = Arc::clone(&name);
            let requests = Arc::clone(&requests);
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let name = Arc::clone(&name);
                    let requests = Arc::clone(&requests);
                    tokio::spawn(async move {
                        let service = service_fn(move |req| {
                            answer(req, Arc::clone(&name), Arc::clone(&requests))
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        });
        Upstream {
            name,
            addr,
            requests,
            accept,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("request log").clone()
    }

    /// Path and query of every request received so far.
    pub fn uris(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.uri).collect()
    }

    /// The only request received so far; panics if there were none or several.
    pub fn only_request(&self) -> Recorded {
        let requests = self.requests();
        assert_eq!(
            requests.len(),
            1,
            "upstream {} expected exactly one request, got {:?}",
            self.name,
            self.uris()
        );
        requests.into_iter().next().expect("one request")
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Records `req` and answers `upstream={name} uri={uri}` (after 2 s for `/slow` paths).
pub async fn answer(
    req: Request<Incoming>,
    name: Arc<str>,
    requests: Arc<Mutex<Vec<Recorded>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let uri = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| parts.uri.to_string());
    let slow = parts.uri.path().contains("/slow");
    requests.lock().expect("request log").push(Recorded {
        method: parts.method.to_string(),
        uri: uri.clone(),
        headers: parts.headers,
        body,
    });
    if slow {
        tokio::time::sleep(SLOW_DELAY).await;
    }
    let response = Response::builder()
        .header("x-upstream", &*name)
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(format!("upstream={name} uri={uri}"))))
        .expect("static response");
    Ok(response)
}

/// `http://127.0.0.1:PORT` for a port where every connection is refused, for the life of the
/// test process.
///
/// Binding port 0 and closing it again (the old way) left the port free for the next port-0
/// bind anywhere on the machine, so a "dead" upstream could turn into another test's live
/// one. Instead a socket stays bound to the port without ever listening: the kernel answers
/// a SYN to a port with no listener with a reset (ECONNREFUSED), it never hands a bound port
/// to a port-0 bind, and no one can bind it explicitly either (no SO_REUSEADDR/REUSEPORT on
/// it). A listener with a backlog of 0 would not do: Linux still completes handshakes for it.
pub fn dead_port_url() -> String {
    static DEAD: OnceLock<(tokio::net::TcpSocket, SocketAddr)> = OnceLock::new();
    let (_, addr) = DEAD.get_or_init(|| {
        let socket = tokio::net::TcpSocket::new_v4().expect("TCP socket");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind 127.0.0.1:0");
        let addr = socket.local_addr().expect("local addr");
        (socket, addr)
    });
    format!("http://{addr}")
}
