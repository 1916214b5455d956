//! End-to-end: token management through `/admin/tokens` (list, issue, delete, also across
//! two nodes) and `/admin/explain` (SPEC §7).

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{
    Admin, Fixture, GatewayConfig, Store, access_token, admin_fixture, assert_error,
    assert_no_store, parse_rfc3339_utc, poll, post_form, random_token, refresh_token, scope_set,
    unix_now,
};
use serde_json::{Value, json};

both_backends!(
    tokens_are_listed_by_handle_never_by_their_text,
    tokens_are_issued_for_a_client_with_an_expiry_in_days,
    deleting_a_token_revokes_it_and_its_refresh_token,
    explain_names_the_route_and_the_scope_pattern_that_decide,
);

/// Extra clients: `limited` (refresh_count 2), `brief` (1 s access tokens), `forever`
/// (access tokens that never expire).
fn token_clients(config: &mut GatewayConfig) {
    let grants = ["client_credentials", "password", "refresh_token"];
    config.add_client("limited", &grants, &["reports"], "refresh_count = 2");
    config.add_client(
        "brief",
        &["client_credentials", "password", "refresh_token"],
        &["reports"],
        "access_token_ttl = \"1s\"",
    );
    config.add_client(
        "forever",
        &["client_credentials"],
        &["reports"],
        "access_token_ttl = \"never\"",
    );
}

async fn start(store: Store) -> (Fixture, Admin) {
    admin_fixture(store, token_clients).await
}

fn ids(tokens: &[Value]) -> BTreeSet<String> {
    tokens
        .iter()
        .map(|t| {
            t["id"]
                .as_str()
                .unwrap_or_else(|| panic!("no id in {t}"))
                .to_owned()
        })
        .collect()
}

fn timestamp(entry: &Value, key: &str) -> i64 {
    entry[key]
        .as_str()
        .and_then(parse_rfc3339_utc)
        .unwrap_or_else(|| panic!("{key} is not an RFC 3339 UTC time: {entry}"))
}

