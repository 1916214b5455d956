//! Upstream requests without I/O: the head written straight into the connection's write
//! buffer, and the body framed as its headers (or, lacking them, its size) say.
//!
//! The head is the client's headers, less those the caller's `keep` turns away (hop-by-hop
//! ones, the gateway's own), then the caller's own lines, then at most one framing header.
//! Nothing is copied into a header map on the way: the client's map is only read.

use bytes::Bytes;
use hyper::Method;
use hyper::header::{CONTENT_LENGTH, HeaderMap, HeaderName, HeaderValue, TRANSFER_ENCODING};
#[cfg(test)]
use hyper::http::request::Parts;

/// Everything `write_head` needs of a request, borrowed, so a resend (another upstream, a
/// fresh connection, a renewed credential) writes it again without a copy being kept.
pub struct RequestHead<'a> {
    pub method: &'a Method,
    /// Origin-form request target.
    pub target: &'a str,
    /// The `Host` line's value; empty for none (then a `host` in `headers` is sent as is).
    pub host: &'a [u8],
    /// The client's headers; those `keep` says no to are not sent.
    pub headers: &'a HeaderMap,
    pub keep: &'a (dyn Fn(&HeaderName) -> bool + Sync),
    /// Writes the caller's own header lines (`name: value\r\n` each).
    pub extra: &'a (dyn Fn(&mut Vec<u8>) + Sync),
}

#[cfg(test)]
impl<'a> RequestHead<'a> {
    /// A request's own head, every header as given (tests).
    pub fn of(parts: &'a Parts) -> RequestHead<'a> {
        RequestHead {
            method: &parts.method,
            target: parts.uri.path_and_query().map_or("/", |pq| pq.as_str()),
            host: b"",
            headers: &parts.headers,
            keep: &|_| true,
            extra: &|_| {},
        }
    }
}

/// Body data up to this size is copied behind its framing in the write buffer, so that a
/// small request goes out in one write; larger data is written from its own buffer.
pub const COPY_MAX: usize = 8 * 1024;

/// Why a request cannot be written as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request Transfer-Encoding does not end in chunked")]
    BadTransferEncoding,
    #[error("invalid request Content-Length")]
    BadContentLength,
    #[error("request body longer than its Content-Length")]
    BodyTooLong,
    #[error("request body shorter than its Content-Length")]
    BodyTooShort,
}

/// How the request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoder {
    /// Exactly this many bytes still to send.
    Length(u64),
    /// Chunked; `open` when a chunk's data was written and its CRLF is still owed.
    Chunked { open: bool },
}

