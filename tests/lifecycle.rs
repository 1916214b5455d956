//! End-to-end: the operational surface of a running gateway: `/healthz`, `/readyz` through
//! a Redis outage, `/metrics` counters, and graceful shutdown on SIGTERM/SIGINT (SPEC §1,
//! §7).

#[macro_use]
mod common;
mod hardening;

use std::time::{Duration, Instant};

use common::{
    Creds, Gateway, GatewayConfig, Store, Upstream, access_token, admin_fixture, assert_error, get,
    get_with_token, metrics, poll, post_form, random_token,
};

both_backends!(health_and_readiness_answer_200, metrics_count_what_happens);

async fn health_and_readiness_answer_200(store: Store) {
    let (fx, _admin) = admin_fixture(store, |_| {}).await;
    let admin = fx.gw.admin_url();
    for probe in ["/healthz", "/readyz"] {
        let resp = get(&format!("{admin}{probe}"), &[]).await;
        assert_eq!(resp.status, 200, "{probe}: {resp}");
    }
    let resp = get(&fx.url("/metrics"), &[]).await;
    assert_ne!(
        resp.status, 200,
        "metrics must not be served on the public port"
    );
}

/// `/readyz` goes 503 while the test's `redis-server` is down and 200 once it is back;
/// `/healthz` stays 200 throughout, and store errors are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_a_redis_outage() {
    let (mut fx, admin) = admin_fixture(Store::redis().await, |_| {}).await;
    let readyz = admin.url("/readyz");
    let healthz = admin.url("/healthz");
    assert_eq!(get(&readyz, &[]).await.status, 200);
    let errors_before = admin
        .metrics()
        .await
        .sum("tollgate_store_errors_total", &[]);

    fx.store.redis_mut().stop();
    let down = poll(Duration::from_secs(10), || async {
        (get(&readyz, &[]).await.status == 503).then_some(())
    })
    .await;
    assert!(
        down.is_some(),
        "/readyz still not 503 10 s after redis stopped"
    );
    assert_eq!(get(&healthz, &[]).await.status, 200, "the process is up");
    let resp = fx.get("/abc/x", Some(&random_token())).await;
    assert_error(&resp, 503, "temporarily_unavailable");
    let counted = poll(Duration::from_secs(2), || async {
        (admin
            .metrics()
            .await
            .sum("tollgate_store_errors_total", &[])
            > errors_before)
            .then_some(())
    })
    .await;
    assert!(
        counted.is_some(),
        "store errors not counted during the outage"
    );

    fx.store.redis_mut().restart().await;
    let up = poll(Duration::from_secs(15), || async {
        (get(&readyz, &[]).await.status == 200).then_some(())
    })
    .await;
    assert!(
        up.is_some(),
        "/readyz not 200 again 15 s after redis restarted"
    );
    let token = fx.client_token(Some("reports")).await;
    assert_eq!(fx.get("/abc/x", Some(&token)).await.status, 200);
}

