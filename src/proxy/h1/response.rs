//! Upstream response heads without I/O: parsed by `httparse` into `http` types, with the
//! body's framing decided strictly (RFC 9112 §6.3); [`super::body`] then decodes the body.
//!
//! Anything ambiguous is an error, never a guess: a response smuggled past a lenient parser
//! would be forwarded to a client as if the upstream had said it. This file and `body.rs`
//! depend on nothing of Tollgate's (only `bytes`, `httparse`, `thiserror` and hyper's `http`
//! types), so that the fuzz target (`fuzz/fuzz_targets/upstream_response.rs`) compiles them.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};

pub use super::body::Decoder;
use hyper::header::{
    CONNECTION, CONTENT_LENGTH, HeaderMap, HeaderName, HeaderValue, TRANSFER_ENCODING,
};
use hyper::{StatusCode, Version};

/// Largest response head (status line and headers) accepted, and the most headers.
pub const MAX_HEAD: usize = 64 * 1024;
pub const MAX_HEADERS: usize = 100;

/// Why an upstream response cannot be forwarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("response head over {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("response head with over {MAX_HEADERS} headers")]
    TooManyHeaders,
    #[error("malformed response head: {0}")]
    Malformed(httparse::Error),
    #[error("invalid status code {0}")]
    BadStatus(u16),
    #[error("invalid header name or value")]
    BadHeader,
    #[error("101 Switching Protocols is not supported")]
    SwitchingProtocols,
    #[error("both Content-Length and Transfer-Encoding")]
    LengthAndTransferEncoding,
    #[error("invalid or conflicting Content-Length")]
    BadContentLength,
    #[error("Transfer-Encoding that does not end in chunked")]
    BadTransferEncoding,
    #[error("invalid chunk framing")]
    BadChunk,
    #[error("invalid or oversize trailer section")]
    BadTrailers,
    #[error("body ended before its end")]
    Truncated,
}

/// A final response head, with what the connection needs to know about it.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    /// The reason phrase when it is not the status code's usual one (hyper's server writes it
    /// back out from `hyper::ext::ReasonPhrase`, as it did when hyper was the client).
    pub reason: Option<Bytes>,
    pub headers: HeaderMap,
    pub body: Decoder,
    /// Whether the connection may carry another request once this body has been read.
    pub keep_alive: bool,
}

/// Where a name or value lies in the head, so the head can be split off the buffer (and the
/// values become slices of it) once `httparse`'s borrow of the buffer has ended.
#[derive(Clone, Copy, Default)]
struct Span {
    name: (u32, u32),
    value: (u32, u32),
}

/// Where `part` lies in `buf`. Not every slice httparse hands back points into the buffer
/// (a reason phrase it will not read is a `""` of its own), so that is checked, not assumed.
fn span_of(buf: &[u8], part: &[u8]) -> Option<(u32, u32)> {
    if part.is_empty() {
        return Some((0, 0));
    }
    let start = (part.as_ptr() as usize).checked_sub(buf.as_ptr() as usize)?;
    let end = start
        .checked_add(part.len())
        .filter(|&end| end <= buf.len())?;
    Some((u32::try_from(start).ok()?, u32::try_from(end).ok()?))
}

/// Parses the response head at the start of `buf` and removes it (and any 1xx heads before
/// it) from `buf`. `Ok(None)`: incomplete, read more. `head_request`: the request was `HEAD`,
/// so the response has no body whatever its headers say.
pub fn parse_head(buf: &mut BytesMut, head_request: bool) -> Result<Option<Head>, ResponseError> {
    loop {
        let mut spans = [Span::default(); MAX_HEADERS];
        let (len, code, version, count, reason) = {
            let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut []);
            let parsed = httparse::ParserConfig::default()
                .parse_response_with_uninit_headers(&mut resp, buf, &mut slots);
            let len = match parsed {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
                    return Err(ResponseError::HeadTooLarge);
                }
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::TooManyHeaders),
                Err(e) => return Err(ResponseError::Malformed(e)),
            };
            if len > MAX_HEAD {
                return Err(ResponseError::HeadTooLarge);
            }
            for (span, h) in spans.iter_mut().zip(resp.headers.iter()) {
                *span = Span {
                    name: span_of(buf, h.name.as_bytes()).ok_or(ResponseError::BadHeader)?,
                    value: span_of(buf, h.value).ok_or(ResponseError::BadHeader)?,
                };
            }
            let reason = resp.reason.and_then(|r| span_of(buf, r.as_bytes()));
            let code = resp.code.unwrap_or_default();
            let version = resp.version.unwrap_or_default();
            (len, code, version, resp.headers.len(), reason)
        };
        match code {
            101 => return Err(ResponseError::SwitchingProtocols),
            // Informational (100 Continue, 103 Early Hints): not forwarded, the final one is.
            100..=199 => {
                buf.advance(len);
                continue;
            }
            _ => {}
        }
        let status = StatusCode::from_u16(code).map_err(|_| ResponseError::BadStatus(code))?;
        let head = buf.split_to(len).freeze();
        return build(
            &head,
            &spans[..count],
            status,
            version,
            reason,
            head_request,
        )
        .map(Some);
    }
}