async fn tokens_are_listed_by_handle_never_by_their_text(store: Store) {
    let (fx, admin) = start(store).await;
    let pw = fx.password_token_for("photoprint", "reports").await;
    let cc = fx.client_token(Some("reports")).await;
    let lim = fx.password_token_for("limited", "reports").await;
    let fv = access_token(&fx.client_token_for("forever", None).await);
    let secrets = [
        access_token(&pw),
        refresh_token(&pw),
        cc.clone(),
        access_token(&lim),
        refresh_token(&lim),
        fv.clone(),
    ];

    let resp = admin.get("/admin/tokens?client_id=photoprint").await;
    assert_eq!(resp.status, 200, "{resp}");
    let photoprint = resp.json()["tokens"].as_array().cloned().expect("tokens");
    assert_eq!(photoprint.len(), 2, "photoprint's two tokens: {resp}");
    let now = unix_now();
    for entry in &photoprint {
        assert_eq!(entry["client_id"], "photoprint", "{entry}");
        assert_eq!(entry["scope"], "reports", "{entry}");
        assert_eq!(entry["expired"], false, "{entry}");
        if entry["username"].is_null() {
            // client_credentials: no refresh token, so none left whatever the client's cap.
            assert_eq!(entry["refreshes_left"], 0, "no refresh token: {entry}");
        } else {
            assert!(entry["refreshes_left"].is_null(), "unlimited: {entry}");
        }
        let issued = timestamp(entry, "issued_at");
        let expires = timestamp(entry, "expires_at");
        assert!(
            (issued - now).abs() <= 60,
            "issued_at {issued} vs now {now}"
        );
        assert!((expires - issued - 600).abs() <= 2, "10m token: {entry}");
        let id = entry["id"].as_str().expect("id");
        assert!(
            !id.is_empty() && !secrets.iter().any(|s| s == id),
            "{entry}"
        );
    }
    let usernames: BTreeSet<String> = photoprint
        .iter()
        .map(|t| t["username"].as_str().unwrap_or("<null>").to_owned())
        .collect();
    assert_eq!(
        usernames,
        ["<null>", "alice"].map(str::to_owned).into(),
        "client_credentials has username null, password grant alice"
    );
    assert!(
        photoprint.iter().all(|t| t
            .get("username")
            .is_some_and(|u| u.is_null() || u == "alice")),
        "username must be present (null when none)"
    );

    // The token text never appears, whatever the filter.
    for query in [
        "",
        "client_id=photoprint",
        "username=alice",
        "client_id=limited",
    ] {
        let resp = admin.get(&format!("/admin/tokens?{query}")).await;
        assert_eq!(resp.status, 200, "{resp}");
        for (i, secret) in secrets.iter().enumerate() {
            assert!(!resp.body.contains(secret), "token #{i} shown by ?{query}");
        }
    }

    let alice = admin.tokens("username=alice").await;
    assert_eq!(alice.len(), 2, "alice's tokens via photoprint and limited");
    assert!(alice.iter().all(|t| t["username"] == "alice"));
    let all = admin.tokens("").await;
    assert!(all.len() >= 5, "every access token listed without a filter");
    assert!(admin.tokens("client_id=nobody").await.is_empty());
    assert!(admin.tokens("username=nobody").await.is_empty());

    // refreshes_left counts down with the grant's refreshes.
    let limited = admin.tokens("client_id=limited&username=alice").await;
    assert_eq!(limited.len(), 1, "{limited:?}");
    assert_eq!(limited[0]["refreshes_left"], 2, "{}", limited[0]);
    let before = ids(&limited);
    let resp = fx
        .token_request(
            "limited",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token(&lim)),
            ],
        )
        .await;
    assert_eq!(resp.status, 200, "refresh: {resp}");
    let after = admin.tokens("client_id=limited").await;
    let fresh: Vec<&Value> = after
        .iter()
        .filter(|t| !before.contains(t["id"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(
        fresh.len(),
        1,
        "one new access token after refresh: {after:?}"
    );
    assert_eq!(fresh[0]["refreshes_left"], 1, "{}", fresh[0]);

    // A never-expiring token has expires_at null.
    let forever = admin.tokens("client_id=forever").await;
    assert_eq!(forever.len(), 1, "{forever:?}");
    assert!(forever[0]["expires_at"].is_null(), "{}", forever[0]);
    assert_eq!(forever[0]["expired"], false);

    // An expired token stays listed, flagged, while the refresh token issued with it can be
    // used (SPEC §9); one without a refresh token leaves the list.
    let brief = fx.password_token_for("brief", "reports").await;
    let cc = access_token(&fx.client_token_for("brief", None).await);
    let flagged = poll(Duration::from_secs(6), || async {
        let listed = admin.tokens("client_id=brief").await;
        (listed.len() == 1 && listed[0]["expired"] == true).then(|| listed[0].clone())
    })
    .await;
    let entry = flagged.expect("only the refreshable expired token listed, with expired=true");
    assert_eq!(entry["client_id"], "brief");
    assert_eq!(entry["username"], "alice");
    assert!(timestamp(&entry, "expires_at") <= unix_now(), "{entry}");
    let resp = fx.get("/abc/x", Some(&access_token(&brief))).await;
    assert_error(&resp, 401, "invalid_token");
    let resp = fx.get("/abc/x", Some(&cc)).await;
    assert_error(&resp, 401, "invalid_token");

    // Refreshed: the expired one leaves (its refresh token is retired), the new one is listed.
    let resp = fx
        .token_request(
            "brief",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token(&brief)),
            ],
        )
        .await;
    assert_eq!(resp.status, 200, "refresh: {resp}");
    let listed = admin.tokens("client_id=brief").await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_ne!(listed[0]["id"], entry["id"], "{listed:?}");
}