async fn metrics_count_what_happens(store: Store) {
    let redis = store.is_redis();
    let (fx, admin) = admin_fixture(store, |config| {
        config.add_client(
            "brief",
            &["client_credentials"],
            &["reports"],
            "access_token_ttl = \"1s\"",
        );
    })
    .await;
    let before = admin.metrics().await;
    for name in [
        "tollgate_requests_total",
        "tollgate_token_validations_total",
        "tollgate_cache_hits_total",
        "tollgate_cache_misses_total",
        "tollgate_store_errors_total",
        "tollgate_tokens_issued_total",
        "tollgate_revocation_messages_total",
        "tollgate_config_reloads_total",
    ] {
        assert!(
            before.declares(name),
            "{name} missing from /metrics:\n{before}"
        );
    }

    let brief = access_token(&fx.client_token_for("brief", None).await);
    let token = fx.client_token(Some("reports")).await;
    fx.password_token_for("photoprint", "reports").await;
    for _ in 0..2 {
        assert_eq!(fx.get("/abc/x", Some(&token)).await.status, 200);
    }
    assert_eq!(fx.get("/secret/x", Some(&token)).await.status, 403);
    assert_eq!(fx.get("/abc/x", Some(&random_token())).await.status, 401);
    let expired = poll(Duration::from_secs(5), || async {
        let resp = fx.get("/abc/x", Some(&brief)).await;
        resp.header("www-authenticate")
            .is_some_and(|h| h.contains("token expired"))
            .then_some(())
    })
    .await;
    assert!(
        expired.is_some(),
        "the 1 s token never answered `token expired`"
    );
    let doomed = fx.client_token(Some("reports")).await;
    let resp = post_form(
        &fx.url("/oauth/revoke"),
        &[("token", &doomed)],
        Some(("photoprint", &fx.creds.secret)),
    )
    .await;
    assert_eq!(resp.status, 200, "{resp}");
    let refused = fx.get("/abc/x", Some(&doomed)).await;
    assert_eq!(refused.status, 401, "{refused}");
    let revoked_outcome = if refused
        .header("www-authenticate")
        .is_some_and(|h| h.contains("revoked"))
    {
        "revoked"
    } else {
        "unknown"
    };

    let after = admin.metrics().await;
    let delta =
        |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) - before.sum(name, labels);
    let requests = "tollgate_requests_total";
    assert!(
        delta(requests, &[("route", "abc"), ("status", "200")]) >= 2.0,
        "{after}"
    );
    assert!(
        delta(requests, &[("route", "secret"), ("status", "403")]) >= 1.0,
        "{after}"
    );
    assert!(
        delta(requests, &[("route", "abc"), ("status", "401")]) >= 3.0,
        "{after}"
    );
    let count = delta("tollgate_request_duration_seconds_count", &[]);
    assert!(
        count >= 6.0,
        "latency histogram count moved by {count}:\n{after}"
    );
    let inf = delta(
        "tollgate_request_duration_seconds_bucket",
        &[("le", "+Inf")],
    );
    assert_eq!(inf, count, "+Inf bucket = count:\n{after}");
    assert!(
        after.has("tollgate_request_duration_seconds_sum"),
        "{after}"
    );
    assert!(
        after
            .matching("tollgate_request_duration_seconds_bucket", &[])
            .any(|s| s.labels.get("le").is_some_and(|le| le != "+Inf")),
        "finite latency buckets:\n{after}"
    );

    let validations = "tollgate_token_validations_total";
    for (outcome, at_least) in [
        ("valid", 2.0),
        ("insufficient_scope", 1.0),
        ("unknown", 1.0),
        ("expired", 1.0),
        (revoked_outcome, 1.0),
    ] {
        let moved = delta(validations, &[("outcome", outcome)]);
        assert!(
            moved >= at_least,
            "validations {outcome} moved {moved}:\n{after}"
        );
    }
    let issued = "tollgate_tokens_issued_total";
    assert!(
        delta(issued, &[("grant", "client_credentials")]) >= 3.0,
        "{after}"
    );
    assert_eq!(delta(issued, &[("grant", "password")]), 1.0, "{after}");
    if redis {
        // First look-up of `token` misses the node's cache, the second hits it.
        assert!(delta("tollgate_cache_misses_total", &[]) >= 1.0, "{after}");
        assert!(delta("tollgate_cache_hits_total", &[]) >= 1.0, "{after}");
    }
}

/// A revocation published by node A is received (and counted) by node B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_messages_are_counted_by_the_receiving_node() {
    let (fx, _admin) = admin_fixture(Store::redis().await, |_| {}).await;
    let b = fx.start_node().await;
    let before = metrics(&b.admin_url())
        .await
        .sum("tollgate_revocation_messages_total", &[]);
    let token = fx.client_token(Some("reports")).await;
    let resp = post_form(
        &fx.url("/oauth/revoke"),
        &[("token", &token)],
        Some(("photoprint", &fx.creds.secret)),
    )
    .await;
    assert_eq!(resp.status, 200, "{resp}");
    let counted = poll(Duration::from_secs(2), || async {
        let now = metrics(&b.admin_url())
            .await
            .sum("tollgate_revocation_messages_total", &[]);
        (now > before).then_some(())
    })
    .await;
    assert!(
        counted.is_some(),
        "node B did not count the revocation message"
    );
}

/// A gateway with a public `/drain/*` route (10 s upstream timeout) and `shutdown_grace`.
async fn drain_gateway(grace: &str) -> (Gateway, Upstream) {
    let up = Upstream::start("up").await;
    let mut config = GatewayConfig::new(&Store::memory(), &up.url(), &Creds::random());
    config.extra.push_str(&format!(
        "\n[[routes]]\nname = \"drain\"\npath = \"/drain/*\"\nupstreams = [\"{}\"]\n\
         auth = \"none\"\ntimeout = \"10s\"\n",
        up.url()
    ));
    let rendered = config.render();
    let old = "shutdown_grace = \"2s\"";
    assert!(rendered.contains(old), "template changed: {rendered}");
    let rendered = rendered.replace(old, &format!("shutdown_grace = \"{grace}\""));
    (Gateway::start(&rendered, &[]).await, up)
}

