//! The registry on Redis: one hash `Pregistry` holding every stored scope (field
//! `s:<lower-case name>`, the scope's JSON), every disabled store client (field `d:<id>`) and
//! the version (field `v`). One key, so one slot: a change and its version move together,
//! also on a cluster, and one HGETALL reads a consistent snapshot.

use redis::AsyncCommands;

use super::{RedisStore, unavailable};
use crate::store::StoreError;
use crate::store::registry::{ScopeWrite, Snapshot, StoredScope};

/// Writes field ARGV[1] of KEYS[1], moves the version `v` and sets the nonce `n` to ARGV[4].
/// ARGV[2] is the value ('' = delete the field); ARGV[3] is the condition: 'nx' (only if
/// absent), 'xx' (only if present) or ''. Returns 0 when the condition fails (nothing
/// written, version kept), otherwise 1 (for a delete: how many fields went, the version
/// moving either way).
pub const REGISTRY_PUT: &str = r"
local exists = redis.call('HEXISTS', KEYS[1], ARGV[1])
if (ARGV[3] == 'nx' and exists == 1) or (ARGV[3] == 'xx' and exists == 0) then
  return 0
end
local n = 1
if ARGV[2] == '' then
  n = redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('HSET', KEYS[1], 'n', ARGV[4])
return n";

/// 64 random bits as hex: a write's nonce (see `Snapshot::nonce`).
fn nonce() -> String {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    format!("{:016x}", u64::from_le_bytes(bytes))
}

fn scope_field(name: &str) -> String {
    format!("s:{}", StoredScope::key(name))
}

fn disabled_field(client_id: &str) -> String {
    format!("d:{client_id}")
}

impl RedisStore {
    pub async fn put_scope(
        &self,
        scope: &StoredScope,
        how: ScopeWrite,
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(scope).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let condition = match how {
            ScopeWrite::Create => "nx",
            ScopeWrite::Replace => "xx",
        };
        let written = self
            .registry_put(&scope_field(&scope.name), &json, condition)
            .await?;
        Ok(written > 0)
    }

    pub async fn delete_scope(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.registry_put(&scope_field(name), "", "").await? > 0)
    }

    pub async fn set_disabled(&self, client_id: &str, disabled: bool) -> Result<(), StoreError> {
        let value = if disabled { "1" } else { "" };
        self.registry_put(&disabled_field(client_id), value, "")
            .await
            .map(drop)
    }

    async fn registry_put(
        &self,
        field: &str,
        value: &str,
        condition: &str,
    ) -> Result<i64, StoreError> {
        let mut conn = self.conn.clone();
        self.registry_put
            .key(self.keys.registry())
            .arg(field)
            .arg(value)
            .arg(condition)
            .arg(nonce())
            .invoke_async::<i64>(&mut conn)
            .await
            .map_err(unavailable)
    }

    pub async fn read_registry(&self) -> Result<Snapshot, StoreError> {
        let mut conn = self.conn.clone();
        let all: Vec<(String, String)> = conn
            .hgetall(self.keys.registry())
            .await
            .map_err(unavailable)?;
        let mut snapshot = Snapshot::default();
        for (field, value) in all {
            if let Some(id) = field.strip_prefix("d:") {
                snapshot.disabled.push(id.to_owned());
            } else if field.starts_with("s:") {
                // One unreadable scope is skipped (as one that does not compile is), not
                // every node's registry lost to it.
                match serde_json::from_str(&value) {
                    Ok(scope) => snapshot.scopes.push(scope),
                    Err(e) => {
                        tracing::warn!(field = %field, error = %e, "unreadable stored scope skipped")
                    }
                }
            } else if field == "n" {
                snapshot.nonce = value;
            } else if field == "v" {
                snapshot.version = value
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("registry version {value:?}")))?;
            }
        }
        snapshot
            .scopes
            .sort_by(|a, b| StoredScope::key(&a.name).cmp(&StoredScope::key(&b.name)));
        Ok(snapshot)
    }

    pub async fn registry_stamp(&self) -> Result<(u64, String), StoreError> {
        let mut conn = self.conn.clone();
        let (v, n): (Option<u64>, Option<String>) = conn
            .hmget(self.keys.registry(), &["v", "n"])
            .await
            .map_err(unavailable)?;
        Ok((v.unwrap_or(0), n.unwrap_or_default()))
    }

    pub async fn is_disabled(&self, client_id: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        conn.hexists(self.keys.registry(), disabled_field(client_id))
            .await
            .map_err(unavailable)
    }
}
