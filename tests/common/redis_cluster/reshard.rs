//! Moving a slot by hand, the way `redis-cli --cluster reshard` does, with a stop half-way.

use super::{RedisCluster, cmd, query};

/// A slot caught between two masters by [`RedisCluster::migrate_slot_halfway`]: MIGRATING on
/// `from`, IMPORTING on `to`, `moved` keys already on `to` and `left` still on `from`.
#[derive(Debug)]
pub struct SlotMove {
    pub slot: u16,
    pub from: u16,
    pub to: u16,
    pub moved: usize,
    pub left: usize,
}

impl RedisCluster {
    /// Moves `slot` from master `from` to master `to` completely.
    pub async fn migrate_slot(&self, slot: u16, from: u16, to: u16) {
        let pending = self.migrate_slot_halfway(slot, from, to).await;
        self.finish_migration(pending).await;
    }

    /// The first half of the resharding steps `redis-cli --cluster reshard` takes:
    /// `CLUSTER SETSLOT slot IMPORTING` on `to`, `MIGRATING` on `from`, then `MIGRATE`s half
    /// of the slot's keys (rounded up). The slot stays split until
    /// [`RedisCluster::finish_migration`]: clients meet `ASK` redirects (and `TRYAGAIN` for
    /// commands whose keys are on both sides).
    pub async fn migrate_slot_halfway(&self, slot: u16, from: u16, to: u16) -> SlotMove {
        let topology = self.topology().await;
        assert_eq!(topology.owner(slot), Some(from), "{topology:?}");
        assert!(topology.masters.contains_key(&to), "{to} is not a master");
        let slot_arg = slot.to_string();
        let (from_id, to_id) = (self.id(from), self.id(to));
        self.must(to, &["CLUSTER", "SETSLOT", &slot_arg, "IMPORTING", from_id])
            .await;
        self.must(from, &["CLUSTER", "SETSLOT", &slot_arg, "MIGRATING", to_id])
            .await;
        let keys = self.keys_in_slot(from, slot).await;
        let moved = keys.len().div_ceil(2);
        self.migrate_keys(from, to, &keys[..moved]).await;
        SlotMove {
            slot,
            from,
            to,
            moved,
            left: keys.len() - moved,
        }
    }

    /// Moves whatever keys are still on the old side (the gateway may have written more
    /// meanwhile), then `CLUSTER SETSLOT slot NODE to` on `to`, `from` and every other
    /// master; returns once every node agrees that `to` owns the slot.
    pub async fn finish_migration(&self, pending: SlotMove) {
        let SlotMove { slot, from, to, .. } = pending;
        let mut rounds = 0;
        loop {
            let keys = self.keys_in_slot(from, slot).await;
            if keys.is_empty() {
                break;
            }
            rounds += 1;
            assert!(rounds <= 100, "slot {slot} keeps filling up on {from}");
            self.migrate_keys(from, to, &keys).await;
        }
        let slot_arg = slot.to_string();
        let to_id = self.id(to);
        let mut order = vec![to, from];
        order.extend(
            self.masters()
                .await
                .into_iter()
                .filter(|m| ![to, from].contains(m)),
        );
        for port in order {
            self.must(port, &["CLUSTER", "SETSLOT", &slot_arg, "NODE", to_id])
                .await;
        }
        self.wait_for("the moved slot's new owner to be agreed", |t| {
            t.owner(slot) == Some(to)
        })
        .await;
    }

    async fn keys_in_slot(&self, port: u16, slot: u16) -> Vec<Vec<u8>> {
        let args = ["CLUSTER", "GETKEYSINSLOT", &slot.to_string(), "1000"];
        query(port, &cmd(&args))
            .await
            .unwrap_or_else(|e| panic!("CLUSTER GETKEYSINSLOT on {port}: {e}"))
    }

    async fn migrate_keys(&self, from: u16, to: u16, keys: &[Vec<u8>]) {
        if keys.is_empty() {
            return;
        }
        let mut command = cmd(&["MIGRATE", "127.0.0.1", &to.to_string(), "", "0", "1500"]);
        command.arg("KEYS");
        for key in keys {
            command.arg(&key[..]);
        }
        // NOKEY: every key named had expired or been deleted meanwhile; nothing to move.
        let reply: String = query(from, &command)
            .await
            .unwrap_or_else(|e| panic!("MIGRATE from {from} to {to}: {e}"));
        assert!(reply == "OK" || reply == "NOKEY", "MIGRATE said {reply}");
    }
}
