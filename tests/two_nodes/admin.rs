//! The admin API on two gateway nodes sharing one store (SPEC §7: clients live in the
//! store; a revocation takes effect on every node within one second).

use std::time::Duration;

use serde_json::json;

use crate::common::{
    Admin, Store, access_token, admin_fixture, admin_token, assert_error, assert_invalid_token,
    get_with_token, post_form, time_until_status,
};

/// Two nodes on one store: a client created on one works on the other at once, and its
/// deletion on the other revokes its tokens on the first within a second.
pub async fn clients_are_shared_by_every_node(store: Store) {
    let (fx, admin_a) = admin_fixture(store, |_| {}).await;
    let b = fx.start_node().await;
    let admin_b = Admin::new(&b.admin_url(), &admin_a.token);

    let created = admin_a
        .create_client(&json!({"name": "Shared", "scopes": ["reports"]}))
        .await;
    let id = created["client_id"].as_str().expect("client_id").to_owned();
    let secret = created["client_secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let resp = post_form(
        &format!("{}/oauth/token", b.base_url()),
        &[("grant_type", "client_credentials")],
        Some((&id, &secret)),
    )
    .await;
    assert_eq!(resp.status, 200, "created on A, token from B: {resp}");
    let token = access_token(&resp.json());
    let resp = admin_b.get(&format!("/admin/clients/{id}")).await;
    assert_eq!(resp.status, 200, "B lists A's client: {resp}");

    // Cached on A, then deleted through B.
    fx.gw.assert_cached("/abc/x", &token).await;
    let resp = admin_b.delete(&format!("/admin/clients/{id}")).await;
    assert_eq!(resp.status, 204, "{resp}");
    let took = time_until_status(&fx.url("/abc/x"), &token, 401, Duration::from_secs(1)).await;
    assert!(
        took.is_some(),
        "deleted on B, token still works on A after 1 s"
    );
    assert_invalid_token(&fx.get("/abc/x", Some(&token)).await, "token revoked");
    let resp = post_form(
        &fx.token_url(),
        &[("grant_type", "client_credentials")],
        Some((&id, &secret)),
    )
    .await;
    assert_error(&resp, 401, "invalid_client");

    // An admin token from one node is good on the other.
    let other = admin_token(&fx).await;
    assert_eq!(
        admin_b
            .with_token(&other)
            .get("/admin/clients")
            .await
            .status,
        200
    );
}

/// Two nodes on one store: a token deleted through node A's admin API is refused by node B
/// (which had it cached) within a second.
pub async fn a_token_deleted_on_one_node_is_refused_by_another_within_a_second(store: Store) {
    let (fx, admin_a) = admin_fixture(store, |_| {}).await;
    let b = fx.start_node().await;
    let token = fx.client_token(Some("reports")).await;
    let url_b = format!("{}/abc/x", b.base_url());
    // Node B validates it and serves it from its cache.
    b.assert_cached("/abc/x", &token).await;
    let listed = admin_a.tokens("client_id=photoprint").await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let id = listed[0]["id"].as_str().expect("id").to_owned();
    let admin_b = Admin::new(&b.admin_url(), &admin_a.token);
    assert_eq!(
        admin_b.tokens("client_id=photoprint").await,
        listed,
        "both nodes list the same tokens"
    );

    let resp = admin_a.delete(&format!("/admin/tokens/{id}")).await;
    assert_eq!(resp.status, 204, "{resp}");
    let took = time_until_status(&url_b, &token, 401, Duration::from_secs(1)).await;
    assert!(took.is_some(), "deleted on A, still served by B after 1 s");
    assert_invalid_token(&get_with_token(&url_b, Some(&token)).await, "token revoked");
}
