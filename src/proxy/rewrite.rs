//! Header hygiene (SPEC §4 step 4): which of the client's headers go upstream, and the
//! gateway's own lines that go with them.
//!
//! The client's header map is only read, never edited: [`Rewrite::keeps`] turns headers away
//! as the head is written, and [`Rewrite::write_own`] writes the gateway's lines straight
//! into the connection's buffer. A resend writes the same head again from the same parts.

use std::net::IpAddr;

use hyper::header::{AUTHORIZATION, CONNECTION, HOST, HeaderMap, HeaderName, HeaderValue};
use hyper::http::request::Parts;

use super::Forward;
use super::h1::{header, is_hop_by_hop};
use crate::auth::Permit;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Does a client-sent header named `name` (lower case) go? `X-Auth-*` always: identity is the
/// gateway's word. The headers upstreams trust for routing, method or client address always
/// (SPEC §4), and `X-Forwarded-*` unless the peer is a trusted proxy: the gateway writes them.
fn is_gateways_to_set(name: &str, trusted_peer: bool) -> bool {
    if let Some(rest) = name.strip_prefix("x-") {
        rest.starts_with("auth-")
            || (!trusted_peer && rest.starts_with("forwarded-"))
            || matches!(
                rest,
                "real-ip"
                    | "original-url"
                    | "rewrite-url"
                    | "http-method-override"
                    | "http-method"
                    | "method-override"
            )
    } else {
        name == "forwarded"
    }
}

/// Is `name` one of the headers the `Connection` headers of `headers` list (to be dropped)?
pub fn connection_lists(headers: &HeaderMap, name: &str) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(name.as_bytes()))
}

/// What goes upstream for one request, decided once.
pub struct Rewrite<'a> {
    headers: &'a HeaderMap,
    trusted_peer: bool,
    /// The client's `Authorization` goes: the route forwards it and no credential replaces it.
    keep_authorization: bool,
    /// The client sent a `Connection` header, which may name more headers to drop.
    connection: bool,
    /// `X-Forwarded-Host` to write (`None`: a trusted proxy's own is kept, or there is no host).
    forwarded_host: Option<&'a [u8]>,
    /// `X-Forwarded-Proto` to write, unless a trusted proxy's own is kept.
    forwarded_proto: Option<&'static [u8]>,
    client_ip: IpText,
    request_id: &'a HeaderValue,
    permit: &'a Permit,
}

