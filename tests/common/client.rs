//! HTTP helpers for tests: a hyper-util (HTTP/1.1) client for ordinary requests, and raw
//! TCP for request lines that must reach the gateway byte for byte (dot segments,
//! backslashes, odd encodings a client library would tidy up or refuse).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{HeaderMap, Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// No single exchange in these tests should come near this.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(15);

/// A response, body read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    /// The value of header `name` (first one if repeated).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON; panics with the whole response if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self}"))
    }
}

impl fmt::Display for Resp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?} {}", self.status, self.headers, self.body)
    }
}

/// Sends one request with a fresh client (no connection reuse between calls, so a
/// restarted gateway never sees a stale pooled connection).
pub async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Resp {
    send_from(None, method, url, headers, body).await
}

/// [`send`] from the local address `local` (any 127.0.0.0/8 address works on loopback), so
/// that tests can act as several clients the gateway tells apart by address.
pub async fn send_from(
    local: Option<std::net::IpAddr>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Resp {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_local_address(local);
    let client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(connector);
    let mut request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("method"))
        .uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(body.into())).expect("request");
    let exchange = async {
        let response = client
            .request(request)
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e:?}"));
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: reading body: {e}"))
            .to_bytes();
        Resp {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("{method} {url}: no response within {EXCHANGE_TIMEOUT:?}"))
}

pub async fn get(url: &str, headers: &[(&str, &str)]) -> Resp {
    send("GET", url, headers, Bytes::new()).await
}

/// `POST url` with an `application/x-www-form-urlencoded` body, and HTTP Basic client
/// authentication when `basic` is given (id and secret form-encoded first, RFC 6749 §2.3.1).
pub async fn post_form(url: &str, params: &[(&str, &str)], basic: Option<(&str, &str)>) -> Resp {
    post_form_from(None, url, params, basic).await
}

/// [`post_form`] from the local address `local`.
pub async fn post_form_from(
    local: Option<std::net::IpAddr>,
    url: &str,
    params: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> Resp {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let mut headers = vec![(
        "content-type",
        "application/x-www-form-urlencoded".to_owned(),
    )];
    if let Some((id, secret)) = basic {
        headers.push(("authorization", basic_auth(id, secret)));
    }
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    send_from(local, "POST", url, &headers, body).await
}

/// The `Authorization` value for HTTP Basic client authentication.
pub fn basic_auth(id: &str, secret: &str) -> String {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(id), encode(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// `GET target` written verbatim on a new connection (`Connection: close` added).
pub async fn raw_get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Resp {
    let mut request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    raw(addr, request.as_bytes()).await
}

/// Writes `request` as is and reads one HTTP/1.1 response (Content-Length, chunked, or
/// until the connection closes).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> Resp {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.write_all(request).await.expect("write request");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(resp) = parse_response(&buf, false) {
                return resp;
            }
            // A reset after the response counts as the end of it.
            let n = stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return parse_response(&buf, true).unwrap_or_else(|| {
                    panic!(
                        "connection closed before a whole response: {:?}",
                        String::from_utf8_lossy(&buf)
                    )
                });
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| {
            panic!("raw request to {addr}: no response within {EXCHANGE_TIMEOUT:?}")
        })
}

/// A complete response in `buf`, or `None` if more bytes are needed.
fn parse_response(buf: &[u8], eof: bool) -> Option<Resp> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let rest = &buf[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        headers.append(
            HeaderName::from_bytes(name.trim().as_bytes()).ok()?,
            HeaderValue::from_str(value.trim()).ok()?,
        );
    }
    let chunked = headers
        .get("transfer-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let length = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(length) = length {
        rest.get(..length)?.to_vec()
    } else if eof || status == 204 || status == 304 {
        rest.to_vec()
    } else {
        return None;
    };
    Some(Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Decodes a complete chunked body, or `None` if it is not complete yet.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            // Trailers (if any) end with an empty line; we do not need them.
            return Some(body);
        }
        body.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}
