//! The Lua scripts of the Redis store: each is one atomic step on the server.

/// Sets a field only on a record that still exists, so revoking never resurrects an expired
/// key as a TTL-less stub.
pub const SET_IF_EXISTS: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1";

/// Stores a new grant's access token and, when there is one, its refresh token, all or
/// nothing. A script rather than MULTI/EXEC: on a cluster, a script sent to a node that no
/// longer owns the slot gets a plain MOVED, which the client follows and learns from,
/// where a transaction is only aborted.
///
/// KEYS: 1 access, 2 grant, 3 refresh (or the access key again when there is none).
/// ARGV: 1 access JSON, 2 access keep-until or '', 3 access hex, 4 refresh JSON or '',
/// 5 refresh keep-until or '', 6 refresh hex, 7 grant keep-until or '' (never).
pub const ISSUE: &str = r"
redis.call('HSET', KEYS[1], 'r', ARGV[1])
if ARGV[2] ~= '' then redis.call('PEXPIREAT', KEYS[1], ARGV[2]) end
redis.call('SADD', KEYS[2], 'a:' .. ARGV[3])
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[3], 'r', ARGV[4])
  if ARGV[5] ~= '' then redis.call('PEXPIREAT', KEYS[3], ARGV[5]) end
  redis.call('SADD', KEYS[2], 'r:' .. ARGV[6])
end
if ARGV[7] == '' then
  redis.call('PERSIST', KEYS[2])
else
  redis.call('PEXPIREAT', KEYS[2], ARGV[7])
end
return 1";

/// Adds a token to an admin index (a sorted set scored by when the token's record expires)
/// and prunes the members whose records are gone. KEYS: 1 index. ARGV: 1 score, 2 hex, 3 now.
pub const INDEX: &str = r"
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
return 1";

