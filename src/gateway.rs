//! The per-request pipeline on the public listener: normalise the path, serve OAuth
//! endpoints, pick the route, authorise (→ `Permit`), forward, and write the access-log line.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use hyper::header::{HOST, HeaderName, HeaderValue};
use hyper::{HeaderMap, Request, Response};

use crate::auth;
use crate::config::{Config, ConfigError, RouteAuth};
use crate::error::{Body, GatewayError};
use crate::metrics::{Metrics, Validation};
use crate::outbound::Outbound;
use crate::pattern;
use crate::proxy::{Forward, Proxy};
use crate::registry::{Freshness, Snapshot};
use crate::server::Conn;
use crate::store::{Stamp, TokenStore};
use crate::throttle::Throttle;

mod runtime;

pub use self::runtime::Runtime;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request ids: a random per-process prefix and a counter, unique without a syscall per request.
struct RequestIds {
    prefix: u64,
    counter: AtomicU64,
}

impl RequestIds {
    fn new() -> RequestIds {
        let mut seed = [0u8; 8];
        let _ = getrandom::fill(&mut seed);
        RequestIds {
            prefix: u64::from_le_bytes(seed),
            counter: AtomicU64::new(0),
        }
    }

    /// The client's id when it is well-formed, otherwise a new one.
    fn for_request(&self, headers: &HeaderMap) -> HeaderValue {
        if let Some(v) = headers.get(&X_REQUEST_ID) {
            let b = v.as_bytes();
            let well_formed = (1..=128).contains(&b.len())
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'));
            if well_formed {
                return v.clone();
            }
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        // 32 hex digits written by hand (`format!` costs more than the rest of the id), and one
        // allocation: the buffer becomes the header's as is.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut id = Vec::with_capacity(32);
        for word in [self.prefix, n] {
            id.extend(
                (0..16)
                    .rev()
                    .map(|i| HEX[((word >> (i * 4)) & 0xf) as usize]),
            );
        }
        HeaderValue::from_maybe_shared(bytes::Bytes::from(id))
            .unwrap_or(HeaderValue::from_static("0"))
    }
}

/// What `tollgate check` warns about, in the log of the node that starts or reloads with it.
fn log_warnings(config: &Config) {
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
}

/// A registry change can make a bearer route reachable (a store scope now covers it) or
/// unreachable again (that scope changed or went): the log says which, as `run` does at start.
fn log_reach_changes(rt: &Runtime, before: &[usize], after: &[usize]) {
    for &i in after.iter().filter(|i| !before.contains(i)) {
        let warning = crate::config::unreachable_warning(&rt.config.routes[i]);
        tracing::warn!("{warning} (after a change of the scopes in the store)");
    }
    for &i in before.iter().filter(|i| !after.contains(i)) {
        let route = &rt.config.routes[i];
        tracing::info!(route = %route.name, "route is reachable now: a scope in the store covers it");
    }
}

/// The public side of one node.
pub struct Gateway {
    runtime: ArcSwap<Runtime>,
    /// The store's part of the registry as last read; held while a runtime is swapped in, so
    /// a reload and a registry change cannot undo each other.
    registry: std::sync::Mutex<Snapshot>,
    freshness: Arc<Freshness>,
    store: TokenStore,
    outbound: Outbound,
    ids: RequestIds,
    throttle: Throttle,
    metrics: Arc<Metrics>,
}

impl Gateway {
    pub fn new(config: Config, store: TokenStore) -> Gateway {
        log_warnings(&config);
        let metrics = Arc::clone(store.metrics());
        let freshness = Arc::new(Freshness::new(store.is_shared()));
        let snapshot = Snapshot::default();
        Gateway {
            outbound: Outbound::new(&config, store.clone()),
            throttle: Throttle::for_store(&store),
            runtime: ArcSwap::from_pointee(Runtime::new(config, &snapshot, Arc::clone(&freshness))),
            registry: std::sync::Mutex::new(snapshot),
            freshness,
            store,
            ids: RequestIds::new(),
            metrics,
        }
    }

    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Swaps in a new (already validated) config; requests in flight keep the old one.
    pub fn reload(&self, config: Config) {
        log_warnings(&config);
        self.outbound.reload(&config);
        let snapshot = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        self.runtime.store(Arc::new(Runtime::new(
            config,
            &snapshot,
            Arc::clone(&self.freshness),
        )));
    }

