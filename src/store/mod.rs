//! The token store: where access tokens, refresh tokens and grants live.
//!
//! One facade, [`TokenStore`], over two backends: `memory` (embedded, one node) and `redis`
//! (shared by every node). The Redis backend has a per-node cache in front of it for access
//! token lookups, kept honest by revocation messages on a Redis channel (see `cache.rs`).
//! Backends are an enum rather than a trait object: there are two, and the hot path
//! (`lookup_access`) stays a direct call.

mod cache;
pub mod counters;
pub mod keys;
mod memory;
mod records;
mod redis;
pub mod registry;
mod scripts;
mod subscription;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub use cache::{CacheStats, TokenCache};
pub use records::{CodeUse, RecordKind};
pub use registry::{ScopeWrite, Snapshot, Stamp, StoredScope};

use crate::config::{Backend, Client, StoreConfig};
use crate::metrics::Metrics;
use crate::token::{AccessEntry, AccessToken, Millis, RefreshEntry, RefreshToken, TokenHash};

/// How long a record is kept after its token expired, so a late caller is told
/// "token expired" rather than "unknown token" and operators can still list it. After this the
/// record disappears on its own (Redis TTL, or the memory store's sweeper).
pub const EXPIRED_RETENTION: Duration = Duration::from_secs(3600);

/// Why the store could not answer. Kept `Clone` so one failed lookup can be handed to every
/// request that was waiting on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("token store unreachable: {0}")]
    Unavailable(String),
    #[error("token store holds a record it cannot read: {0}")]
    Corrupt(String),
    /// The store answered, but not as one we may use: a `rediss://` certificate that does
    /// not verify (refused at start, SPEC §11).
    #[error("token store refused: {0}")]
    Refused(String),
}

/// Result of rotating a refresh token: retiring it and storing its successors in one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotate {
    /// This call retired it and stored the new tokens.
    Rotated,
    /// Someone retired it before: a retry (grace window) or a reuse. Nothing was stored.
    AlreadyRetired,
    /// It does not exist (any more), or it has expired. Nothing was stored.
    Missing,
    /// It, or its grant, has been revoked. Nothing was stored.
    Revoked,
}

/// Everything one refresh-token rotation writes, applied all or nothing by
/// [`TokenStore::rotate_refresh`]: a failure part-way must never leave the old token retired
/// without a successor, or the client's retry would look like reuse and cost it the grant.
pub struct Rotation<'a> {
    /// The refresh token being exchanged.
    pub old: &'a TokenHash,
    pub access_hash: &'a TokenHash,
    /// The new access token; its `grant_id` must be the old token's grant.
    pub access: &'a AccessToken,
    /// The new refresh token, unless the grant has used up its refreshes.
    pub refresh: Option<(&'a TokenHash, &'a RefreshToken)>,
    /// The sealed response (see `oauth::grace`), kept beside the retired token so a retry
    /// within the grace window gets the same answer.
    pub successor: Option<&'a str>,
    /// The refresh grace window: a retired refresh token stays in its grant's member list
    /// this long (so revoking the grant still marks it); after that it is pruned.
    pub grace: Duration,
}

/// The token store of one node.
#[derive(Clone)]
pub struct TokenStore {
    backend: Arc<BackendImpl>,
    cache: Option<Arc<TokenCache>>,
    metrics: Arc<Metrics>,
}

// One per node, behind an `Arc`: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
enum BackendImpl {
    Memory(memory::MemoryStore),
    Redis(redis::RedisStore),
}

impl TokenStore {
    /// Opens the configured backend. For Redis this does not wait for the server: a node
    /// starts (and answers 503) while Redis is down, and recovers when it comes back.
    pub fn open(config: &StoreConfig) -> Result<TokenStore, StoreError> {
        match &config.backend {
            Backend::Memory => Ok(TokenStore {
                backend: Arc::new(BackendImpl::Memory(memory::MemoryStore::new())),
                cache: None,
                metrics: Arc::default(),
            }),
            Backend::Redis(redis) => {
                let cache = (config.cache_capacity > 0 && !config.cache_ttl.is_zero())
                    .then(|| Arc::new(TokenCache::new(config.cache_ttl, config.cache_capacity)));
                let store = redis::RedisStore::open(redis, &config.prefix, cache.clone())?;
                Ok(TokenStore {
                    backend: Arc::new(BackendImpl::Redis(store)),
                    cache,
                    metrics: Arc::default(),
                })
            }
        }
    }

