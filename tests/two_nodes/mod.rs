//! Two gateway nodes on one shared store, and the scenarios every shared store must pass
//! (SPEC §11: any node serves any request; a revocation holds on every node within 1 s).
//! Each scenario takes the [`Store`] to run on: `tests/cluster.rs`,
//! `tests/authorization_cluster.rs` and `tests/admin_cluster.rs` run them on one Redis,
//! `tests/cluster_redis_cluster.rs` on a Redis Cluster.
//!
//! # Layout
//! - this file: [`Nodes`] (nodes `a` and `b`, one upstream) and the token scenarios.
//! - `authorization.rs`: browser flows and codes across nodes.
//! - `admin.rs`: clients and tokens managed through either node's admin API.

// Every test file compiles this module on its own and runs a different part of it.
#![allow(dead_code, unused_imports, unused_macros)]

/// Runs each named scenario of this module as a test of the calling file, on the store
/// `$store` makes afresh for each: `scenarios_on!(Store::redis().await => name, ...)`.
macro_rules! scenarios_on {
    ($store:expr => $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            crate::two_nodes::$name($store).await
        }
    )*};
}

mod admin;
mod authorization;

pub use admin::{
    a_token_deleted_on_one_node_is_refused_by_another_within_a_second,
    clients_are_shared_by_every_node,
};
pub use authorization::{
    a_flow_may_hop_between_nodes, code_replayed_on_the_other_node_revokes_everywhere,
    refresh_retried_on_the_other_node_within_grace, revocation_on_a_holds_on_b,
};

use std::time::Duration;

use serde_json::Value;

use crate::common::{
    Creds, Gateway, GatewayConfig, Resp, Store, Upstream, access_token, assert_error,
    assert_invalid_token, get_with_token, post_form, random_token, refresh_token,
    time_until_status,
};

/// Nodes `a` and `b` on the same config, store and key prefix, in front of one upstream.
/// `refresh_grace` is `0s`: reuse detection is tested here; the retry grace window has its
/// own tests.
pub struct Nodes {
    pub a: Gateway,
    pub b: Gateway,
    pub up: Upstream,
    pub store: Store,
    pub creds: Creds,
    /// The rendered config both nodes run on (for [`Nodes::start_node`]).
    pub config: String,
}

impl Nodes {
    pub async fn start(store: Store) -> Nodes {
        let up = Upstream::start("up").await;
        let creds = Creds::random();
        let mut config = GatewayConfig::new(&store, &up.url(), &creds);
        config.set_oauth("refresh_grace", "0s");
        let config = config.render();
        let a = Gateway::start(&config, &[]).await;
        let b = Gateway::start(&config, &[]).await;
        Nodes {
            a,
            b,
            up,
            store,
            creds,
            config,
        }
    }

    /// A further node on the same config: one whose cache holds nothing yet.
    pub async fn start_node(&self) -> Gateway {
        Gateway::start(&self.config, &[]).await
    }

    /// A token request to `node` as `photoprint`.
    pub async fn token_request(&self, node: &Gateway, params: &[(&str, &str)]) -> Resp {
        let url = format!("{}/oauth/token", node.base_url());
        post_form(&url, params, Some(("photoprint", &self.creds.secret))).await
    }

    /// A token request to `node` as `photoprint`; panics unless 200.
    pub async fn token(&self, node: &Gateway, params: &[(&str, &str)]) -> Value {
        let resp = self.token_request(node, params).await;
        assert_eq!(
            resp.status,
            200,
            "token request to {}: {resp}",
            node.base_url()
        );
        resp.json()
    }

    /// A client_credentials access token (scope `reports`) from `node`.
    pub async fn client_token(&self, node: &Gateway) -> String {
        access_token(
            &self
                .token(
                    node,
                    &[("grant_type", "client_credentials"), ("scope", "reports")],
                )
                .await,
        )
    }

    /// A password grant for alice (scope `reports`) from `node`: access and refresh token.
    pub async fn password_token(&self, node: &Gateway) -> Value {
        let params = [
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", self.creds.password.as_str()),
            ("scope", "reports"),
        ];
        self.token(node, &params).await
    }

    /// `POST /oauth/revoke` on `node`.
    pub async fn revoke_request(&self, node: &Gateway, token: &str) -> Resp {
        let url = format!("{}/oauth/revoke", node.base_url());
        let basic = Some(("photoprint", self.creds.secret.as_str()));
        post_form(&url, &[("token", token)], basic).await
    }

    /// `POST /oauth/revoke` on `node`; asserts 200.
    pub async fn revoke(&self, node: &Gateway, token: &str) {
        let resp = self.revoke_request(node, token).await;
        assert_eq!(resp.status, 200, "revoke on {}: {resp}", node.base_url());
    }
}

/// A protected route of `node` (`/abc/x`, scope `reports`).
pub fn protected(node: &Gateway) -> String {
    format!("{}/abc/x", node.base_url())
}

/// 503 `temporarily_unavailable` with a `Retry-After` in either of its forms.
pub fn assert_unavailable(resp: &Resp) {
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

/// Tokens live in the shared store: a token issued on A is accepted by B, a refresh token
/// issued on A is redeemed on B, and the tokens that come out of that work on A.
pub async fn token_issued_on_one_node_works_on_the_other(store: Store) {
    let cl = Nodes::start(store).await;
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
pub async fn revocation_on_one_node_reaches_the_other_within_one_second(store: Store) {
    let cl = Nodes::start(store).await;
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
    let reuse = [
        ("grant_type", "refresh_token"),
        ("refresh_token", first_refresh.as_str()),
    ];
    let resp = cl.token_request(&cl.a, &reuse).await;
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
