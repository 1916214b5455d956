//! Forwarding to upstreams: the pooled keep-alive client, round-robin over a route's
//! upstreams (skipping ones that just failed), and header hygiene (SPEC §4 step 4).

mod h1;
mod pool;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{Either, Empty};
use hyper::header::{CONNECTION, HOST, HeaderName, HeaderValue};
use hyper::http::uri::{Authority, PathAndQuery, Scheme};
use hyper::{HeaderMap, Request, Response, Uri, Version};

pub use self::pool::PooledBody;
use self::pool::{Endpoint, Pool, Reuse, SendError};
use crate::auth::Permit;
use crate::error::{Body, GatewayError};

/// How long an upstream that refused a connection is skipped by round-robin.
const FAILED_UPSTREAM_PAUSE: Duration = Duration::from_secs(2);

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_AUTH_CLIENT_ID: HeaderName = HeaderName::from_static("x-auth-client-id");
static X_AUTH_SUBJECT: HeaderName = HeaderName::from_static("x-auth-subject");
static X_AUTH_SCOPE: HeaderName = HeaderName::from_static("x-auth-scope");

/// RFC 9110 §7.6.1 hop-by-hop headers, plus the legacy ones proxies also drop.
fn is_hop_by_hop(name: &str) -> bool {
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

/// Process start, as the zero point of the `down_until` clocks.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn clock_ms() -> u64 {
    EPOCH.elapsed().as_millis() as u64
}

/// Ids for targets, so each compiled config's targets have connections of their own.
static NEXT_TARGET_ID: AtomicU64 = AtomicU64::new(1);

/// TLS for `https://` upstreams without `upstream_ca`: the system's roots, read once.
static SYSTEM_TLS: LazyLock<Arc<rustls::ClientConfig>> =
    LazyLock::new(|| Arc::new(http1_only(system_roots())));

/// One upstream of a route.
struct Target {
    id: u64,
    authority: Authority,
    /// Host to connect to (IPv6 without brackets) and port (the scheme's default if none).
    host: String,
    port: u16,
    https: bool,
    /// `Host` header sent upstream: the upstream URL's authority.
    host_header: HeaderValue,
    /// Path prefix from the upstream URL, without a trailing slash ("" for none).
    base_path: String,
    /// Skip this target until this time (ms on [`clock_ms`]).
    down_until: AtomicU64,
}

impl Target {
    fn new(uri: &Uri) -> Option<Target> {
        let authority = uri.authority()?.clone();
        let https = uri.scheme() == Some(&Scheme::HTTPS);
        Some(Target {
            id: NEXT_TARGET_ID.fetch_add(1, Ordering::Relaxed),
            host: authority.host().trim_matches(['[', ']']).to_owned(),
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            https,
            host_header: HeaderValue::from_str(authority.as_str()).ok()?,
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
            down_until: AtomicU64::new(0),
        })
    }
}

/// A route's upstreams with their round-robin cursor.
pub struct Upstreams {
    targets: Vec<Target>,
    next: AtomicUsize,
    /// The route's own TLS config, when it trusts its own CA for `https://` upstreams.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Upstreams {
    pub fn new(uris: &[Uri], ca: Option<&Arc<rustls::ClientConfig>>) -> Upstreams {
        Upstreams {
            targets: uris.iter().filter_map(Target::new).collect(),
            next: AtomicUsize::new(0),
            tls: ca.map(|tls| Arc::new(http1_only((**tls).clone()))),
        }
    }

    /// Targets in the order to try them: round-robin start, ones marked down moved last.
    fn order(&self) -> impl Iterator<Item = &Target> {
        let n = self.targets.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = clock_ms();
        let rotated = (0..n).map(move |i| &self.targets[(start + i) % n]);
        let up = rotated
            .clone()
            .filter(move |t| t.down_until.load(Ordering::Relaxed) <= now);
        let down = rotated.filter(move |t| t.down_until.load(Ordering::Relaxed) > now);
        up.chain(down)
    }

    fn endpoint<'a>(&'a self, target: &'a Target) -> Endpoint<'a> {
        Endpoint {
            id: target.id,
            host: &target.host,
            port: target.port,
            tls: target
                .https
                .then(|| self.tls.as_ref().unwrap_or(&SYSTEM_TLS)),
        }
    }
}

/// What the gateway knows about the inbound request, for the forwarding headers.
pub struct Forward<'a> {
    pub remote: IpAddr,
    /// The peer is in `[server] trusted_proxies`: its `X-Forwarded-*` are kept (and extended).
    pub trusted_peer: bool,
    pub tls: bool,
    pub request_id: &'a HeaderValue,
    /// Path to send upstream (normalised, `strip_prefix` applied).
    pub path: &'a str,
    pub timeout: Duration,
    pub keep_authorization: bool,
}

/// Upstream connections speak HTTP/1.1, so that is all the TLS handshake offers.
fn http1_only(mut tls: rustls::ClientConfig) -> rustls::ClientConfig {
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    tls
}

