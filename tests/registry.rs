//! End-to-end: the registry beyond the file (SPEC §9) on two nodes sharing one Redis: scopes
//! created, changed and deleted through one node's admin API reach the other within a second
//! without a reload; a scope in use cannot be deleted; a disabled client is refused on every
//! node within a second and works again when enabled; `admin:read` may only read.

mod common;

use std::time::Duration;

use common::{
    Admin, Fixture, Gateway, Store, access_token, admin_fixture, assert_error,
    assert_invalid_token, get_with_token, poll, post_form, time_until_status,
};
use serde_json::{Value, json};

const SECOND: Duration = Duration::from_secs(1);

/// A client_credentials token for a store client, from `node`'s token endpoint.
async fn token_from(node: &Gateway, id: &str, secret: &str) -> String {
    let resp = post_form(
        &format!("{}/oauth/token", node.base_url()),
        &[("grant_type", "client_credentials")],
        Some((id, secret)),
    )
    .await;
    assert_eq!(resp.status, 200, "token for {id}: {resp}");
    access_token(&resp.json())
}

fn id_and_secret(created: &Value) -> (String, String) {
    let get = |k: &str| {
        created[k]
            .as_str()
            .unwrap_or_else(|| panic!("no {k} in {created}"))
            .to_owned()
    };
    (get("client_id"), get("client_secret"))
}

