//! The shared store: Redis, reached through a reconnecting multiplexed connection.
//!
//! Layout (every key under the configured prefix `P`; each plain command touches one key):
//! - `Pat:<sha256 hex>`  hash {r: access-token JSON, x: revoked-at}, expires with the token
//!   (+ retention)
//! - `Prt:<sha256 hex>`  hash {r: refresh-token JSON, retired: at, s: sealed successor,
//!   x: revoked-at}, likewise
//! - `Pg:<grant id>`     set of `a:<hex>` / `r:<hex>` members, for revoking a grant whole, and
//!   the member `x` once the grant is revoked (a later rotation then fails)
//! - `Preq:<id>`, `Psess:<sha256 hex>`, `Pcode:<sha256 hex>`  hash {r: JSON, used: at} with
//!   their own expiry: pending authorization requests, login sessions, authorization codes
//! - `Pci:<client id>`, `Pui:<username>`  sorted sets of access-token hashes scored by when
//!   their record expires (+inf = never), pruned on every write: the admin token listing
//! - `Pclient:<id>` client JSON, and `Pclients` the set of their ids: clients created through
//!   the admin API
//! - channel `Prevoked`  space-separated access-token hashes just revoked; every node drops
//!   them from its cache on receipt.
//!
//! The rotation script (`scripts::ROTATE`) touches the old and new token keys, the grant
//! set, the indexes and the grant's members: keys of different Redis Cluster slots. A hash
//! tag per grant cannot fix that cheaply, because an access token is looked up by its hash alone
//! (its key cannot name the grant without the token carrying it), so moving to Cluster
//! needs a key-layout change that existing records would not survive.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use super::cache::TokenCache;
mod records;
mod throttle;

use super::scripts::{CREATE_ONCE, MARK_GRANT, ROTATE, SET_IF_EXISTS, USE_ONCE};
use super::subscription;
use super::{EXPIRED_RETENTION, Rotate, Rotation, StoreError, keep_until};
use crate::config::Client;
use crate::token::{AccessEntry, AccessToken, RefreshEntry, RefreshToken, TokenHash, now_millis};

/// A command that takes longer than this counts as "store unreachable" (503), rather than
/// holding the request until the client gives up.
pub(super) const RESPONSE_TIMEOUT: Duration = Duration::from_millis(1000);
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    channel: String,
    set_if_exists: Script,
    rotate: Script,
    mark_grant: Script,
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

/// An access token's score in the admin indexes: when its record expires (+inf = never).
fn index_score(access: &AccessToken) -> String {
    keep_until(access.expires_at).map_or_else(|| "+inf".to_owned(), |t| t.to_string())
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
        let subscriber = cache
            .map(|cache| tokio::spawn(subscription::subscribe(client, channel.clone(), cache)));
        Ok(RedisStore {
            conn,
            prefix: prefix.to_owned(),
            channel,
            set_if_exists: Script::new(SET_IF_EXISTS),
            rotate: Script::new(ROTATE),
            mark_grant: Script::new(MARK_GRANT),
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
        let score = index_score(access);
        let now = now_millis();
        for index in &self.index_keys(access) {
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

    pub async fn rotate_refresh(&self, r: &Rotation<'_>) -> Result<Rotate, StoreError> {
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
        let until = |at: Option<u64>| keep_until(at).map_or_else(String::new, |t| t.to_string());
        let access = r.access;
        let mut script = self.rotate.prepare_invoke();
        script
            .key(self.refresh_key(r.old))
            .key(self.grant_key(&access.grant_id))
            .key(self.access_key(r.access_hash))
            .key(self.refresh_key(r.refresh.map_or(r.old, |(h, _)| h)));
        for index in self.index_keys(access) {
            script.key(index);
        }
        let (refresh_json, refresh_until, refresh_hex) = match r.refresh {
            Some((hash, token)) => (
                serde_json::to_string(token).map_err(corrupt)?,
                until(token.expires_at),
                hash.to_hex(),
            ),
            None => (String::new(), String::new(), String::new()),
        };
        let grant_until = match (keep_until(access.expires_at), r.refresh) {
            (Some(a), Some((_, t))) => keep_until(t.expires_at).map(|b| a.max(b)),
            (a, None) => a,
            (None, Some(_)) => None,
        };
        script
            .arg(now_millis())
            .arg(&self.prefix)
            .arg(r.grace.as_millis() as u64)
            .arg(EXPIRED_RETENTION.as_millis() as u64)
            .arg(serde_json::to_string(access).map_err(corrupt)?)
            .arg(until(access.expires_at))
            .arg(r.access_hash.to_hex())
            .arg(refresh_json)
            .arg(refresh_until)
            .arg(refresh_hex)
            .arg(r.successor.unwrap_or(""))
            .arg(index_score(access))
            .arg(grant_until.map_or_else(String::new, |t| t.to_string()));
        let mut conn = self.conn.clone();
        let outcome: i64 = script.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(match outcome {
            1 => Rotate::Rotated,
            0 => Rotate::AlreadyRetired,
            -2 => Rotate::Revoked,
            _ => Rotate::Missing,
        })
    }

    /// The admin listing's index keys an access token belongs in.
    fn index_keys(&self, access: &AccessToken) -> Vec<String> {
        let mut keys = vec![format!("{}ci:{}", self.prefix, access.client_id)];
        if let Some(user) = &access.username {
            keys.push(format!("{}ui:{}", self.prefix, user));
        }
        keys
    }

    pub async fn revoke_access(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        let found = self.mark_revoked(self.access_key(hash)).await?;
        if found {
            self.publish(&[*hash]).await?;
        }
        Ok(found)
    }

    /// Revokes every member of the grant; returns the access-token hashes it revoked. The
    /// grant is marked first and its members read after: a rotation that ran before the mark
    /// has its tokens among the members, one that runs after it fails.
    pub async fn revoke_grant(&self, grant_id: &str) -> Result<Vec<TokenHash>, StoreError> {
        let mut conn = self.conn.clone();
        let grant = self.grant_key(grant_id);
        self.mark_grant
            .key(&grant)
            .invoke_async::<i64>(&mut conn)
            .await
            .map_err(unavailable)?;
        let members: Vec<String> = conn.smembers(&grant).await.map_err(unavailable)?;
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
