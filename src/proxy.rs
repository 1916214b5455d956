//! Forwarding to upstreams: the pooled keep-alive client, round-robin over a route's
//! upstreams (skipping ones that just failed), and header hygiene (SPEC §4 step 4).

mod h1;
mod pool;
mod rewrite;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use http_body_util::{Either, Empty};
use hyper::header::{CONNECTION, HeaderName, HeaderValue};
use hyper::http::uri::{Authority, Scheme};
use hyper::{HeaderMap, Request, Response, Uri, Version};

use self::h1::RequestHead;
use self::h1::is_hop_by_hop;
pub use self::pool::PooledBody;
use self::pool::{Endpoint, Pool, Reuse, SendError};
use self::rewrite::{Rewrite, connection_lists};
use crate::auth::Permit;
use crate::error::{Body, GatewayError};

/// How long an upstream that refused a connection is skipped by round-robin.
const FAILED_UPSTREAM_PAUSE: Duration = Duration::from_secs(2);

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
        // The clock is read only while some target has failed (its mark is cleared by the
        // next response it gives).
        let any_down = self
            .targets
            .iter()
            .any(|t| t.down_until.load(Ordering::Relaxed) != 0);
        let now = if any_down { clock_ms() } else { 0 };
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
        let (parts, body) = req.into_parts();
        let rewrite = Rewrite::new(&parts, permit, fwd, credential.is_some());
        let keep = |name: &HeaderName| rewrite.keeps(name);
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
        let query = parts.uri.query();
        let mut targets = upstreams.order().peekable();
        while let Some(target) = targets.peek().copied() {
            let Some(path) = upstream_target(target, fwd.path, query) else {
                return Err(GatewayError::BadGateway);
            };
            let outbound_body = match body.take() {
                Some(b) => Either::Left(b),
                None => Either::Right(Empty::new()),
            };
            let authorization = credential.as_ref().map(|c| &c.header);
            let own = |out: &mut Vec<u8>| rewrite.write_own(out, authorization);
            // The head is written from the client's parts, borrowed, on every attempt: only
            // the target and Host change between them.
            let head = RequestHead {
                method: &parts.method,
                target: &path,
                host: target.host_header.as_bytes(),
                headers: &parts.headers,
                keep: &keep,
                extra: &own,
            };
            let endpoint = upstreams.endpoint(target);
            let sent = self.pool.send_head(&endpoint, &head, outbound_body, reuse);
            let outcome = tokio::time::timeout(fwd.timeout, sent).await;
            let e = match outcome {
                Err(_) => return Err(GatewayError::GatewayTimeout),
                Ok(Ok(resp)) if renew_once && resp.status() == hyper::StatusCode::UNAUTHORIZED => {
                    renew_once = false;
                    drop(resp);
                    if let Some(c) = credential.as_mut() {
                        c.renew().await?;
                    }
                    tracing::debug!(upstream = %target.authority, "upstream refused the credential's token; sending again with a fresh one");
                    continue;
                }
                Ok(Ok(mut resp)) => {
                    if target.down_until.load(Ordering::Relaxed) != 0 {
                        target.down_until.store(0, Ordering::Relaxed);
                    }
                    strip_hop_by_hop(resp.headers_mut());
                    // The route's timeout also bounds each wait for more of the body, so an
                    // upstream that stalls mid-body cannot hold the client forever.
                    resp.body_mut().set_read_timeout(fwd.timeout);
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

/// The origin-form request target sent upstream: the upstream URL's path, then the request's
/// (borrowed as it is when the upstream URL has no path and there is no query). `None` if it
/// would not make a request line.
fn upstream_target<'p>(
    target: &Target,
    path: &'p str,
    query: Option<&str>,
) -> Option<Cow<'p, str>> {
    let full = match query {
        None if target.base_path.is_empty() => Cow::Borrowed(path),
        None => Cow::Owned(format!("{}{}", target.base_path, path)),
        Some(q) => Cow::Owned(format!("{}{}?{}", target.base_path, path, q)),
    };
    let fits = full.starts_with('/') && full.bytes().all(|b| b > b' ' && b != 0x7f);
    fits.then_some(full)
}

/// Removes a response's hop-by-hop headers and any header its `Connection` header names.
/// The codec leaves out hop-by-hop headers as it parses, and keeps `Connection` only when it
/// names others; so usually this is one lookup.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.contains_key(CONNECTION) {
        return;
    }
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_hop_by_hop(name.as_str()) || connection_lists(headers, name.as_str()))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
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
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["x-kept"]);
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
