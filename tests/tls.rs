//! End-to-end: TLS (SPEC §2 `[server.tls]`, issue 4): the public listener speaks HTTPS with
//! ALPN `h2` and `http/1.1`, certificates are re-read on reload, and `https://` upstreams
//! are verified against a configured CA.

mod common;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use common::{
    Fixture, Leaf, Store, TempDir, TestCa, TlsExchange, TlsUpstream, access_token, assert_error,
    basic_auth, https_request, poll,
};
use hyper::Version;

/// `[server.tls]` naming `leaf`'s files (a subtable may follow the other tables).
fn tls_section(leaf: &Leaf) -> String {
    format!(
        "\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        leaf.cert.display(),
        leaf.key.display()
    )
}

/// A gateway serving HTTPS with `leaf`.
async fn https_gateway(leaf: &Leaf) -> Fixture {
    let section = tls_section(leaf);
    Fixture::start_with(Store::memory(), |config| {
        config.public_url = "https://localhost:1".to_owned();
        config.extra.push_str(&section);
    })
    .await
}

/// One request to the fixture's HTTPS listener trusting `ca`; panics if TLS fails.
async fn https(
    fx: &Fixture,
    ca: &TestCa,
    alpn: &[&str],
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> TlsExchange {
    https_request(
        fx.gw.addr(),
        &[ca.cert.as_path()],
        alpn,
        method,
        path,
        headers,
        Bytes::from(body.to_owned()),
    )
    .await
    .unwrap_or_else(|e| panic!("{method} {path} over HTTPS: {e}"))
}

/// A client_credentials token for photoprint, fetched over HTTPS.
async fn token_over_https(fx: &Fixture, ca: &TestCa) -> String {
    let basic = basic_auth("photoprint", &fx.creds.secret);
    let headers = [
        ("authorization", basic.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let body = "grant_type=client_credentials&scope=reports";
    let x = https(
        fx,
        ca,
        &["h2", "http/1.1"],
        "POST",
        "/oauth/token",
        &headers,
        body,
    )
    .await;
    assert_eq!(x.resp.status, 200, "token over HTTPS: {}", x.resp);
    access_token(&x.resp.json())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_http2_and_http11_chosen_by_alpn() {
    let dir = TempDir::new("tls");
    let ca = TestCa::new(dir.path(), "gw");
    let leaf = ca.issue("gateway");
    let fx = https_gateway(&leaf).await;

    let h2 = https(&fx, &ca, &["h2", "http/1.1"], "GET", "/public/x", &[], "").await;
    assert_eq!(h2.alpn.as_deref(), Some("h2"), "ALPN with h2 offered");
    assert_eq!(h2.version, Version::HTTP_2);
    assert_eq!(h2.resp.status, 200, "{}", h2.resp);
    assert!(h2.resp.body.contains("upstream=up"), "{}", h2.resp);
    assert_eq!(h2.peer_cert, leaf.der(), "the configured certificate");

    let h1 = https(&fx, &ca, &["http/1.1"], "GET", "/public/y", &[], "").await;
    assert_eq!(
        h1.alpn.as_deref(),
        Some("http/1.1"),
        "ALPN with only http/1.1"
    );
    assert_eq!(h1.version, Version::HTTP_11);
    assert_eq!(h1.resp.status, 200, "{}", h1.resp);

    // A protected route over HTTPS, both protocols; the upstream learns it was HTTPS.
    let token = token_over_https(&fx, &ca).await;
    let auth = format!("Bearer {token}");
    for alpn in [&["h2"][..], &["http/1.1"][..]] {
        let x = https(
            &fx,
            &ca,
            alpn,
            "GET",
            "/abc/x",
            &[("authorization", &auth)],
            "",
        )
        .await;
        assert_eq!(
            x.resp.status, 200,
            "protected route over {alpn:?}: {}",
            x.resp
        );
        let seen = fx.up.requests().pop().expect("a forwarded request");
        assert_eq!(seen.uri, "/abc/x");
        assert_eq!(seen.header("x-forwarded-proto"), Some("https"), "{alpn:?}");
        assert_eq!(seen.header("x-auth-client-id"), Some("photoprint"));
        assert!(seen.header("authorization").is_none());
    }
    let x = https(&fx, &ca, &["h2"], "GET", "/abc/x", &[], "").await;
    assert_error(&x.resp, 401, "unauthorized");

    // A client that does not trust the gateway's CA cannot complete the handshake.
    let other = TestCa::new(dir.path(), "stranger");
    let refused = https_request(
        fx.gw.addr(),
        &[other.cert.as_path()],
        &["h2"],
        "GET",
        "/public/x",
        &[],
        Bytes::new(),
    )
    .await;
    assert!(
        refused.is_err(),
        "handshake against an untrusted CA succeeded"
    );
}

/// Replaces `to`'s files with `from`'s (key first, each by rename, as deploy tools do).
fn install(from: &Leaf, to: &Leaf) {
    for (src, dst) in [(&from.key, &to.key), (&from.cert, &to.cert)] {
        let tmp = dst.with_extension("new");
        std::fs::copy(src, &tmp).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        std::fs::rename(&tmp, dst).unwrap_or_else(|e| panic!("rename {}: {e}", dst.display()));
    }
}

async fn presented(fx: &Fixture, ca: &TestCa) -> Vec<u8> {
    https(fx, ca, &["h2"], "GET", "/public/x", &[], "")
        .await
        .peer_cert
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_reread_on_sighup() {
    let dir = TempDir::new("tls-reload");
    let ca = TestCa::new(dir.path(), "gw");
    let live = ca.issue("live");
    let first = live.der();
    let fx = https_gateway(&live).await;
    assert_eq!(presented(&fx, &ca).await, first);

    let next = ca.issue("next");
    install(&next, &live);
    let second = live.der();
    assert_ne!(first, second);
    fx.gw.signal("HUP");
    let switched = poll(Duration::from_secs(3), || async {
        (presented(&fx, &ca).await == second).then_some(())
    })
    .await;
    assert!(
        switched.is_some(),
        "new connections still get the old certificate 3 s after SIGHUP"
    );
    let token = token_over_https(&fx, &ca).await;
    let auth = format!("Bearer {token}");
    let x = https(
        &fx,
        &ca,
        &["http/1.1"],
        "GET",
        "/abc/x",
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(x.resp.status, 200, "{}", x.resp);
}

/// Appends a public route `name` (`/{name}/*`) to `upstream`, trusting `ca` if given.
fn tls_route(name: &str, upstream: &str, ca: Option<&Path>) -> String {
    let ca = ca
        .map(|path| format!("upstream_ca = \"{}\"\n", path.display()))
        .unwrap_or_default();
    format!(
        "\n[[routes]]\nname = \"{name}\"\npath = \"/{name}/*\"\nupstreams = [\"{upstream}\"]\n\
         auth = \"none\"\ntimeout = \"5s\"\n{ca}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstreams_are_verified_against_the_configured_ca() {
    let dir = TempDir::new("tls-upstream");
    let upstream_ca = TestCa::new(dir.path(), "upstream");
    let stranger = TestCa::new(dir.path(), "stranger");
    let tls_up = TlsUpstream::start("tls-up", &upstream_ca.issue("upstream-leaf")).await;
    let url = tls_up.url();
    let fx = Fixture::start_with(Store::memory(), |config| {
        config
            .extra
            .push_str(&tls_route("trusted", &url, Some(&upstream_ca.cert)));
        config
            .extra
            .push_str(&tls_route("wrongca", &url, Some(&stranger.cert)));
        config.extra.push_str(&tls_route("sysroots", &url, None));
        config
            .extra
            .push_str("\n[[scopes]]\nname = \"tlsup\"\npaths = [\"/tlsprotected/*\"]\n");
        let protected = tls_route("tlsprotected", &url, Some(&upstream_ca.cert))
            .replace("auth = \"none\"\n", "");
        config.extra.push_str(&protected);
        config.add_client("tlsclient", &["client_credentials"], &["tlsup"], "");
    })
    .await;

    let resp = fx.get("/trusted/x?q=1", None).await;
    assert_eq!(resp.status, 200, "through an https upstream: {resp}");
    assert!(resp.body.contains("upstream=tls-up"), "{resp}");
    let seen = tls_up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, "/trusted/x?q=1");

    let token = access_token(&fx.client_token_for("tlsclient", None).await);
    let resp = fx.get("/tlsprotected/doc", Some(&token)).await;
    assert_eq!(resp.status, 200, "protected route, https upstream: {resp}");
    let seen = tls_up.requests().pop().expect("forwarded");
    assert_eq!(seen.header("x-auth-client-id"), Some("tlsclient"));

    // A certificate the route's CA did not sign, or one the system roots do not know.
    for path in ["/wrongca/x", "/sysroots/x"] {
        let resp = fx.get(path, None).await;
        assert_error(&resp, 502, "bad_gateway");
    }
    assert_eq!(
        tls_up.requests().len(),
        2,
        "an unverified upstream got a request"
    );
}
