//! End-to-end: the guessing throttle's counters live in the shared store (SPEC §5
//! "Guessing", §11 "N nodes allow no more guesses than one"). Two nodes on one Redis count
//! one address's wrong client secrets together, sequential or all at once; right secrets sent
//! at once to both all pass; a failure is counted before it is answered; and with Redis down
//! no secret is checked at all (fail closed).

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{Fixture, Gateway, Resp, Store, assert_error, post_form_from};

const GRANT: [(&str, &str); 1] = [("grant_type", "client_credentials")];

fn loopback(last: u8) -> Option<IpAddr> {
    Some(IpAddr::from([127, 0, 0, last]))
}

/// A fixture (node `a`) on a fresh Redis, and a second node `b` on the same store. Beside
/// `photoprint` there is `kiosk`, a public client of the password grant: its requests
/// authenticate no secret, so they reach the password check whatever the store does.
async fn two_nodes(store: Store) -> (Fixture, Gateway) {
    let fx = Fixture::start_with(store, |c| {
        c.add_public_client("kiosk", &[], &["password"], &["reports"]);
    })
    .await;
    let b = fx.start_node().await;
    (fx, b)
}

/// A client_credentials request as `photoprint` with `secret`, to `node`, from `from`.
async fn token_request(node: &Gateway, from: Option<IpAddr>, secret: &str) -> Resp {
    let url = format!("{}/oauth/token", node.base_url());
    post_form_from(from, &url, &GRANT, Some(("photoprint", secret))).await
}

fn assert_slow_down(resp: &Resp, what: &str) {
    assert_error(resp, 429, "slow_down");
    let retry: u64 = resp
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{what}: no Retry-After in seconds: {resp}"));
    assert!((1..=60).contains(&retry), "{what}: Retry-After {retry}");
}

fn statuses(answers: &[Resp]) -> Vec<u16> {
    answers.iter().map(|r| r.status).collect()
}

/// Wrong secrets from one address alternated between the nodes: each node sees three, yet
/// the sixth is refused, and then the right secret from that address on either node too.
/// Another address is unaffected. The counter is one Redis hash under the store prefix with
/// the subject as its hash tag, expiring with its window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_spread_over_two_nodes_count_as_on_one() {
    guesses_spread_over_two_nodes(Store::redis().await).await
}

/// The same on a Redis Cluster: every counter is one key on its own slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_spread_over_two_nodes_count_as_on_one_on_a_cluster() {
    guesses_spread_over_two_nodes(Store::cluster().await).await
}

async fn guesses_spread_over_two_nodes(store: Store) {
    let (fx, b) = two_nodes(store).await;
    let nodes = [&fx.gw, &b];
    for i in 0..5 {
        let resp = token_request(nodes[i % 2], loopback(5), "wrong").await;
        assert_error(&resp, 401, "invalid_client");
    }
    let sixth = token_request(nodes[1], loopback(5), "wrong").await;
    assert_slow_down(&sixth, "the sixth guess, the third on node b");
    for node in nodes {
        let resp = token_request(node, loopback(5), &fx.creds.secret).await;
        assert_slow_down(&resp, "the right secret from the guessing address");
    }
    let resp = token_request(&b, loopback(6), &fx.creds.secret).await;
    assert_eq!(resp.status, 200, "another address is unaffected: {resp}");

    if fx.store.redis.is_none() {
        return;
    }
    let key = format!("{}thr:{{pair:c:[127.0.0.5]:photoprint}}", fx.store.prefix);
    let (failures, ttl) = counter(&fx.store, &key).await;
    assert_eq!(failures.as_deref(), Some("5"), "failures in {key}");
    assert!(
        (1..=60_000).contains(&ttl),
        "{key} expires with its window: PTTL {ttl}"
    );
}

/// The `f` field and PTTL of a counter key on the test's Redis.
async fn counter(store: &Store, key: &str) -> (Option<String>, i64) {
    let url = store.redis.as_ref().expect("redis store").url();
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the test redis");
    let failures: Option<String> = redis::cmd("HGET")
        .arg(key)
        .arg("f")
        .query_async(&mut conn)
        .await
        .expect("HGET");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(key)
        .query_async(&mut conn)
        .await
        .expect("PTTL");
    (failures, ttl)
}

