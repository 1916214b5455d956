//! End-to-end: dot segments with `;` parameters (SPEC §3). Java servlet containers (Tomcat,
//! Jetty, Spring) cut `;` parameters off each segment before resolving dot segments, so to
//! them `/abc/..;/secret/x` is `/secret/x`. Were it forwarded, a token for `/abc/*` would reach
//! `/secret/*` on such an upstream; the gateway refuses it with 400 instead.

#[macro_use]
mod common;

use common::{Fixture, Store, assert_error, raw_get};

/// Every spelling of a dot segment with parameters is a gateway-made 400 before any token or
/// scope check, and none reaches the upstream; ordinary `;` parameters (`x.jsp;jsessionid=1`)
/// still pass, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_with_parameters_never_reach_the_upstream() {
    let fx = Fixture::start(Store::memory()).await;
    let token = fx.client_token(Some("reports")).await;
    let auth = format!("Bearer {token}");
    let with_token = [("authorization", auth.as_str())];
    let addr = fx.gw.addr();

    let refused = [
        "/abc/..;/private/x",
        "/abc/..;/secret/x",
        "/abc/..;x/secret/x",
        "/abc/..;jsessionid=1/secret/x",
        "/abc/sub/..;/..;/secret/x",
        "/abc/.;/x",
        "/abc/.;jsessionid=1",
        "/abc/%2e%2e;/secret/x",
        "/abc/%2E%2E;x/secret/x",
        "/abc/.%2e;/secret/x",
        "/abc/..%3B/secret/x",
        "/abc/..%3bx/secret/x",
        "/strip/..;/secret/x",
        "/public/..;/secret/x",
    ];
    for target in refused {
        let resp = raw_get(addr, target, &with_token).await;
        // The gateway's own JSON error, not the upstream's or the HTTP parser's.
        assert_error(&resp, 400, "invalid_request");
        let description = resp.json()["error_description"].clone();
        assert!(
            description.as_str().is_some_and(|d| d.contains("..;")),
            "{target}: {resp}"
        );
        let resp = raw_get(addr, target, &[]).await;
        assert_error(&resp, 400, "invalid_request");
    }
    assert_eq!(
        fx.up.uris(),
        Vec::<String>::new(),
        "the upstream saw a request"
    );

    let passed = [
        "/abc/x.jsp;jsessionid=1",
        "/abc/a;b/c",
        "/abc/...;x",
        "/abc/;x/y",
    ];
    for target in passed {
        let resp = raw_get(addr, target, &with_token).await;
        assert_eq!(resp.status, 200, "{target}: {resp}");
    }
    assert_eq!(fx.up.uris(), passed);
}
