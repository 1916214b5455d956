//! End-to-end: bearer enforcement and proxying (SPEC §3, §4) through the real binary.

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{
    Fixture, Store, assert_bearer_challenge, assert_error, get, parse_rfc3339_utc, poll,
    random_hex, random_token, raw, raw_get, scope_set, send, unix_now,
};

/// No `Authorization` (or a scheme other than Bearer, or a token only in the query string)
/// is "no credentials": 401, `WWW-Authenticate: Bearer realm="tollgate"` exactly (no error
/// code, RFC 6750 §3.1), body `unauthorized`, and nothing reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credentials_is_401_without_error_code() {
    let fx = Fixture::start(Store::memory()).await;
    let token = fx.client_token(Some("reports")).await;
    let url = fx.url("/abc/x");
    let cases: [(&str, Vec<(&str, String)>); 3] = [
        ("no Authorization", vec![]),
        (
            "Basic scheme",
            vec![("authorization", "Basic eHl6OmFiYw==".to_owned())],
        ),
        (
            "Digest scheme",
            vec![("authorization", format!("Digest {token}"))],
        ),
    ];
    for (case, headers) in &cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let resp = get(&url, &headers).await;
        assert_error(&resp, 401, "unauthorized");
        assert_eq!(
            resp.header("www-authenticate"),
            Some(r#"Bearer realm="tollgate""#),
            "{case}: {resp}"
        );
    }
    // SPEC §4.1: a token in the query string is not accepted on proxied routes.
    let resp = get(&fx.url(&format!("/abc/x?access_token={token}")), &[]).await;
    assert_error(&resp, 401, "unauthorized");
    assert_eq!(
        resp.header("www-authenticate"),
        Some(r#"Bearer realm="tollgate""#)
    );
    assert!(fx.up.uris().is_empty(), "forwarded: {:?}", fx.up.uris());
}

/// A Bearer header that does not hold exactly one token is malformed: 400 with
/// `error="invalid_request"` in the challenge and the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_authorization_is_400() {
    let fx = Fixture::start(Store::memory()).await;
    let token = fx.client_token(Some("reports")).await;
    for value in [
        "Bearer".to_owned(),
        format!("Bearer {token} extra"),
        "Bearer a b".to_owned(),
    ] {
        let resp = get(&fx.url("/abc/x"), &[("authorization", &value)]).await;
        assert_error(&resp, 400, "invalid_request");
        let params = assert_bearer_challenge(&resp, "invalid_request");
        let unexpected: Vec<_> = params
            .keys()
            .filter(|k| !["realm", "error", "error_description"].contains(&k.as_str()))
            .collect();
        assert!(
            unexpected.is_empty(),
            "unexpected params {unexpected:?} in {resp}"
        );
    }
    assert!(fx.up.uris().is_empty(), "forwarded: {:?}", fx.up.uris());
}

/// A well-formed but unknown token: 401 `invalid_token` with an `error_description`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_token_is_401_invalid_token() {
    let fx = Fixture::start(Store::memory()).await;
    let resp = fx.get("/abc/x", Some(&random_token())).await;
    assert_error(&resp, 401, "invalid_token");
    let params = assert_bearer_challenge(&resp, "invalid_token");
    assert!(params.contains_key("error_description"), "{resp}");
    assert!(fx.up.uris().is_empty(), "forwarded: {:?}", fx.up.uris());
}

/// The scheme is case-insensitive (SPEC §4.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_scheme_is_case_insensitive() {
    let fx = Fixture::start(Store::memory()).await;
    let token = fx.client_token(Some("reports")).await;
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let auth = format!("{scheme} {token}");
        let resp = get(&fx.url("/abc/x"), &[("authorization", &auth)]).await;
        assert_eq!(resp.status, 200, "{scheme}: {resp}");
    }
}

