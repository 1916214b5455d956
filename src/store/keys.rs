//! The Redis key layout, with the hash tags that place keys on Redis Cluster slots.
//!
//! Everything one atomic step changes shares a hash tag (the part of a key in `{…}`), so it
//! sits in one slot, even on a cluster:
//! - a grant, under its [`SlotTag`] `{tttt}`: `P{tttt}g:<grant id>` (the set of its tokens),
//!   `P{tttt}at:<hex>` and `P{tttt}rt:<hex>` (its access and refresh tokens, with a retired
//!   token's sealed successor), and `P{tttt}code:<hex>` (the code that started it). A
//!   token's hash begins with its grant's tag, so a bearer lookup finds the slot by itself.
//! - other records under the first 4 hex digits of their (random) key, or under the tag
//!   their key already carries (an outbound credential's `{name}`).
//! - the admin listing's indexes, each a key of its own (so on a slot of its own, no tag
//!   needed): `Pci:<client>`, `Pui:<user>`, and `Pindexed` (the clients that have an index).
//!   They are written after the grant, pruned by score, and never decide an allow.
//! - registry clients `Pclient:<id>`, and `Pclients` (their ids), as before slot tags existed,
//!   so an upgrade keeps them.
//! - the registry's scopes and version, one hash `Pregistry`.
//! - guessing counters `Pthr:{<subject>}` (SPEC §5), one key per counter.
//!
//! Tags are random per grant (65,536 of them), so grants spread over every slot range of
//! the cluster. The prefix `P` may not contain braces (checked at config load).

use super::records::RecordKind;
use crate::token::{SlotTag, TokenHash};

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn access(&self, hash: &TokenHash) -> String {
        format!(
            "{}{{{}}}at:{}",
            self.prefix,
            hash.tag().hex(),
            hash.to_hex()
        )
    }

    pub fn refresh(&self, hash: &TokenHash) -> String {
        format!(
            "{}{{{}}}rt:{}",
            self.prefix,
            hash.tag().hex(),
            hash.to_hex()
        )
    }

    pub fn grant(&self, grant_id: &str) -> String {
        let tag = SlotTag::of_grant(grant_id).hex();
        format!("{}{{{tag}}}g:{grant_id}", self.prefix)
    }

    /// A record's key. Keys that name their own tag (`{…}`) keep it; the others (hex hashes)
    /// are tagged by their first 4 digits, which for a code is its grant's tag.
    pub fn record(&self, kind: RecordKind, key: &str) -> String {
        if key.contains('{') {
            format!("{}{}{key}", self.prefix, kind.key_part())
        } else {
            let tag = key.get(..4).unwrap_or(key);
            format!("{}{{{tag}}}{}{key}", self.prefix, kind.key_part())
        }
    }

    pub fn client_index(&self, client_id: &str) -> String {
        format!("{}ci:{client_id}", self.prefix)
    }

    pub fn user_index(&self, username: &str) -> String {
        format!("{}ui:{username}", self.prefix)
    }

    /// The set of client ids that have a [`Keys::client_index`]: the listing of every token.
    pub fn indexed_clients(&self) -> String {
        format!("{}indexed", self.prefix)
    }

    pub fn client(&self, client_id: &str) -> String {
        format!("{}client:{client_id}", self.prefix)
    }

    pub fn clients(&self) -> String {
        format!("{}clients", self.prefix)
    }

    /// Stored scopes and the registry version (`store::registry`): one key, one slot.
    pub fn registry(&self) -> String {
        format!("{}registry", self.prefix)
    }

    /// A guessing counter (`throttle`), tagged by its subject: counters spread over the
    /// cluster, and each script on one touches only it.
    pub fn throttle(&self, subject: &str) -> String {
        format!("{}thr:{{{subject}}}", self.prefix)
    }

    /// The revocation channel (Pub/Sub channels are not bound to slots).
    pub fn channel(&self) -> String {
        format!("{}revoked", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{SlotTag, generate_for, new_grant_id};

    /// The Redis Cluster slot of a key (CRC16/XMODEM of its hash tag, mod 16384), computed
    /// here independently of redis-rs's routing.
    fn slot(key: &str) -> u16 {
        let mut hashed = key.as_bytes();
        if let Some(open) = key.find('{')
            && let Some(len) = key[open + 1..].find('}')
            && len > 0
        {
            hashed = &key.as_bytes()[open + 1..open + 1 + len];
        }
        let mut crc: u16 = 0;
        for &b in hashed {
            crc ^= u16::from(b) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    crc << 1 ^ 0x1021
                } else {
                    crc << 1
                };
            }
        }
        crc % 16384
    }

    #[test]
    fn slot_function_matches_redis() {
        // Values from `CLUSTER KEYSLOT` on a Redis 7 server.
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
        // CRC16/XMODEM's check value.
        assert_eq!(slot("123456789"), 0x31c3);
        // An empty tag is no tag: the whole key is hashed.
        assert_ne!(slot("a{}x"), slot(""));
    }

    /// A grant with an access token, a refresh token, its successors and its code.
    fn grant_keys(keys: &Keys) -> (String, Vec<String>) {
        let grant_id = new_grant_id().expect("rng");
        let tag = SlotTag::of_grant(&grant_id);
        let token = |_| TokenHash::of(&generate_for(tag).expect("rng"));
        let (access, refresh, next_access, next_refresh, code) =
            (token(0), token(1), token(2), token(3), token(4));
        let all = vec![
            keys.grant(&grant_id),
            keys.access(&access),
            keys.refresh(&refresh),
            keys.access(&next_access),
            keys.refresh(&next_refresh),
            keys.record(RecordKind::Code, &code.to_hex()),
        ];
        (grant_id, all)
    }

    /// Every key each script touches, declared or built inside it from the grant's members,
    /// hashes to one slot (issue 10: scripts touch one slot only).
    #[test]
    fn every_script_touches_one_slot() {
        let keys = Keys::new("tollgate:");
        for _ in 0..200 {
            let (grant_id, grant) = grant_keys(&keys);
            // ROTATE: old refresh, grant, new access, new refresh, and the members it prunes;
            // REVOKE_GRANT: the grant and every member; issue's MULTI: the same keys;
            // USE_ONCE: the code, which must stay with the grant it starts.
            let slots: Vec<u16> = grant.iter().map(|k| slot(k)).collect();
            assert!(
                slots.iter().all(|s| *s == slots[0]),
                "grant {grant_id}: keys {grant:?} on slots {slots:?}"
            );
        }
        // Single-key scripts: any record, and credential records with their own tags.
        for key in [
            keys.record(RecordKind::CredentialLock, "{crm}"),
            keys.record(RecordKind::Credential, "{crm/alice}"),
        ] {
            assert!(key.contains('{'), "{key}");
        }
        assert_eq!(
            slot(&keys.record(RecordKind::Credential, "{crm}")),
            slot(&keys.record(RecordKind::CredentialLock, "{crm}"))
        );
    }

    #[test]
    fn grants_spread_over_the_cluster() {
        // A cluster's masters each hold a third of the slots; random grants land on all.
        let keys = Keys::new("tollgate:");
        let mut thirds = [0u32; 3];
        for _ in 0..3000 {
            let (_, grant) = grant_keys(&keys);
            thirds[(slot(&grant[0]) as usize * 3) / 16384] += 1;
        }
        assert!(thirds.iter().all(|n| *n > 800), "{thirds:?}");
        // Indexes and clients are not all in one slot either.
        assert_ne!(slot(&keys.client_index("a")), slot(&keys.client_index("b")));
        assert_ne!(slot(&keys.client("a")), slot(&keys.client("b")));
    }
}
