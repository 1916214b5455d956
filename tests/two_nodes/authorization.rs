//! The authorization server across two gateway nodes sharing one store (issue 3, "Done
//! when"): pending requests, login sessions and codes live in the store, so a user may hop
//! between nodes mid-flow, and a revocation on one node holds on the other within one second.

use std::time::Duration;

use crate::common::{
    Fixture, Gateway, Pkce, Store, access_token, add_auth_clients, code_params, exchange_code,
    get_with_token, location, post_form, query_params, refresh_token, time_until_status,
    without_query,
};

/// Node A is `fx.gw`; node B a second gateway on the same config and store.
async fn start(store: Store) -> (Fixture, Gateway) {
    let fx = Fixture::start_with(store, add_auth_clients).await;
    let b = fx.start_node().await;
    (fx, b)
}

fn token_url(node: &Gateway) -> String {
    format!("{}/oauth/token", node.base_url())
}

/// Authorize and log in on A, then the consent page and decision on B with the same
/// cookies: the code B issues is exchanged on A, and the token works on both nodes. And
/// the other way round: a code issued on A is exchanged on B.
pub async fn a_flow_may_hop_between_nodes(store: Store) {
    let (fx, b) = start(store).await;
    let (cb, pkce) = (fx.callback(), Pkce::random());
    let params = code_params("webapp", &cb, "reports", "hop", &pkce);
    let mut agent = fx.agent();
    let page = agent.authorize(&params).await;
    assert_eq!(page.status, 200, "login page on A: {page}");
    let resp = agent.login(&page, "alice", &fx.creds.password).await;
    assert_eq!(resp.status, 303, "login on A: {resp}");

    agent.base = b.base_url();
    let consent = agent.follow(&resp).await;
    assert_eq!(
        consent.status, 200,
        "consent page on B after login on A: {consent}"
    );
    let resp = agent.consent(&consent, None, "grant").await;
    assert_eq!(resp.status, 303, "consent on B: {resp}");
    let back = location(&resp);
    assert_eq!(without_query(back), cb);
    let code = query_params(back)["code"].clone();
    let resp = fx
        .exchange_code("webapp", true, &code, &cb, Some(&pkce.verifier))
        .await;
    assert_eq!(resp.status, 200, "code from B exchanged on A: {resp}");
    let access = access_token(&resp.json());
    for node in [&fx.gw, &b] {
        let resp = get_with_token(&format!("{}/abc/x", node.base_url()), Some(&access)).await;
        assert_eq!(resp.status, 200, "{resp}");
    }

    // Back on A: the session from A's login is still good there; the code goes to B.
    agent.base = fx.gw.base_url();
    let (code, pkce) = fx.code_for(&mut agent, "webapp", &cb, "reports").await;
    let secret = Some(fx.creds.secret.as_str());
    let resp = exchange_code(
        &token_url(&b),
        "webapp",
        secret,
        &code,
        &cb,
        Some(&pkce.verifier),
    )
    .await;
    assert_eq!(resp.status, 200, "code from A exchanged on B: {resp}");
}

/// A code exchanged on A and replayed on B: `invalid_grant` on B, and the tokens the first
/// exchange issued stop working on A within one second.
pub async fn code_replayed_on_the_other_node_revokes_everywhere(store: Store) {
    let (fx, b) = start(store).await;
    let cb = fx.callback();
    let (code, pkce) = fx.code_for(&mut fx.agent(), "webapp", &cb, "reports").await;
    let first = fx
        .exchange_code("webapp", true, &code, &cb, Some(&pkce.verifier))
        .await;
    assert_eq!(first.status, 200, "{first}");
    let tokens = first.json();
    let access = access_token(&tokens);
    assert_eq!(fx.get("/abc/x", Some(&access)).await.status, 200);

    let secret = Some(fx.creds.secret.as_str());
    let replay = exchange_code(
        &token_url(&b),
        "webapp",
        secret,
        &code,
        &cb,
        Some(&pkce.verifier),
    )
    .await;
    // Checked on A: the replay on B revoked the grant everywhere.
    fx.assert_code_replay_revoked(&replay, &tokens).await;
}

/// Revoking a code grant's refresh token on A stops its access token on B (which has it
/// cached) within one second; introspection on B agrees.
pub async fn revocation_on_a_holds_on_b(store: Store) {
    let (fx, b) = start(store).await;
    let cb = fx.callback();
    let (code, pkce) = fx.code_for(&mut fx.agent(), "webapp", &cb, "reports").await;
    let tokens = fx
        .exchange_code("webapp", true, &code, &cb, Some(&pkce.verifier))
        .await
        .json();
    let access = access_token(&tokens);
    let on_b = format!("{}/abc/x", b.base_url());
    b.assert_cached("/abc/x", &access).await;

    let basic = Some(("webapp", fx.creds.secret.as_str()));
    let rt = refresh_token(&tokens);
    let resp = post_form(&fx.url("/oauth/revoke"), &[("token", &rt)], basic).await;
    assert_eq!(resp.status, 200, "{resp}");
    let took = time_until_status(&on_b, &access, 401, Duration::from_secs(1)).await;
    assert!(
        took.is_some(),
        "B still accepts an access token whose grant A revoked"
    );
    let resp = get_with_token(&on_b, Some(&access)).await;
    crate::common::assert_invalid_token(&resp, "token revoked");
    let introspect = format!("{}/oauth/introspect", b.base_url());
    let resp = post_form(&introspect, &[("token", &access)], basic).await;
    assert_eq!(resp.json(), serde_json::json!({"active": false}), "{resp}");
}

/// A refresh on A retried on B within the grace window gets A's answer.
pub async fn refresh_retried_on_the_other_node_within_grace(store: Store) {
    let (fx, b) = start(store).await;
    let grant = fx.password_token_for("photoprint", "reports").await;
    let rt = refresh_token(&grant);
    let params = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt.as_str()),
    ];
    let basic = Some(("photoprint", fx.creds.secret.as_str()));
    let on_a = post_form(&fx.token_url(), &params, basic).await;
    assert_eq!(on_a.status, 200, "{on_a}");
    let on_b = post_form(&token_url(&b), &params, basic).await;
    assert_eq!(on_b.status, 200, "retry on B within grace: {on_b}");
    let (on_a, on_b) = (on_a.json(), on_b.json());
    assert_eq!(access_token(&on_a), access_token(&on_b));
    assert_eq!(refresh_token(&on_a), refresh_token(&on_b));
}
