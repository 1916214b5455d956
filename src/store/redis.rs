//! The shared store: Redis, reached through a reconnecting multiplexed connection.
//!
//! Keys are laid out by `store::keys` so that each atomic step touches one Redis Cluster
//! slot; records are hashes {r: JSON, x: revoked-at, retired: at, s: sealed successor} with
//! their own expiry (the token's, plus the retention hour). The channel `Prevoked` carries
//! space-separated access-token hashes just revoked; every node drops them from its cache.

use std::sync::Arc;

use redis::{AsyncCommands, Script};

use super::cache::TokenCache;
use super::keys::Keys;
pub(super) mod conn;
mod records;
mod registry;
mod throttle;

use super::scripts::{
    CREATE_ONCE, INDEX, ISSUE, PUT, REVOKE_GRANT, ROTATE, SET_IF_EXISTS, TAKE, USE_ONCE,
};
use super::subscription;
use super::{EXPIRED_RETENTION, Rotate, Rotation, StoreError, access_keep_until, keep_until};
use crate::config::{Client, RedisConfig};
use crate::token::{AccessEntry, AccessToken, RefreshEntry, RefreshToken, TokenHash, now_millis};
use conn::Conn;

pub struct RedisStore {
    conn: Conn,
    keys: Keys,
    channel: String,
    set_if_exists: Script,
    issue: Script,
    rotate: Script,
    revoke_grant: Script,
    take: Script,
    index: Script,
    put: Script,
    /// Clients this node has added to `Keys::indexed_clients`.
    indexed: dashmap::DashSet<Arc<str>>,
    use_once: Script,
    create_once: Script,
    registry_put: Script,
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
fn index_score(until: Option<u64>) -> String {
    until.map_or_else(|| "+inf".to_owned(), |t| t.to_string())
}

/// Tokens are minted with their grant's tag (`token::SlotTag`); one that is not would put
/// the grant's keys on two slots, which a cluster refuses (CROSSSLOT).
fn same_slot<const N: usize>(grant_id: &str, hashes: [Option<&TokenHash>; N]) {
    let tag = crate::token::SlotTag::of_grant(grant_id);
    for hash in hashes.into_iter().flatten() {
        debug_assert_eq!(
            hash.tag(),
            tag,
            "a token of grant {grant_id} minted without its tag"
        );
    }
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl RedisStore {
    /// Connects lazily: nothing is awaited here, so a node starts while Redis is down.
    pub fn open(
        config: &RedisConfig,
        prefix: &str,
        cache: Option<Arc<TokenCache>>,
    ) -> Result<RedisStore, StoreError> {
        let conn = conn::open(config).map_err(unavailable)?;
        let keys = Keys::new(prefix);
        let channel = keys.channel();
        let seeds = subscription::Seeds {
            config: config.clone(),
            cluster: config.cluster.then(|| conn.clone()),
        };
        let subscriber =
            cache.map(|cache| tokio::spawn(subscription::subscribe(seeds, channel.clone(), cache)));
        Ok(RedisStore {
            conn,
            keys,
            channel,
            set_if_exists: Script::new(SET_IF_EXISTS),
            issue: Script::new(ISSUE),
            rotate: Script::new(ROTATE),
            take: Script::new(TAKE),
            index: Script::new(INDEX),
            put: Script::new(PUT),
            indexed: dashmap::DashSet::new(),
            revoke_grant: Script::new(REVOKE_GRANT),
            use_once: Script::new(USE_ONCE),
            create_once: Script::new(CREATE_ONCE),
            registry_put: Script::new(registry::REGISTRY_PUT),
            subscriber,
        })
    }

    pub async fn get_access(&self, hash: &TokenHash) -> Result<Option<AccessEntry>, StoreError> {
        let mut conn = self.conn.clone();
        let (record, revoked): (Option<String>, Option<String>) = conn
            .hmget(self.keys.access(hash), &["r", "x"])
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
        same_slot(
            &access.grant_id,
            [Some(access_hash), refresh.map(|(h, _)| h)],
        );
        let until = |at: Option<u64>| keep_until(at).map_or_else(String::new, |t| t.to_string());
        let record_until = access_keep_until(access, refresh.map(|(_, t)| t));
        let access_key = self.keys.access(access_hash);
        let mut script = self.issue.prepare_invoke();
        script
            .key(&access_key)
            .key(self.keys.grant(&access.grant_id))
            .key(refresh.map_or_else(|| access_key.clone(), |(h, _)| self.keys.refresh(h)))
            .arg(serde_json::to_string(access).map_err(corrupt)?)
            .arg(record_until.map_or_else(String::new, |t| t.to_string()))
            .arg(access_hash.to_hex());
        // The grant set lives as long as its longest-lived member.
        let mut grant_until = keep_until(access.expires_at);
        match refresh {
            Some((hash, token)) => {
                script
                    .arg(serde_json::to_string(token).map_err(corrupt)?)
                    .arg(until(token.expires_at))
                    .arg(hash.to_hex());
                grant_until = grant_until
                    .zip(keep_until(token.expires_at))
                    .map(|(a, b)| a.max(b));
            }
            None => {
                script.arg("").arg("").arg("");
            }
        }
        script.arg(grant_until.map_or_else(String::new, |t| t.to_string()));
        let mut conn = self.conn.clone();
        script
            .invoke_async::<i64>(&mut conn)
            .await
            .map_err(unavailable)?;
        self.index(access_hash, access, record_until).await;
        Ok(())
    }

    /// Adds a new access token to the admin listing's indexes, after its grant is stored:
    /// each index is its own slot, the writes are idempotent, and a failure here only hides
    /// the token from the listing (it is logged), never from the gateway.
    async fn index(&self, hash: &TokenHash, access: &AccessToken, until: Option<u64>) {
        let score = index_score(until);
        let now = now_millis();
        let hex = hash.to_hex();
        let mut conn = self.conn.clone();
        for index in self.index_keys(access) {
            let indexed = self
                .index
                .key(&index)
                .arg(&score)
                .arg(&hex)
                .arg(now)
                .invoke_async::<i64>(&mut conn)
                .await;
            if let Err(e) = indexed {
                tracing::warn!(index, error = %e, "token index not updated; the admin listing may miss a token");
            }
        }
        // The set of indexed clients only grows: once per client and node is enough.
        if self.indexed.contains(&*access.client_id) {
            return;
        }
        let added: redis::RedisResult<()> = conn
            .sadd(self.keys.indexed_clients(), &*access.client_id)
            .await;
        match added {
            Ok(()) => {
                self.indexed.insert(access.client_id.clone());
            }
            Err(e) => tracing::warn!(error = %e, "client not added to the token index"),
        }
    }

    /// The refresh tokens of a grant.
    pub async fn grant_refresh(&self, grant_id: &str) -> Result<Vec<RefreshEntry>, StoreError> {
        let mut conn = self.conn.clone();
        let members: Vec<String> = conn
            .smembers(self.keys.grant(grant_id))
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        for m in members {
            if let Some(hash) = m.strip_prefix("r:").and_then(TokenHash::from_hex)
                && let Some(entry) = self.get_refresh(&hash).await?
            {
                out.push(entry);
            }
        }
        Ok(out)
    }

    pub async fn get_refresh(&self, hash: &TokenHash) -> Result<Option<RefreshEntry>, StoreError> {
        let mut conn = self.conn.clone();
        let (record, retired, revoked, successor): (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        ) = conn
            .hmget(self.keys.refresh(hash), &["r", "retired", "x", "s"])
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
        // Kept as long as its refresh token, as `issue` does; the script cuts the older
        // access tokens of the grant back to the plain retention.
        let record_until = access_keep_until(access, r.refresh.map(|(_, t)| t));
        same_slot(
            &access.grant_id,
            [Some(r.old), Some(r.access_hash), r.refresh.map(|(h, _)| h)],
        );
        let mut script = self.rotate.prepare_invoke();
        script
            .key(self.keys.refresh(r.old))
            .key(self.keys.grant(&access.grant_id))
            .key(self.keys.access(r.access_hash))
            .key(self.keys.refresh(r.refresh.map_or(r.old, |(h, _)| h)));
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
            .arg(self.keys.prefix())
            .arg(r.grace.as_millis() as u64)
            .arg(EXPIRED_RETENTION.as_millis() as u64)
            .arg(serde_json::to_string(access).map_err(corrupt)?)
            .arg(record_until.map_or_else(String::new, |t| t.to_string()))
            .arg(r.access_hash.to_hex())
            .arg(refresh_json)
            .arg(refresh_until)
            .arg(refresh_hex)
            .arg(r.successor.unwrap_or(""))
            .arg(grant_until.map_or_else(String::new, |t| t.to_string()));
        let mut conn = self.conn.clone();
        let outcome: i64 = script.invoke_async(&mut conn).await.map_err(unavailable)?;
        if outcome == 1 {
            self.index(r.access_hash, access, record_until).await;
        }
        Ok(match outcome {
            1 => Rotate::Rotated,
            0 => Rotate::AlreadyRetired,
            -2 => Rotate::Revoked,
            _ => Rotate::Missing,
        })
    }

    /// The admin listing's index keys an access token belongs in.
    fn index_keys(&self, access: &AccessToken) -> Vec<String> {
        let mut keys = vec![self.keys.client_index(&access.client_id)];
        if let Some(user) = &access.username {
            keys.push(self.keys.user_index(user));
        }
        keys
    }

    pub async fn revoke_access(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        let found = self.mark_revoked(self.keys.access(hash)).await?;
        if found {
            self.publish(&[*hash]).await?;
        }
        Ok(found)
    }

    /// Revokes the grant and every token it has, in one script (see
    /// `scripts::REVOKE_GRANT`); returns the access-token hashes it revoked.
    pub async fn revoke_grant(&self, grant_id: &str) -> Result<Vec<TokenHash>, StoreError> {
        let mut conn = self.conn.clone();
        let hexes: Vec<String> = self
            .revoke_grant
            .key(self.keys.grant(grant_id))
            .arg(now_millis())
            .arg(self.keys.prefix())
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let revoked: Vec<TokenHash> = hexes
            .iter()
            .filter_map(|h| TokenHash::from_hex(h))
            .collect();
        self.publish(&revoked).await?;
        Ok(revoked)
    }

    /// Access tokens of a client and/or user (both `None` = all, from the index of every
    /// client that has tokens: admin only, never KEYS or SCAN).
    pub async fn access_tokens(
        &self,
        client_id: Option<&str>,
        username: Option<&str>,
    ) -> Result<Vec<(TokenHash, AccessEntry)>, StoreError> {
        let mut conn = self.conn.clone();
        let now = now_millis();
        let indexes = match (client_id, username) {
            (Some(c), _) => vec![self.keys.client_index(c)],
            (None, Some(u)) => vec![self.keys.user_index(u)],
            (None, None) => {
                let clients: Vec<String> = conn
                    .smembers(self.keys.indexed_clients())
                    .await
                    .map_err(unavailable)?;
                clients.iter().map(|c| self.keys.client_index(c)).collect()
            }
        };
        let mut hexes = Vec::new();
        for index in indexes {
            let found: Vec<String> = conn
                .zrangebyscore(&index, now, "+inf")
                .await
                .map_err(unavailable)?;
            hexes.extend(found);
        }
        hexes.sort_unstable();
        hexes.dedup();
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

    /// Writes `client`; with `must_exist`, only over one that is there (false otherwise).
    pub async fn put_client(&self, client: &Client, must_exist: bool) -> Result<bool, StoreError> {
        let json = serde_json::to_string(client).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // Two slots: the record first, then the list of ids (a listing skips ids whose
        // record is gone, so a failure between the two loses nothing).
        let mut conn = self.conn.clone();
        let mut set = redis::cmd("SET");
        set.arg(self.keys.client(&client.client_id)).arg(json);
        if must_exist {
            set.arg("XX");
        }
        let written: Option<String> = set.query_async(&mut conn).await.map_err(unavailable)?;
        if written.is_none() {
            return Ok(false);
        }
        conn.sadd::<_, _, ()>(self.keys.clients(), &client.client_id)
            .await
            .map_err(unavailable)?;
        Ok(true)
    }

    pub async fn get_client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        let mut conn = self.conn.clone();
        let json: Option<String> = conn
            .get(self.keys.client(client_id))
            .await
            .map_err(unavailable)?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    pub async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let n: i64 = conn
            .del(self.keys.client(client_id))
            .await
            .map_err(unavailable)?;
        conn.srem::<_, _, ()>(self.keys.clients(), client_id)
            .await
            .map_err(unavailable)?;
        Ok(n > 0)
    }

    pub async fn list_clients(&self) -> Result<Vec<Client>, StoreError> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> = conn
            .smembers(self.keys.clients())
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
