//! End-to-end: two gateway nodes sharing one Redis (SPEC §4 store rows, §5 revocation,
//! §7 "within one second on every node"), and a Redis outage.

mod common;

use std::time::Duration;

use common::{
    Creds, Gateway, GatewayConfig, Store, Upstream, access_token, assert_error,
    assert_invalid_token, get_with_token, poll, post_form, random_token, refresh_token,
    time_until_status,
};
use serde_json::Value;

/// Nodes `a` and `b` on the same config, Redis and key prefix, in front of one upstream.
struct Cluster {
    a: Gateway,
    b: Gateway,
    up: Upstream,
    store: Store,
    creds: Creds,
}

impl Cluster {
    async fn start() -> Cluster {
        let store = Store::redis().await;
        let up = Upstream::start("up").await;
        let creds = Creds::random();
        let mut config = GatewayConfig::new(&store, &up.url(), &creds);
        // Reuse detection is tested here; the retry grace window has its own tests.
        config.set_oauth("refresh_grace", "0s");
        let config = config.render();
        let a = Gateway::start(&config, &[]).await;
        let b = Gateway::start(&config, &[]).await;
        Cluster {
            a,
            b,
            up,
            store,
            creds,
        }
    }

    /// A token request to `node` as `photoprint`; panics unless 200.
    async fn token(&self, node: &Gateway, params: &[(&str, &str)]) -> Value {
        let url = format!("{}/oauth/token", node.base_url());
        let resp = post_form(&url, params, Some(("photoprint", &self.creds.secret))).await;
        assert_eq!(
            resp.status,
            200,
            "token request to {}: {resp}",
            node.base_url()
        );
        resp.json()
    }

    async fn client_token(&self, node: &Gateway) -> String {
        access_token(
            &self
                .token(
                    node,
                    &[("grant_type", "client_credentials"), ("scope", "reports")],
                )
                .await,
        )
    }

    async fn password_token(&self, node: &Gateway) -> Value {
        let params = [
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", self.creds.password.as_str()),
            ("scope", "reports"),
        ];
        self.token(node, &params).await
    }

    /// `POST /oauth/revoke` on `node`; asserts 200.
    async fn revoke(&self, node: &Gateway, token: &str) {
        let url = format!("{}/oauth/revoke", node.base_url());
        let resp = post_form(
            &url,
            &[("token", token)],
            Some(("photoprint", &self.creds.secret)),
        )
        .await;
        assert_eq!(resp.status, 200, "revoke on {}: {resp}", node.base_url());
    }
}

fn protected(node: &Gateway) -> String {
    format!("{}/abc/x", node.base_url())
}

/// Tokens live in the shared store: a token issued on A is accepted by B, a refresh token
/// issued on A is redeemed on B, and the tokens that come out of that work on A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_issued_on_one_node_works_on_the_other() {
    let cl = Cluster::start().await;
    let token = cl.client_token(&cl.a).await;
    let resp = get_with_token(&protected(&cl.b), Some(&token)).await;
    assert_eq!(resp.status, 200, "{resp}");
    assert_eq!(
        cl.up.only_request().header("x-auth-client-id"),
        Some("photoprint")
    );

    let grant = cl.password_token(&cl.a).await;
    let renewed = cl
        .token(
            &cl.b,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token(&grant)),
            ],
        )
        .await;
    let resp = get_with_token(&protected(&cl.a), Some(&access_token(&renewed))).await;
    assert_eq!(resp.status, 200, "{resp}");
}

/// A revocation on A reaches B within one second although B has the token cached
/// (`cache_ttl` is 30 s; B is seen serving it from its cache first): for an access token,
/// for a refresh token (its access tokens), and for a grant revoked by reuse of a retired
/// refresh token. B then says "token revoked", not "unknown token".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_on_one_node_reaches_the_other_within_one_second() {
    let cl = Cluster::start().await;
    let within = Duration::from_secs(1);

    let token = cl.client_token(&cl.a).await;
    assert_eq!(
        get_with_token(&protected(&cl.a), Some(&token)).await.status,
        200
    );
    cl.b.assert_cached("/abc/x", &token).await;
    cl.revoke(&cl.a, &token).await;
    let took = time_until_status(&protected(&cl.b), &token, 401, within).await;
    assert!(
        took.is_some(),
        "B still accepts an access token revoked on A after {within:?}"
    );
    let resp = get_with_token(&protected(&cl.b), Some(&token)).await;
    assert_invalid_token(&resp, "token revoked");
    let resp = get_with_token(&protected(&cl.b), Some(&random_token())).await;
    assert_invalid_token(&resp, "unknown token");

    let grant = cl.password_token(&cl.a).await;
    let access = access_token(&grant);
    cl.b.assert_cached("/abc/x", &access).await;
    cl.revoke(&cl.a, &refresh_token(&grant)).await;
    let took = time_until_status(&protected(&cl.b), &access, 401, within).await;
    assert!(
        took.is_some(),
        "B still accepts an access token whose refresh token A revoked"
    );

    let grant = cl.password_token(&cl.a).await;
    let (first_access, first_refresh) = (access_token(&grant), refresh_token(&grant));
    let renewed = cl
        .token(
            &cl.a,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &first_refresh),
            ],
        )
        .await;
    let access = access_token(&renewed);
    cl.b.assert_cached("/abc/x", &access).await;
    cl.b.assert_cached("/abc/x", &first_access).await;
    let reuse_url = format!("{}/oauth/token", cl.a.base_url());
    let reuse = [
        ("grant_type", "refresh_token"),
        ("refresh_token", first_refresh.as_str()),
    ];
    let resp = post_form(&reuse_url, &reuse, Some(("photoprint", &cl.creds.secret))).await;
    assert_error(&resp, 400, "invalid_grant");
    for token in [&access, &first_access] {
        let took = time_until_status(&protected(&cl.b), token, 401, within).await;
        assert!(
            took.is_some(),
            "B still accepts a token of a grant A revoked on refresh reuse"
        );
        let resp = get_with_token(&protected(&cl.b), Some(token)).await;
        assert_invalid_token(&resp, "token revoked");
    }
}

/// Redis down: every node answers 503 `temporarily_unavailable` with `Retry-After` for
/// tokens it has not cached, and, once it has noticed the lost connection, for cached ones
/// too; never 401 (the token may be fine) and never 200 for a token it has not seen.
/// When Redis is back, the same tokens work again without restarting the gateways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outage_is_503_then_recovers() {
    let mut cl = Cluster::start().await;
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

fn assert_unavailable(resp: &common::Resp) {
    assert_error(resp, 503, "temporarily_unavailable");
    let retry_after = resp
        .header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {resp}"));
    let valid = retry_after.parse::<u64>().is_ok() || retry_after.ends_with(" GMT");
    assert!(
        valid,
        "Retry-After is neither delta-seconds nor an HTTP-date: {resp}"
    );
}
