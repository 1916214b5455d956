//! End-to-end: the admin API's guard (built-in `admin` scope, never on the public port) and
//! client management through `/admin/clients` (SPEC §7).

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{
    Fixture, OPS_CLIENT, Store, access_token, admin_call, admin_fixture, assert_error, client_toml,
    get_with_token, parse_challenge, poll, post_form, random_token, time_until_status,
};
use serde_json::{Value, json};

both_backends!(
    admin_endpoints_need_a_token_with_the_admin_scope,
    created_clients_show_their_secret_once_and_work_at_once,
    bad_client_bodies_are_refused_with_400_and_clashes_with_409,
    clients_are_patched_and_file_clients_are_read_only,
    deleting_a_client_revokes_its_tokens,
);

/// Every admin endpoint, as (method, path, body).
fn admin_endpoints() -> Vec<(&'static str, &'static str, Option<Value>)> {
    vec![
        ("GET", "/admin/clients", None),
        ("POST", "/admin/clients", Some(json!({"name": "Sneaky"}))),
        ("GET", "/admin/clients/photoprint", None),
        (
            "PATCH",
            "/admin/clients/photoprint",
            Some(json!({"description": "x"})),
        ),
        ("DELETE", "/admin/clients/photoprint", None),
        ("GET", "/admin/tokens", None),
        (
            "POST",
            "/admin/tokens",
            Some(json!({"client_id": "photoprint"})),
        ),
        ("DELETE", "/admin/tokens/some-handle", None),
        ("GET", "/admin/explain?method=GET&path=/abc/x", None),
        ("POST", "/admin/reload", None),
    ]
}

/// The values of a JSON array of strings, as a set.
fn set(value: &Value) -> BTreeSet<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_str().expect("string item").to_owned())
        .collect()
}

