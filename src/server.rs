//! Listeners and lifecycle: the hyper accept loop (HTTP/1.1 and HTTP/2 by auto-detection),
//! graceful shutdown, and [`run`], which wires store, gateway and admin listener together.
//!
//! The caller binds the listeners and owns the shutdown signal, so tests start a real node on
//! port 0 and stop it when they like. Connection limits and timeouts are in [`limits`], the
//! framing check of request heads in [`framing`].

mod drain;
mod framing;
mod limits;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use self::limits::{Activity, Guarded, Tracked};
use crate::config::{Config, Limits};
use crate::error::Body;
use crate::gateway::Gateway;
use crate::proxy::Proxy;
use crate::store::{StoreError, TokenStore};

/// The sockets a node serves on, bound by the caller: one public socket per worker (all on
/// the same port, see [`bind_public`]) and the admin socket.
pub struct Listeners {
    pub public: Vec<std::net::TcpListener>,
    pub admin: TcpListener,
}

/// Binds `workers` sockets to `addr` with SO_REUSEPORT, so the kernel spreads connections
/// over the workers. Port 0 is resolved by the first bind and reused by the rest.
pub fn bind_public(
    addr: SocketAddr,
    workers: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut out: Vec<std::net::TcpListener> = Vec::with_capacity(workers);
    let mut addr = addr;
    for _ in 0..workers.max(1) {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        #[cfg(unix)]
        socket.set_reuseport(true)?;
        socket.set_nodelay(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(1024)?;
        addr = listener.local_addr()?;
        out.push(listener.into_std()?);
        #[cfg(not(unix))]
        break;
    }
    Ok(out)
}

/// Serves until `shutdown` resolves, then drains in-flight requests for up to
/// `[server].shutdown_grace`. Each item of `reloads` (SIGHUP in `main`) re-reads the config
/// from its file; a file that does not validate leaves the running config in place.
pub async fn run(
    listeners: Listeners,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
    mut reloads: impl futures_util::Stream<Item = ()> + Unpin + Send,
) -> Result<(), StoreError> {
    TokenStore::verify_tls(&config.store)
        .await
        .map_err(StoreError::Refused)?;
    let store = TokenStore::open(&config.store)?;
    let grace = config.server.shutdown_grace;
    let limits = config.server.limits;
    let gateway = Arc::new(Gateway::new(config, store));
    // One count for the node's public workers; the admin listener has its own, so a flood on
    // the public port cannot lock operators out.
    let public_slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);

    let admin = {
        let gateway = Arc::clone(&gateway);
        let admin_tls = Arc::clone(&gateway);
        let stop = wait_for(stop_rx.clone());
        tokio::spawn(serve(
            listeners.admin,
            move |req, conn| {
                let gateway = Arc::clone(&gateway);
                async move { crate::admin::handle(&gateway, req, conn).await }
            },
            // `[admin.tls]`, read per connection like `[server.tls]`: a reload's new
            // certificate serves the next handshake.
            move || {
                let rt = admin_tls.runtime();
                rt.config.admin.tls.as_ref().map(|t| Arc::clone(&t.rustls))
            },
            stop,
            Guard::new(limits, Arc::new(Semaphore::new(limits.max_connections))),
            grace,
        ))
    };
    // The public side: one thread per socket, each a single-threaded runtime with its own
    // upstream pool. Per-thread runtimes avoid cross-thread wake-ups and work stealing on
    // the request path; the kernel balances connections across the sockets.
    let mut workers = Vec::with_capacity(listeners.public.len());
    for (i, socket) in listeners.public.into_iter().enumerate() {
        let gateway = Arc::clone(&gateway);
        let stop = stop_rx.clone();
        let guard = Guard::new(limits, Arc::clone(&public_slots));
        let spawned = std::thread::Builder::new()
            .name(format!("tollgate-worker-{i}"))
            .spawn(move || worker(socket, gateway, stop, guard, grace));
        match spawned {
            Ok(handle) => workers.push(handle),
            Err(e) => tracing::error!(error = %e, "could not start a worker thread"),
        }
    }
    let watcher = tokio::spawn(watch_file(Arc::clone(&gateway)));
    // Scopes and disabled clients changed through the admin API of any node (SPEC §9).
    let registry = gateway
        .store()
        .is_shared()
        .then(|| tokio::spawn(crate::registry::follow(Arc::clone(&gateway))));
    let readiness = tokio::spawn(announce_ready(gateway.store().clone()));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(()) = futures_util::StreamExt::next(&mut reloads) => {
                // Errors are logged and counted by reload_from_disk; the old config stays.
                let _ = gateway.reload_from_disk().await;
            }
        }
    }
    watcher.abort();
    readiness.abort();
    if let Some(registry) = registry {
        registry.abort();
    }
    tracing::info!(grace = ?grace, "shutting down: no new connections, draining requests in flight");
    let _ = stop_tx.send(true);
    let _ = tokio::task::spawn_blocking(move || {
        for w in workers {
            let _ = w.join();
        }
    })
    .await;
    let _ = admin.await;
    Ok(())
}