    /// Swaps in the registry as read from the store (`crate::registry`).
    /// A snapshot older than the one in force (read before it, applied after it: two admin
    /// changes at once, or a change racing the poller) is dropped, never swapped in.
    ///
    /// `reset_from`: the store's registry went back (a Redis that restarted empty, or a
    /// failover that lost writes) from this stamp; if the node still holds it, the store's
    /// word stands whatever its version. If something newer was applied meanwhile, the
    /// ordinary rule decides.
    pub fn apply_registry(&self, snapshot: Snapshot, reset_from: Option<&Stamp>) {
        let mut held = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let reset = reset_from.is_some_and(|from| *from == held.stamp());
        if snapshot.version < held.version && !reset {
            return;
        }
        let rt = self.runtime.load();
        let next = rt.with_registry(&snapshot, Arc::clone(&self.freshness));
        log_reach_changes(&next, &rt.unreachable(), &next.unreachable());
        self.runtime.store(Arc::new(next));
        *held = snapshot;
    }

    /// The stamp of the registry in force on this node.
    pub fn registry_stamp(&self) -> Stamp {
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stamp()
    }

    /// When this node last read the registry.
    pub fn freshness(&self) -> &Freshness {
        &self.freshness
    }

    /// The node's outbound credentials (SPEC §8).
    pub fn outbound(&self) -> &Outbound {
        &self.outbound
    }