fn strings(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// A client_credentials token request with the given client credentials.
async fn client_credentials(fx: &Fixture, id: &str, secret: &str, scope: &str) -> common::Resp {
    post_form(
        &fx.token_url(),
        &[("grant_type", "client_credentials"), ("scope", scope)],
        Some((id, secret)),
    )
    .await
}

async fn admin_endpoints_need_a_token_with_the_admin_scope(store: Store) {
    let (fx, admin) = admin_fixture(store, |config| {
        config.add_client("ops2", &["client_credentials"], &["admin", "reports"], "");
    })
    .await;
    let reports_token = fx.client_token(Some("reports")).await;
    let ops2_reports = access_token(&fx.client_token_for("ops2", Some("reports")).await);
    let ops2_all = access_token(&fx.client_token_for("ops2", None).await);
    let basic = common::basic_auth(OPS_CLIENT, &fx.creds.secret);

    for (method, path, body) in admin_endpoints() {
        let url = admin.url(path);
        let what = format!("{method} {path}");

        // No credentials: RFC 6750 §3.1, a challenge without an error code.
        let resp = admin_call(&url, None, method, body.as_ref(), &[]).await;
        assert_error(&resp, 401, "unauthorized");
        let challenge = resp
            .header("www-authenticate")
            .unwrap_or_else(|| panic!("{what}: no WWW-Authenticate: {resp}"));
        let (scheme, params) = parse_challenge(challenge);
        assert!(scheme.eq_ignore_ascii_case("bearer"), "{what}: {challenge}");
        assert_eq!(params.get("realm").map(String::as_str), Some("tollgate"));
        assert_eq!(params.get("error"), None, "{what}: {challenge}");

        let resp = admin_call(&url, Some(&random_token()), method, body.as_ref(), &[]).await;
        assert_error(&resp, 401, "invalid_token");
        let params = common::assert_bearer_challenge(&resp, "invalid_token");
        assert_eq!(
            params.get("error_description").map(String::as_str),
            Some("unknown token"),
            "{what} with an unknown token: {resp}"
        );

        // HTTP Basic is not a bearer token: no credentials as far as the admin API goes.
        let headers = [("authorization", basic.as_str())];
        let resp = admin_call(&url, None, method, body.as_ref(), &headers).await;
        assert_error(&resp, 401, "unauthorized");

        for (token, whose) in [
            (&reports_token, "photoprint's reports token"),
            (&ops2_reports, "an ops client's token narrowed to reports"),
        ] {
            let resp = admin_call(&url, Some(token), method, body.as_ref(), &[]).await;
            assert_eq!(resp.status, 403, "{what} with {whose}: {resp}");
            assert_error(&resp, 403, "insufficient_scope");
        }
    }

    // Nothing refused above had an effect.
    let resp = admin.get("/admin/clients/photoprint").await;
    assert_eq!(resp.status, 200, "{resp}");
    let listed = admin.get("/admin/clients").await.json();
    assert!(
        !listed.to_string().contains("Sneaky"),
        "a refused POST created a client: {listed}"
    );

    // A token holding admin among other scopes is enough.
    let resp = admin.with_token(&ops2_all).get("/admin/clients").await;
    assert_eq!(resp.status, 200, "admin + reports token: {resp}");

    // The admin API is not served on the public port, even with a good token.
    for path in ["/admin/clients", "/admin/tokens", "/admin/reload"] {
        let resp = get_with_token(&fx.url(path), Some(&admin.token)).await;
        assert_error(&resp, 404, "not_found");
    }
    // `admin` covers no proxied path.
    let resp = fx.get("/abc/x", Some(&admin.token)).await;
    assert_error(&resp, 403, "insufficient_scope");

    // A revoked admin token stops working on the admin API too.
    let resp = post_form(
        &fx.url("/oauth/revoke"),
        &[("token", &admin.token)],
        Some((OPS_CLIENT, &fx.creds.secret)),
    )
    .await;
    assert_eq!(resp.status, 200, "revoke the admin token: {resp}");
    let refused = poll(Duration::from_secs(1), || async {
        let resp = admin.get("/admin/clients").await;
        (resp.status == 401).then_some(resp)
    })
    .await
    .expect("a revoked admin token still works after 1 s");
    assert_error(&refused, 401, "invalid_token");
}

async fn created_clients_show_their_secret_once_and_work_at_once(store: Store) {
    let (fx, admin) = admin_fixture(store, |_| {}).await;

    // The answer carries the only copy of the secret: `create_client` asserts it is
    // `Cache-Control: no-store`.
    let created = admin
        .create_client(&json!({
            "name": "Reporter",
            "version": "2.0",
            "description": "Makes reports",
            "type": "confidential",
            "grants": ["client_credentials"],
            "scopes": ["reports"],
            "access_token_ttl": "5m",
            "refresh_count": 3,
        }))
        .await;
    let id = created["client_id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| panic!("no generated client_id: {created}"))
        .to_owned();
    let secret = created["client_secret"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| panic!("no client_secret for a confidential client: {created}"))
        .to_owned();
    assert_eq!(created["name"], "Reporter", "{created}");
    assert_eq!(created["version"], "2.0", "{created}");
    assert_eq!(created["description"], "Makes reports", "{created}");
    assert_eq!(created["type"], "confidential", "{created}");
    assert_eq!(created["source"], "store", "{created}");
    assert_eq!(set(&created["grants"]), strings(&["client_credentials"]));
    assert_eq!(set(&created["scopes"]), strings(&["reports"]));
    assert_eq!(created["redirect_uris"], json!([]), "{created}");
    assert_eq!(created["access_token_ttl"], "5m", "{created}");
    assert_eq!(created["refresh_count"], 3, "{created}");
    assert!(created.get("secret_hash").is_none(), "{created}");

    // Shown once: never again, neither by id nor in the list.
    let shown = admin.get(&format!("/admin/clients/{id}")).await;
    assert_eq!(shown.status, 200, "{shown}");
    let shown_json = shown.json();
    assert_eq!(shown_json["client_id"], id.as_str(), "{shown}");
    assert_eq!(shown_json["source"], "store", "{shown}");
    assert_eq!(shown_json["refresh_count"], 3, "{shown}");
    let list = admin.get("/admin/clients").await;
    assert_eq!(list.status, 200, "{list}");
    for body in [&shown.body, &list.body] {
        assert!(
            !body.contains(&secret),
            "the secret was shown again: {body}"
        );
        assert!(!body.contains("client_secret") && !body.contains("secret_hash"));
    }
    let clients = list.json()["clients"].as_array().cloned().expect("clients");
    let listed = clients
        .iter()
        .find(|c| c["client_id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not listed: {list}"));
    assert_eq!(listed["name"], "Reporter");
    let file = clients
        .iter()
        .find(|c| c["client_id"] == "photoprint")
        .unwrap_or_else(|| panic!("file client not listed: {list}"));
    assert_eq!(file["source"], "file", "{file}");
    assert_eq!(file["name"], "PhotoPrint", "{file}");
    assert_eq!(file["version"], "1.0", "{file}");
    assert_eq!(file["type"], "confidential", "{file}");
    assert_eq!(
        set(&file["scopes"]),
        strings(&["reports", "secret", "publish", "infra"])
    );
    assert_eq!(file["refresh_count"], "unlimited", "{file}");
    assert!(file["access_token_ttl"].is_string(), "{file}");

    // Works at the token endpoint at once, and the token works through the proxy.
    let resp = client_credentials(&fx, &id, &secret, "reports").await;
    assert_eq!(resp.status, 200, "token for the new client: {resp}");
    let token = access_token(&resp.json());
    let resp = fx.get("/abc/new", Some(&token)).await;
    assert_eq!(resp.status, 200, "{resp}");
    let seen = fx.up.only_request();
    assert_eq!(seen.header("x-auth-client-id"), Some(id.as_str()));
    let resp = client_credentials(&fx, &id, "not-the-secret", "reports").await;
    assert_error(&resp, 401, "invalid_client");
    let resp = client_credentials(&fx, &id, &secret, "secret").await;
    assert_error(&resp, 400, "invalid_scope");

    // An explicit client_id is kept; a minimal body gets the defaults.
    let explicit = admin
        .create_client(&json!({"client_id": "explicit-1", "name": "Explicit"}))
        .await;
    assert_eq!(explicit["client_id"], "explicit-1", "{explicit}");
    assert_eq!(explicit["type"], "confidential", "{explicit}");
    assert!(explicit["client_secret"].is_string(), "{explicit}");
    let second = admin.create_client(&json!({"name": "Generated"})).await;
    assert_ne!(second["client_id"], created["client_id"]);
    assert_ne!(second["client_secret"], created["client_secret"]);

    // A public client has no secret.
    let public = admin
        .create_client(&json!({
            "name": "Mobile",
            "type": "public",
            "grants": ["authorization_code", "refresh_token"],
            "redirect_uris": ["http://127.0.0.1:3000/cb"],
            "scopes": ["reports"],
        }))
        .await;
    assert_eq!(public["type"], "public", "{public}");
    assert!(public.get("client_secret").is_none(), "{public}");
    assert_eq!(public["redirect_uris"], json!(["http://127.0.0.1:3000/cb"]));

    fx.gw.assert_logs_free_of(&[&secret]);
}

async fn bad_client_bodies_are_refused_with_400_and_clashes_with_409(store: Store) {
    let (_fx, admin) = admin_fixture(store, |_| {}).await;
    admin
        .create_client(&json!({"name": "Reporter", "version": "2.0"}))
        .await;
    let before = admin.get("/admin/clients").await.json()["clients"]
        .as_array()
        .map(Vec::len);

    let bad = [
        json!({"name": "X1", "colour": "red"}),
        json!({"name": "X2", "type": "weird"}),
        json!({"name": "X3", "access_token_ttl": "forever"}),
        json!({"name": "X4", "refresh_count": "lots"}),
        json!({"name": "X5", "grants": ["teleport"]}),
        json!({"name": "X7", "secret": "chosen-by-caller"}),
        json!({"name": "X8", "secret_hash": "$argon2id$v=19$m=19456,t=2,p=1$x$y"}),
        json!({"name": "X9", "source": "file"}),
        json!({"name": "X10", "client_id": "has space"}),
        json!({"name": 42}),
        json!({"description": "no name"}),
        json!(["not", "an", "object"]),
    ];
    for body in &bad {
        let resp = admin.post("/admin/clients", body).await;
        assert_error(&resp, 400, "invalid_request");
        assert!(
            resp.json()["error_description"].is_string(),
            "{body}: {resp}"
        );
    }
    // An undeclared scope is a bad value; `invalid_scope` names it more precisely.
    let resp = admin
        .post(
            "/admin/clients",
            &json!({"name": "X6", "scopes": ["no-such-scope"]}),
        )
        .await;
    assert_error(&resp, 400, "invalid_scope");
    let resp = admin.call("POST", "/admin/clients", None).await;
    assert_error(&resp, 400, "invalid_request");

    let clashes = [
        // name compared case-insensitively, among store clients...
        json!({"name": "reporter", "version": "2.0"}),
        json!({"name": "REPORTER", "version": "2.0"}),
        // ...and against the clients in gateway.toml.
        json!({"name": "photoprint", "version": "1.0"}),
        // a client_id taken by a file client (a store client's is tried below)
        json!({"client_id": "photoprint", "name": "Other", "version": "9"}),
        json!({"client_id": OPS_CLIENT, "name": "Other2"}),
    ];
    for body in &clashes {
        let resp = admin.post("/admin/clients", body).await;
        assert_error(&resp, 409, "conflict");
    }
    let after = admin.get("/admin/clients").await.json()["clients"]
        .as_array()
        .map(Vec::len);
    assert_eq!(before, after, "a refused request created a client");

    // Same name, another version: fine.
    let other = admin
        .create_client(&json!({"name": "Reporter", "version": "3.0"}))
        .await;
    let id = other["client_id"].as_str().expect("client_id").to_owned();
    let resp = admin
        .post("/admin/clients", &json!({"client_id": id, "name": "Again"}))
        .await;
    assert_error(&resp, 409, "conflict");
}

async fn clients_are_patched_and_file_clients_are_read_only(store: Store) {
    let (fx, admin) = admin_fixture(store, |_| {}).await;
    let created = admin
        .create_client(&json!({
            "name": "Patchy", "version": "1", "scopes": ["reports"],
            "grants": ["client_credentials"],
        }))
        .await;
    let id = created["client_id"].as_str().expect("client_id").to_owned();
    let secret = created["client_secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let path = format!("/admin/clients/{id}");

    let resp = admin
        .patch(
            &path,
            &json!({"description": "patched", "scopes": ["reports", "secret"],
                    "access_token_ttl": "never"}),
        )
        .await;
    assert_eq!(resp.status, 200, "{resp}");
    let patched = resp.json();
    assert_eq!(patched["client_id"], id.as_str());
    assert_eq!(patched["name"], "Patchy");
    assert_eq!(patched["description"], "patched");
    assert_eq!(patched["access_token_ttl"], "never");
    assert_eq!(set(&patched["scopes"]), strings(&["reports", "secret"]));
    assert!(patched.get("client_secret").is_none(), "{patched}");
    let shown = admin.get(&path).await.json();
    assert_eq!(shown["description"], "patched", "{shown}");
    assert_eq!(shown["access_token_ttl"], "never", "{shown}");

    // The patch takes effect: the new scope can be granted, with the new lifetime.
    let resp = client_credentials(&fx, &id, &secret, "secret").await;
    assert_eq!(resp.status, 200, "after PATCH scopes: {resp}");
    let body = resp.json();
    assert!(body.get("expires_in").is_none(), "ttl never: {body}");
    let resp = fx.get("/secret/doc", Some(&access_token(&body))).await;
    assert_eq!(resp.status, 200, "{resp}");

    for body in [
        json!({"name": "Renamed"}),
        json!({"client_id": "another-id"}),
        json!({"colour": "red"}),
        json!({"type": "weird"}),
        json!({"refresh_count": -1}),
        json!({"secret": "x"}),
    ] {
        let resp = admin.patch(&path, &body).await;
        assert_error(&resp, 400, "invalid_request");
    }
    let resp = admin
        .patch(
            "/admin/clients/no-such-client",
            &json!({"description": "x"}),
        )
        .await;
    assert_error(&resp, 404, "not_found");
    let resp = admin.get("/admin/clients/no-such-client").await;
    assert_error(&resp, 404, "not_found");

    // A version change that would clash with another client is a conflict.
    admin
        .create_client(&json!({"name": "Patchy", "version": "2"}))
        .await;
    let resp = admin.patch(&path, &json!({"version": "2"})).await;
    assert_error(&resp, 409, "conflict");

    // Clients from gateway.toml are read-only here (SPEC §7), and that must be the only
    // reason for the refusals below: the store holds a client `shadowed` that a PATCH or
    // DELETE could act on, and then the file declares a client with the same id (the file
    // wins on a clash). First the control: the same change on the store client succeeds.
    admin
        .create_client(&json!({"client_id": "shadowed", "name": "Shadowed in the store"}))
        .await;
    let change = json!({"description": "changed through the API"});
    let resp = admin.patch("/admin/clients/shadowed", &change).await;
    assert_eq!(resp.status, 200, "PATCH on a store client: {resp}");
    assert_eq!(resp.json()["description"], "changed through the API");

    let secret_line = format!("secret_hash = \"{}\"", fx.creds.secret_hash);
    let in_file = client_toml(
        "shadowed",
        &secret_line,
        &["client_credentials"],
        &["reports"],
        "",
    );
    std::fs::write(fx.gw.config_path(), format!("{}{in_file}", fx.config)).expect("write config");
    let resp = admin.post("/admin/reload", &json!({})).await;
    assert_eq!(resp.status, 200, "reload with the file client: {resp}");
    let shown = admin.get("/admin/clients/shadowed").await.json();
    assert_eq!(shown["source"], "file", "{shown}");

    let resp = admin.patch("/admin/clients/shadowed", &change).await;
    assert_error(&resp, 409, "conflict");
    let resp = admin.delete("/admin/clients/shadowed").await;
    assert_error(&resp, 409, "conflict");
    let shown = admin.get("/admin/clients/shadowed").await.json();
    assert_eq!(shown["source"], "file", "{shown}");
    assert_eq!(shown["description"], "test client shadowed", "{shown}");
    // The file client still works with the file's secret.
    fx.client_token_for("shadowed", Some("reports")).await;
}

async fn deleting_a_client_revokes_its_tokens(store: Store) {
    let (fx, admin) = admin_fixture(store, |_| {}).await;
    let created = admin
        .create_client(&json!({
            "name": "Doomed",
            "grants": ["client_credentials", "password", "refresh_token"],
            "scopes": ["reports"],
        }))
        .await;
    let id = created["client_id"].as_str().expect("client_id").to_owned();
    let secret = created["client_secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let cc = access_token(
        &client_credentials(&fx, &id, &secret, "reports")
            .await
            .json(),
    );
    let resp = post_form(
        &fx.token_url(),
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", &fx.creds.password),
            ("scope", "reports"),
        ],
        Some((&id, &secret)),
    )
    .await;
    assert_eq!(resp.status, 200, "password grant: {resp}");
    let pw = resp.json();
    for token in [&cc, &access_token(&pw)] {
        assert_eq!(fx.get("/abc/x", Some(token)).await.status, 200);
    }
    // Tokens of other clients are not touched.
    let bystander = fx.client_token(Some("reports")).await;

    let resp = admin.delete(&format!("/admin/clients/{id}")).await;
    assert_eq!(resp.status, 204, "{resp}");
    for token in [&cc, &access_token(&pw)] {
        let took = time_until_status(&fx.url("/abc/x"), token, 401, Duration::from_secs(1)).await;
        assert!(
            took.is_some(),
            "a deleted client's token still works after 1 s"
        );
    }
    let resp = post_form(
        &fx.token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &common::refresh_token(&pw)),
        ],
        Some((&id, &secret)),
    )
    .await;
    // The client is gone, so it cannot even authenticate to present the refresh token.
    assert_error(&resp, 401, "invalid_client");
    let resp = client_credentials(&fx, &id, &secret, "reports").await;
    assert_error(&resp, 401, "invalid_client");
    let resp = admin.get(&format!("/admin/clients/{id}")).await;
    assert_error(&resp, 404, "not_found");
    let resp = admin.delete(&format!("/admin/clients/{id}")).await;
    assert_error(&resp, 404, "not_found");
    assert_eq!(fx.get("/abc/x", Some(&bystander)).await.status, 200);
}