/// One public worker: serves `socket` on a runtime of its own until `stop`.
fn worker(
    socket: std::net::TcpListener,
    gateway: Arc<Gateway>,
    stop: watch::Receiver<bool>,
    guard: Guard,
    grace: Duration,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "could not start a worker runtime");
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match TcpListener::from_std(socket) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "could not register the public socket");
                return;
            }
        };
        let proxy = Proxy::default();
        let tls_source = Arc::clone(&gateway);
        serve(
            listener,
            move |req, conn| {
                let gateway = Arc::clone(&gateway);
                let proxy = proxy.clone();
                // Boxed once here: hyper moves a service's future several times per request,
                // and the pipeline's is kilobytes; a box makes each of those moves a pointer.
                Box::pin(async move { gateway.handle(&proxy, req, conn).await })
            },
            // Read per connection, so a reload's new certificate serves the next handshake.
            move || {
                let rt = tls_source.runtime();
                rt.config.server.tls.as_ref().map(|t| Arc::clone(&t.rustls))
            },
            wait_for(stop),
            guard,
            grace,
        )
        .await;
    });
}

/// How often the config file is looked at, and how long a change must settle before it is
/// read (editors write in several steps, or write a new file and rename it over the old).
const WATCH_EVERY: Duration = Duration::from_millis(500);
const WATCH_SETTLE: Duration = Duration::from_millis(250);

/// What identifies one version of the file: inode, size, modification time.
async fn fingerprint(path: &std::path::Path) -> Option<(u64, u64, std::time::SystemTime)> {
    let meta = tokio::fs::metadata(path).await.ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some((inode, meta.len(), meta.modified().ok()?))
}

/// Reloads the config whenever its file changes on disk.
async fn watch_file(gateway: Arc<Gateway>) {
    let path = gateway.runtime().config.source.clone();
    let mut last = fingerprint(&path).await;
    let mut tick = tokio::time::interval(WATCH_EVERY);
    loop {
        tick.tick().await;
        let seen = fingerprint(&path).await;
        if seen.is_none() || seen == last {
            continue; // unchanged, or mid-replace (the old file is gone, the new not yet there)
        }
        tokio::time::sleep(WATCH_SETTLE).await;
        let settled = fingerprint(&path).await;
        if settled != seen {
            continue; // still being written: look again on the next tick
        }
        last = settled;
        tracing::info!(file = %path.display(), "config file changed; reloading");
        let _ = gateway.reload_from_disk().await;
    }
}

/// How often readiness is checked until it is first reached.
const READY_POLL: Duration = Duration::from_millis(100);

