//! The revocation subscription: every node listens on the store's channel and drops the
//! tokens it names from its cache, and trusts its cache only while it is subscribed.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::cache::TokenCache;
use super::redis::conn::{self, CONNECT_TIMEOUT, Conn, RESPONSE_TIMEOUT};
use crate::config::RedisConfig;
use crate::token::TokenHash;

/// How often the subscription connection is pinged to notice a silent loss (a node stopped
/// or cut off): with [`RESPONSE_TIMEOUT`], a node notices within ~650 ms that it may be
/// missing messages, and stops trusting its cache, inside SPEC §11's second.
const SUBSCRIPTION_PING: Duration = Duration::from_millis(250);

/// The servers a subscription may use.
pub struct Seeds {
    pub config: RedisConfig,
    /// A cluster's command connection, to learn the current nodes (seeds may be gone
    /// after failovers); `None` for one server.
    pub cluster: Option<Conn>,
}

impl Seeds {
    /// The configured URLs, then (on a cluster) every node the cluster lists now.
    async fn candidates(&self) -> Vec<String> {
        let mut urls = self.config.urls.clone();
        if let Some(conn) = &self.cluster {
            let mut conn = conn.clone();
            let nodes: redis::RedisResult<String> = redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async(&mut conn)
                .await;
            let scheme = if self.config.tls() { "rediss" } else { "redis" };
            for line in nodes.as_deref().unwrap_or("").lines() {
                // `<id> <ip:port@cport[,hostname]> <flags> …`; failed nodes are skipped.
                let mut fields = line.split(' ');
                let (Some(_), Some(addr), Some(flags)) =
                    (fields.next(), fields.next(), fields.next())
                else {
                    continue;
                };
                let addr = addr.split(['@', ',']).next().unwrap_or("");
                if addr.starts_with(':') || flags.contains("fail") || flags.contains("noaddr") {
                    continue;
                }
                let url = format!("{scheme}://{addr}");
                if !urls.contains(&url) {
                    urls.push(url);
                }
            }
        }
        urls
    }
}

/// Keeps this node subscribed to revocations for as long as the store lives. The cache is
/// trusted only while the subscription is up: when it drops, the cache is emptied and
/// bypassed until a new subscription is confirmed, so no revocation can be missed.
///
/// Any server that carries the channel will do: the one Redis, or any node of a cluster
/// (Pub/Sub messages are broadcast over the cluster bus to every node, and classic
/// subscriptions are not tied to slots, so slot moves do not touch them). When the node it
/// follows fails, the others are tried, including nodes the cluster has added or promoted
/// since the seeds were written down.
pub async fn subscribe(seeds: Seeds, channel: String, cache: Arc<TokenCache>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        for url in seeds.candidates().await {
            let client = match conn::client(&url, &seeds.config) {
                Ok(client) => client,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot subscribe to revocations");
                    continue;
                }
            };
            let mut subscribed = false;
            if let Err(e) = follow(&client, &channel, &cache, &mut subscribed).await {
                tracing::warn!(error = %e, "revocation subscription lost; local token cache disabled until it is back");
            }
            // `set_live(false)` empties the cache: whatever was published meanwhile is moot.
            cache.set_live(false);
            if subscribed {
                // It worked until now: look at the cluster afresh, at once.
                backoff = Duration::from_millis(50);
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }
}

async fn follow(
    client: &redis::Client,
    channel: &str,
    cache: &TokenCache,
    subscribed: &mut bool,
) -> Result<(), redis::RedisError> {
    let connect = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub());
    let mut pubsub = connect.await.map_err(|_| {
        redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
    })??;
    tokio::time::timeout(RESPONSE_TIMEOUT, pubsub.subscribe(channel))
        .await
        .map_err(|_| {
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
        })??;
    let (mut sink, mut messages) = pubsub.split();
    cache.set_live(true);
    *subscribed = true;
    tracing::info!(
        channel,
        "subscribed to revocations; local token cache enabled"
    );
    let mut ping = tokio::time::interval(SUBSCRIPTION_PING);
    loop {
        tokio::select! {
            msg = messages.next() => {
                let Some(msg) = msg else {
                    return Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into());
                };
                cache.note_message();
                for hex in String::from_utf8_lossy(msg.get_payload_bytes()).split(' ') {
                    if let Some(hash) = TokenHash::from_hex(hex) {
                        cache.invalidate(&hash);
                    }
                }
            }
            _ = ping.tick() => {
                match tokio::time::timeout(RESPONSE_TIMEOUT, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(_) => return Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
                }
            }
        }
    }
}