/// Starts `GET /drain/slow` (2 s at the upstream) and returns once the upstream has it.
async fn request_in_flight(gw: &Gateway, up: &Upstream) -> tokio::task::JoinHandle<common::Resp> {
    let url = format!("{}/drain/slow", gw.base_url());
    let request = tokio::spawn(async move { get(&url, &[]).await });
    slow_request_arrived(up).await;
    request
}

/// Waits until the upstream has received `/drain/slow`.
async fn slow_request_arrived(up: &Upstream) {
    let arrived = poll(Duration::from_secs(5), || async {
        up.uris().iter().any(|u| u == "/drain/slow").then_some(())
    })
    .await;
    assert!(
        arrived.is_some(),
        "the slow request never reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_completes_across_sigterm() {
    let (mut gw, up) = drain_gateway("10s").await;
    let addr = gw.addr();
    let request = request_in_flight(&gw, &up).await;

    gw.signal("TERM");
    // New connections are refused while the old request is still being served.
    let refused = poll(Duration::from_millis(1500), || async {
        tokio::net::TcpStream::connect(addr)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    assert!(
        refused.is_some(),
        "still accepting connections after SIGTERM"
    );
    assert!(
        !request.is_finished(),
        "the request in flight ended before the listener closed"
    );

    let resp = request.await.expect("request task");
    assert_eq!(resp.status, 200, "the request in flight: {resp}");
    assert!(resp.body.contains("uri=/drain/slow"), "{resp}");
    let status = gw
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("tollgate still running 10 s after SIGTERM with nothing left to drain");
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_grace_bounds_the_drain() {
    let (mut gw, up) = drain_gateway("300ms").await;
    let request = request_in_flight(&gw, &up).await;
    let start = Instant::now();
    gw.signal("TERM");
    let status = gw
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("tollgate did not exit after its shutdown_grace");
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(1700),
        "exit took {took:?}: the 2 s request was waited for despite a 300ms grace"
    );
    assert!(status.success(), "exit status after the grace: {status}");
    request.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_gateway_exits_0_on_sigterm_and_sigint() {
    for signal in ["TERM", "INT"] {
        let (mut gw, _up) = drain_gateway("10s").await;
        assert_eq!(
            get_with_token(&format!("{}/drain/x", gw.base_url()), None)
                .await
                .status,
            200
        );
        gw.signal(signal);
        let status = gw
            .wait_exit(Duration::from_secs(3))
            .await
            .unwrap_or_else(|| panic!("idle gateway still running 3 s after SIG{signal}"));
        assert!(status.success(), "exit status after SIG{signal}: {status}");
    }
}

/// A kept-alive connection with nothing in flight is closed as soon as shutdown starts (it
/// does not hold the process until `idle_timeout`), and one whose request is in flight gets
/// its response, marked `Connection: close`, before it is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_idle_keep_alive_connections_at_once() {
    use std::io::Write;
    let (mut gw, up) = drain_gateway("10s").await;
    let addr = gw.addr();
    let (answer, mut idle) = tokio::task::spawn_blocking(move || {
        hardening::exchange(addr, b"GET /drain/x HTTP/1.1\r\nHost: x\r\n\r\n")
    })
    .await
    .expect("client thread");
    assert_eq!(answer.map(|a| a.status), Some(200));
    let busy = tokio::task::spawn_blocking(move || {
        let mut s = hardening::connect(addr);
        s.write_all(b"GET /drain/slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let answer = hardening::read_answer(&mut s);
        (
            answer,
            hardening::closed_within(&mut s, Duration::from_secs(5)),
        )
    });
    slow_request_arrived(&up).await;
    let start = Instant::now();
    gw.signal("TERM");
    let idle_closed = tokio::task::spawn_blocking(move || {
        hardening::closed_within(&mut idle, Duration::from_secs(5))
    })
    .await
    .expect("client thread");
    let idle_took = start.elapsed();
    assert!(idle_closed, "the idle connection stayed open after SIGTERM");
    assert!(
        idle_took < Duration::from_millis(1500),
        "the idle connection was closed only after {idle_took:?}"
    );
    let (answer, closed) = busy.await.expect("client thread");
    let answer = answer.expect("no response to the request in flight");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("connection").as_deref(), Some("close"));
    assert!(closed, "the busy connection stayed open after its response");
    let status = gw
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("tollgate still running after its connections finished");
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "exit took {:?} with a 10 s grace: a connection was waited for",
        start.elapsed()
    );
}