/// The system's roots (read once) for the gateway's other HTTPS clients: outbound
/// credentials' token requests.
pub(crate) fn system_tls_config() -> rustls::ClientConfig {
    static ROOTS: LazyLock<rustls::ClientConfig> = LazyLock::new(system_roots);
    ROOTS.clone()
}

/// The system's trusted roots (those rustls-native-certs can read; none if it reads none,
/// which makes every https:// upstream without `upstream_ca` fail with 502, loudly logged).
fn system_roots() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "reading the system's CA certificates");
    }
    let (added, _) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(
        added,
        "system CA certificates loaded for https:// upstreams"
    );
    rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A worker's upstream client: its own connection pool (see [`pool`]).
#[derive(Clone, Default)]
pub struct Proxy {
    pool: Pool,
}

impl Proxy {
    /// Sends the request to one of `upstreams` and returns its response, streaming both ways.
    pub async fn forward(
        &self,
        permit: &Permit,
        upstreams: &Upstreams,
        req: Request<hyper::body::Incoming>,
        fwd: &Forward<'_>,
        mut credential: Option<crate::outbound::Attached<'_>>,
    ) -> Result<Response<Body>, GatewayError> {
        let (mut parts, body) = req.into_parts();
        prepare_headers(&mut parts.headers, permit, fwd, parts.uri.authority());
        if let Some(c) = &credential {
            parts
                .headers
                .insert(hyper::header::AUTHORIZATION, c.header.clone());
        }
        // A request without a body can be re-sent (to the next upstream when a connection is
        // refused); one with a body cannot, as the body is consumed by the first attempt.
        let retryable = hyper::body::Body::is_end_stream(&body);
        // Sent, then found the kept-alive connection closed: re-sent once, if idempotent.
        let mut resend_once = retryable && parts.method.is_idempotent();
        // The upstream refused the credential's token: sent once more with a fresh one, under
        // the same rule (SPEC §8).
        let mut renew_once = credential.is_some() && retryable && parts.method.is_idempotent();
        let mut reuse = Reuse::Idle;
        let mut body = Some(body);
        // The head is sent from `parts` itself, borrowed, so a resend needs no copy of it:
        // only the target and Host change between attempts.
        let original = std::mem::take(&mut parts.uri);
        let query = original.query();
        parts.version = Version::HTTP_11;
        let mut targets = upstreams.order().peekable();
        while let Some(target) = targets.peek().copied() {
            let Some(path) = upstream_path(target, fwd.path, query) else {
                return Err(GatewayError::BadGateway);
            };
            let outbound_body = match body.take() {
                Some(b) => Either::Left(b),
                None => Either::Right(Empty::new()),
            };
            parts.uri = Uri::from(path);
            parts.headers.insert(HOST, target.host_header.clone());
            let endpoint = upstreams.endpoint(target);
            let sent = self
                .pool
                .send_parts(&endpoint, &parts, outbound_body, reuse);
            let e = match tokio::time::timeout(fwd.timeout, sent).await {
                Err(_) => return Err(GatewayError::GatewayTimeout),
                Ok(Ok(resp)) if renew_once && resp.status() == hyper::StatusCode::UNAUTHORIZED => {
                    renew_once = false;
                    drop(resp);
                    if let Some(c) = credential.as_mut() {
                        c.renew().await?;
                        parts
                            .headers
                            .insert(hyper::header::AUTHORIZATION, c.header.clone());
                    }
                    tracing::debug!(upstream = %target.authority, "upstream refused the credential's token; sending again with a fresh one");
                    continue;
                }
                Ok(Ok(mut resp)) => {
                    strip_hop_by_hop(resp.headers_mut(), |_| false);
                    // The gateway answers in its own version, whatever the upstream spoke
                    // (RFC 9110 §6.2); hyper then writes what the client's connection allows.
                    *resp.version_mut() = Version::HTTP_11;
                    return Ok(resp.map(Either::Left));
                }
                Ok(Err(e)) => e,
            };
            match e {
                SendError::Request(h1::Error::RequestBody(_)) => {
                    tracing::debug!(error = %e, "the client's request body could not be read");
                    return Err(GatewayError::BadRequestBody);
                }
                SendError::Closed(_) if resend_once => {
                    tracing::debug!(upstream = %target.authority, error = %e, "sending again on a new connection");
                    resend_once = false;
                    reuse = Reuse::NewOnly;
                    continue;
                }
                SendError::Connect(_) => {
                    tracing::warn!(upstream = %target.authority, error = %e, "upstream connection failed");
                    target.down_until.store(
                        clock_ms() + FAILED_UPSTREAM_PAUSE.as_millis() as u64,
                        Ordering::Relaxed,
                    );
                    if !retryable {
                        return Err(GatewayError::BadGateway);
                    }
                    targets.next();
                    reuse = Reuse::Idle;
                }
                SendError::Closed(_) | SendError::Request(_) => {
                    tracing::warn!(upstream = %target.authority, error = %e, "upstream request failed");
                    return Err(GatewayError::BadGateway);
                }
            }
        }
        Err(GatewayError::BadGateway)
    }
}

