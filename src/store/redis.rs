//! The shared store: Redis, reached through a reconnecting multiplexed connection.
//!
//! Layout (every key under the configured prefix `P`; each command touches one key, so the
//! layout works unchanged on Redis Cluster):
//! - `Pat:<sha256 hex>`  hash {r: access-token JSON, x: revoked-at}, expires with the token
//!   (+ retention)
//! - `Prt:<sha256 hex>`  hash {r: refresh-token JSON, retired: at, x: revoked-at}, likewise
//! - `Pg:<grant id>`     set of `a:<hex>` / `r:<hex>` members, for revoking a grant whole
//! - `Preq:<id>`, `Psess:<sha256 hex>`, `Pcode:<sha256 hex>`  hash {r: JSON, used: at} with
//!   their own expiry: pending authorization requests, login sessions, authorization codes
//! - `Pci:<client id>`, `Pui:<username>`  sorted sets of access-token hashes scored by when
//!   their record expires (+inf = never), pruned on every write: the admin token listing
//! - `Pclient:<id>` client JSON, and `Pclients` the set of their ids: clients created through
//!   the admin API
//! - channel `Prevoked`  space-separated access-token hashes just revoked; every node drops
//!   them from its cache on receipt.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use super::cache::TokenCache;
use super::records::{CodeUse, RecordKind, ttl_millis};
use super::{Retire, StoreError, keep_until};
use crate::config::Client;
use crate::token::{AccessEntry, AccessToken, RefreshEntry, RefreshToken, TokenHash, now_millis};

/// A command that takes longer than this counts as "store unreachable" (503), rather than
/// holding the request until the client gives up.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(1000);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// How often the subscription connection is pinged to notice a silent network loss.
const SUBSCRIPTION_PING: Duration = Duration::from_millis(500);

/// Sets a field only on a record that still exists, so revoking never resurrects an expired
/// key as a TTL-less stub.
const SET_IF_EXISTS: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1";

/// -1 = no such refresh token; 1 = this call retired it; 0 = it was retired before.
const RETIRE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('HSETNX', KEYS[1], 'retired', ARGV[1])";