    /// Looks an access token up, through the local cache when there is one.
    pub async fn lookup_access(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<Arc<AccessEntry>>, StoreError> {
        match (&*self.backend, &self.cache) {
            (BackendImpl::Memory(m), _) => Ok(m.get_access(hash)),
            // The Redis round trip's future is boxed, so a cache hit's future stays small.
            (BackendImpl::Redis(r), Some(cache)) => {
                cache
                    .get_or_fetch(*hash, || Box::pin(self.fetch_timed(r, hash)))
                    .await
            }
            (BackendImpl::Redis(r), None) => {
                Ok(Box::pin(self.fetch_timed(r, hash)).await?.map(Arc::new))
            }
        }
    }

    /// A lookup that reached Redis, with its latency and failures counted.
    async fn fetch_timed(
        &self,
        r: &redis::RedisStore,
        hash: &TokenHash,
    ) -> Result<Option<AccessEntry>, StoreError> {
        let start = std::time::Instant::now();
        let result = r.get_access(hash).await;
        self.metrics.store_duration.observe(start.elapsed());
        if result.is_err() {
            self.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Stores a newly issued access token and, when one was issued with it, its refresh token.
    pub async fn issue(
        &self,
        access_hash: &TokenHash,
        access: &AccessToken,
        refresh: Option<(&TokenHash, &RefreshToken)>,
    ) -> Result<(), StoreError> {
        match &*self.backend {
            BackendImpl::Memory(m) => {
                m.issue(access_hash, access, refresh);
                Ok(())
            }
            BackendImpl::Redis(r) => r.issue(access_hash, access, refresh).await,
        }
    }

    pub async fn get_refresh(&self, hash: &TokenHash) -> Result<Option<RefreshEntry>, StoreError> {
        match &*self.backend {
            BackendImpl::Memory(m) => Ok(m.get_refresh(hash)),
            BackendImpl::Redis(r) => r.get_refresh(hash).await,
        }
    }

    /// Rotates a refresh token in one atomic step: checks it is live (exists, unexpired, not
    /// retired, neither it nor its grant revoked), stores the new tokens in the same grant,
    /// retires the old one with its successor, and prunes the grant's member list of tokens
    /// that are gone, expired or retired past the grace window. Only one caller per token
    /// ever gets [`Rotate::Rotated`]; a concurrent [`TokenStore::revoke_grant`] either sees
    /// the new tokens or makes the rotation fail with [`Rotate::Revoked`].
    pub async fn rotate_refresh(&self, rotation: &Rotation<'_>) -> Result<Rotate, StoreError> {
        match &*self.backend {
            BackendImpl::Memory(m) => Ok(m.rotate_refresh(rotation, crate::token::now_millis())),
            BackendImpl::Redis(r) => r.rotate_refresh(rotation).await,
        }
    }

    /// Revokes one access token on every node. Returns whether it existed.
    pub async fn revoke_access(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        let found = match &*self.backend {
            BackendImpl::Memory(m) => m.revoke_access(hash),
            BackendImpl::Redis(r) => r.revoke_access(hash).await?,
        };
        self.forget(hash);
        Ok(found)
    }

    /// Revokes every token of a grant (access and refresh) on every node; returns how many.
    /// The grant is marked revoked first, so a rotation racing this call cannot add a live
    /// token behind it (see [`TokenStore::rotate_refresh`]).
    pub async fn revoke_grant(&self, grant_id: &str) -> Result<usize, StoreError> {
        let revoked = match &*self.backend {
            BackendImpl::Memory(m) => m.revoke_grant(grant_id),
            BackendImpl::Redis(r) => r.revoke_grant(grant_id).await?,
        };
        for hash in &revoked {
            self.forget(hash);
        }
        Ok(revoked.len())
    }

    /// Stores a short-lived record (see [`RecordKind`]) that expires after `ttl`.
    pub async fn put_record(
        &self,
        kind: RecordKind,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        match &*self.backend {
            BackendImpl::Memory(m) => {
                m.put_record(kind, key, value, ttl);
                Ok(())
            }
            BackendImpl::Redis(r) => r.put_record(kind, key, value, ttl).await,
        }
    }

    pub async fn get_record(
        &self,
        kind: RecordKind,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        match &*self.backend {
            BackendImpl::Memory(m) => Ok(m.get_record(kind, key)),
            BackendImpl::Redis(r) => r.get_record(kind, key).await,
        }
    }

    pub async fn delete_record(&self, kind: RecordKind, key: &str) -> Result<(), StoreError> {
        match &*self.backend {
            BackendImpl::Memory(m) => {
                m.delete_record(kind, key);
                Ok(())
            }
            BackendImpl::Redis(r) => r.delete_record(kind, key).await,
        }
    }

    /// Removes and returns a record in one step: of concurrent callers, one gets it.
    pub async fn take_record(
        &self,
        kind: RecordKind,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        match &*self.backend {
            BackendImpl::Memory(m) => Ok(m.take_record(kind, key)),
            BackendImpl::Redis(r) => r.take_record(kind, key).await,
        }
    }

    /// Creates a record only if there is none (a lock, when `ttl` is short): true if this
    /// call created it.
    pub async fn create_record(
        &self,
        kind: RecordKind,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        match &*self.backend {
            BackendImpl::Memory(m) => Ok(m.create_record(kind, key, value, ttl)),
            BackendImpl::Redis(r) => r.create_record(kind, key, value, ttl).await,
        }
    }

    /// Is this the Redis store (shared by several nodes)?
    pub fn is_shared(&self) -> bool {
        matches!(&*self.backend, BackendImpl::Redis(_))
    }

    /// Atomically marks an authorization code as used; only one caller gets [`CodeUse::First`].
    pub async fn use_code(&self, key: &str) -> Result<CodeUse, StoreError> {
        match &*self.backend {
            BackendImpl::Memory(m) => Ok(m.use_code(key)),
            BackendImpl::Redis(r) => r.use_code(key).await,
        }
    }

    /// Writes a store client; with `must_exist`, only over one still there (a PATCH racing a
    /// DELETE does not bring the client back), false otherwise. A client's `enabled` lives in the registry (`set_disabled`),
    /// which is what every read of the record reports: written here only when `enabled`
    /// is `Some` (a PATCH that does not name it leaves a concurrent disable alone), in the
    /// order that fails safe (a disable is in force before the record is written, an enable
    /// only after it).
    pub async fn put_client(
        &self,
        client: &Client,
        must_exist: bool,
        enabled: Option<bool>,
    ) -> Result<bool, StoreError> {
        if enabled == Some(false) {
            self.set_disabled(&client.client_id, true).await?;
        }
        let written = match &*self.backend {
            BackendImpl::Memory(m) => m.put_client(client, must_exist),
            BackendImpl::Redis(r) => r.put_client(client, must_exist).await?,
        };
        if written && enabled == Some(true) {
            self.set_disabled(&client.client_id, false).await?;
        }
        Ok(written)
    }

    /// The client `client_id` as every path looks it up: the file's (which wins on a clash),
    /// else the store's; enabled or not, as the store's registry says.
    pub async fn find_client<'a>(
        &self,
        config: &'a crate::config::Config,
        client_id: &str,
    ) -> Result<Option<std::borrow::Cow<'a, Client>>, StoreError> {
        use std::borrow::Cow;
        Ok(match config.client(client_id) {
            Some(c) => Some(Cow::Borrowed(c)),
            None => self.get_client(client_id).await?.map(Cow::Owned),
        })
    }

    /// A store client's record as written: its `enabled` is not the registry's (see
    /// [`TokenStore::get_client`]); for a caller that has the registry at hand.
    pub async fn get_client_record(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        Ok(match &*self.backend {
            BackendImpl::Memory(m) => m.get_client(client_id),
            BackendImpl::Redis(r) => r.get_client(client_id).await?,
        })
    }

    /// A store client, its `enabled` as the registry has it.
    pub async fn get_client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        let Some(mut client) = self.get_client_record(client_id).await? else {
            return Ok(None);
        };
        client.enabled = !self.is_disabled(client_id).await?;
        Ok(Some(client))
    }