async fn tokens_are_issued_for_a_client_with_an_expiry_in_days(store: Store) {
    let (fx, admin) = start(store).await;
    let issued_before = admin
        .metrics()
        .await
        .sum("tollgate_tokens_issued_total", &[("grant", "admin")]);

    let resp = admin
        .post(
            "/admin/tokens",
            &json!({"client_id": "photoprint", "scope": "reports", "days": 2}),
        )
        .await;
    assert_eq!(resp.status, 201, "{resp}");
    // A token response: never kept by a cache on the way.
    assert_no_store(&resp);
    let body = resp.json();
    assert!(
        body["token_type"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case("bearer")),
        "{body}"
    );
    assert_eq!(body["scope"], "reports", "{body}");
    let expires_in = body["expires_in"].as_i64().expect("expires_in");
    assert!(
        (2 * 86_400 - 60..=2 * 86_400).contains(&expires_in),
        "expires_in {expires_in} for 2 days"
    );
    let span = timestamp(&body, "expires_at") - timestamp(&body, "issued_at");
    assert!(
        (span - 2 * 86_400).abs() <= 2,
        "expires_at - issued_at = {span}"
    );
    let token = access_token(&body);
    common::assert_token_shape(&token);
    assert_eq!(fx.get("/abc/x", Some(&token)).await.status, 200);
    let resp = fx.get("/secret/x", Some(&token)).await;
    assert_error(&resp, 403, "insufficient_scope");
    let seen = fx.up.only_request();
    assert_eq!(seen.header("x-auth-client-id"), Some("photoprint"));
    let listed = admin.tokens("client_id=photoprint").await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        timestamp(&listed[0], "expires_at"),
        timestamp(&body, "expires_at")
    );

    // Default: 30 days, every scope the client may have.
    let resp = admin
        .post("/admin/tokens", &json!({"client_id": "photoprint"}))
        .await;
    assert_eq!(resp.status, 201, "{resp}");
    let body = resp.json();
    let expires_in = body["expires_in"].as_i64().expect("expires_in");
    assert!(
        (30 * 86_400 - 60..=30 * 86_400).contains(&expires_in),
        "default expires_in {expires_in}"
    );
    assert_eq!(
        scope_set(body["scope"].as_str().expect("scope")),
        scope_set("reports secret publish infra")
    );
    assert_eq!(
        fx.get("/secret/x", Some(&access_token(&body))).await.status,
        200
    );

    let resp = admin
        .post("/admin/tokens", &json!({"client_id": "nobody"}))
        .await;
    // The request names something that does not exist: a bad request, not a missing page.
    assert_error(&resp, 400, "invalid_request");
    for scope in ["nope", "admin", "reports nope"] {
        let resp = admin
            .post(
                "/admin/tokens",
                &json!({"client_id": "photoprint", "scope": scope}),
            )
            .await;
        assert_error(&resp, 400, "invalid_scope");
    }
    for bad in [
        json!({"scope": "reports"}),
        json!({"client_id": "photoprint", "days": "ten"}),
        json!({"client_id": "photoprint", "colour": "red"}),
    ] {
        let resp = admin.post("/admin/tokens", &bad).await;
        assert_error(&resp, 400, "invalid_request");
    }

    let issued_after = admin
        .metrics()
        .await
        .sum("tollgate_tokens_issued_total", &[("grant", "admin")]);
    assert_eq!(
        issued_after - issued_before,
        2.0,
        "admin-issued tokens counted"
    );
}

async fn deleting_a_token_revokes_it_and_its_refresh_token(store: Store) {
    let (fx, admin) = start(store).await;
    let pw = fx.password_token_for("photoprint", "reports").await;
    let bystander = fx.client_token(Some("reports")).await;
    let listed = admin.tokens("client_id=photoprint&username=alice").await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let id = listed[0]["id"].as_str().expect("id").to_owned();
    assert_eq!(fx.get("/abc/x", Some(&access_token(&pw))).await.status, 200);

    let resp = admin.delete(&format!("/admin/tokens/{id}")).await;
    assert_eq!(resp.status, 204, "{resp}");
    let refused = poll(Duration::from_secs(1), || async {
        let resp = fx.get("/abc/x", Some(&access_token(&pw))).await;
        (resp.status != 200).then_some(resp)
    })
    .await
    .expect("a deleted token still works after 1 s");
    assert_error(&refused, 401, "invalid_token");
    common::assert_bearer_challenge(&refused, "invalid_token");
    assert!(
        admin
            .tokens("client_id=photoprint&username=alice")
            .await
            .is_empty(),
        "a deleted token is still listed"
    );
    // Its refresh token went with it.
    let resp = fx
        .token_request(
            "photoprint",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token(&pw)),
            ],
        )
        .await;
    assert_error(&resp, 400, "invalid_grant");
    assert_eq!(fx.get("/abc/x", Some(&bystander)).await.status, 200);

    for unknown in [random_token(), "no-such-handle".to_owned()] {
        let resp = admin.delete(&format!("/admin/tokens/{unknown}")).await;
        assert_error(&resp, 404, "not_found");
    }
}