/// Logs `ready` once the store answers and the revocation subscription is up: the listeners
/// are open before that (the node answers 503 meanwhile), so `listening` does not mean
/// ready; `/readyz` says the same at any time.
async fn announce_ready(store: TokenStore) {
    let mut waiting_since = tokio::time::Instant::now();
    loop {
        match store.ready().await {
            Ok(()) => {
                tracing::info!("ready");
                return;
            }
            Err(why) if waiting_since.elapsed() >= Duration::from_secs(10) => {
                tracing::warn!(reason = %why, "not ready yet");
                waiting_since = tokio::time::Instant::now();
            }
            Err(_) => {}
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

async fn wait_for(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// The connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub remote: SocketAddr,
    pub tls: bool,
}

/// The limits every connection of one listener is served under (SPEC §12), and the count of
/// connections it shares with the listeners of the same node.
#[derive(Clone)]
pub struct Guard {
    limits: Limits,
    slots: Arc<Semaphore>,
}

impl Guard {
    pub fn new(limits: Limits, slots: Arc<Semaphore>) -> Guard {
        Guard { limits, slots }
    }

    /// hyper's side of the limits: head and header-list sizes, HTTP/2 streams and resets.
    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // A head still incomplete at this size gets 431 and the connection closed; the
        // connection's reads never hand hyper more of one head than this (see `limits`).
        builder.http1().max_buf_size(self.limits.max_header_bytes);
        builder
            .http2()
            .max_header_list_size(u32::try_from(self.limits.max_header_bytes).unwrap_or(u32::MAX))
            // hyper's defaults, stated: 200 streams at once per connection; a client that
            // opens and resets streams faster than they are served (CVE-2023-44487, "rapid
            // reset") is sent GOAWAY once 20 such resets are pending, and one that makes the
            // server reset its streams 1024 times is too.
            .max_concurrent_streams(200)
            .max_pending_accept_reset_streams(20)
            .max_local_error_reset_streams(1024);
        builder
    }
}

/// Accepts connections until `shutdown`, then gives open connections `grace` to finish.
/// `tls` gives the TLS config for each new connection (`None` = plain HTTP). A connection is
/// only served with one of `guard`'s slots; while none is free, one accepted connection per
/// worker waits for it and the rest wait in the listen backlog.
pub async fn serve<H, F>(
    listener: TcpListener,
    handler: H,
    tls: impl Fn() -> Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()>,
    guard: Guard,
    grace: Duration,
) where
    H: Fn(Request<Incoming>, Conn) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let builder = guard.builder();
    let limits = guard.limits;
    let drain = drain::Drain::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, remote) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Typically EMFILE: back off instead of spinning on the error.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // The slot is taken after the accept: the workers' sockets share one count,
                // and the kernel picks the socket, so a worker waiting for a slot before its
                // accept could starve connections queued on its socket while others idle.
                // While this one waits (unserved), the accept loop stops and the rest wait in
                // the backlog.
                let slot = tokio::select! {
                    slot = Arc::clone(&guard.slots).acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break, // closed: never, the semaphore is not closed
                    },
                    _ = &mut shutdown => break,
                };
                let accepted_at = tokio::time::Instant::now();
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let tls = tls();
                let info = Conn { remote, tls: tls.is_some() };
                let activity = Arc::new(Activity::new(accepted_at));
                let service = {
                    let activity = Arc::clone(&activity);
                    service_fn(move |req| {
                        let in_flight = activity.begin();
                        let response = handler(req, info);
                        async move {
                            let response = response.await;
                            Ok::<_, Infallible>(response.map(|body| Tracked::new(body, in_flight)))
                        }
                    })
                };
                match tls {
                    None => {
                        let io = Guarded::new(stream, limits, activity, accepted_at, false);
                        let conn = builder.serve_connection(TokioIo::new(io), service).into_owned();
                        let conn = drain.watch(conn);
                        tokio::spawn(async move {
                            if let Err(e) = conn.await {
                                tracing::debug!(error = %e, %remote, "connection ended with an error");
                            }
                            drop(slot);
                        });
                    }
                    Some(config) => {
                        // The handshake runs in the connection's task so a slow client cannot
                        // stall the accept loop; the connection joins graceful shutdown after it.
                        // It counts towards the first request's header_timeout.
                        let builder = builder.clone();
                        let entered = drain.enter();
                        tokio::spawn(async move {
                            let accept = tokio_rustls::TlsAcceptor::from(config).accept(stream);
                            let stream = match tokio::time::timeout(limits.header_timeout, accept).await {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => {
                                    tracing::debug!(error = %e, %remote, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!(%remote, "TLS handshake timed out");
                                    return;
                                }
                            };
                            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                            let io = Guarded::new(stream, limits, activity, accepted_at, h2);
                            let conn = builder.serve_connection(TokioIo::new(io), service).into_owned();
                            if let Err(e) = entered.watch(conn).await {
                                tracing::debug!(error = %e, %remote, "connection ended with an error");
                            }
                            drop(slot);
                        });
                    }
                }
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = drain.shutdown() => {}
        _ = tokio::time::sleep(grace) => {
            tracing::warn!("shutdown grace period over; closing connections still open");
        }
    }
}
