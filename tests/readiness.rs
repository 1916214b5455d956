//! End-to-end: readiness (SPEC §7, README "Admin listener"). `/readyz` is 200 only while the
//! store answers and, with Redis, the revocation subscription is established: a node whose
//! port is open but that cannot yet hear revocations is not ready.

#[macro_use]
mod common;

use std::time::Duration;

use common::{
    Creds, Gateway, GatewayConfig, Store, Upstream, access_token, get_with_token, metrics, poll,
    post_form,
};

/// Polls `/readyz` until it answers `status`; panics naming `what` after `within`.
async fn until_readyz(gw: &Gateway, status: u16, within: Duration, what: &str) {
    let seen = poll(within, || async {
        (gw.readyz().await == Some(status)).then_some(())
    })
    .await;
    assert!(
        seen.is_some(),
        "{what}: /readyz still {:?}",
        gw.readyz().await
    );
}

/// Runs a Redis command on `store`'s server.
async fn redis_cmd(store: &Store, args: &[&str]) {
    let url = store.redis.as_ref().expect("redis store").url();
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis");
    redis::cmd(args[0])
        .arg(&args[1..])
        .query_async::<redis::Value>(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
}

/// A node started while Redis is down has its ports open but is not ready; it becomes ready
/// when Redis is back, and from that moment it serves tokens from its cache (the
/// subscription that keeps the cache honest is up). It goes unready again while the
/// subscription alone is down, and ready when that is restored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_waits_for_the_store_and_the_revocation_subscription() {
    let mut store = Store::redis().await;
    let up = Upstream::start("up").await;
    let creds = Creds::random();
    let config = GatewayConfig::new(&store, &up.url(), &creds);
    store.redis_mut().stop();
    let gw = Gateway::start_unready(&config.render(), &config.env).await;
    until_readyz(&gw, 503, Duration::from_secs(5), "Redis down").await;
    assert_eq!(gw.readyz().await, Some(503), "ready with the store down");

    store.redis_mut().restart().await;
    until_readyz(&gw, 200, Duration::from_secs(10), "Redis back").await;
    // Ready means subscribed: the very next lookups of a token are served from the cache.
    let resp = post_form(
        &format!("{}/oauth/token", gw.base_url()),
        &[("grant_type", "client_credentials"), ("scope", "reports")],
        Some(("photoprint", &creds.secret)),
    )
    .await;
    assert_eq!(resp.status, 200, "{resp}");
    let token = access_token(&resp.json());
    let protected = format!("{}/abc/x", gw.base_url());
    let hits = || async {
        metrics(&gw.admin_url())
            .await
            .sum("tollgate_cache_hits_total", &[])
    };
    let before = hits().await;
    for _ in 0..3 {
        assert_eq!(get_with_token(&protected, Some(&token)).await.status, 200);
    }
    assert!(
        hits().await >= before + 2.0,
        "ready, but the token was not served from the cache (not subscribed yet?)"
    );

    // The subscription alone goes down (its channel forbidden, its connection dropped):
    // the store still answers, but the node must not call itself ready.
    redis_cmd(&store, &["ACL", "SETUSER", "default", "resetchannels"]).await;
    redis_cmd(&store, &["CLIENT", "KILL", "TYPE", "pubsub"]).await;
    until_readyz(&gw, 503, Duration::from_secs(5), "subscription refused").await;
    redis_cmd(&store, &["ACL", "SETUSER", "default", "allchannels"]).await;
    until_readyz(
        &gw,
        200,
        Duration::from_secs(5),
        "subscription allowed again",
    )
    .await;
}

/// The memory store needs no subscription: ready from the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_with_the_memory_store() {
    let store = Store::memory();
    let up = Upstream::start("up").await;
    let config = GatewayConfig::new(&store, &up.url(), &Creds::random());
    let gw = Gateway::start_unready(&config.render(), &config.env).await;
    until_readyz(&gw, 200, Duration::from_secs(5), "memory store").await;
}