/// A valid token is forwarded exactly: same method, normalised path and original query,
/// the body intact, `Authorization` and inbound `X-Auth-*` removed, identity headers set,
/// `X-Request-Id` kept, `X-Forwarded-*` added, other end-to-end headers kept; the
/// upstream's answer comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_token_forwards_the_exact_request() {
    let fx = Fixture::start(Store::memory()).await;
    let token = fx.client_token(Some("reports secret")).await;
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let auth = format!("Bearer {token}");
    let resp = send(
        "POST",
        &fx.url("/abc/some/path?x=1&y=a%20b&x=2"),
        &[
            ("authorization", &auth),
            ("x-request-id", "abc-123"),
            ("x-custom", "kept"),
            ("content-type", "application/octet-stream"),
            ("x-auth-client-id", "evil"),
            ("x-auth-subject", "root"),
            ("X-Auth-Scope", "admin"),
            ("x-auth-anything", "spoofed"),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(resp.status, 200, "{resp}");
    assert_eq!(
        resp.header("x-upstream"),
        Some("up"),
        "upstream response headers come back"
    );
    assert!(resp.body.starts_with("upstream=up"), "{resp}");

    let seen = fx.up.only_request();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.uri, "/abc/some/path?x=1&y=a%20b&x=2");
    assert!(
        seen.body == body,
        "body changed: {} bytes arrived",
        seen.body.len()
    );
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(seen.header("x-auth-client-id"), Some("photoprint"));
    assert_eq!(
        seen.header("x-auth-subject"),
        None,
        "no user behind client_credentials"
    );
    assert_eq!(
        scope_set(seen.header("x-auth-scope").unwrap_or_default()),
        scope_set("reports secret")
    );
    let auth_headers: BTreeSet<&str> = seen
        .headers
        .keys()
        .map(|k| k.as_str())
        .filter(|k| k.starts_with("x-auth-"))
        .collect();
    assert_eq!(
        auth_headers,
        BTreeSet::from(["x-auth-client-id", "x-auth-scope"])
    );
    assert_eq!(seen.header("x-request-id"), Some("abc-123"));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    let host = fx.gw.addr().to_string();
    assert_eq!(seen.header("x-forwarded-host"), Some(host.as_str()));
    assert_eq!(seen.header("x-custom"), Some("kept"));
    assert_eq!(
        seen.header("content-type"),
        Some("application/octet-stream")
    );
}

/// Without a client `X-Request-Id` the gateway makes one per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_is_generated_when_absent() {
    let fx = Fixture::start(Store::memory()).await;
    let token = fx.client_token(Some("reports")).await;
    for _ in 0..2 {
        assert_eq!(fx.get("/abc/id", Some(&token)).await.status, 200);
    }
    let ids: BTreeSet<String> = fx
        .up
        .requests()
        .iter()
        .map(|r| r.header("x-request-id").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(ids.len(), 2, "two distinct request ids expected: {ids:?}");
    assert!(ids.iter().all(|id| !id.is_empty()), "{ids:?}");
}

/// Hop-by-hop headers (and any header named in `Connection`) never reach the upstream;
/// end-to-end headers do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_dropped() {
    let fx = Fixture::start(Store::memory()).await;
    let token = fx.client_token(Some("reports")).await;
    let request = format!(
        "GET /abc/hop HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
         Connection: close, X-Hop-Secret\r\nX-Hop-Secret: must-not-pass\r\n\
         Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-Checksum\r\nUpgrade: example/1\r\n\
         Proxy-Authorization: Basic Zm9vOmJhcg==\r\nX-End-To-End: kept\r\n\r\n",
        fx.gw.addr()
    );
    let resp = raw(fx.gw.addr(), request.as_bytes()).await;
    assert_eq!(resp.status, 200, "{resp}");
    let seen = fx.up.only_request();
    for name in [
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "x-hop-secret",
    ] {
        assert!(
            !seen.headers.contains_key(name),
            "{name} was forwarded: {:?}",
            seen.headers
        );
    }
    if let Some(connection) = seen.header("connection") {
        let connection = connection.to_ascii_lowercase();
        assert!(
            !connection.contains("x-hop-secret"),
            "client's Connection forwarded: {connection}"
        );
    }
    assert_eq!(seen.header("x-end-to-end"), Some("kept"));
}

/// Spoofed identity headers, whatever their case, are replaced by the token's identity;
/// the user is named only for a password-grant token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_x_auth_headers_are_replaced() {
    let fx = Fixture::start(Store::memory()).await;
    let user_token = common::access_token(&fx.password_token_for("photoprint", "reports").await);
    let auth = format!("Bearer {user_token}");
    let resp = get(
        &fx.url("/abc/me"),
        &[
            ("authorization", &auth),
            ("X-AUTH-SUBJECT", "root"),
            ("x-auth-client-id", "admin-console"),
            ("X-Auth-Scope", "admin secret"),
            ("x-auth-roles", "superuser"),
        ],
    )
    .await;
    assert_eq!(resp.status, 200, "{resp}");
    let seen = fx.up.only_request();
    assert_eq!(seen.header("x-auth-subject"), Some("alice"));
    assert_eq!(seen.header("x-auth-client-id"), Some("photoprint"));
    assert_eq!(seen.header("x-auth-scope"), Some("reports"));
    assert_eq!(seen.header("x-auth-roles"), None);
}