/// Writes the request head into `out` and returns the body's framing.
///
/// A `Transfer-Encoding` given (it must end in `chunked`) wins over a `Content-Length`,
/// which is then not sent, as hyper's client did. Without either, a body known to be empty
/// gets no framing header, one of known size a `Content-Length`, any other is chunked.
pub fn write_head(
    out: &mut Vec<u8>,
    req: &RequestHead<'_>,
    empty: bool,
    size: Option<u64>,
) -> Result<Encoder, RequestError> {
    let chunked = match coding_is_chunked(req.headers) {
        Some(false) => return Err(RequestError::BadTransferEncoding),
        Some(true) => true,
        None => false,
    };
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !req.host.is_empty() {
        header(out, b"host", req.host);
    }
    let mut length = None;
    for (name, value) in req.headers {
        if !(req.keep)(name) {
            continue;
        }
        if name == CONTENT_LENGTH {
            if chunked {
                continue;
            }
            let n = parse_length(value)?;
            if length.is_some_and(|l| l != n) {
                return Err(RequestError::BadContentLength);
            }
            if length.replace(n).is_some() {
                continue;
            }
        }
        header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    (req.extra)(out);
    let encoder = match (chunked, length) {
        (true, _) => Encoder::Chunked { open: false },
        (false, Some(n)) => Encoder::Length(n),
        (false, None) if empty => Encoder::Length(0),
        (false, None) => match size {
            Some(n) => {
                let mut digits = itoa_buf();
                header(out, b"content-length", itoa(n, &mut digits));
                Encoder::Length(n)
            }
            None => {
                header(out, b"transfer-encoding", b"chunked");
                Encoder::Chunked { open: false }
            }
        },
    };
    out.extend_from_slice(b"\r\n");
    Ok(encoder)
}

/// `None`: no `Transfer-Encoding`; else whether its last coding is `chunked`.
fn coding_is_chunked(headers: &HeaderMap) -> Option<bool> {
    let last = headers.get_all(TRANSFER_ENCODING).iter().next_back()?;
    let coding = last.as_bytes().rsplit(|&b| b == b',').next()?;
    Some(coding.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

fn parse_length(value: &HeaderValue) -> Result<u64, RequestError> {
    let v = value.as_bytes();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return Err(RequestError::BadContentLength);
    }
    Ok(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

pub fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn itoa_buf() -> [u8; 20] {
    [0; 20]
}

/// `n` in decimal, written at the end of `buf`.
fn itoa(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

impl Encoder {
    /// Frames one piece of body data: the framing (and `data` itself when it is small) goes
    /// into `out`; data returned must be written right after `out`.
    pub fn data(&mut self, out: &mut Vec<u8>, data: Bytes) -> Result<Option<Bytes>, RequestError> {
        if data.is_empty() {
            return Ok(None); // an empty chunk would end a chunked body
        }
        match self {
            Encoder::Length(left) => {
                *left = left
                    .checked_sub(data.len() as u64)
                    .ok_or(RequestError::BodyTooLong)?;
            }
            Encoder::Chunked { open } => {
                if std::mem::replace(open, true) {
                    out.extend_from_slice(b"\r\n");
                }
                let mut hex = [0u8; 16];
                out.extend_from_slice(hex_len(data.len(), &mut hex));
                out.extend_from_slice(b"\r\n");
            }
        }
        if data.len() <= COPY_MAX {
            out.extend_from_slice(&data);
            Ok(None)
        } else {
            Ok(Some(data))
        }
    }

    /// Ends the body: the last chunk for chunked, a check of the length otherwise.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), RequestError> {
        match self {
            Encoder::Length(0) => Ok(()),
            Encoder::Length(_) => Err(RequestError::BodyTooShort),
            Encoder::Chunked { open } => {
                if std::mem::replace(open, false) {
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
                Ok(())
            }
        }
    }
}

fn hex_len(mut n: usize, buf: &mut [u8; 16]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        if n == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::Request;

    fn parts(method: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = Request::builder().method(method).uri("/a/b?c=d");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request").into_parts().0
    }

    fn head(p: &Parts, empty: bool, size: Option<u64>) -> (String, Result<Encoder, RequestError>) {
        let mut out = Vec::new();
        let r = write_head(&mut out, &RequestHead::of(p), empty, size);
        (String::from_utf8(out).expect("ASCII"), r)
    }

    #[test]
    fn heads_carry_the_given_headers_and_one_framing() {
        type Case<'a> = (
            &'a str,
            &'a [(&'a str, &'a str)],
            bool,
            Option<u64>,
            Option<&'a str>,
            Encoder,
        );
        let chunked = Encoder::Chunked { open: false };
        let cases: &[Case] = &[
            (
                "GET",
                &[("host", "up")],
                true,
                Some(0),
                None,
                Encoder::Length(0),
            ),
            (
                "POST",
                &[("content-length", "3")],
                false,
                Some(3),
                Some("content-length: 3"),
                Encoder::Length(3),
            ),
            (
                "POST",
                &[],
                false,
                Some(5),
                Some("content-length: 5"),
                Encoder::Length(5),
            ),
            (
                "POST",
                &[],
                false,
                None,
                Some("transfer-encoding: chunked"),
                chunked,
            ),
            (
                "PUT",
                &[("transfer-encoding", "chunked"), ("content-length", "9")],
                false,
                None,
                Some("transfer-encoding: chunked"),
                chunked,
            ),
            (
                "POST",
                &[("content-length", "4"), ("content-length", "4")],
                false,
                Some(4),
                Some("content-length: 4"),
                Encoder::Length(4),
            ),
        ];
        for (method, headers, empty, size, framing, encoder) in cases {
            let (text, r) = head(&parts(method, headers), *empty, *size);
            assert_eq!(r, Ok(*encoder), "{text}");
            assert!(
                text.starts_with(&format!("{method} /a/b?c=d HTTP/1.1\r\n")),
                "{text}"
            );
            assert!(text.ends_with("\r\n\r\n"), "{text}");
            let framings =
                text.matches("content-length").count() + text.matches("transfer-encoding").count();
            assert_eq!(framings, usize::from(framing.is_some()), "{text}");
            if let Some(f) = framing {
                assert!(text.contains(&format!("\r\n{f}\r\n")), "{text}");
            }
        }
        let (text, _) = head(
            &parts("GET", &[("host", "up"), ("x-a", "1")]),
            true,
            Some(0),
        );
        assert_eq!(text, "GET /a/b?c=d HTTP/1.1\r\nhost: up\r\nx-a: 1\r\n\r\n");
    }

    #[test]
    fn unframeable_requests_are_refused() {
        for (headers, err) in [
            (
                &[("transfer-encoding", "gzip")][..],
                RequestError::BadTransferEncoding,
            ),
            (
                &[("content-length", "x")][..],
                RequestError::BadContentLength,
            ),
            (
                &[("content-length", "1"), ("content-length", "2")][..],
                RequestError::BadContentLength,
            ),
        ] {
            assert_eq!(head(&parts("POST", headers), false, None).1, Err(err));
        }
    }

    #[test]
    fn chunked_bodies_are_framed_and_ended() {
        let mut e = Encoder::Chunked { open: false };
        let mut out = Vec::new();
        assert_eq!(e.data(&mut out, Bytes::from_static(b"hello")), Ok(None));
        assert_eq!(e.data(&mut out, Bytes::new()), Ok(None));
        let big = Bytes::from(vec![b'x'; COPY_MAX + 1]);
        assert_eq!(e.data(&mut out, big.clone()), Ok(Some(big)));
        assert_eq!(out, b"5\r\nhello\r\n2001\r\n");
        out.clear();
        e.finish(&mut out).expect("finish");
        assert_eq!(out, b"\r\n0\r\n\r\n");
    }

    #[test]
    fn length_bodies_must_match_their_length() {
        let mut out = Vec::new();
        let mut e = Encoder::Length(3);
        assert_eq!(e.data(&mut out, Bytes::from_static(b"ab")), Ok(None));
        assert_eq!(e.finish(&mut out), Err(RequestError::BodyTooShort));
        assert_eq!(
            e.data(&mut out, Bytes::from_static(b"cd")),
            Err(RequestError::BodyTooLong)
        );
        assert_eq!(out, b"ab");
    }

    #[test]
    fn numbers_are_written_in_full() {
        let mut b = itoa_buf();
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            assert_eq!(itoa(n, &mut b), n.to_string().as_bytes());
        }
        let mut h = [0u8; 16];
        for n in [1usize, 15, 16, 0x2001, usize::MAX] {
            assert_eq!(hex_len(n, &mut h), format!("{n:x}").as_bytes());
        }
    }
}
