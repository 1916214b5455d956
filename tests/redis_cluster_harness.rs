//! The Redis Cluster and TLS harnesses on their own, no gateway: what the cluster tests rely
//! on (a whole cluster, a failover, a slot move, a pause) really happens.

mod common;

use std::time::Duration;

use common::{RedisCluster, RedisTls};

/// A key of the test, written on the master that owns its slot (no redirects), read back
/// through `redis-cli -c` from whichever node it asks first.
async fn write_on_master(cluster: &RedisCluster, key: &str, value: &str) -> u16 {
    let master = cluster.master_for_key(key.as_bytes()).await;
    let reply: String = cluster
        .command(master, &[b"SET", key.as_bytes(), value.as_bytes()])
        .await
        .unwrap_or_else(|e| panic!("SET on {master}: {e}"));
    assert_eq!(reply, "OK");
    // Replicated before the test goes on (a kill right after must not lose it).
    let acked: i64 = cluster
        .command(master, &[b"WAIT", b"1", b"1000"])
        .await
        .expect("WAIT");
    assert_eq!(acked, 1, "the replica of {master} did not acknowledge");
    master
}

/// Six nodes, three masters with one replica each, every slot served; a key written on its
/// master is what a cluster client reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_comes_up_whole_and_serves_keys_from_their_masters() {
    let cluster = RedisCluster::start().await;
    assert_eq!(cluster.urls().len(), 6);
    let topology = cluster.topology().await;
    assert_eq!(topology.masters.len(), 3, "{topology:?}");
    for master in topology.masters.keys() {
        assert_eq!(topology.replicas_of(*master).len(), 1, "{topology:?}");
    }
    for (i, key) in ["harness:a", "harness:b", "harness:c", "harness:d"]
        .iter()
        .enumerate()
    {
        let value = format!("v{i}");
        write_on_master(&cluster, key, &value).await;
        assert_eq!(cluster.cli(&["GET", key]).await, value);
    }
    // A master refuses a key of another master's slot (the client must follow MOVED).
    let key = b"harness:elsewhere";
    let owner = cluster.master_for_key(key).await;
    let other = cluster.masters().await.into_iter().find(|m| *m != owner);
    let other = other.expect("another master");
    let refused = cluster.command::<String>(other, &[b"GET", key]).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_ascii_uppercase().contains("MOVED")),
        "{refused:?}"
    );
}

/// SIGKILL a master: its replica becomes the master of its slots, the cluster says ok
/// again, and the key written before the kill is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_master_promotes_its_replica() {
    let mut cluster = RedisCluster::start().await;
    let key = "harness:failover";
    let master = write_on_master(&cluster, key, "kept").await;
    let replica = cluster.topology().await.replicas_of(master)[0];
    let promoted = cluster.kill_master(master).await;
    assert_eq!(promoted, replica);
    assert_eq!(cluster.master_for_key(key.as_bytes()).await, replica);
    assert!(!cluster.live_ports().contains(&master));
    assert_eq!(cluster.topology().await.masters.len(), 3);
    assert_eq!(cluster.cli(&["GET", key]).await, "kept");
}

/// A slot moved half-way is split between the two masters (clients follow ASK and still
/// read every key); finished, the new master owns the slot and every key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_slot_moves_keys_half_way_then_all() {
    let cluster = RedisCluster::start().await;
    // One hash tag: one slot.
    let keys: Vec<String> = (0..5).map(|i| format!("harness:{{moved}}:{i}")).collect();
    let mut from = 0;
    for key in &keys {
        from = write_on_master(&cluster, key, key).await;
    }
    let slot = cluster.slot_of(keys[0].as_bytes()).await;
    let to = cluster.masters().await.into_iter().find(|m| *m != from);
    let to = to.expect("another master");

    let pending = cluster.migrate_slot_halfway(slot, from, to).await;
    assert_eq!((pending.moved, pending.left), (3, 2), "{pending:?}");
    let count = |port: u16| {
        let slot = slot.to_string();
        let cluster = &cluster;
        async move {
            let n: i64 = cluster
                .command(port, &[b"CLUSTER", b"COUNTKEYSINSLOT", slot.as_bytes()])
                .await
                .expect("COUNTKEYSINSLOT");
            n
        }
    };
    assert_eq!((count(from).await, count(to).await), (2, 3));
    for key in &keys {
        assert_eq!(&cluster.cli(&["GET", key]).await, key, "half-way");
    }
    // Still the old master's slot until the move is finished.
    assert_eq!(cluster.master_for_key(keys[0].as_bytes()).await, from);

    cluster.finish_migration(pending).await;
    assert_eq!(cluster.master_for_key(keys[0].as_bytes()).await, to);
    assert_eq!((count(from).await, count(to).await), (0, 5));
    for key in &keys {
        assert_eq!(&cluster.cli(&["GET", key]).await, key, "after the move");
    }

    // And back in one go.
    cluster.migrate_slot(slot, to, from).await;
    assert_eq!(cluster.master_for_key(keys[0].as_bytes()).await, from);
    assert_eq!(count(from).await, 5);
}

/// Paused, no node answers (within the harness's 2 s); resumed, the cluster is whole and
/// serves the key written before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_all_silences_every_node_and_resume_all_brings_them_back() {
    let cluster = RedisCluster::start().await;
    write_on_master(&cluster, "harness:paused", "still here").await;
    cluster.pause_all();
    for port in cluster.live_ports() {
        let answer = cluster.command::<String>(port, &[b"PING"]).await;
        assert!(answer.is_err(), "{port} answered while paused: {answer:?}");
    }
    let topology = cluster.resume_all().await;
    assert_eq!(topology.masters.len(), 3, "{topology:?}");
    assert_eq!(cluster.cli(&["GET", "harness:paused"]).await, "still here");
}

/// Debian's redis-server here is built with TLS: the TLS-only server starts, and a client
/// trusting its CA gets an answer (the harness checks that before returning).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_redis_comes_up_with_its_own_ca() {
    let server = RedisTls::start().await;
    assert!(server.url().starts_with("rediss://localhost:"));
    assert_ne!(
        std::fs::read(server.ca()).expect("CA"),
        std::fs::read(server.unrelated_ca()).expect("other CA")
    );
    // Plain text to the TLS port is not a Redis conversation.
    let client = redis::Client::open(format!("redis://127.0.0.1:{}", server.port())).expect("url");
    let plain = client.get_multiplexed_async_connection();
    let plain = tokio::time::timeout(Duration::from_secs(2), plain).await;
    assert!(
        !matches!(plain, Ok(Ok(_))),
        "a plain connection to the TLS port worked"
    );
}
