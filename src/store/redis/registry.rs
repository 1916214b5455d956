//! The registry on Redis: one hash `Pregistry` holding every stored scope (field
//! `s:<lower-case name>`, the scope's JSON) and the version (field `v`). One key, so one slot:
//! a change and its version move together, also on a cluster.

use redis::AsyncCommands;

use super::{RedisStore, unavailable};
use crate::store::StoreError;
use crate::store::registry::StoredScope;

/// Sets (ARGV[2] not empty) or deletes field ARGV[1] of KEYS[1] and moves the version `v`;
/// returns how many fields it deleted or 1 for a set.
pub const REGISTRY_PUT: &str = r"
local n = 1
if ARGV[2] == '' then
  n = redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('HINCRBY', KEYS[1], 'v', 1)
return n";

fn field(name: &str) -> String {
    format!("s:{}", StoredScope::key(name))
}

impl RedisStore {
    pub async fn put_scope(&self, scope: &StoredScope) -> Result<(), StoreError> {
        let json = serde_json::to_string(scope).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.registry_put(&field(&scope.name), &json)
            .await
            .map(drop)
    }

    pub async fn delete_scope(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.registry_put(&field(name), "").await? > 0)
    }

    /// Moves the registry version (a store client changed).
    pub async fn bump_registry(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        conn.hincr::<_, _, _, ()>(self.keys.registry(), "v", 1)
            .await
            .map_err(unavailable)
    }

    async fn registry_put(&self, field: &str, value: &str) -> Result<i64, StoreError> {
        let mut conn = self.conn.clone();
        self.registry_put
            .key(self.keys.registry())
            .arg(field)
            .arg(value)
            .invoke_async::<i64>(&mut conn)
            .await
            .map_err(unavailable)
    }

    pub async fn list_scopes(&self) -> Result<Vec<StoredScope>, StoreError> {
        let mut conn = self.conn.clone();
        let all: Vec<(String, String)> = conn
            .hgetall(self.keys.registry())
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        for (field, json) in all {
            if field.starts_with("s:") {
                out.push(
                    serde_json::from_str(&json)
                        .map_err(|e| StoreError::Corrupt(format!("scope {field}: {e}")))?,
                );
            }
        }
        out.sort_by(|a: &StoredScope, b| StoredScope::key(&a.name).cmp(&StoredScope::key(&b.name)));
        Ok(out)
    }

    pub async fn registry_version(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let v: Option<u64> = conn
            .hget(self.keys.registry(), "v")
            .await
            .map_err(unavailable)?;
        Ok(v.unwrap_or(0))
    }
}