/// -1 = no such code; 1 = this call used it; 0 = it was used before.
/// Creates record KEYS[1] with value ARGV[1] and expiry ARGV[2] ms unless it exists: 1 if
/// created, 0 if not. One key, so one slot.
const CREATE_ONCE: &str = r"
if redis.call('HSETNX', KEYS[1], 'r', ARGV[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

const USE_ONCE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('HSETNX', KEYS[1], 'used', ARGV[1])";

pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    channel: String,
    set_if_exists: Script,
    retire: Script,
    use_once: Script,
    create_once: Script,
    subscriber: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        if let Some(task) = &self.subscriber {
            task.abort();
        }
    }
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl RedisStore {
    /// Connects lazily: nothing is awaited here, so a node starts while Redis is down.
    pub fn open(
        url: &str,
        prefix: &str,
        cache: Option<Arc<TokenCache>>,
    ) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn =
            ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(unavailable)?;
        let channel = format!("{prefix}revoked");
        let subscriber = cache.map(|cache| tokio::spawn(subscribe(client, channel.clone(), cache)));
        Ok(RedisStore {
            conn,
            prefix: prefix.to_owned(),
            channel,
            set_if_exists: Script::new(SET_IF_EXISTS),
            retire: Script::new(RETIRE),
            use_once: Script::new(USE_ONCE),
            create_once: Script::new(CREATE_ONCE),
            subscriber,
        })
    }

    fn access_key(&self, hash: &TokenHash) -> String {
        format!("{}at:{}", self.prefix, hash.to_hex())
    }

    fn refresh_key(&self, hash: &TokenHash) -> String {
        format!("{}rt:{}", self.prefix, hash.to_hex())
    }

    fn grant_key(&self, grant_id: &str) -> String {
        format!("{}g:{}", self.prefix, grant_id)
    }

    pub async fn get_access(&self, hash: &TokenHash) -> Result<Option<AccessEntry>, StoreError> {
        let mut conn = self.conn.clone();
        let (record, revoked): (Option<String>, Option<String>) = conn
            .hmget(self.access_key(hash), &["r", "x"])
            .await
            .map_err(unavailable)?;
        let Some(record) = record else {
            return Ok(None);
        };
        let token = serde_json::from_str::<AccessToken>(&record)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?
            .interned();
        Ok(Some(AccessEntry {
            token,
            revoked: revoked.is_some(),
        }))
    }

    pub async fn issue(
        &self,
        access_hash: &TokenHash,
        access: &AccessToken,
        refresh: Option<(&TokenHash, &RefreshToken)>,
    ) -> Result<(), StoreError> {
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
        let mut pipe = redis::pipe();
        let key = self.access_key(access_hash);
        pipe.hset(&key, "r", serde_json::to_string(access).map_err(corrupt)?)
            .ignore();
        if let Some(until) = keep_until(access.expires_at) {
            pipe.cmd("PEXPIREAT").arg(&key).arg(until).ignore();
        }
        // Indexes for the admin listing; expired members are pruned on every write.
        let score =
            keep_until(access.expires_at).map_or_else(|| "+inf".to_owned(), |t| t.to_string());
        let now = now_millis();
        let mut index_keys = vec![format!("{}ci:{}", self.prefix, access.client_id)];
        if let Some(user) = &access.username {
            index_keys.push(format!("{}ui:{}", self.prefix, user));
        }
        for index in &index_keys {
            pipe.cmd("ZADD")
                .arg(index)
                .arg(&score)
                .arg(access_hash.to_hex())
                .ignore();
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(index)
                .arg("-inf")
                .arg(format!("({now}"))
                .ignore();
        }
        let grant = self.grant_key(&access.grant_id);
        pipe.sadd(&grant, format!("a:{}", access_hash.to_hex()))
            .ignore();
        // The grant set lives as long as its longest-lived member.
        let mut grant_until = keep_until(access.expires_at);
        if let Some((hash, token)) = refresh {
            let key = self.refresh_key(hash);
            pipe.hset(&key, "r", serde_json::to_string(token).map_err(corrupt)?)
                .ignore();
            if let Some(until) = keep_until(token.expires_at) {
                pipe.cmd("PEXPIREAT").arg(&key).arg(until).ignore();
            }
            pipe.sadd(&grant, format!("r:{}", hash.to_hex())).ignore();
            grant_until = match (grant_until, keep_until(token.expires_at)) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        }
        match grant_until {
            Some(until) => pipe.cmd("PEXPIREAT").arg(&grant).arg(until).ignore(),
            None => pipe.cmd("PERSIST").arg(&grant).ignore(),
        };
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await.map_err(unavailable)
    }

    pub async fn get_refresh(&self, hash: &TokenHash) -> Result<Option<RefreshEntry>, StoreError> {
        let mut conn = self.conn.clone();
        let (record, retired, revoked, successor): (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        ) = conn
            .hmget(self.refresh_key(hash), &["r", "retired", "x", "s"])
            .await
            .map_err(unavailable)?;
        let Some(record) = record else {
            return Ok(None);
        };
        let token: RefreshToken =
            serde_json::from_str(&record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Some(RefreshEntry {
            token,
            retired_at: retired.map(|at| at.parse().unwrap_or(0)),
            revoked: revoked.is_some(),
            successor,
        }))
    }

    pub async fn retire_refresh(&self, hash: &TokenHash) -> Result<Retire, StoreError> {
        let mut conn = self.conn.clone();
        let outcome: i64 = self
            .retire
            .key(self.refresh_key(hash))
            .arg(now_millis())
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(match outcome {
            1 => Retire::Retired,
            0 => Retire::AlreadyRetired,
            _ => Retire::Missing,
        })
    }

    pub async fn revoke_access(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        let found = self.mark_revoked(self.access_key(hash)).await?;
        if found {
            self.publish(&[*hash]).await?;
        }
        Ok(found)
    }

    /// Revokes every member of the grant; returns the access-token hashes it revoked.
    pub async fn revoke_grant(&self, grant_id: &str) -> Result<Vec<TokenHash>, StoreError> {
        let mut conn = self.conn.clone();
        let members: Vec<String> = conn
            .smembers(self.grant_key(grant_id))
            .await
            .map_err(unavailable)?;
        let mut revoked = Vec::new();
        for member in members {
            let (kind, hex) = member.split_at(member.find(':').map_or(0, |i| i + 1));
            let Some(hash) = TokenHash::from_hex(hex) else {
                continue;
            };
            match kind {
                "a:" if self.mark_revoked(self.access_key(&hash)).await? => revoked.push(hash),
                "r:" => {
                    self.mark_revoked(self.refresh_key(&hash)).await?;
                }
                _ => {}
            }
        }
        self.publish(&revoked).await?;
        Ok(revoked)
    }

    pub async fn set_refresh_successor(
        &self,
        hash: &TokenHash,
        sealed: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        self.set_if_exists
            .key(self.refresh_key(hash))
            .arg("s")
            .arg(sealed)
            .invoke_async::<i64>(&mut conn)
            .await
            .map(drop)
            .map_err(unavailable)
    }

    fn record_key(&self, kind: RecordKind, key: &str) -> String {
        format!("{}{}{}", self.prefix, kind.key_part(), key)
    }

    pub async fn put_record(
        &self,
        kind: RecordKind,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let key = self.record_key(kind, key);
        let mut pipe = redis::pipe();
        pipe.hset(&key, "r", value).ignore();
        pipe.cmd("PEXPIRE").arg(&key).arg(ttl_millis(ttl)).ignore();
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await.map_err(unavailable)
    }

    pub async fn get_record(
        &self,
        kind: RecordKind,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        conn.hget(self.record_key(kind, key), "r")
            .await
            .map_err(unavailable)
    }

    /// Removes and returns a record in one step (MULTI/EXEC): whoever takes it has it alone.
    pub async fn take_record(
        &self,
        kind: RecordKind,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        let key = self.record_key(kind, key);
        let mut conn = self.conn.clone();
        let (value, _): (Option<String>, i64) = redis::pipe()
            .atomic()
            .hget(&key, "r")
            .del(&key)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(value)
    }

    /// Creates the record only if none exists (`HSETNX`, then its expiry in the same
    /// transaction); true if this call created it.
    pub async fn create_record(
        &self,
        kind: RecordKind,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let key = self.record_key(kind, key);
        let mut conn = self.conn.clone();
        let created: bool = self
            .create_once
            .key(&key)
            .arg(value)
            .arg(ttl_millis(ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(created)
    }

    pub async fn delete_record(&self, kind: RecordKind, key: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        conn.del::<_, ()>(self.record_key(kind, key))
            .await
            .map_err(unavailable)
    }

    pub async fn use_code(&self, key: &str) -> Result<CodeUse, StoreError> {
        let mut conn = self.conn.clone();
        let outcome: i64 = self
            .use_once
            .key(self.record_key(RecordKind::Code, key))
            .arg(now_millis())
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(match outcome {
            1 => CodeUse::First,
            0 => CodeUse::AlreadyUsed,
            _ => CodeUse::Missing,
        })
    }

    /// Access tokens of a client and/or user (both `None` = all, found by SCAN: admin only).
    pub async fn access_tokens(
        &self,
        client_id: Option<&str>,
        username: Option<&str>,
    ) -> Result<Vec<(TokenHash, AccessEntry)>, StoreError> {
        let mut conn = self.conn.clone();
        let now = now_millis();
        let hexes: Vec<String> = match (client_id, username) {
            (Some(c), _) => conn
                .zrangebyscore(format!("{}ci:{}", self.prefix, c), now, "+inf")
                .await
                .map_err(unavailable)?,
            (None, Some(u)) => conn
                .zrangebyscore(format!("{}ui:{}", self.prefix, u), now, "+inf")
                .await
                .map_err(unavailable)?,
            (None, None) => {
                let pattern = format!("{}at:*", self.prefix);
                let keys: Vec<String> = {
                    let mut iter = conn
                        .scan_match::<_, String>(&pattern)
                        .await
                        .map_err(unavailable)?;
                    let mut keys = Vec::new();
                    while let Some(k) = iter.next().await {
                        keys.push(k.map_err(unavailable)?);
                    }
                    keys
                };
                let at = self.prefix.len() + 3;
                keys.into_iter()
                    .filter_map(|k| k.get(at..).map(str::to_owned))
                    .collect()
            }
        };
        let mut out = Vec::with_capacity(hexes.len());
        for hex in hexes {
            let Some(hash) = TokenHash::from_hex(&hex) else {
                continue;
            };
            if let Some(entry) = self.get_access(&hash).await?
                && username.is_none_or(|u| entry.token.username.as_deref() == Some(u))
            {
                out.push((hash, entry));
            }
        }
        Ok(out)
    }

    fn client_key(&self, client_id: &str) -> String {
        format!("{}client:{}", self.prefix, client_id)
    }

    pub async fn put_client(&self, client: &Client) -> Result<(), StoreError> {
        let json = serde_json::to_string(client).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut pipe = redis::pipe();
        pipe.set(self.client_key(&client.client_id), json).ignore();
        pipe.sadd(format!("{}clients", self.prefix), &client.client_id)
            .ignore();
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await.map_err(unavailable)
    }

    pub async fn get_client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        let mut conn = self.conn.clone();
        let json: Option<String> = conn
            .get(self.client_key(client_id))
            .await
            .map_err(unavailable)?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    pub async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let n: i64 = conn
            .del(self.client_key(client_id))
            .await
            .map_err(unavailable)?;
        conn.srem::<_, _, ()>(format!("{}clients", self.prefix), client_id)
            .await
            .map_err(unavailable)?;
        Ok(n > 0)
    }

    pub async fn list_clients(&self) -> Result<Vec<Client>, StoreError> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> = conn
            .smembers(format!("{}clients", self.prefix))
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        for id in ids {
            if let Some(c) = self.get_client(&id).await? {
                out.push(c);
            }
        }
        Ok(out)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(drop)
            .map_err(unavailable)
    }

    async fn mark_revoked(&self, key: String) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let n: i64 = self
            .set_if_exists
            .key(key)
            .arg("x")
            .arg(now_millis())
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(n == 1)
    }

    /// Tells every node to drop these tokens from its cache.
    async fn publish(&self, hashes: &[TokenHash]) -> Result<(), StoreError> {
        if hashes.is_empty() {
            return Ok(());
        }
        let message = hashes
            .iter()
            .map(TokenHash::to_hex)
            .collect::<Vec<_>>()
            .join(" ");
        let mut conn = self.conn.clone();
        conn.publish::<_, _, ()>(&self.channel, message)
            .await
            .map_err(unavailable)
    }
}

/// Keeps this node subscribed to revocations for as long as the store lives. The cache is
/// trusted only while the subscription is up: when it drops, the cache is emptied and
/// bypassed until a new subscription is confirmed, so no revocation can be missed.
async fn subscribe(client: redis::Client, channel: String, cache: Arc<TokenCache>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        if let Err(e) = follow(&client, &channel, &cache).await {
            tracing::warn!(error = %e, "revocation subscription lost; local token cache disabled until it is back");
        }
        cache.set_live(false);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
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
    pubsub.subscribe(channel).await?;
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