/// The origin-form request target sent upstream: the upstream URL's path, then the request's.
fn upstream_path(target: &Target, path: &str, query: Option<&str>) -> Option<PathAndQuery> {
    match query {
        Some(q) => PathAndQuery::try_from(format!("{}{}?{}", target.base_path, path, q)),
        None if target.base_path.is_empty() => PathAndQuery::try_from(path),
        None => PathAndQuery::try_from(format!("{}{}", target.base_path, path)),
    }
    .ok()
}

/// Removes hop-by-hop headers, any header the `Connection` header names, and any `also`
/// picks. One scan of the names; when there is nothing to remove, nothing is allocated.
fn strip_hop_by_hop(headers: &mut HeaderMap, also: impl Fn(&str) -> bool) {
    let listed: Vec<HeaderValue> = headers.get_all(CONNECTION).iter().cloned().collect();
    for token in listed
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        // By name as text: no HeaderName is built, and a malformed name matches nothing.
        headers.remove(token.trim());
    }
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_hop_by_hop(name.as_str()) || also(name.as_str()))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

/// An address as text; IPv4 by hand, as `Display` costs as much as the rest of the headers.
fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut out = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
    out
}

/// A trusted proxy's `X-Forwarded-For` chain (every line of it, in order) with `peer` appended.
fn forwarded_chain(headers: &HeaderMap, peer: &str) -> String {
    let mut chain = String::new();
    for prior in headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        chain.push_str(prior);
        chain.push_str(", ");
    }
    chain.push_str(peer);
    chain
}

/// Rewrites the inbound headers for the upstream (SPEC §4 step 4).
fn prepare_headers(
    headers: &mut HeaderMap,
    permit: &Permit,
    fwd: &Forward<'_>,
    uri_authority: Option<&Authority>,
) {
    strip_hop_by_hop(headers, |name| is_gateways_to_set(name, fwd.trusted_peer));
    if !fwd.keep_authorization {
        headers.remove(hyper::header::AUTHORIZATION);
    }
    let host = headers
        .remove(HOST)
        .or_else(|| uri_authority.and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
    // From an untrusted peer every `X-Forwarded-*` is gone by now, so each `entry` below is
    // vacant and written from the connection; a trusted proxy's own values are kept.
    if let (Some(host), hyper::header::Entry::Vacant(e)) =
        (host, headers.entry(X_FORWARDED_HOST.clone()))
    {
        e.insert(host);
    }
    if let hyper::header::Entry::Vacant(e) = headers.entry(X_FORWARDED_PROTO.clone()) {
        e.insert(HeaderValue::from_static(if fwd.tls {
            "https"
        } else {
            "http"
        }));
    }
    let client_ip = ip_text(fwd.remote.to_canonical());
    let xff = if fwd.trusted_peer {
        forwarded_chain(headers, &client_ip)
    } else {
        client_ip
    };
    // The formatted string becomes the header's buffer as is (no second copy).
    if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(xff)) {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    headers.insert(X_REQUEST_ID.clone(), fwd.request_id.clone());
    if let Some(entry) = permit.token() {
        let t = &entry.token;
        if let Ok(v) = HeaderValue::from_str(&t.client_id) {
            headers.insert(X_AUTH_CLIENT_ID.clone(), v);
        }
        if let Some(user) = t
            .username
            .as_deref()
            .and_then(|u| HeaderValue::from_str(u).ok())
        {
            headers.insert(X_AUTH_SUBJECT.clone(), user);
        }
        if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(t.scope_string())) {
            headers.insert(X_AUTH_SCOPE.clone(), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, x-secret-hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("x-kept", "yes"),
        ] {
            h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h, |_| false);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["x-kept"]);
    }

    #[test]
    fn ip_text_matches_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "1.100.9.99",
            "::1",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn round_robin_skips_failed_targets() {
        let ups = Upstreams::new(
            &[
                "http://127.0.0.1:1".parse().expect("uri"),
                "http://127.0.0.1:2".parse().expect("uri"),
            ],
            None,
        );
        let first: Vec<String> = ups.order().map(|t| t.authority.to_string()).collect();
        let second: Vec<String> = ups.order().map(|t| t.authority.to_string()).collect();
        assert_ne!(
            first[0], second[0],
            "successive requests start at different targets"
        );
        ups.targets[0]
            .down_until
            .store(clock_ms() + 60_000, Ordering::Relaxed);
        for _ in 0..4 {
            let order: Vec<String> = ups.order().map(|t| t.authority.to_string()).collect();
            assert_eq!(order, vec!["127.0.0.1:2", "127.0.0.1:1"]);
        }
    }
}
