//! End-to-end: the headers the gateway writes towards the upstream and back (SPEC §4 step 4):
//! trusted routing/identity headers, `X-Forwarded-*` and `trusted_proxies`,
//! `forward_authorization`, `X-Request-Id`, and what the access log leaves out.

mod common;

use std::time::Duration;

use common::{Fixture, Store, get, poll, random_hex, send};

/// Headers upstreams trust for routing, method or client address; a client never sets them.
const GATEWAY_ONLY: [(&str, &str); 7] = [
    ("forwarded", "for=203.0.113.9;proto=https;host=evil.example"),
    ("x-real-ip", "203.0.113.9"),
    ("x-original-url", "/admin/secret"),
    ("x-rewrite-url", "/admin/secret"),
    ("x-http-method-override", "DELETE"),
    ("x-http-method", "DELETE"),
    ("x-method-override", "DELETE"),
];

/// Spoofed forwarding headers a client sends along with [`GATEWAY_ONLY`].
const SPOOFED_FORWARDING: [(&str, &str); 5] = [
    ("x-forwarded-for", "203.0.113.9, 10.0.0.1"),
    ("x-forwarded-for", "10.0.0.2"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "evil.example"),
    ("x-forwarded-prefix", "/admin"),
];

/// `GET /abc/x` with a valid token and every header of [`GATEWAY_ONLY`] and
/// [`SPOOFED_FORWARDING`]; returns what the upstream received.
async fn spoofing_request(fx: &Fixture) -> common::Recorded {
    let token = fx.client_token(Some("reports")).await;
    let auth = format!("Bearer {token}");
    let mut headers = vec![("authorization", auth.as_str())];
    headers.extend(GATEWAY_ONLY);
    headers.extend(SPOOFED_FORWARDING);
    let resp = get(&fx.url("/abc/x"), &headers).await;
    assert_eq!(resp.status, 200, "{resp}");
    fx.up.only_request()
}

fn assert_gateway_only_removed(seen: &common::Recorded) {
    for (name, _) in GATEWAY_ONLY {
        assert!(
            !seen.headers.contains_key(name),
            "{name} reached the upstream: {:?}",
            seen.headers.get_all(name)
        );
    }
}

/// From a peer that is not a trusted proxy (none are by default), the routing and identity
/// headers are removed and `X-Forwarded-*` are written from the connection alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_peers_forwarding_headers_are_replaced() {
    let fx = Fixture::start(Store::memory()).await;
    let seen = spoofing_request(&fx).await;
    assert_gateway_only_removed(&seen);
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    let host = fx.gw.addr().to_string();
    assert_eq!(seen.header("x-forwarded-host"), Some(host.as_str()));
    assert_eq!(
        seen.header("x-forwarded-prefix"),
        None,
        "a client's X-Forwarded-* reached the upstream"
    );
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.uri, "/abc/x");
}

/// `trusted_proxies` that do not include the peer change nothing: still replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_outside_trusted_proxies_is_not_believed() {
    let fx = Fixture::start_with(Store::memory(), |c| {
        c.server_extra = "trusted_proxies = [\"10.0.0.0/8\", \"::1\"]".to_owned();
    })
    .await;
    let seen = spoofing_request(&fx).await;
    assert_gateway_only_removed(&seen);
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    let host = fx.gw.addr().to_string();
    assert_eq!(seen.header("x-forwarded-host"), Some(host.as_str()));
    assert_eq!(seen.header("x-forwarded-prefix"), None);
}

/// From a trusted proxy the `X-Forwarded-For` chain (every line, in order) is kept and the
/// peer appended, and its `X-Forwarded-Proto`/`-Host` are kept; the routing and identity
/// headers are still removed. Without any, they are written from the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxys_chain_is_kept_and_extended() {
    let fx = Fixture::start_with(Store::memory(), |c| {
        c.server_extra = "trusted_proxies = [\"127.0.0.0/8\"]".to_owned();
    })
    .await;
    let seen = spoofing_request(&fx).await;
    assert_gateway_only_removed(&seen);
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.9, 10.0.0.1, 10.0.0.2, 127.0.0.1")
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("x-forwarded-host"), Some("evil.example"));
    assert_eq!(seen.header("x-forwarded-prefix"), Some("/admin"));

    let token = fx.client_token(Some("reports")).await;
    let auth = format!("Bearer {token}");
    let resp = get(&fx.url("/abc/plain"), &[("authorization", &auth)]).await;
    assert_eq!(resp.status, 200, "{resp}");
    let plain = fx
        .up
        .requests()
        .into_iter()
        .find(|r| r.uri == "/abc/plain")
        .expect("the plain request arrived");
    assert_eq!(plain.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(plain.header("x-forwarded-proto"), Some("http"));
    let host = fx.gw.addr().to_string();
    assert_eq!(plain.header("x-forwarded-host"), Some(host.as_str()));
}

