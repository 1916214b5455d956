//! The revocation subscription: every node listens on the store's channel and drops the
//! tokens it names from its cache, and trusts its cache only while it is subscribed.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::cache::TokenCache;
use super::redis::conn::{CONNECT_TIMEOUT, RESPONSE_TIMEOUT};
use crate::token::TokenHash;

/// How often the subscription connection is pinged to notice a silent network loss.
const SUBSCRIPTION_PING: Duration = Duration::from_millis(500);

/// Keeps this node subscribed to revocations for as long as the store lives. The cache is
/// trusted only while the subscription is up: when it drops, the cache is emptied and
/// bypassed until a new subscription is confirmed, so no revocation can be missed.
///
/// `seeds` are the servers that may carry the channel: the one Redis, or a cluster's seed
/// nodes (every node of a cluster delivers every message, so any one will do). After a
/// failure the next seed is tried, so losing the subscribed node to a failover costs one
/// reconnection, not the cache for as long as that node is down.
pub async fn subscribe(seeds: Vec<redis::Client>, channel: String, cache: Arc<TokenCache>) {
    let mut backoff = Duration::from_millis(50);
    for client in seeds.iter().cycle() {
        if let Err(e) = follow(client, &channel, &cache).await {
            tracing::warn!(error = %e, "revocation subscription lost; local token cache disabled until it is back");
        }
        // `set_live(false)` empties the cache: whatever was published meanwhile is moot.
        cache.set_live(false);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

async fn follow(
    client: &redis::Client,
    channel: &str,
    cache: &TokenCache,
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