    /// Deletes a store client (its tokens are the caller's to revoke, first); whether it
    /// existed. Its id stays disabled in the registry (a tombstone): a token issued by a
    /// request that looked the client up just before the delete is refused on every node.
    /// Creating a client with that id again clears it.
    pub async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError> {
        self.set_disabled(client_id, true).await?;
        Ok(match &*self.backend {
            BackendImpl::Memory(m) => m.delete_client(client_id),
            BackendImpl::Redis(r) => r.delete_client(client_id).await?,
        })
    }

    /// Every store client, each `enabled` as the registry has it.
    pub async fn list_clients(&self) -> Result<Vec<Client>, StoreError> {
        let mut all = match &*self.backend {
            BackendImpl::Memory(m) => m.list_clients(),
            BackendImpl::Redis(r) => r.list_clients().await?,
        };
        let disabled: std::collections::HashSet<String> =
            self.read_registry().await?.disabled.into_iter().collect();
        for c in &mut all {
            c.enabled = !disabled.contains(&c.client_id);
        }
        Ok(all)
    }

    /// Access tokens (with their hashes) of a client and/or a user; both `None` = all.
    pub async fn access_tokens(
        &self,
        client_id: Option<&str>,
        username: Option<&str>,
    ) -> Result<Vec<(TokenHash, Arc<AccessEntry>)>, StoreError> {
        match &*self.backend {
            BackendImpl::Memory(m) => Ok(m.access_tokens(client_id, username)),
            BackendImpl::Redis(r) => Ok(r
                .access_tokens(client_id, username)
                .await?
                .into_iter()
                .map(|(h, e)| (h, Arc::new(e)))
                .collect()),
        }
    }