/// Stores a record with its expiry. KEYS: 1 record. ARGV: 1 value, 2 ttl ms.
pub const PUT: &str = r"
redis.call('HSET', KEYS[1], 'r', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1";

/// Removes a record and returns its value: of concurrent callers, one gets it.
pub const TAKE: &str = r"
local value = redis.call('HGET', KEYS[1], 'r')
redis.call('DEL', KEYS[1])
return value";

/// One refresh-token rotation, all or nothing (see `TokenStore::rotate_refresh`).
/// Returns 1 = rotated, 0 = retired before, -1 = missing or expired, -2 = it or its grant
/// was revoked. Every check comes before the first write, and the old token is retired by
/// the last essential write: Redis does not roll a script back, so if a write fails (out of
/// memory, say) the old token stays live and the client's retry is an ordinary refresh.
/// Every key it touches is the grant's, in the grant's slot (`store::keys`); it runs after
/// or before a [`REVOKE_GRANT`] of the same grant, never during it.
///
/// KEYS: 1 old refresh, 2 grant, 3 new access, 4 new refresh (or the old one again when
/// none is issued).
/// ARGV: 1 now, 2 prefix, 3 grace ms, 4 retention ms, 5 access JSON, 6 access expiry or '',
/// 7 access hex, 8 refresh JSON or '', 9 refresh expiry or '', 10 refresh hex,
/// 11 successor or '', 12 grant expiry or '' (never).
pub const ROTATE: &str = r"
local now = tonumber(ARGV[1])
local old = redis.call('HMGET', KEYS[1], 'r', 'retired', 'x')
if not old[1] then return -1 end
if old[3] or redis.call('SISMEMBER', KEYS[2], 'x') == 1 then return -2 end
if old[2] then return 0 end
local expires = cjson.decode(old[1]).expires_at
if type(expires) == 'number' and expires <= now then return -1 end

redis.call('HSET', KEYS[3], 'r', ARGV[5])
if ARGV[6] ~= '' then redis.call('PEXPIREAT', KEYS[3], ARGV[6]) end
redis.call('SADD', KEYS[2], 'a:' .. ARGV[7])
if ARGV[8] ~= '' then
  redis.call('HSET', KEYS[4], 'r', ARGV[8])
  if ARGV[9] ~= '' then redis.call('PEXPIREAT', KEYS[4], ARGV[9]) end
  redis.call('SADD', KEYS[2], 'r:' .. ARGV[10])
end
-- The grant set lives as long as its longest-lived member: extend, never shorten.
local ttl = redis.call('PTTL', KEYS[2])
if ARGV[12] == '' then
  redis.call('PERSIST', KEYS[2])
elseif ttl ~= -1 then
  redis.call('PEXPIREAT', KEYS[2], math.max(tonumber(ARGV[12]), now + math.max(ttl, 0)))
end
if ARGV[11] ~= '' then redis.call('HSET', KEYS[1], 's', ARGV[11]) end
redis.call('HSET', KEYS[1], 'retired', ARGV[1])

-- Prune members revoking the grant no longer needs to reach: gone, expired (a record in its
-- retention hour has less than that left to live), or retired past the grace window. The
-- older access tokens were kept as long as the refresh token issued with them (for the
-- admin listing); that one is retired now, so they are cut back to the plain retention
-- hour after their expiry, and go at once when that hour is over.
local retention = tonumber(ARGV[4])
local retired_before = now - tonumber(ARGV[3])
for _, m in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local kind = string.sub(m, 1, 2)
  if kind == 'a:' or kind == 'r:' then
    local hex = string.sub(m, 3)
    local key = ARGV[2] .. '{' .. string.sub(hex, 1, 4) .. '}' .. (kind == 'a:' and 'at:' or 'rt:') .. hex
    local left = redis.call('PTTL', key)
    if kind == 'a:' and hex ~= ARGV[7] and left ~= -2 then
      -- After the retiring write: nothing here may raise (a record that does not decode
      -- is left as it is).
      local record = redis.call('HGET', key, 'r')
      local ok, decoded = false, nil
      if record then ok, decoded = pcall(cjson.decode, record) end
      local exp = ok and type(decoded) == 'table' and decoded.expires_at
      if type(exp) == 'number' and (left == -1 or now + left > exp + retention) then
        if exp + retention <= now then
          redis.call('DEL', key)
          left = -2
        else
          redis.call('PEXPIREAT', key, exp + retention)
          left = exp + retention - now
        end
      end
    end
    local drop = left == -2 or (left >= 0 and left < retention)
    if not drop and kind == 'r:' then
      local at = redis.call('HGET', key, 'retired')
      drop = at and tonumber(at) <= retired_before
    end
    if drop then redis.call('SREM', KEYS[2], m) end
  end
end
return 1";

/// Revokes a grant whole, in one step: marks it (member `x`, so a later rotation fails)
/// and every token it still has; returns the hex hashes of the access tokens it revoked,
/// for the caches. Atomic with [`ROTATE`] (same slot, one script each), so a refresh racing
/// a revocation either ran before it (its tokens are members, and are revoked here) or
/// after it (and fails): no live token is left behind.
///
/// KEYS: 1 grant. ARGV: 1 now, 2 prefix.
pub const REVOKE_GRANT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
redis.call('SADD', KEYS[1], 'x')
local revoked = {}
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local kind = string.sub(m, 1, 2)
  if kind == 'a:' or kind == 'r:' then
    local hex = string.sub(m, 3)
    local key = ARGV[2] .. '{' .. string.sub(hex, 1, 4) .. '}' .. (kind == 'a:' and 'at:' or 'rt:') .. hex
    if redis.call('EXISTS', key) == 1 then
      redis.call('HSETNX', key, 'x', ARGV[1])
      if kind == 'a:' then revoked[#revoked + 1] = hex end
    end
  end
end
return revoked";

/// -1 = no such code; 1 = this call used it; 0 = it was used before.
pub const USE_ONCE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('HSETNX', KEYS[1], 'used', ARGV[1])";

/// Creates record KEYS[1] with value ARGV[1] and expiry ARGV[2] ms unless it exists: 1 if
/// created, 0 if not (a credential's fetch lock, SPEC §8). One key, so one slot.
pub const CREATE_ONCE: &str = r"
if redis.call('HSETNX', KEYS[1], 'r', ARGV[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";