async fn explain_names_the_route_and_the_scope_pattern_that_decide(store: Store) {
    let (fx, admin) = start(store).await;
    let reports = fx.client_token(Some("reports")).await;

    let allowed = admin.explain("GET", "/abc/x", Some(&reports)).await;
    assert_eq!(allowed["method"], "GET", "{allowed}");
    assert_eq!(allowed["path"], "/abc/x", "{allowed}");
    assert_eq!(allowed["normalized_path"], "/abc/x", "{allowed}");
    assert_eq!(allowed["route"]["name"], "abc", "{allowed}");
    assert_eq!(allowed["route"]["pattern"], "/abc/*", "{allowed}");
    assert_eq!(allowed["allowed"], true, "{allowed}");
    assert_eq!(allowed["status"], 200, "{allowed}");
    assert_eq!(allowed["allowed_by"]["scope"], "reports", "{allowed}");
    assert_eq!(allowed["allowed_by"]["pattern"], "/abc/*", "{allowed}");
    assert!(allowed["reason"].is_string(), "{allowed}");
    assert_eq!(allowed["token"]["client_id"], "photoprint", "{allowed}");
    assert_eq!(allowed["token"]["scopes"], json!(["reports"]), "{allowed}");
    assert_eq!(allowed["token"]["expired"], false, "{allowed}");
    assert_eq!(allowed["token"]["revoked"], false, "{allowed}");
    assert!(!allowed.to_string().contains(&reports), "token text echoed");

    let by_method = admin.explain("GET", "/reports/7", Some(&reports)).await;
    assert_eq!(by_method["status"], 200, "{by_method}");
    assert_eq!(by_method["route"]["name"], "reports", "{by_method}");
    assert_eq!(by_method["allowed_by"]["pattern"], "GET /reports/{id}");

    // Each refusal says what the gateway would answer, and why. Route `""` = null; `"-"`:
    // not checked (a path refused before routing).
    let cases = [
        ("POST", "/reports/7", Some(reports.as_str()), 403, "reports"),
        ("GET", "/secret/x", Some(reports.as_str()), 403, "secret"),
        ("GET", "/abc/x", None, 401, "abc"),
        ("GET", "/nowhere/x", Some(reports.as_str()), 404, ""),
        ("GET", "/abc/%2Fx", Some(reports.as_str()), 400, "-"),
    ];
    for (method, path, token, status, route) in cases {
        let e = admin.explain(method, path, token).await;
        let what = format!("{method} {path}: {e}");
        assert_eq!(e["status"], status, "{what}");
        assert_eq!(e["allowed"], false, "{what}");
        assert!(e["allowed_by"].is_null(), "{what}");
        assert!(
            e["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{what}"
        );
        match route {
            "-" => {}
            "" => assert!(e["route"].is_null(), "{what}"),
            name => assert_eq!(e["route"]["name"], name, "{what}"),
        }
        if token.is_none() {
            assert!(e["token"].is_null(), "{what}");
        }
    }

    // Normalisation is explained too, and a public route needs no token.
    let dotted = admin
        .explain("GET", "/abc/../secret/x", Some(&reports))
        .await;
    assert_eq!(dotted["normalized_path"], "/secret/x", "{dotted}");
    assert_eq!(dotted["route"]["name"], "secret", "{dotted}");
    assert_eq!(dotted["status"], 403, "{dotted}");
    let public = admin.explain("GET", "/public/x", None).await;
    assert_eq!(public["allowed"], true, "{public}");
    assert_eq!(public["status"], 200, "{public}");
    assert_eq!(public["route"]["name"], "public", "{public}");

    // Unknown and revoked tokens.
    let unknown = admin.explain("GET", "/abc/x", Some(&random_token())).await;
    assert_eq!(unknown["status"], 401, "{unknown}");
    assert_eq!(unknown["allowed"], false, "{unknown}");
    assert_eq!(unknown["reason"], "unknown token", "{unknown}");
    assert!(unknown["token"].is_null(), "{unknown}");
    let doomed = fx.client_token(Some("reports")).await;
    let resp = post_form(
        &fx.url("/oauth/revoke"),
        &[("token", &doomed)],
        Some(("photoprint", &fx.creds.secret)),
    )
    .await;
    assert_eq!(resp.status, 200, "{resp}");
    let revoked = admin.explain("GET", "/abc/x", Some(&doomed)).await;
    assert_eq!(revoked["status"], 401, "{revoked}");
    assert_eq!(revoked["allowed"], false, "{revoked}");
    assert_eq!(revoked["reason"], "token revoked", "{revoked}");
    assert_eq!(revoked["token"]["revoked"], true, "{revoked}");
    assert_eq!(revoked["token"]["client_id"], "photoprint", "{revoked}");

    // Explaining is not a request: the upstream saw nothing.
    assert!(fx.up.requests().is_empty(), "{:?}", fx.up.uris());
}