/// Two nodes on one Redis, and an admin API on each with the same token.
async fn two_nodes(
    tweak: impl FnOnce(&mut common::GatewayConfig),
) -> (Fixture, Gateway, Admin, Admin) {
    let (fx, admin_a) = admin_fixture(Store::redis().await, tweak).await;
    let b = fx.start_node().await;
    let admin_b = Admin::new(&b.admin_url(), &admin_a.token);
    (fx, b, admin_a, admin_b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_made_on_one_node_take_effect_on_the_other_within_a_second() {
    let (fx, b, admin_a, admin_b) = two_nodes(|_| {}).await;
    // `GET /reports/archive/...` is on route `reports`, which no file scope covers that deep.
    let archive_b = format!("{}/reports/archive/2024", b.base_url());

    let resp = admin_a
        .post(
            "/admin/scopes",
            &json!({"name": "archive", "description": "Old reports", "paths": ["GET /reports/archive/*"]}),
        )
        .await;
    assert_eq!(resp.status, 201, "{resp}");
    assert_eq!(resp.json()["source"], "store", "{resp}");
    let created = admin_a
        .create_client(&json!({"name": "Archivist", "scopes": ["archive"]}))
        .await;
    let (id, secret) = id_and_secret(&created);
    let token = token_from(&b, &id, &secret).await;
    let took = time_until_status(&archive_b, &token, 200, SECOND).await;
    assert!(
        took.is_some(),
        "scope created on A, still refused on B after 1 s"
    );
    let listed = admin_b.get("/admin/scopes").await.json();
    let names: Vec<&str> = listed["scopes"]
        .as_array()
        .expect("scopes")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(
        names.contains(&"archive") && names.contains(&"reports"),
        "{listed}"
    );

    // Changed on B: A follows within a second, without a reload.
    let resp = admin_b
        .patch(
            "/admin/scopes/archive",
            &json!({"paths": ["GET /reports/old/*"]}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp}");
    let took = time_until_status(&fx.url("/reports/archive/2024"), &token, 403, SECOND).await;
    assert!(
        took.is_some(),
        "scope changed on B, old path still allowed on A after 1 s"
    );
    assert_eq!(fx.get("/reports/old/1", Some(&token)).await.status, 200);

    // In use: a client lists it → 409 naming the client.
    let resp = admin_a.delete("/admin/scopes/archive").await;
    assert_error(&resp, 409, "conflict");
    assert!(resp.body.contains(&id), "names the client: {resp}");
    // No client lists it, but a live token carries it → 409 about tokens.
    let resp = admin_a
        .patch(&format!("/admin/clients/{id}"), &json!({"scopes": []}))
        .await;
    assert_eq!(resp.status, 200, "{resp}");
    let resp = admin_b.delete("/admin/scopes/ARCHIVE").await;
    assert_error(&resp, 409, "conflict");
    assert!(resp.body.contains("live token"), "{resp}");
    // Its token revoked: the scope may go, and both nodes drop it.
    let listed = admin_a.tokens(&format!("client_id={id}")).await;
    let handle = listed[0]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        admin_a
            .delete(&format!("/admin/tokens/{handle}"))
            .await
            .status,
        204
    );
    let resp = admin_a.delete("/admin/scopes/archive").await;
    assert_eq!(resp.status, 204, "{resp}");
    let gone = poll(SECOND, || async {
        (admin_b.get("/admin/scopes/archive").await.status == 404).then_some(())
    })
    .await;
    assert!(gone.is_some(), "deleted on A, still shown on B after 1 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_rules_names_patterns_and_file_scopes() {
    let (_fx, _b, admin, _) = two_nodes(|_| {}).await;
    let post = |body: Value| {
        let admin = admin.clone();
        async move { admin.post("/admin/scopes", &body).await }
    };
    // Names are unique across file and store, case-insensitively.
    let resp = post(json!({"name": "Reports", "paths": ["/x/*"]})).await;
    assert_error(&resp, 409, "conflict");
    // A bad pattern is named.
    let resp = post(json!({"name": "bad", "paths": ["/ok/*", "/a/*/b"]})).await;
    assert_error(&resp, 400, "invalid_request");
    assert!(resp.body.contains("/a/*/b"), "names the pattern: {resp}");
    for (body, why) in [
        (json!({"name": "admin", "paths": ["/x"]}), "built-in name"),
        (
            json!({"name": "admin:read", "paths": ["/x"]}),
            "built-in name",
        ),
        (
            json!({"name": "no paths", "paths": ["/x"]}),
            "space in the name",
        ),
        (json!({"name": "empty", "paths": []}), "no paths"),
        (json!({"name": "typed", "paths": "/x"}), "paths not a list"),
        (
            json!({"name": "extra", "paths": ["/x"], "owner": "me"}),
            "unknown key",
        ),
        (json!({"paths": ["/x"]}), "no name"),
    ] {
        assert_error(&post(body).await, 400, "invalid_request");
        let _ = why;
    }
    // File scopes are read-only here.
    assert_error(
        &admin.delete("/admin/scopes/reports").await,
        409,
        "conflict",
    );
    assert_error(
        &admin
            .patch("/admin/scopes/reports", &json!({"description": "x"}))
            .await,
        409,
        "conflict",
    );
    let shown = admin.get("/admin/scopes/REPORTS").await;
    assert_eq!(shown.status, 200, "{shown}");
    assert_eq!(shown.json()["source"], "file", "{shown}");
    assert_eq!(admin.get("/admin/scopes/nope").await.status, 404);
    // A client may list a store scope only once it exists.
    let resp = admin
        .post(
            "/admin/clients",
            &json!({"name": "Early", "scopes": ["later"]}),
        )
        .await;
    assert_error(&resp, 400, "invalid_scope");
    assert_eq!(
        post(json!({"name": "later", "paths": ["/later/*"]}))
            .await
            .status,
        201
    );
    let resp = admin
        .post(
            "/admin/clients",
            &json!({"name": "Early", "scopes": ["later"]}),
        )
        .await;
    assert_eq!(resp.status, 201, "{resp}");
    // The name cannot change.
    let resp = admin
        .patch("/admin/scopes/later", &json!({"name": "sooner"}))
        .await;
    assert_error(&resp, 400, "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_client_is_refused_on_every_node_within_a_second_and_enabled_again() {
    let (fx, b, admin_a, _) = two_nodes(|_| {}).await;
    let created = admin_a
        .create_client(&json!({"name": "Sometimes", "scopes": ["reports"]}))
        .await;
    let (id, secret) = id_and_secret(&created);
    assert_eq!(created["enabled"], true, "{created}");
    let token = token_from(&b, &id, &secret).await;
    // Cached on B before it is disabled on A.
    b.assert_cached("/abc/x", &token).await;
    let resp = admin_a
        .patch(&format!("/admin/clients/{id}"), &json!({"enabled": false}))
        .await;
    assert_eq!(resp.status, 200, "{resp}");
    assert_eq!(resp.json()["enabled"], false, "{resp}");
    let url_b = format!("{}/abc/x", b.base_url());
    let took = time_until_status(&url_b, &token, 401, SECOND).await;
    assert!(
        took.is_some(),
        "disabled on A, still allowed on B after 1 s"
    );
    assert_invalid_token(
        &get_with_token(&url_b, Some(&token)).await,
        "client disabled",
    );
    assert_invalid_token(&fx.get("/abc/x", Some(&token)).await, "client disabled");
    // No new tokens, on either node.
    for node in [&fx.gw, &b] {
        let resp = post_form(
            &format!("{}/oauth/token", node.base_url()),
            &[("grant_type", "client_credentials")],
            Some((&id, &secret)),
        )
        .await;
        assert_error(&resp, 401, "invalid_client");
    }
    let resp = admin_a
        .post("/admin/tokens", &json!({"client_id": id}))
        .await;
    assert_error(&resp, 400, "invalid_request");
    // Introspection does not call it active.
    let resp = post_form(
        &format!("{}/oauth/tokeninfo?access_token={token}", b.base_url()),
        &[],
        None,
    )
    .await;
    assert_eq!(
        resp.status, 400,
        "tokeninfo of a disabled client's token: {resp}"
    );

    // Enabled again: the same token works on both nodes, nothing reissued.
    let resp = admin_a
        .patch(&format!("/admin/clients/{id}"), &json!({"enabled": true}))
        .await;
    assert_eq!(resp.status, 200, "{resp}");
    let took = time_until_status(&url_b, &token, 200, SECOND).await;
    assert!(took.is_some(), "enabled on A, still refused on B after 1 s");
    assert_eq!(fx.get("/abc/x", Some(&token)).await.status, 200);
    token_from(&fx.gw, &id, &secret).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_client_with_enabled_false_gets_no_tokens() {
    let (fx, _admin) = admin_fixture(Store::memory(), |c| {
        c.add_client(
            "off",
            &["client_credentials"],
            &["reports"],
            "enabled = false",
        );
    })
    .await;
    let resp = fx
        .token_request("off", &[("grant_type", "client_credentials")])
        .await;
    assert_error(&resp, 401, "invalid_client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_read_may_only_read() {
    let (fx, admin) = admin_fixture(Store::memory(), |c| {
        c.add_client("auditor", &["client_credentials"], &["admin:read"], "");
    })
    .await;
    let read_token = access_token(&fx.client_token_for("auditor", Some("admin:read")).await);
    let reader = admin.with_token(&read_token);
    for path in [
        "/admin/clients",
        "/admin/scopes",
        "/admin/tokens",
        "/admin/credentials",
    ] {
        assert_eq!(reader.get(path).await.status, 200, "GET {path}");
    }
    let resp = reader
        .post("/admin/scopes", &json!({"name": "x", "paths": ["/x"]}))
        .await;
    assert_error(&resp, 403, "insufficient_scope");
    let resp = reader
        .post("/admin/clients", &json!({"name": "Sneaky"}))
        .await;
    assert_error(&resp, 403, "insufficient_scope");
    assert_error(
        &reader.delete("/admin/clients/photoprint").await,
        403,
        "insufficient_scope",
    );
    let resp = reader.call("POST", "/admin/reload", None).await;
    assert_error(&resp, 403, "insufficient_scope");
    // The full admin token still may.
    let resp = admin
        .post("/admin/scopes", &json!({"name": "x", "paths": ["/x"]}))
        .await;
    assert_eq!(resp.status, 201, "{resp}");
}