/// `forward_authorization = true` keeps the client's `Authorization` for that route; every
/// other route removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_authorization_keeps_the_header_on_its_route_only() {
    let fx = Fixture::start_with(Store::memory(), |c| {
        c.extra.push_str(&format!(
            "\n[[routes]]\nname = \"keep-auth\"\npath = \"/abc/keep/*\"\nupstreams = [\"{}\"]\n\
             forward_authorization = true\n",
            c.upstream
        ));
    })
    .await;
    let token = fx.client_token(Some("reports")).await;
    let auth = format!("Bearer {token}");
    for path in ["/abc/keep/x", "/abc/drop"] {
        let resp = get(&fx.url(path), &[("authorization", &auth)]).await;
        assert_eq!(resp.status, 200, "{path}: {resp}");
    }
    let requests = fx.up.requests();
    let seen = |uri: &str| {
        requests
            .iter()
            .find(|r| r.uri == uri)
            .unwrap_or_else(|| panic!("{uri} not forwarded: {:?}", fx.up.uris()))
    };
    assert_eq!(
        seen("/abc/keep/x").header("authorization"),
        Some(auth.as_str())
    );
    assert_eq!(seen("/abc/drop").header("authorization"), None);
}

/// A well-formed client `X-Request-Id` is kept, upstream and on the response; a malformed
/// one (too long, or with characters outside `[A-Za-z0-9._:-]`) is replaced by a fresh id,
/// which the upstream and the response both carry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_is_kept_when_well_formed_and_replaced_when_not() {
    let fx = Fixture::start(Store::memory()).await;
    let token = fx.client_token(Some("reports")).await;
    let auth = format!("Bearer {token}");
    let good = format!("req-{}.a_b:c", random_hex(8));
    let too_long = "a".repeat(129);
    let cases = [
        (good.as_str(), true),
        ("has space", false),
        ("semi;colon", false),
        ("quote\"d", false),
        (too_long.as_str(), false),
    ];
    for (i, (id, kept)) in cases.iter().enumerate() {
        let path = format!("/abc/id{i}");
        let resp = get(
            &fx.url(&path),
            &[("authorization", &auth), ("x-request-id", id)],
        )
        .await;
        assert_eq!(resp.status, 200, "{id:?}: {resp}");
        let returned = resp.header("x-request-id").unwrap_or_default().to_owned();
        let seen = fx
            .up
            .requests()
            .into_iter()
            .find(|r| r.uri == path)
            .expect("forwarded");
        assert_eq!(
            seen.header("x-request-id"),
            Some(returned.as_str()),
            "{id:?}: the response and the upstream must carry the same id"
        );
        if *kept {
            assert_eq!(returned, *id, "a well-formed id is kept");
        } else {
            assert_ne!(returned, *id, "a malformed id is replaced");
            assert!(
                !returned.is_empty()
                    && returned
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)),
                "replacement {returned:?} is not a well-formed id"
            );
        }
    }
}

/// The access-log line carries the path but never the query string (it may hold secrets);
/// no line at all repeats the query's value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_leaves_the_query_out() {
    let fx = Fixture::start(Store::memory()).await;
    let token = fx.client_token(Some("reports")).await;
    let auth = format!("Bearer {token}");
    let request_id = format!("e2e-{}", random_hex(8));
    let secret = format!("q-{}", random_hex(12));
    let resp = send(
        "GET",
        &fx.url(&format!("/abc/logged?api_key={secret}&n=1")),
        &[("authorization", &auth), ("x-request-id", &request_id)],
        "",
    )
    .await;
    assert_eq!(resp.status, 200, "{resp}");
    assert!(
        fx.up.only_request().uri.contains(&secret),
        "the query is forwarded"
    );
    let line = poll(Duration::from_secs(3), || {
        let found = fx.gw.logs().into_iter().find(|l| {
            l.contains(&request_id) && l.contains("tollgate::access") && l.contains("/abc/logged")
        });
        async move { found }
    })
    .await
    .expect("no access-log line carries the request id and path");
    let event: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
    let fields = event.get("fields").unwrap_or(&event);
    assert_eq!(fields["path"], "/abc/logged", "{line}");
    assert!(!line.contains("api_key"), "the query is logged: {line}");
    fx.gw.assert_logs_free_of(&[&secret]);
}
