//! The short-lived records on Redis (SPEC §5 pending requests, sessions and codes; §8
//! credential tokens, locks and connect states): one hash per record, field `r`, with its
//! own expiry.

use std::time::Duration;

use redis::AsyncCommands;

use super::super::records::{CodeUse, RecordKind, ttl_millis};
use super::{RedisStore, unavailable};
use crate::store::StoreError;
use crate::token::now_millis;

impl RedisStore {
    pub async fn put_record(
        &self,
        kind: RecordKind,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        self.put
            .key(self.keys.record(kind, key))
            .arg(value)
            .arg(ttl_millis(ttl))
            .invoke_async::<i64>(&mut conn)
            .await
            .map(drop)
            .map_err(unavailable)
    }

    pub async fn get_record(
        &self,
        kind: RecordKind,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        conn.hget(self.keys.record(kind, key), "r")
            .await
            .map_err(unavailable)
    }

    /// Removes and returns a record in one step (`scripts::TAKE`): whoever takes it has it
    /// alone.
    pub async fn take_record(
        &self,
        kind: RecordKind,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        self.take
            .key(self.keys.record(kind, key))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
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
        let key = self.keys.record(kind, key);
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
        conn.del::<_, ()>(self.keys.record(kind, key))
            .await
            .map_err(unavailable)
    }

    pub async fn use_code(&self, key: &str) -> Result<CodeUse, StoreError> {
        let mut conn = self.conn.clone();
        let outcome: i64 = self
            .use_once
            .key(self.keys.record(RecordKind::Code, key))
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
}