    /// Re-reads the config file, validates it in full, and swaps it in; an invalid file
    /// leaves the running config in place and its errors are returned (and logged).
    /// Users and file clients that the new file drops lose their tokens.
    pub async fn reload_from_disk(&self) -> Result<(), ConfigError> {
        let old = self.runtime();
        let source = old.config.source.clone();
        let path = source.clone();
        let loaded = tokio::task::spawn_blocking(move || Config::load(&path))
            .await
            .unwrap_or_else(|e| Err(ConfigError(vec![format!("reload task failed: {e}")])));
        let config = match loaded {
            Ok(config) => config,
            Err(e) => {
                self.metrics.reload(false);
                for line in &e.0 {
                    tracing::error!(file = %source.display(), error = %line, "config reload refused; the running config stays");
                }
                return Err(e);
            }
        };
        let prior = &old.config;
        if config.server.listen != prior.server.listen || config.admin.listen != prior.admin.listen
        {
            tracing::warn!("listen addresses changed in the file; they take effect on restart");
        }
        if config.server.limits != prior.server.limits {
            tracing::warn!("[server] limits changed in the file; they take effect on restart");
        }
        if config.store.backend != prior.store.backend || config.store.prefix != prior.store.prefix
        {
            tracing::warn!("[store] changed in the file; it takes effect on restart");
        }
        let gone_users: Vec<String> = prior
            .users
            .iter()
            .filter(|u| config.user(&u.username).is_none())
            .map(|u| u.username.clone())
            .collect();
        let gone_clients: Vec<String> = prior
            .clients
            .iter()
            .filter(|c| config.client(&c.client_id).is_none())
            .map(|c| c.client_id.clone())
            .collect();
        self.reload(config);
        self.metrics.reload(true);
        tracing::info!(file = %source.display(), "config reloaded");
        for user in gone_users {
            self.outbound.forget_user(&user).await;
            match self.store.revoke_all_of(None, Some(&user)).await {
                Ok(n) => {
                    tracing::info!(username = %user, revoked = n, "user removed from the config; its tokens are revoked")
                }
                Err(e) => {
                    tracing::warn!(username = %user, error = %e, "could not revoke the tokens of a removed user")
                }
            }
        }
        for client in gone_clients {
            match self.store.revoke_all_of(Some(&client), None).await {
                Ok(n) => {
                    tracing::info!(client_id = %client, revoked = n, "client removed from the config; its tokens are revoked")
                }
                Err(e) => {
                    tracing::warn!(client_id = %client, error = %e, "could not revoke the tokens of a removed client")
                }
            }
        }
        Ok(())
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn store(&self) -> &TokenStore {
        &self.store
    }

    /// The password-guessing limits, shared with the console's sign-in (SPEC §10).
    pub fn throttle(&self) -> &crate::throttle::Throttle {
        &self.throttle
    }

    /// Serves one request on the public listener; `proxy` is the calling worker's upstream
    /// client (each worker runtime has its own pool).
    pub async fn handle(
        &self,
        proxy: &Proxy,
        req: Request<hyper::body::Incoming>,
        conn: Conn,
    ) -> Response<Body> {
        let start = Instant::now();
        let rt = self.runtime.load_full();
        let request_id = self.ids.for_request(req.headers());
        let method = req.method().clone();
        // A Uri clone is a reference-count bump, not a copy of the path.
        let uri = req.uri().clone();
        let raw_path = uri.path();
        let mut log = AccessLog {
            route: "-",
            client_id: None,
        };
        let mut resp = match self
            .dispatch(
                &rt,
                proxy,
                req,
                Inbound {
                    conn,
                    request_id: &request_id,
                    raw_path,
                },
                &mut log,
            )
            .await
        {
            Ok(resp) => resp,
            Err(e) => e.into_response(),
        };
        resp.headers_mut()
            .insert(X_REQUEST_ID.clone(), request_id.clone());
        // One clock read for the metric and the access log.
        let took = start.elapsed();
        self.metrics
            .request(log.route, resp.status().as_u16(), took);
        tracing::info!(
            target: "tollgate::access",
            method = %method,
            path = %raw_path,
            route = log.route,
            status = resp.status().as_u16(),
            client_id = log.client_id.as_deref().unwrap_or("-"),
            latency_us = took.as_micros() as u64,
            request_id = request_id.to_str().unwrap_or("-"),
        );
        resp
    }

    async fn dispatch<'r>(
        &self,
        rt: &'r Runtime,
        proxy: &Proxy,
        req: Request<hyper::body::Incoming>,
        inbound: Inbound<'_>,
        log: &mut AccessLog<'r>,
    ) -> Result<Response<Body>, GatewayError> {
        let Inbound {
            conn,
            request_id,
            raw_path,
        } = inbound;
        let path = pattern::normalize(raw_path)?;
        let ctx = crate::oauth::Ctx {
            config: &rt.config,
            store: &self.store,
            throttle: &self.throttle,
            remote: conn.remote.ip(),
            tls: conn.tls,
            outbound: &self.outbound,
            rules: &rt.rules,
        };
        let req = match crate::oauth::route(&ctx, &path, req).await {
            Ok(handled) => {
                log.route = handled.endpoint;
                log.client_id = handled.client_id.map(Arc::from);
                return Ok(handled.response);
            }
            Err(req) => req,
        };
        // Only worth reading (and lower-casing) when some route is bound to a host.
        let host = rt.routes.has_hosts().then(|| request_host(&req)).flatten();
        let (route, upstreams) = rt
            .route_with_upstreams(host.as_deref(), req.method(), &path)
            .ok_or(GatewayError::NoRoute)?;
        log.route = &route.name;
        let permit = auth::authorize(
            route.auth,
            req.headers(),
            req.method(),
            &path,
            &rt.rules,
            &self.store,
        )
        .await;
        if route.auth == RouteAuth::Bearer {
            let outcome = match &permit {
                Ok(_) => Some(Validation::Valid),
                Err(GatewayError::TokenExpired) => Some(Validation::Expired),
                Err(GatewayError::InvalidToken(why)) if *why == auth::REVOKED => {
                    Some(Validation::Revoked)
                }
                Err(GatewayError::InvalidToken(_)) => Some(Validation::Unknown),
                Err(GatewayError::InsufficientScope { .. }) => Some(Validation::InsufficientScope),
                Err(_) => None,
            };
            if let Some(outcome) = outcome {
                self.metrics.validation(outcome);
            }
        }
        let permit = permit?;
        // The token's own shared string: no copy per request.
        log.client_id = permit.token().map(|e| Arc::clone(&e.token.client_id));
        let upstream_path = match &route.strip_prefix {
            Some(prefix) => pattern::strip_prefix(&path, prefix),
            None => &path,
        };
        let fwd = Forward {
            remote: conn.remote.ip(),
            trusted_peer: rt.config.server.trusted_proxies.contains(conn.remote.ip()),
            tls: conn.tls,
            request_id,
            path: upstream_path,
            timeout: route.timeout,
            keep_authorization: route.forward_authorization,
        };
        // The upstream's own token, when the route has a credential; the caller's token was
        // checked above and is never what the upstream sees.
        let credential = match &route.credential {
            Some(name) => {
                let user = permit.token().and_then(|e| e.token.username.as_deref());
                Some(self.outbound.attach(name, user).await?)
            }
            None => None,
        };
        proxy
            .forward(&permit, upstreams, req, &fwd, credential)
            .await
    }
}

/// What the pipeline knows about a request besides the request itself.
struct Inbound<'a> {
    conn: Conn,
    request_id: &'a HeaderValue,
    /// The path as received, before normalisation.
    raw_path: &'a str,
}

struct AccessLog<'r> {
    route: &'r str,
    client_id: Option<Arc<str>>,
}

/// Lower-case host of the request, without port (Host header, or the HTTP/2 authority).
fn request_host<B>(req: &Request<B>) -> Option<String> {
    let raw = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())?;
    let host = match raw.rfind(':') {
        Some(i) if !raw.ends_with(']') => &raw[..i],
        _ => raw,
    };
    Some(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests;