/// A token whose scopes do not cover the path, or not for that method, is refused with
/// 403 naming the scopes that would have allowed it; nothing reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncovered_path_or_method_is_403_insufficient_scope() {
    let fx = Fixture::start(Store::memory()).await;
    let token = fx.client_token(Some("reports")).await;

    let resp = fx.get("/secret/x", Some(&token)).await;
    assert_error(&resp, 403, "insufficient_scope");
    let params = assert_bearer_challenge(&resp, "insufficient_scope");
    assert_eq!(scope_set(&params["scope"]), scope_set("secret"), "{resp}");

    // `GET /reports/{id}` is covered by `reports`; POST only by `publish`.
    assert_eq!(fx.get("/reports/7", Some(&token)).await.status, 200);
    let auth = format!("Bearer {token}");
    let resp = send(
        "POST",
        &fx.url("/reports/7"),
        &[("authorization", &auth)],
        "x",
    )
    .await;
    assert_error(&resp, 403, "insufficient_scope");
    let params = assert_bearer_challenge(&resp, "insufficient_scope");
    assert_eq!(scope_set(&params["scope"]), scope_set("publish"), "{resp}");

    assert_eq!(fx.up.uris(), ["/reports/7"]);
    let seen = fx.up.only_request();
    assert_eq!(seen.method, "GET");
}

both_backends!(expired_token_is_401_token_expired);

/// A token is refused once expired, even though it was used (and so may sit in the node's
/// cache, whose `cache_ttl` is far longer) before: 401 `invalid_token` with
/// `error_description="token expired"`.
async fn expired_token_is_401_token_expired(store: Store) {
    let fx = Fixture::start_with(store, |c| {
        c.add_client(
            "shortlived",
            &["client_credentials"],
            &["reports"],
            "access_token_ttl = \"2s\"",
        );
    })
    .await;
    let issued = fx.client_token_for("shortlived", None).await;
    let token = common::access_token(&issued);
    let expires_in = issued["expires_in"].as_i64().expect("expires_in");
    assert!(
        (1..=2).contains(&expires_in),
        "expires_in {expires_in} for a 2s client"
    );
    let expires_at = parse_rfc3339_utc(issued["expires_at"].as_str().unwrap_or_default())
        .expect("expires_at as RFC 3339");

    let resp = fx.get("/abc/x", Some(&token)).await;
    assert_eq!(resp.status, 200, "a fresh token works: {resp}");

    let expired = poll(Duration::from_secs(5), || {
        let token = token.clone();
        let fx = &fx;
        async move {
            let resp = fx.get("/abc/x", Some(&token)).await;
            assert!(matches!(resp.status, 200 | 401), "unexpected {resp}");
            (resp.status == 401).then_some(resp)
        }
    })
    .await
    .expect("token still accepted 5 s after issue with a 2 s lifetime");
    assert!(unix_now() >= expires_at - 1, "refused before expires_at");
    assert_error(&expired, 401, "invalid_token");
    let params = assert_bearer_challenge(&expired, "invalid_token");
    assert_eq!(
        params.get("error_description").map(String::as_str),
        Some("token expired")
    );
    assert_eq!(expired.json()["error_description"], "token expired");
}

