//! End-to-end: two gateway nodes on one six-node Redis Cluster (SPEC §2 `mode = "cluster"`,
//! §11). Every two-node scenario of the single-Redis tests (`two_nodes/`) runs here too;
//! then what only a cluster does: a master dies under load, a slot of live grants moves
//! while the gateway serves, and every node stops answering at once.

mod common;
#[macro_use]
mod two_nodes;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{
    Gateway, Resp, Store, access_token, assert_invalid_token, get_with_token, poll, random_token,
    refresh_token,
};
use two_nodes::{Nodes, assert_unavailable, protected};

scenarios_on!(Store::cluster().await =>
    token_issued_on_one_node_works_on_the_other,
    revocation_on_one_node_reaches_the_other_within_one_second,
    a_flow_may_hop_between_nodes,
    code_replayed_on_the_other_node_revokes_everywhere,
    revocation_on_a_holds_on_b,
    refresh_retried_on_the_other_node_within_grace,
    clients_are_shared_by_every_node,
    a_token_deleted_on_one_node_is_refused_by_another_within_a_second,
);

/// The longest a node may take to serve again after a master died (issue 10).
const RECOVERY: Duration = Duration::from_secs(15);
/// The longest a revocation may take to hold on every node (SPEC §11).
const REVOCATION: Duration = Duration::from_secs(1);

/// This test's keys, each with the master holding it.
async fn test_keys(cl: &Nodes) -> Vec<(u16, Vec<u8>)> {
    let pattern = format!("{}*", cl.store.prefix);
    cl.store.redis_cluster().keys(&pattern).await
}

/// The master whose loss hurts this test most: the one carrying the gateways' revocation
/// subscriptions (so they must notice they may miss messages), then the one holding most of
/// this test's keys (so requests meet the dead shard).
async fn victim(cl: &Nodes) -> u16 {
    let cluster = cl.store.redis_cluster();
    let mut keys: BTreeMap<u16, usize> = BTreeMap::new();
    for (master, _) in test_keys(cl).await {
        *keys.entry(master).or_default() += 1;
    }
    let mut best = None;
    for master in cluster.masters().await {
        let weight = (
            cluster.pubsub_clients(master).await,
            keys.get(&master).copied().unwrap_or(0),
        );
        if best.is_none_or(|(_, w)| weight > w) {
            best = Some((master, weight));
        }
    }
    let (master, (subscriptions, keys)) = best.expect("a master");
    eprintln!("killing master {master}: {subscriptions} subscriptions, {keys} of the test's keys");
    master
}

/// `POST /oauth/revoke` on `node` until it says 200 (503 while the store recovers);
/// returns when it did.
async fn revoke_when_possible(cl: &Nodes, node: &Gateway, token: &str) -> Instant {
    let done = poll(RECOVERY, || async {
        let resp = cl.revoke_request(node, token).await;
        match resp.status {
            200 => Some(Instant::now()),
            503 => None,
            _ => panic!("revocation after the failover: {resp}"),
        }
    })
    .await;
    done.unwrap_or_else(|| panic!("no revocation accepted within {RECOVERY:?} of the failover"))
}

/// `node` stops allowing `token` within [`REVOCATION`] of `revoked_at` and never allows it
/// again; once its store answers, it says "token revoked".
async fn assert_refused_from(node: &Gateway, token: &str, revoked_at: Instant) {
    let url = protected(node);
    let refused = poll(REVOCATION.saturating_sub(revoked_at.elapsed()), || async {
        (get_with_token(&url, Some(token)).await.status != 200).then_some(())
    })
    .await;
    assert!(
        refused.is_some(),
        "{url} still allows a token {REVOCATION:?} after its revocation"
    );
    let settled = poll(RECOVERY, || async {
        let resp = get_with_token(&url, Some(token)).await;
        assert!(matches!(resp.status, 401 | 503), "after revocation: {resp}");
        (resp.status == 401).then_some(resp)
    })
    .await;
    let resp = settled.unwrap_or_else(|| panic!("{url} still 503 {RECOVERY:?} on"));
    assert_invalid_token(&resp, "token revoked");
}

/// What one request of the load saw.
struct Sample {
    at: Instant,
    revoked: bool,
    status: u16,
}

