//! Listeners and lifecycle: the hyper accept loop (HTTP/1.1 and HTTP/2 by auto-detection),
//! graceful shutdown, and [`run`], which wires store, gateway and admin listener together.
//!
//! The caller binds the listeners and owns the shutdown signal, so tests start a real node on
//! port 0 and stop it when they like.

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
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::error::Body;
use crate::gateway::Gateway;
use crate::store::{StoreError, TokenStore};

/// The two sockets a node serves on, bound by the caller.
pub struct Listeners {
    pub public: TcpListener,
    pub admin: TcpListener,
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
    let store = TokenStore::open(&config.store)?;
    let grace = config.server.shutdown_grace;
    let gateway = Arc::new(Gateway::new(config, store));
    let (stop_tx, stop_rx) = watch::channel(false);

    let admin = {
        let gateway = Arc::clone(&gateway);
        let stop = wait_for(stop_rx.clone());
        tokio::spawn(serve(
            listeners.admin,
            move |req, _| {
                let gateway = Arc::clone(&gateway);
                async move { crate::admin::handle(&gateway, req).await }
            },
            stop,
            grace,
        ))
    };
    let public = {
        let gateway = Arc::clone(&gateway);
        let stop = wait_for(stop_rx.clone());
        tokio::spawn(serve(
            listeners.public,
            move |req, remote| {
                let gateway = Arc::clone(&gateway);
                async move { gateway.handle(req, remote).await }
            },
            stop,
            grace,
        ))
    };

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(()) = futures_util::StreamExt::next(&mut reloads) => {
                let source = gateway.runtime().config.source.clone();
                match Config::load(&source) {
                    Ok(config) => {
                        gateway.reload(config);
                        tracing::info!(file = %source.display(), "config reloaded");
                    }
                    Err(e) => {
                        for line in &e.0 {
                            tracing::error!(error = %line, "config reload refused; the running config stays");
                        }
                    }
                }
            }
        }
    }
    tracing::info!(grace = ?grace, "shutting down: no new connections, draining requests in flight");
    let _ = stop_tx.send(true);
    let _ = public.await;
    let _ = admin.await;
    Ok(())
}

async fn wait_for(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Accepts connections until `shutdown`, then gives open connections `grace` to finish.
pub async fn serve<H, F>(
    listener: TcpListener,
    handler: H,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
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
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let service = service_fn(move |req| {
                    let response = handler(req, remote);
                    async move { Ok::<_, Infallible>(response.await) }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, %remote, "connection ended with an error");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(grace) => {
            tracing::warn!("shutdown grace period over; closing connections still open");
        }
    }
}