    /// Can the access token `access` still be refreshed: is the refresh token issued with it
    /// (same grant, same instant) live? An expired access token stays in the admin listing
    /// while it can (SPEC §9).
    pub async fn refreshable(&self, access: &AccessToken) -> Result<bool, StoreError> {
        let now = crate::token::now_millis();
        let live = |e: &RefreshEntry| {
            !e.revoked
                && e.retired_at.is_none()
                && !e.token.is_expired(now)
                && e.token.issued_at == access.issued_at
        };
        match &*self.backend {
            BackendImpl::Memory(m) => Ok(m.grant_refresh(&access.grant_id).iter().any(live)),
            BackendImpl::Redis(r) => Ok(r.grant_refresh(&access.grant_id).await?.iter().any(live)),
        }
    }

    /// Revokes every token (access and refresh) issued to a client or to a user.
    pub async fn revoke_all_of(
        &self,
        client_id: Option<&str>,
        username: Option<&str>,
    ) -> Result<usize, StoreError> {
        let mut grants: Vec<String> = self
            .access_tokens(client_id, username)
            .await?
            .into_iter()
            .map(|(_, e)| e.token.grant_id.clone())
            .collect();
        grants.sort();
        grants.dedup();
        let mut n = 0;
        for grant in grants {
            n += self.revoke_grant(&grant).await?;
        }
        Ok(n)
    }

    /// For `rediss://`: fails if a reachable server's certificate does not verify (checked
    /// once at start; an unreachable server is not an error, see `TokenStore::open`).
    pub async fn verify_tls(config: &StoreConfig) -> Result<(), String> {
        match &config.backend {
            Backend::Redis(redis) => redis::conn::verify_tls(redis).await,
            Backend::Memory => Ok(()),
        }
    }

    /// Is the store reachable?
    pub async fn ping(&self) -> Result<(), StoreError> {
        match &*self.backend {
            BackendImpl::Memory(_) => Ok(()),
            BackendImpl::Redis(r) => r.ping().await,
        }
    }

    /// Whether this node can serve from the store: it answers, and (Redis with a local
    /// cache) the revocation subscription is established, without which a node could miss
    /// revocations once it caches. `Err` says what is missing, for `/readyz`.
    pub async fn ready(&self) -> Result<(), String> {
        self.ping().await.map_err(|e| e.to_string())?;
        match &self.cache {
            Some(cache) if !cache.stats().live => {
                Err("revocation subscription not established".to_owned())
            }
            _ => Ok(()),
        }
    }

    /// This node's metrics (the store records its own; the gateway shares the same set).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.cache.as_ref().map(|c| c.stats())
    }

    /// Drops a token from this node's cache at once (other nodes hear it on the channel).
    fn forget(&self, hash: &TokenHash) {
        if let Some(cache) = &self.cache {
            cache.invalidate(hash);
        }
    }
}

/// When a record stops being worth keeping: its expiry plus [`EXPIRED_RETENTION`].
fn keep_until(expires_at: Option<Millis>) -> Option<Millis> {
    expires_at.map(|at| at.saturating_add(EXPIRED_RETENTION.as_millis() as u64))
}

/// When an access token's record stops being worth keeping: as [`keep_until`], or as long
/// as the refresh token issued with it, which keeps it in the admin listing while its grant
/// can be refreshed (SPEC §9). A rotation cuts the old one back (see `scripts::ROTATE`).
fn access_keep_until(access: &AccessToken, refresh: Option<&RefreshToken>) -> Option<Millis> {
    match refresh {
        None => keep_until(access.expires_at),
        Some(r) => keep_until(access.expires_at)
            .zip(keep_until(r.expires_at))
            .map(|(a, b)| a.max(b)),
    }
}
