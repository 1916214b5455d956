//! End-to-end: two gateway nodes sharing one Redis (SPEC §4 store rows, §5 revocation,
//! §7 "within one second on every node"), and a Redis outage. The two-node scenarios are in
//! `two_nodes/`, shared with the Redis Cluster tests.

mod common;
#[macro_use]
mod two_nodes;

use std::time::Duration;

use common::{Store, get_with_token, poll, random_token};
use two_nodes::{Nodes, assert_unavailable, protected};

scenarios_on!(Store::redis().await =>
    token_issued_on_one_node_works_on_the_other,
    revocation_on_one_node_reaches_the_other_within_one_second,
);

/// Redis down: every node answers 503 `temporarily_unavailable` with `Retry-After` for
/// tokens it has not cached, and, once it has noticed the lost connection, for cached ones
/// too; never 401 (the token may be fine) and never 200 for a token it has not seen.
/// When Redis is back, the same tokens work again without restarting the gateways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outage_is_503_then_recovers() {
    let mut cl = Nodes::start(Store::redis().await).await;
    let cached = cl.client_token(&cl.a).await;
    for node in [&cl.a, &cl.b] {
        assert_eq!(
            get_with_token(&protected(node), Some(&cached)).await.status,
            200
        );
    }
    let unseen = cl.client_token(&cl.a).await; // never presented to B
    let bogus = random_token();

    cl.store.redis_mut().stop();

    // Strict from the first request: B cannot vouch for tokens it has not cached.
    for token in [&unseen, &bogus] {
        assert_unavailable(&get_with_token(&protected(&cl.b), Some(token)).await);
    }
    // A cached token may be served until the node notices the outage (it then drops its
    // cache); after that, 503 only.
    for node in [&cl.a, &cl.b] {
        let url = protected(node);
        let dropped = poll(Duration::from_secs(2), || {
            let (url, cached) = (url.clone(), cached.clone());
            async move {
                let resp = get_with_token(&url, Some(&cached)).await;
                assert!(
                    matches!(resp.status, 200 | 503),
                    "cached token during outage: {resp}"
                );
                (resp.status == 503).then_some(())
            }
        })
        .await;
        assert!(
            dropped.is_some(),
            "{url} still serves a cached token 2 s into the outage"
        );
        for token in [&cached, &unseen, &bogus] {
            assert_unavailable(&get_with_token(&url, Some(token)).await);
        }
    }

    cl.store.redis_mut().restart().await;
    for (node, token) in [(&cl.a, &cached), (&cl.b, &cached), (&cl.b, &unseen)] {
        let url = protected(node);
        let recovered = poll(Duration::from_secs(10), || {
            let (url, token) = (url.clone(), token.clone());
            async move {
                let resp = get_with_token(&url, Some(&token)).await;
                assert!(matches!(resp.status, 200 | 503), "during recovery: {resp}");
                (resp.status == 200).then_some(())
            }
        })
        .await;
        assert!(
            recovered.is_some(),
            "{url} did not recover within 10 s of Redis coming back"
        );
    }
    let fresh = cl.client_token(&cl.b).await;
    assert_eq!(
        get_with_token(&protected(&cl.a), Some(&fresh)).await.status,
        200
    );
    assert_eq!(
        get_with_token(&protected(&cl.a), Some(&bogus)).await.status,
        401,
        "unknown tokens are refused again once the store answers"
    );
}