/// Client tasks presenting `live` and `revoked` tokens to `urls` in turn until `stop`.
/// A 503 must be `temporarily_unavailable` with `Retry-After` (checked in the task).
fn start_load(
    urls: Vec<String>,
    live: Vec<String>,
    revoked: Vec<String>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<Vec<Sample>>> {
    let tokens: Vec<(String, bool)> = live
        .into_iter()
        .map(|t| (t, false))
        .chain(revoked.into_iter().map(|t| (t, true)))
        .collect();
    (0..4)
        .map(|task| {
            let (urls, tokens) = (urls.clone(), tokens.clone());
            let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
            tokio::spawn(async move {
                let mut samples = Vec::new();
                let mut i = task;
                while !stop.load(Ordering::Relaxed) {
                    let (token, revoked) = &tokens[i % tokens.len()];
                    let url = &urls[i % urls.len()];
                    let resp = get_with_token(url, Some(token)).await;
                    if resp.status == 503 {
                        assert_unavailable(&resp);
                    }
                    samples.push(Sample {
                        at: Instant::now(),
                        revoked: *revoked,
                        status: resp.status,
                    });
                    sent.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                samples
            })
        })
        .collect()
}

/// A master SIGKILLed while four clients keep presenting tokens to both nodes: every answer
/// is 200 or 503 (never 401 for a good token), a token revoked before the kill is never
/// allowed, and within 15 s of the kill every good token is served again by both nodes, and
/// new tokens are issued, without restarting either gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_killed_under_load_never_allows_a_revoked_token_and_recovers() {
    let mut cl = Nodes::start(Store::cluster().await).await;
    let mut live = Vec::new();
    for _ in 0..6 {
        live.push(cl.client_token(&cl.a).await);
    }
    let mut revoked = Vec::new();
    for _ in 0..3 {
        let token = cl.client_token(&cl.a).await;
        cl.b.assert_cached("/abc/x", &token).await;
        cl.revoke(&cl.a, &token).await;
        revoked.push(token);
    }
    for node in [&cl.a, &cl.b] {
        for token in &revoked {
            let gone = common::time_until_status(&protected(node), token, 401, REVOCATION).await;
            assert!(gone.is_some(), "revoked before the kill, still allowed");
        }
    }
    let victim = victim(&cl).await;

    let (stop, sent) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let urls = vec![protected(&cl.a), protected(&cl.b)];
    let load = start_load(
        urls,
        live.clone(),
        revoked,
        Arc::clone(&stop),
        Arc::clone(&sent),
    );
    let warm = poll(Duration::from_secs(10), || async {
        (sent.load(Ordering::Relaxed) >= 20).then_some(())
    })
    .await;
    assert!(warm.is_some(), "the load did not get going");

    let killed_at = Instant::now();
    cl.store.redis_cluster_mut().kill_master(victim).await;
    let recovered = poll(RECOVERY.saturating_sub(killed_at.elapsed()), || async {
        for node in [&cl.a, &cl.b] {
            for token in &live {
                if get_with_token(&protected(node), Some(token)).await.status != 200 {
                    return None;
                }
            }
        }
        Some(killed_at.elapsed())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut samples = Vec::new();
    for task in load {
        samples.extend(task.await.expect("a load task panicked"));
    }
    let took = recovered
        .unwrap_or_else(|| panic!("not every good token served {RECOVERY:?} after the kill"));

    let during = samples.iter().filter(|s| s.at >= killed_at).count();
    assert!(during > 0, "no request was made during the outage");
    let unavailable = samples.iter().filter(|s| s.status == 503).count();
    eprintln!(
        "{} requests, {during} after the kill, {unavailable} answered 503; \
         every good token served again {took:?} after the kill",
        samples.len()
    );
    for s in &samples {
        if s.revoked {
            assert!(
                matches!(s.status, 401 | 503),
                "a revoked token got {}",
                s.status
            );
        } else {
            assert!(
                matches!(s.status, 200 | 503),
                "a good token got {}",
                s.status
            );
        }
    }
    let fresh = cl.client_token(&cl.b).await;
    let resp = get_with_token(&protected(&cl.a), Some(&fresh)).await;
    assert_eq!(
        resp.status, 200,
        "a token issued after the failover ({took:?}): {resp}"
    );
}

/// Tokens cached on each node, a master killed, and right after the failover a token
/// revoked on A and another on B: the other node stops allowing it within 1 s of the
/// revocation's answer (it may not yet hear the new master: then it must not trust its
/// cache), and says "token revoked" once its store answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_just_after_a_failover_holds_on_both_nodes_within_one_second() {
    let mut cl = Nodes::start(Store::cluster().await).await;
    let on_b = cl.client_token(&cl.a).await;
    let on_a = cl.client_token(&cl.b).await;
    cl.b.assert_cached("/abc/x", &on_b).await;
    cl.a.assert_cached("/abc/x", &on_a).await;
    let victim = victim(&cl).await;
    cl.store.redis_cluster_mut().kill_master(victim).await;

    let revoked_at = revoke_when_possible(&cl, &cl.a, &on_b).await;
    assert_refused_from(&cl.b, &on_b, revoked_at).await;
    assert_refused_from(&cl.a, &on_b, revoked_at).await;
    let revoked_at = revoke_when_possible(&cl, &cl.b, &on_a).await;
    assert_refused_from(&cl.a, &on_a, revoked_at).await;
    assert_refused_from(&cl.b, &on_a, revoked_at).await;
}

/// Every slot holding this test's grants is moved to another master with the gateway
/// serving while each slot is split (MIGRATING / IMPORTING, half its keys moved): meanwhile
/// every answer is right or 503 (a good token never 401, a bogus one never 200) and some are
/// served; afterwards no key is lost, and a node with an empty cache accepts every access
/// token and redeems every refresh token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_of_live_grants_moved_while_serving_lose_no_grant() {
    let cl = Nodes::start(Store::cluster().await).await;
    let mut grants = Vec::new();
    for _ in 0..6 {
        grants.push(cl.password_token(&cl.a).await);
    }
    let cluster = cl.store.redis_cluster();
    let mut lasting = BTreeSet::new();
    let mut slots = BTreeMap::new();
    for (master, key) in test_keys(&cl).await {
        let ttl: i64 = cluster
            .command(master, &[b"PTTL", &key])
            .await
            .expect("PTTL");
        // Keys that could expire during the test on their own prove nothing.
        if ttl == -1 || ttl > 120_000 {
            slots.insert(cluster.slot_of(&key).await, master);
            lasting.insert(key);
        }
    }
    assert!(!slots.is_empty(), "the grants left no lasting keys");
    let masters = cluster.masters().await;
    let mut pending = Vec::new();
    for (slot, from) in &slots {
        let next = masters.iter().position(|m| m == from).expect("a master") + 1;
        let to = masters[next % masters.len()];
        pending.push(cluster.migrate_slot_halfway(*slot, *from, to).await);
    }

    let mut served = 0;
    let check = |resp: &Resp, good: bool| {
        let right = if good { 200 } else { 401 };
        assert!(
            resp.status == right || resp.status == 503,
            "during the move: {resp}"
        );
        if resp.status == 503 {
            assert_unavailable(resp);
        }
        resp.status == 200
    };
    for grant in &grants {
        for node in [&cl.b, &cl.a] {
            let resp = get_with_token(&protected(node), Some(&access_token(grant))).await;
            served += usize::from(check(&resp, true));
        }
    }
    check(
        &get_with_token(&protected(&cl.b), Some(&random_token())).await,
        false,
    );
    let mut issued = Vec::new();
    for _ in 0..3 {
        let params = [("grant_type", "client_credentials"), ("scope", "reports")];
        let resp = cl.token_request(&cl.b, &params).await;
        if check(&resp, true) {
            served += 1;
            issued.push(access_token(&resp.json()));
        }
    }
    assert!(served > 0, "nothing was served while the slots were split");
    let (moved, left): (usize, usize) = pending
        .iter()
        .map(|p| (p.moved, p.left))
        .fold((0, 0), |(m, l), (pm, pl)| (m + pm, l + pl));
    eprintln!(
        "{} slots split ({moved} keys moved, {left} left); {served} of {} requests served meanwhile",
        pending.len(),
        grants.len() * 2 + 3
    );

    let moved_to: BTreeMap<u16, u16> = pending.iter().map(|p| (p.slot, p.to)).collect();
    for mv in pending {
        cluster.finish_migration(mv).await;
    }
    let after: BTreeMap<Vec<u8>, u16> = test_keys(&cl)
        .await
        .into_iter()
        .map(|(master, key)| (key, master))
        .collect();
    for key in &lasting {
        let master = after.get(key);
        let slot = cluster.slot_of(key).await;
        assert_eq!(
            master,
            moved_to.get(&slot),
            "key {} lost or not moved",
            String::from_utf8_lossy(key)
        );
    }

    // Every master's keys and values (redis_dump on a cluster): no token in the clear.
    let dump = cl.store.redis_dump().await;
    assert!(
        dump.contains(&cl.store.prefix),
        "the dump misses the test's keys"
    );
    for grant in &grants {
        for token in [access_token(grant), refresh_token(grant)] {
            assert!(!dump.contains(&token), "a token is stored in the clear");
        }
    }

    let fresh = cl.start_node().await;
    for token in grants.iter().map(access_token).chain(issued) {
        let resp = get_with_token(&protected(&fresh), Some(&token)).await;
        assert_eq!(resp.status, 200, "after the move: {resp}");
    }
    for grant in &grants {
        let rt = refresh_token(grant);
        let params = [
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
        ];
        let renewed = cl.token(&fresh, &params).await;
        let resp = get_with_token(&protected(&cl.a), Some(&access_token(&renewed))).await;
        assert_eq!(resp.status, 200, "refreshed after the move: {resp}");
    }
}

/// Every node of the cluster SIGSTOPped: connections stay open and nothing answers. Each
/// gateway answers within 3 s, and within 5 s of the pause only 503
/// `temporarily_unavailable` with `Retry-After` for every token (cached ones too: a node
/// that cannot hear revocations must not trust its cache) and for token requests. Resumed,
/// both nodes serve again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_paused_is_503_with_retry_after_then_recovers() {
    let cl = Nodes::start(Store::cluster().await).await;
    let cached = cl.client_token(&cl.a).await;
    for node in [&cl.a, &cl.b] {
        let resp = get_with_token(&protected(node), Some(&cached)).await;
        assert_eq!(resp.status, 200, "{resp}");
    }
    let unseen = cl.client_token(&cl.a).await;
    let bogus = random_token();

    cl.store.redis_cluster().pause_all();
    let paused_at = Instant::now();
    let timed = |url: String, token: String| async move {
        let start = Instant::now();
        let resp = get_with_token(&url, Some(&token)).await;
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "{took:?} for an answer: {resp}"
        );
        resp
    };
    for node in [&cl.a, &cl.b] {
        let all_503 = poll(
            Duration::from_secs(5).saturating_sub(paused_at.elapsed()),
            || async {
                let mut all = true;
                for token in [&cached, &unseen, &bogus] {
                    let resp = timed(protected(node), token.clone()).await;
                    match resp.status {
                        503 => assert_unavailable(&resp),
                        200 if token == &cached => all = false,
                        _ => panic!("with the cluster paused: {resp}"),
                    }
                }
                all.then_some(())
            },
        )
        .await;
        assert!(
            all_503.is_some(),
            "{} still allows a cached token 5 s into the pause",
            node.base_url()
        );
        let params = [("grant_type", "client_credentials"), ("scope", "reports")];
        assert_unavailable(&cl.token_request(node, &params).await);
    }

    cl.store.redis_cluster().resume_all().await;
    for (node, token) in [(&cl.a, &cached), (&cl.b, &cached), (&cl.b, &unseen)] {
        let url = protected(node);
        let back = poll(Duration::from_secs(10), || async {
            let resp = get_with_token(&url, Some(token)).await;
            assert!(matches!(resp.status, 200 | 503), "after the pause: {resp}");
            (resp.status == 200).then_some(())
        })
        .await;
        assert!(
            back.is_some(),
            "{url} not serving 10 s after the cluster resumed"
        );
    }
    let resp = get_with_token(&protected(&cl.a), Some(&bogus)).await;
    assert_invalid_token(&resp, "unknown token");
    let fresh = cl.client_token(&cl.b).await;
    let resp = get_with_token(&protected(&cl.a), Some(&fresh)).await;
    assert_eq!(resp.status, 200, "{resp}");
}