/// Twenty wrong secrets sent at once, half to each node: checks in flight on either node
/// count against the limit, so exactly five are verified (401) and fifteen refused (429).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_on_two_nodes_verify_at_most_five() {
    parallel_guesses_verify_at_most_five(Store::redis().await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_on_two_nodes_verify_at_most_five_on_a_cluster() {
    parallel_guesses_verify_at_most_five(Store::cluster().await).await
}

async fn parallel_guesses_verify_at_most_five(store: Store) {
    let (fx, b) = two_nodes(store).await;
    let nodes = [&fx.gw, &b];
    let guesses = (0..20).map(|i| token_request(nodes[i % 2], loopback(7), "wrong"));
    let answers = futures_util::future::join_all(guesses).await;
    let verified = answers.iter().filter(|r| r.status == 401).count();
    let refused = answers.iter().filter(|r| r.status == 429).count();
    assert_eq!(
        (verified, refused),
        (5, 15),
        "statuses: {:?}",
        statuses(&answers)
    );
}

/// Twenty right secrets sent at once, half to each node: the limit makes some wait for
/// others' answers (on either node), and every one passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn right_secrets_in_parallel_on_two_nodes_all_pass() {
    let (fx, b) = two_nodes(Store::redis().await).await;
    let nodes = [&fx.gw, &b];
    let secret = fx.creds.secret.as_str();
    let checks = (0..20).map(|i| token_request(nodes[i % 2], loopback(8), secret));
    let answers = futures_util::future::join_all(checks).await;
    assert!(
        answers.iter().all(|r| r.status == 200),
        "statuses: {:?}",
        statuses(&answers)
    );
}

/// With Redis down no secret or password is checked uncounted: every token request that
/// authenticates a client is refused (429 or 503, with Retry-After), the right secret and a
/// secret verified moments ago included, and a wrong one is never answered 401 (that would
/// be an uncounted guess); a wrong password is never answered 400 `invalid_grant` either.
/// Once Redis is back, the right secret works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_store_down_no_secret_is_checked() {
    let (mut fx, b) = two_nodes(Store::redis().await).await;
    // Verified now, so remembered by node a: the shortcut must fail closed too.
    let resp = token_request(&fx.gw, loopback(9), &fx.creds.secret).await;
    assert_eq!(resp.status, 200, "before the outage: {resp}");

    fx.store.redis_mut().stop();
    let password = [
        ("grant_type", "password"),
        ("client_id", "kiosk"),
        ("username", "alice"),
        ("password", "wrong"),
    ];
    for node in [&fx.gw, &b] {
        for secret in [fx.creds.secret.as_str(), "wrong"] {
            let resp = token_request(node, loopback(9), secret).await;
            assert_refused(&resp, "client secret, store down");
        }
        let url = format!("{}/oauth/token", node.base_url());
        let resp = post_form_from(loopback(9), &url, &password, None).await;
        assert_refused(&resp, "wrong password, store down");
    }

    fx.store.redis_mut().restart().await;
    fx.gw.wait_ready(Duration::from_secs(10)).await;
    let resp = token_request(&fx.gw, loopback(9), &fx.creds.secret).await;
    assert_eq!(resp.status, 200, "after the outage: {resp}");
}

fn assert_refused(resp: &Resp, what: &str) {
    assert!(
        matches!(resp.status, 429 | 503),
        "{what}: expected 429 or 503, got {resp}"
    );
    assert!(
        resp.header("retry-after").is_some(),
        "{what}: no Retry-After: {resp}"
    );
}

/// A wrong secret's failure is in the shared counters before the answer goes out, so the
/// client's next try meets it: answered in the background, a right secret sent at once
/// could find five checks still in flight and pass the remembered-secret shortcut, which
/// only looks at the lock. The runtime has one thread and the look below blocks it, so a
/// failure left to a background task would not have run yet.
#[tokio::test(flavor = "current_thread")]
async fn a_failure_is_counted_before_it_is_answered() {
    use tollgate::throttle::{Account, Throttle};
    let store = Store::redis().await;
    let throttle = Throttle::for_store(&store.token_store());
    let from = IpAddr::from([127, 0, 0, 9]);
    let attempt = throttle.begin(Account::User, "alice", from).await;
    attempt.expect("a first check is allowed").fail().await;

    let key = format!("{}thr:{{pair:u:[127.0.0.9]:alice}}", store.prefix);
    let url = store.redis.as_ref().expect("redis store").url();
    let mut conn = redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .expect("connect to the test redis");
    let (failures, in_flight): (Option<String>, Option<String>) = redis::cmd("HMGET")
        .arg(&key)
        .arg("f")
        .arg("i")
        .query(&mut conn)
        .expect("HMGET");
    assert_eq!(
        (failures.as_deref(), in_flight.as_deref()),
        (Some("1"), Some("0")),
        "{key}: one failure, nothing in flight"
    );
}
