//! Raw-socket helpers for the limits and framing tests: bytes written as given with
//! `std::net::TcpStream`, one response read back, and whether the gateway then closed.

// Each test file uses a different part of it.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One response as read off the socket.
#[derive(Debug)]
pub struct Answer {
    /// `HTTP/1.1 200 OK`
    pub status_line: String,
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

/// Reads one response (Content-Length, chunked, or to the end of the connection). The head
/// is read a byte at a time and a `Content-Length` body to its length, so a pipelined
/// response that follows stays unread for the next call.
pub fn read_answer(s: &mut TcpStream) -> Option<Answer> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1];
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..at]).into_owned();
            let status_line = head.lines().next().unwrap_or_default().to_owned();
            let status = status_line.split(' ').nth(1)?.parse().ok()?;
            let mut answer = Answer {
                status_line,
                status,
                head,
                body: Vec::new(),
            };
            let rest = buf[at + 4..].to_vec();
            let chunked = answer
                .header("transfer-encoding")
                .is_some_and(|v| v.contains("chunked"));
            let length = answer.header("content-length").and_then(|v| v.parse().ok());
            answer.body = read_body(s, rest, length, chunked);
            return Some(answer);
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn read_body(
    s: &mut TcpStream,
    mut have: Vec<u8>,
    length: Option<usize>,
    chunked: bool,
) -> Vec<u8> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(n) = length
            && have.len() >= n
        {
            have.truncate(n);
            return have;
        }
        if chunked && have.ends_with(b"0\r\n\r\n") {
            return dechunk(&have);
        }
        let want = length.map_or(chunk.len(), |n| (n - have.len()).min(chunk.len()));
        match s.read(&mut chunk[..want]) {
            Ok(0) | Err(_) => return have,
            Ok(n) => have.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A whole chunked body, decoded (no extensions or trailers in these tests).
fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(&String::from_utf8_lossy(&data[..end]), 16).unwrap_or(0);
        if size == 0 || data.len() < end + 2 + size {
            break;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[(end + 4 + size).min(data.len())..];
    }
    out
}

/// Has the peer closed the connection (EOF or reset) within `within`?
pub fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).expect("timeout");
    let mut byte = [0u8; 1];
    match s.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

/// Writes `request` on a new connection and reads the answer.
pub fn exchange(addr: SocketAddr, request: &[u8]) -> (Option<Answer>, TcpStream) {
    let mut s = connect(addr);
    s.write_all(request).expect("write");
    let answer = read_answer(&mut s);
    (answer, s)
}

/// An HTTP/1.0 origin in the style of Python's `http.server`: answers every request with
/// `HTTP/1.0 200 OK` and closes; with `length`, the body has a `Content-Length`, without
/// it the body ends with the connection. Records each request head it gets.
pub struct OldOrigin {
    pub addr: SocketAddr,
    pub heads: Arc<Mutex<Vec<String>>>,
}

impl OldOrigin {
    pub fn start(length: bool) -> OldOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let heads = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&heads);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let deadline = Instant::now() + Duration::from_secs(5);
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && Instant::now() < deadline {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                log.lock()
                    .expect("log")
                    .push(String::from_utf8_lossy(&buf).into_owned());
                let body = "hello from 1.0";
                let answer = if length {
                    format!(
                        "HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    format!("HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6\r\n\r\n{body}")
                };
                let _ = s.write_all(answer.as_bytes());
            }
        });
        OldOrigin { addr, heads }
    }

    pub fn route(&self, name: &str, prefix: &str) -> String {
        format!(
            "\n[[routes]]\nname = \"{name}\"\npath = \"{prefix}/*\"\nupstreams = [\"http://{}\"]\nauth = \"none\"\nstrip_prefix = \"{prefix}\"\n",
            self.addr
        )
    }
}