impl<'a> Rewrite<'a> {
    /// `replaced_authorization`: a credential's token goes upstream instead of the client's.
    pub fn new(
        parts: &'a Parts,
        permit: &'a Permit,
        fwd: &'a Forward<'_>,
        replaced_authorization: bool,
    ) -> Rewrite<'a> {
        let headers = &parts.headers;
        let connection = headers.contains_key(CONNECTION);
        // A trusted proxy's own `X-Forwarded-Host`/`-Proto` stay, unless its `Connection`
        // header dropped them; then, as from anyone else, the gateway writes its own.
        let kept = |name: &HeaderName| {
            fwd.trusted_peer
                && headers.contains_key(name)
                && !(connection && connection_lists(headers, name.as_str()))
        };
        let host = headers
            .get(HOST)
            .map(HeaderValue::as_bytes)
            .or_else(|| parts.uri.authority().map(|a| a.as_str().as_bytes()));
        Rewrite {
            headers,
            trusted_peer: fwd.trusted_peer,
            keep_authorization: fwd.keep_authorization && !replaced_authorization,
            connection,
            forwarded_host: host.filter(|_| !kept(&X_FORWARDED_HOST)),
            forwarded_proto: (!kept(&X_FORWARDED_PROTO)).then_some(if fwd.tls {
                b"https".as_slice()
            } else {
                b"http".as_slice()
            }),
            client_ip: IpText::of(fwd.remote.to_canonical()),
            request_id: fwd.request_id,
            permit,
        }
    }

    /// Does the client's header `name` go upstream?
    pub fn keeps(&self, name: &HeaderName) -> bool {
        let text = name.as_str();
        !(is_hop_by_hop(text)
            || is_gateways_to_set(text, self.trusted_peer)
            || *name == HOST
            || *name == X_REQUEST_ID
            || (*name == AUTHORIZATION && !self.keep_authorization)
            || (self.trusted_peer && *name == X_FORWARDED_FOR)
            || (self.connection && connection_lists(self.headers, text)))
    }

    /// Writes the gateway's own lines: forwarding, request id, the token's identity, and the
    /// credential's `Authorization` when there is one.
    pub fn write_own(&self, out: &mut Vec<u8>, authorization: Option<&HeaderValue>) {
        if let Some(host) = self.forwarded_host {
            header(out, b"x-forwarded-host", host);
        }
        if let Some(proto) = self.forwarded_proto {
            header(out, b"x-forwarded-proto", proto);
        }
        out.extend_from_slice(b"x-forwarded-for: ");
        if self.trusted_peer {
            // The trusted proxy's chain (every line of it, in order), then its peer.
            for prior in self
                .headers
                .get_all(&X_FORWARDED_FOR)
                .iter()
                .map(|v| v.as_bytes().trim_ascii())
                .filter(|v| !v.is_empty())
            {
                out.extend_from_slice(prior);
                out.extend_from_slice(b", ");
            }
        }
        out.extend_from_slice(self.client_ip.as_bytes());
        out.extend_from_slice(b"\r\n");
        header(out, b"x-request-id", self.request_id.as_bytes());
        if let Some(entry) = self.permit.token() {
            let t = &entry.token;
            if is_value(t.client_id.as_bytes()) {
                header(out, b"x-auth-client-id", t.client_id.as_bytes());
            }
            if let Some(user) = t.username.as_deref().filter(|u| is_value(u.as_bytes())) {
                header(out, b"x-auth-subject", user.as_bytes());
            }
            if t.scopes.iter().all(|s| is_value(s.as_bytes())) {
                out.extend_from_slice(b"x-auth-scope: ");
                for (i, scope) in t.scopes.iter().enumerate() {
                    if i > 0 {
                        out.push(b' ');
                    }
                    out.extend_from_slice(scope.as_bytes());
                }
                out.extend_from_slice(b"\r\n");
            }
        }
        if let Some(v) = authorization {
            header(out, b"authorization", v.as_bytes());
        }
    }
}

/// Could `v` be a header value as it stands (what `HeaderValue::from_bytes` accepts)?
fn is_value(v: &[u8]) -> bool {
    v.iter().all(|&c| c == b'\t' || (c >= 0x20 && c != 0x7f))
}

/// An address as text, without an allocation (IPv4 by hand: `Display` costs as much as the
/// rest of the headers).
pub struct IpText {
    buf: [u8; 45],
    len: u8,
}

impl IpText {
    pub fn of(ip: IpAddr) -> IpText {
        let mut t = IpText {
            buf: [0; 45],
            len: 0,
        };
        match ip {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        t.push(b'.');
                    }
                    if octet >= 100 {
                        t.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        t.push(b'0' + octet / 10 % 10);
                    }
                    t.push(b'0' + octet % 10);
                }
            }
            IpAddr::V6(v6) => {
                use std::io::Write;
                let mut cursor = std::io::Cursor::new(&mut t.buf[..]);
                // An IPv6 address is at most 45 characters; the buffer holds that.
                let _ = write!(cursor, "{v6}");
                t.len = cursor.position() as u8;
            }
        }
        t
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len as usize] = b;
        self.len += 1;
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_text_matches_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "1.100.9.99",
            "::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "0:0:0:0:0:ffff:255.255.255.254",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(IpText::of(ip).as_bytes(), ip.to_string().as_bytes());
        }
    }

    #[test]
    fn connection_named_headers_are_found_in_any_line() {
        let mut h = HeaderMap::new();
        h.append(
            CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret-Hop"),
        );
        h.append(CONNECTION, HeaderValue::from_static(" other "));
        assert!(connection_lists(&h, "x-secret-hop"));
        assert!(connection_lists(&h, "other"));
        assert!(!connection_lists(&h, "x-secret"));
    }

    #[test]
    fn header_values_are_checked_as_http_does() {
        for v in ["abc", "a b\tc", "caf\u{e9}", ""] {
            assert_eq!(
                is_value(v.as_bytes()),
                HeaderValue::from_bytes(v.as_bytes()).is_ok()
            );
        }
        for v in [&b"a\r\nx: y"[..], b"a\0", b"\x7f"] {
            assert!(!is_value(v));
            assert!(HeaderValue::from_bytes(v).is_err());
        }
    }
}
