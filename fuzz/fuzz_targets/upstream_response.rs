//! The upstream response parser and body decoder (`src/proxy/h1/response.rs`, `body.rs`) on
//! arbitrary bytes: no panic, no body byte that was not in the input, and the same outcome
//! whether the bytes arrive at once or in pieces of any size (as reads deliver them).
//!
//! Input: byte 0 bit 0 = the request was HEAD; byte 1 = the piece size (1..=64); the rest is
//! what the upstream sent, after which it closes the connection.

#![no_main]
// The codec files have more than this target calls.
#![allow(dead_code)]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

#[path = "../../src/proxy/h1/body.rs"]
mod body;
#[path = "../../src/proxy/h1/response.rs"]
mod response;

use body::Decoded;

/// What a connection makes of `wire`: status, headers, body and how many bytes it took, or
/// that it refused it.
#[derive(Debug, PartialEq)]
enum Outcome {
    Refused,
    Response {
        status: u16,
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
        keep_alive: bool,
        consumed: usize,
    },
}

fn run(wire: &[u8], piece: usize, head_request: bool) -> Outcome {
    let mut pieces = wire.chunks(piece);
    let mut unfed = wire.len();
    let mut buf = BytesMut::new();
    let mut head = None;
    let mut body = Vec::new();
    loop {
        if head.is_none() && !buf.is_empty() {
            match response::parse_head(&mut buf, head_request) {
                Ok(h) => head = h,
                Err(_) => return Outcome::Refused,
            }
        }
        if let Some(h) = head.as_mut() {
            match h.body.decode(&mut buf) {
                Ok(Decoded::Data(d)) => {
                    assert!(!d.is_empty(), "empty data");
                    body.extend_from_slice(&d);
                    continue;
                }
                Ok(Decoded::End) => break,
                Ok(Decoded::NeedMore) => {}
                Err(_) => return Outcome::Refused,
            }
        }
        match pieces.next() {
            Some(p) => {
                unfed -= p.len();
                buf.extend_from_slice(p);
            }
            // The upstream closed.
            None => match head.as_mut().map(|h| h.body.eof()) {
                Some(Ok(())) => break,
                _ => return Outcome::Refused,
            },
        }
    }
    let Some(h) = head else {
        return Outcome::Refused;
    };
    assert!(h.body.is_done());
    let consumed = wire.len() - unfed - buf.len();
    assert!(body.len() <= consumed, "more body than input");
    if let Some(n) = h
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .filter(|_| h.headers.get("transfer-encoding").is_none() && !head_request)
        .filter(|_| h.status != 204 && h.status != 304)
    {
        assert_eq!(body.len(), n, "Content-Length not honoured");
    }
    Outcome::Response {
        status: h.status.as_u16(),
        headers: h
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect(),
        body,
        keep_alive: h.keep_alive,
        consumed,
    }
}

fuzz_target!(|data: &[u8]| {
    let [flags, piece, wire @ ..] = data else {
        return;
    };
    let head_request = flags & 1 == 1;
    let whole = run(wire, wire.len().max(1), head_request);
    let split = run(wire, usize::from(*piece % 64) + 1, head_request);
    assert_eq!(whole, split, "outcome depends on how the bytes arrived");
});