/// Paths are normalised before authorisation and the upstream receives exactly the path
/// that was authorised: dot segments (plain or percent-encoded) cannot climb into another
/// scope's path or out of a public route; `%2F`, `%5C`, `%00`, backslashes and escaping
/// the root are 400. Nothing under `/secret` ever reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_never_reaches_another_scopes_path() {
    let fx = Fixture::start(Store::memory()).await;
    let token = fx.client_token(Some("reports")).await;
    let auth = format!("Bearer {token}");
    let with_token = [("authorization", auth.as_str())];
    let addr = fx.gw.addr();

    let allowed = [
        ("/abc/x/../y", "/abc/y"),
        ("/abc/./z", "/abc/z"),
        ("/abc/%7Euser", "/abc/~user"),
        ("/secret/../abc/w", "/abc/w"),
        (
            "/abc/q?path=%2F..%2Fsecret&n=%00",
            "/abc/q?path=%2F..%2Fsecret&n=%00",
        ),
    ];
    for (target, _) in allowed {
        let resp = raw_get(addr, target, &with_token).await;
        assert_eq!(resp.status, 200, "{target}: {resp}");
    }

    let forbidden = [
        "/abc/../secret/x",
        "/abc/%2e%2e/secret/x",
        "/abc/%2E%2E/secret/x",
        "/abc/.%2e/secret/x",
        "/abc/sub/../../secret/x",
        "/abc/./../secret/x",
        "/public/../secret/x",
        "/public/%2e%2e/secret/x",
    ];
    for target in forbidden {
        let resp = raw_get(addr, target, &with_token).await;
        assert_error(&resp, 403, "insufficient_scope");
        let resp = raw_get(addr, target, &[]).await;
        assert_eq!(resp.status, 401, "{target} without a token: {resp}");
    }

    let rejected = [
        "/abc/..%2Fsecret/x",
        "/abc/..%2fsecret/x",
        "/abc/%2F",
        "/public/..%2Fsecret/x",
        "/abc/%5Csecret",
        "/abc/..%5csecret/x",
        "/abc/x%00",
        "/abc/%00/x",
        "/abc/..\\secret\\x",
        "/../secret/x",
        "/%2e%2e/secret/x",
        "/abc/../../secret/x",
        "/public/../../etc/passwd",
    ];
    for target in rejected {
        let resp = raw_get(addr, target, &with_token).await;
        // A gateway-made 400, not an upstream's or the HTTP parser's: the JSON error body.
        assert_error(&resp, 400, "invalid_request");
        let description = resp.json()["error_description"].clone();
        assert!(
            description.as_str().is_some_and(|d| !d.is_empty()),
            "{target}: no error_description in {resp}"
        );
        assert_eq!(
            resp.header("content-type"),
            Some("application/json"),
            "{target}: {resp}"
        );
    }

    let expected: Vec<&str> = allowed.iter().map(|(_, forwarded)| *forwarded).collect();
    assert_eq!(fx.up.uris(), expected);

    // The same encoded traversal with a token that does cover /secret is allowed, and the
    // upstream sees the resolved path, not the encoded one.
    let secret_token = fx.client_token(Some("secret")).await;
    let resp = raw_get(
        addr,
        "/abc/%2e%2e/secret/x",
        &[("authorization", &format!("Bearer {secret_token}"))],
    )
    .await;
    assert_eq!(resp.status, 200, "{resp}");
    assert_eq!(fx.up.uris().last().map(String::as_str), Some("/secret/x"));
}

/// An `auth = "none"` route needs no token, and identity headers cannot be spoofed
/// through it either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_route_needs_no_token() {
    let fx = Fixture::start(Store::memory()).await;
    let resp = get(
        &fx.url("/public/hello?q=1"),
        &[("x-auth-subject", "root"), ("x-auth-client-id", "x")],
    )
    .await;
    assert_eq!(resp.status, 200, "{resp}");
    let seen = fx.up.only_request();
    assert_eq!(seen.uri, "/public/hello?q=1");
    let spoofed: Vec<_> = seen
        .headers
        .keys()
        .filter(|k| k.as_str().starts_with("x-auth-"))
        .collect();
    assert!(
        spoofed.is_empty(),
        "X-Auth-* reached the upstream: {spoofed:?}"
    );
}

/// A path no route matches is 404 `not_found`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_is_404() {
    let fx = Fixture::start(Store::memory()).await;
    let token = fx.client_token(None).await;
    let resp = fx.get("/nowhere/x", Some(&token)).await;
    assert_error(&resp, 404, "not_found");
    assert!(fx.up.uris().is_empty());
}

/// `strip_prefix` is removed from the forwarded path; the query is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strip_prefix_is_removed_upstream() {
    let fx = Fixture::start(Store::memory()).await;
    let token = fx.client_token(Some("infra")).await;
    let resp = fx.get("/strip/a/b?q=1", Some(&token)).await;
    assert_eq!(resp.status, 200, "{resp}");
    assert_eq!(fx.up.uris(), ["/a/b?q=1"]);
}

/// One access-log line per request, carrying its request id (SPEC §1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_names_the_request() {
    let fx = Fixture::start(Store::memory()).await;
    let token = fx.client_token(Some("reports")).await;
    let request_id = format!("e2e-{}", random_hex(8));
    let auth = format!("Bearer {token}");
    let resp = get(
        &fx.url("/abc/logged"),
        &[("authorization", &auth), ("x-request-id", &request_id)],
    )
    .await;
    assert_eq!(resp.status, 200);
    let line = poll(Duration::from_secs(3), || {
        let found = fx.gw.logs().into_iter().find(|l| l.contains(&request_id));
        async move { found }
    })
    .await
    .expect("no log line carries the request id");
    assert!(
        line.contains("/abc/logged"),
        "access log line lacks the path: {line}"
    );
}