/// What the framing headers said, gathered while the header map is built.
#[derive(Default)]
struct Framing {
    length: Option<u64>,
    /// A `Transfer-Encoding` was present; whether its last coding (so far) is `chunked`.
    coded: bool,
    chunked: bool,
    close: bool,
    keep_alive: bool,
}

fn build(
    head: &Bytes,
    spans: &[Span],
    status: StatusCode,
    minor: u8,
    reason: Option<(u32, u32)>,
    head_request: bool,
) -> Result<Head, ResponseError> {
    let slice = |(a, b): (u32, u32)| head.slice(a as usize..b as usize);
    let mut headers = HeaderMap::with_capacity(spans.len());
    let mut framing = Framing::default();
    for span in spans {
        let (a, b) = span.name;
        let name = HeaderName::from_bytes(&head[a as usize..b as usize])
            .map_err(|_| ResponseError::BadHeader)?;
        let value = HeaderValue::from_maybe_shared(slice(span.value))
            .map_err(|_| ResponseError::BadHeader)?;
        if name == CONTENT_LENGTH {
            let n = content_length(&value, framing.length)?;
            if framing.length.replace(n).is_some() {
                continue; // the same length again: one header is enough
            }
            if value.as_bytes().contains(&b',') {
                headers.append(name, HeaderValue::from(n));
                continue;
            }
        } else if name == TRANSFER_ENCODING {
            transfer_coding(&value, &mut framing)?;
        } else if name == CONNECTION {
            let mut names_others = false;
            for token in list(&value) {
                let close = token.eq_ignore_ascii_case(b"close");
                let keep_alive = token.eq_ignore_ascii_case(b"keep-alive");
                framing.close |= close;
                framing.keep_alive |= keep_alive;
                names_others |= !close && !keep_alive && !token.is_empty();
            }
            // Kept only when it names other headers, for the proxy to drop those with it.
            if !names_others {
                continue;
            }
        } else if is_hop_by_hop(name.as_str()) {
            continue; // never forwarded: not worth a slot in the map
        }
        headers.append(name, value);
    }
    if framing.coded && framing.length.is_some() {
        return Err(ResponseError::LengthAndTransferEncoding);
    }
    if framing.coded && !framing.chunked {
        return Err(ResponseError::BadTransferEncoding);
    }
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let no_body =
        head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let body = match (no_body, framing.chunked, framing.length) {
        (true, _, _) => Decoder::length(0),
        (false, true, _) => Decoder::chunked(),
        (false, false, Some(n)) => Decoder::length(n),
        (false, false, None) => Decoder::until_close(),
    };
    let keep_alive = !body.is_close_delimited()
        && !framing.close
        && (version == Version::HTTP_11 || framing.keep_alive);
    let reason = reason
        .filter(|&(a, b)| {
            a < b
                && status.canonical_reason().map(str::as_bytes)
                    != Some(&head[a as usize..b as usize])
        })
        .map(slice);
    Ok(Head {
        status,
        version,
        reason,
        headers,
        body,
        keep_alive,
    })
}

/// The comma-separated elements of a header value, trimmed, empty ones included.
/// RFC 9110 §7.6.1 hop-by-hop headers, plus the legacy ones proxies also drop.
pub fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "upgrade"
    )
}

fn list(value: &HeaderValue) -> impl Iterator<Item = &[u8]> {
    value
        .as_bytes()
        .split(|&b| b == b',')
        .map(|t| t.trim_ascii())
}

/// One `Content-Length` line: every element the same decimal number, and the same as any
/// earlier line's (`seen`).
fn content_length(value: &HeaderValue, seen: Option<u64>) -> Result<u64, ResponseError> {
    let mut found = seen;
    for element in list(value) {
        if element.is_empty() || element.len() > 19 || !element.iter().all(u8::is_ascii_digit) {
            return Err(ResponseError::BadContentLength);
        }
        let n = element
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        if found.is_some_and(|f| f != n) {
            return Err(ResponseError::BadContentLength);
        }
        found = Some(n);
    }
    found.ok_or(ResponseError::BadContentLength)
}

/// One `Transfer-Encoding` line: codings in order; `chunked` may only be the last of all.
fn transfer_coding(value: &HeaderValue, framing: &mut Framing) -> Result<(), ResponseError> {
    for coding in list(value) {
        if coding.is_empty() || framing.chunked {
            return Err(ResponseError::BadTransferEncoding);
        }
        framing.coded = true;
        framing.chunked = coding.eq_ignore_ascii_case(b"chunked");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
