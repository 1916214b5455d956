//! One keep-alive HTTP/1.1 connection to the gateway (`hyper::client::conn::http1`), made
//! again after any error, and the requests the soak sends over it.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Where the requests go and how they authenticate.
pub struct Target {
    pub addr: SocketAddr,
    pub host: HeaderValue,
    /// The bearer route, e.g. `/api/x`.
    pub path: String,
    /// `[oauth].path`, e.g. `/oauth`.
    pub oauth: String,
    /// `Basic …` of the confidential client.
    pub basic: HeaderValue,
    pub timeout: Duration,
}

impl Target {
    pub fn basic(client_id: &str, secret: &str) -> HeaderValue {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"));
        HeaderValue::try_from(format!("Basic {b64}")).unwrap_or(HeaderValue::from_static(""))
    }

    /// `GET {path}` with `Authorization: Bearer {token}`.
    pub fn bearer(&self, token: &HeaderValue) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(Bytes::new()));
        *req.uri_mut() = self.path.parse().unwrap_or_default();
        req.headers_mut().insert(HOST, self.host.clone());
        req.headers_mut().insert(AUTHORIZATION, token.clone());
        req
    }

    /// `POST {oauth}/{endpoint}` with the form `body`, authenticated with HTTP Basic.
    pub fn oauth(&self, endpoint: &str, body: String) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(Bytes::from(body)));
        *req.method_mut() = hyper::Method::POST;
        *req.uri_mut() = format!("{}/{endpoint}", self.oauth)
            .parse()
            .unwrap_or_default();
        let h = req.headers_mut();
        h.insert(HOST, self.host.clone());
        h.insert(AUTHORIZATION, self.basic.clone());
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        req
    }
}

/// `Bearer {token}` as a header value.
pub fn bearer_value(token: &str) -> Result<HeaderValue, String> {
    HeaderValue::try_from(format!("Bearer {token}")).map_err(|e| format!("token: {e}"))
}

/// A connection that is opened on first use and again after an error.
#[derive(Default)]
pub struct Conn {
    send: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
    /// Connections opened so far (the first one included).
    pub opened: u64,
}

impl Conn {
    /// Sends `req` and reads the whole response within the target's timeout. Any error
    /// (connect, I/O, protocol, timeout) drops the connection, so the next request opens a
    /// new one; the error text is what the report counts.
    pub async fn send(
        &mut self,
        target: &Target,
        req: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), String> {
        let result = tokio::time::timeout(target.timeout, self.exchange(target, req)).await;
        let result = match result {
            Ok(r) => r,
            Err(_) => Err(format!("timeout ({} s)", target.timeout.as_secs_f64())),
        };
        if result.is_err() {
            self.send = None;
        }
        result
    }

    async fn exchange(
        &mut self,
        target: &Target,
        req: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), String> {
        if self.send.as_ref().is_none_or(|s| s.is_closed()) {
            self.send = Some(connect(target.addr).await?);
            self.opened += 1;
        }
        let Some(send) = self.send.as_mut() else {
            return Err("no connection".into());
        };
        send.ready().await.map_err(|e| format!("connection: {e}"))?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("response body: {e}"))?
            .to_bytes();
        Ok((status, body))
    }
}

async fn connect(
    addr: SocketAddr,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let _ = stream.set_nodelay(true);
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}
