//! The connection to Redis: one server through redis-rs's reconnecting `ConnectionManager`,
//! or a Redis Cluster through redis-rs's own cluster client (slot routing, MOVED/ASK,
//! failover), over TLS for `rediss://`. Both are lazy, so a node starts while Redis is down,
//! and both bound every command in time, so a dead shard is a quick 503, never a hung
//! request.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, TlsCertificates, Value};

use crate::config::RedisConfig;

/// One attempt at one command: past this the node counts as unreachable for it.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_millis(400);
/// Connecting to one node, TCP and TLS.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// One command on a cluster, with its retries and redirections (MOVED, ASK, a failover's
/// new master): the longest a request waits on the store before it answers 503.
pub const OVERALL_TIMEOUT: Duration = Duration::from_millis(1000);

/// A connection usable by every command, script and pipeline (`ConnectionLike`), cheap to
/// clone (each clone shares the underlying multiplexed connections).
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(Arc<LazyCluster>),
}

/// A cluster connection made on first use, and made again after a failed attempt: the
/// cluster client needs a seed to answer before it exists.
pub struct LazyCluster {
    client: redis::cluster::ClusterClient,
    conn: ArcSwapOption<ClusterConnection>,
    connecting: tokio::sync::Mutex<()>,
}

impl LazyCluster {
    async fn get(&self) -> redis::RedisResult<ClusterConnection> {
        if let Some(conn) = self.conn.load_full() {
            return Ok((*conn).clone());
        }
        // One connection attempt at a time; the others wait for its outcome.
        let _one = self.connecting.lock().await;
        if let Some(conn) = self.conn.load_full() {
            return Ok((*conn).clone());
        }
        let conn = tokio::time::timeout(OVERALL_TIMEOUT, self.client.get_async_connection())
            .await
            .map_err(|_| timed_out())??;
        self.conn.store(Some(Arc::new(conn.clone())));
        Ok(conn)
    }
}

fn timed_out() -> redis::RedisError {
    std::io::Error::from(std::io::ErrorKind::TimedOut).into()
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(lazy) => Box::pin(async move {
                let mut conn = lazy.get().await?;
                conn.req_packed_command(cmd).await
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(lazy) => Box::pin(async move {
                let mut conn = lazy.get().await?;
                conn.req_packed_commands(pipeline, offset, count).await
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(_) => 0,
        }
    }
}

fn certificates(config: &RedisConfig) -> Option<TlsCertificates> {
    config.ca.as_ref().map(|pem| TlsCertificates {
        client_tls: None,
        root_cert: Some(pem.clone()),
    })
}

/// A plain client for one URL, with `[store] ca` when TLS names one (system roots
/// otherwise): the single server's connection, and the revocation subscriptions.
pub fn client(url: &str, config: &RedisConfig) -> redis::RedisResult<redis::Client> {
    match certificates(config) {
        Some(certs) if url.starts_with("rediss://") => redis::Client::build_with_tls(url, certs),
        _ => redis::Client::open(url),
    }
}

/// Opens the store's command connection, without waiting for Redis.
pub fn open(config: &RedisConfig) -> redis::RedisResult<Conn> {
    if !config.cluster {
        let url = config.urls.first().map_or("", String::as_str);
        let manager = ConnectionManagerConfig::new()
            .set_response_timeout(Some(OVERALL_TIMEOUT))
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client(url, config)?, manager)?;
        return Ok(Conn::Single(conn));
    }
    let mut builder = ClusterClientBuilder::new(config.urls.iter().map(String::as_str))
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT)
        .overall_response_timeout(Some(OVERALL_TIMEOUT))
        .retries(3)
        .min_retry_wait(20)
        .max_retry_wait(200);
    if let Some(certs) = certificates(config) {
        builder = builder.certs(certs);
    }
    Ok(Conn::Cluster(Arc::new(LazyCluster {
        client: builder.build()?,
        conn: ArcSwapOption::empty(),
        connecting: tokio::sync::Mutex::new(()),
    })))
}

/// For `rediss://`: connects once to a seed and fails if its certificate does not verify
/// (SPEC §11: an error at start, never a silent fallback). A server that cannot be reached
/// at all is not an error here: the node starts, answers 503, and recovers when it is up.
pub async fn verify_tls(config: &RedisConfig) -> Result<(), String> {
    if !config.tls() {
        return Ok(());
    }
    for url in &config.urls {
        let client = client(url, config).map_err(|e| e.to_string())?;
        let attempt = tokio::time::timeout(
            CONNECT_TIMEOUT * 4,
            client.get_multiplexed_async_connection(),
        )
        .await;
        match attempt {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) if is_certificate_error(&e) => {
                return Err(format!(
                    "TLS to Redis at {}: the server's certificate does not verify: {e}",
                    crate::config::redact_url(url)
                ));
            }
            // Down or unreachable: another seed may answer; if none does, start anyway.
            Ok(Err(_)) | Err(_) => {}
        }
    }
    Ok(())
}

/// Is this a TLS verification failure (rather than a server that is down)?
fn is_certificate_error(e: &redis::RedisError) -> bool {
    let text = format!("{e:?} {e}").to_ascii_lowercase();
    [
        "certificate",
        "unknownissuer",
        "invalid peer",
        "notvalidforname",
        "handshake",
    ]
    .iter()
    .any(|w| text.contains(w))
}
