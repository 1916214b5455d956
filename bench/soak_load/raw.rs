//! The load connections' HTTP/1.1 client: each request written from bytes prepared once per
//! token, the response head parsed with `httparse`, the body skipped by its Content-Length.
//!
//! Why not hyper's client here (the side tasks use it): the generator shares a core with the
//! origin and Redis, so what it spends per request is taken from the set-up it measures.
//! hyper's `client::conn::http1` cost ≈ 11 µs of CPU per request on this project's 2-core VMs
//! (a dispatch channel to a connection task, a header map per request and response), enough
//! that at 80 % of the peak the load core ran out before the gateway did. This path needs
//! none of it: the gateway's answers on the bearer route are small and carry Content-Length
//! (anything else is reported as an error, never guessed at).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Response heads larger than this are an error (the gateway's are a few hundred bytes).
const MAX_HEAD: usize = 16 * 1024;

/// `GET {path}` with `Authorization: Bearer {token}`, as bytes on the wire.
pub fn bearer_request(path: &str, host: &str, token: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n")
        .into_bytes()
}

/// A keep-alive connection, opened on first use and again after an error or a
/// `Connection: close`.
#[derive(Default)]
pub struct RawConn {
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    /// Connections opened so far.
    pub opened: u64,
}

/// What the head said: its length, the status, the body length, whether the gateway will
/// close the connection.
struct Head {
    len: usize,
    status: u16,
    body: usize,
    close: bool,
}

fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err("response head over 16 KiB".into());
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("unparsable response: {e}")),
    };
    let mut body = None;
    let mut close = resp.version == Some(0);
    for h in resp.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            body = Some(value.parse::<usize>().map_err(|_| "bad Content-Length")?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(format!("Transfer-Encoding: {value} on the bearer route"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let body = body.ok_or("response without Content-Length")?;
    Ok(Some(Head {
        len,
        status: resp.code.unwrap_or(0),
        body,
        close,
    }))
}

impl RawConn {
    /// Sends `request` and reads its whole response within `timeout`; → the status. Any
    /// error drops the connection, so the next request opens a new one.
    pub async fn get(
        &mut self,
        addr: SocketAddr,
        request: &[u8],
        timeout: Duration,
    ) -> Result<u16, String> {
        let result = match tokio::time::timeout(timeout, self.exchange(addr, request)).await {
            Ok(r) => r,
            Err(_) => Err(format!("timeout ({} s)", timeout.as_secs_f64())),
        };
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    async fn exchange(&mut self, addr: SocketAddr, request: &[u8]) -> Result<u16, String> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connect: {}", e.kind()))?;
            let _ = stream.set_nodelay(true);
            self.stream = Some(stream);
            self.buf.clear();
            self.opened += 1;
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err("no connection".into());
        };
        stream
            .write_all(request)
            .await
            .map_err(|e| format!("write: {}", e.kind()))?;
        let head = loop {
            if let Some(head) = parse_head(&self.buf)? {
                break head;
            }
            read_more(stream, &mut self.buf).await?;
        };
        let total = head.len + head.body;
        while self.buf.len() < total {
            read_more(stream, &mut self.buf).await?;
        }
        self.buf.drain(..total);
        if head.close {
            self.stream = None;
        }
        Ok(head.status)
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    buf.reserve(4096);
    match stream.read_buf(buf).await {
        Ok(0) => Err("connection closed by the gateway".into()),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("read: {}", e.kind())),
    }
}

/// The head parser, checked by the smoke run.
pub fn self_check() {
    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n";
    let head = parse_head(ok).ok().flatten().expect("a complete head");
    assert_eq!((head.status, head.body, head.close), (200, 3, false));
    assert_eq!(head.len + head.body, ok.len());
    assert!(matches!(parse_head(&ok[..10]), Ok(None)), "partial head");
    let close = b"HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    assert!(
        parse_head(close)
            .ok()
            .flatten()
            .is_some_and(|h| h.close && h.status == 401)
    );
    assert!(parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
    assert!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err(), "no length");
}
