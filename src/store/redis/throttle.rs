//! The guessing-throttle counters on Redis (SPEC §5 "Guessing", §11): one hash per counter
//! subject, `P thr:{<subject>}` = {f: failures, i: checks in flight}, expiring when its fixed
//! window ends (the expiry is set when the window starts).
//!
//! Every script here touches exactly one key, and the subject is the key's hash tag: in a
//! Redis Cluster the counters of one check (pair, account, address) sit in different slots,
//! so `throttle` takes them one by one and gives back those already taken when a later one
//! refuses. A key holds nothing but counts, so the scripts need no other key to be right.
//!
//! Unlike the in-process counters, a window's checks in flight end with its key; a check
//! still running then has its failure counted in a new window that its answer starts, so
//! no failure is lost, and at a window's edge at most a limit's worth more can be verified,
//! as with any fixed window.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::super::counters::Count;
use super::super::records::ttl_millis;
use super::{RedisStore, unavailable};
use crate::store::StoreError;

/// Reserves one check: refused with the window's remaining time (ms, > 0) while failures
/// have reached the limit; -1 (busy) while failures and checks in flight together fill it;
/// else counted (0). A new window gets its expiry here. With ARGV[3] = '1' the check is
/// counted as answered and failed at once (parked authorization requests, which nobody
/// answers later), else as in flight.
///
/// KEYS: 1 the counter. ARGV: 1 limit, 2 window ms, 3 '1' = count as a failure now.
const TAKE_LUA: &str = r"
local c = redis.call('HMGET', KEYS[1], 'f', 'i')
local f = tonumber(c[1]) or 0
local i = tonumber(c[2]) or 0
local limit = tonumber(ARGV[1])
if f >= limit then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    ttl = tonumber(ARGV[2])
  end
  return math.max(ttl, 1)
end
if f + i >= limit then return -1 end
if ARGV[3] == '1' then
  redis.call('HINCRBY', KEYS[1], 'f', 1)
else
  redis.call('HINCRBY', KEYS[1], 'i', 1)
end
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0";

/// Answers one reserved check: one fewer in flight (never below 0), one more failure if it
/// failed. A counter left with neither is deleted, so checks that succeed (and the give-backs
/// of a refused take) leave no key behind. A failure whose window has already ended starts a
/// new one, with its own expiry: the failure is never lost.
///
/// KEYS: 1 the counter. ARGV: 1 '1' = failed, 2 window ms.
const FINISH_LUA: &str = r"
local c = redis.call('HMGET', KEYS[1], 'f', 'i')
local f = tonumber(c[1]) or 0
local i = tonumber(c[2]) or 0
if i > 0 then i = i - 1 end
if ARGV[1] == '1' then f = f + 1 end
if f == 0 and i == 0 then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('HSET', KEYS[1], 'f', f, 'i', i)
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1";

/// Looks without counting: the window's remaining time (ms, > 0) if failures have reached
/// the limit, else 0.
///
/// KEYS: 1 the counter. ARGV: 1 limit.
const PEEK_LUA: &str = r"
local f = tonumber(redis.call('HGET', KEYS[1], 'f')) or 0
if f < tonumber(ARGV[1]) then return 0 end
return math.max(redis.call('PTTL', KEYS[1]), 1)";

// Statics rather than fields of `RedisStore`: each script's SHA1 is computed once, and the
// scripts stay in the file that uses them.
static TAKE: LazyLock<Script> = LazyLock::new(|| Script::new(TAKE_LUA));
static FINISH: LazyLock<Script> = LazyLock::new(|| Script::new(FINISH_LUA));
static PEEK: LazyLock<Script> = LazyLock::new(|| Script::new(PEEK_LUA));

impl RedisStore {
    /// The key of a counter: the subject is its hash tag, so counters spread over a
    /// cluster's slots (the prefix never contains braces).
    fn counter_key(&self, subject: &str) -> String {
        self.keys.throttle(subject)
    }

    pub async fn counter_take(
        &self,
        subject: &str,
        limit: u32,
        window: Duration,
        failed_now: bool,
    ) -> Result<Count, StoreError> {
        let mut conn = self.conn.clone();
        let outcome: i64 = TAKE
            .key(self.counter_key(subject))
            .arg(limit)
            .arg(ttl_millis(window))
            .arg(if failed_now { "1" } else { "0" })
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(match outcome {
            0 => Count::Taken,
            wait if wait > 0 => Count::Refused(Duration::from_millis(wait as u64)),
            _ => Count::Busy,
        })
    }

    pub async fn counter_finish(
        &self,
        subject: &str,
        failed: bool,
        window: Duration,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        FINISH
            .key(self.counter_key(subject))
            .arg(if failed { "1" } else { "0" })
            .arg(ttl_millis(window))
            .invoke_async::<i64>(&mut conn)
            .await
            .map(drop)
            .map_err(unavailable)
    }

    pub async fn counter_peek(
        &self,
        subject: &str,
        limit: u32,
    ) -> Result<Option<Duration>, StoreError> {
        let mut conn = self.conn.clone();
        let wait: i64 = PEEK
            .key(self.counter_key(subject))
            .arg(limit)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok((wait > 0).then(|| Duration::from_millis(wait as u64)))
    }
}
