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
    // Its right secret is checked and then refused: not a guess, so never throttled (more
    // tries than the tight per-client limit, still 401 and not 429).
    for _ in 0..tollgate::throttle::PER_ACCOUNT_AND_ADDRESS + 2 {
        let resp = post_form(
            &fx.url("/oauth/token"),
            &[("grant_type", "client_credentials")],
            Some((&id, &secret)),
        )
        .await;
        assert_error(&resp, 401, "invalid_client");
        assert_eq!(
            resp.json()["error_description"],
            "client disabled",
            "{resp}"
        );
    }
    let resp = admin_a
        .post("/admin/tokens", &json!({"client_id": id}))
        .await;
    assert_error(&resp, 400, "invalid_request");
    // Explain says what the gateway does.
    let explained = admin_a.explain("GET", "/abc/x", Some(&token)).await;
    assert_eq!(explained["allowed"], false, "{explained}");
    assert_eq!(explained["reason"], "client disabled", "{explained}");
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

/// A bearer route no file scope covers starts with a warning in the log; a scope created in
/// the store makes it reachable on the other node (which says so in its log), and deleting
/// that scope makes the node warn again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_scopes_update_the_unreachable_route_warning() {
    let vault = "\n[[routes]]\nname = \"vault\"\npath = \"/vault/*\"\nupstreams = [\"UPSTREAM\"]\n";
    let (_fx, b, admin_a, _) = two_nodes(|c| {
        let route = vault.replace("UPSTREAM", &c.upstream);
        c.extra.push_str(&route);
    })
    .await;
    let warned = |logs: &[String], n: usize| {
        logs.iter()
            .filter(|l| l.contains("vault") && l.contains("is unreachable"))
            .count()
            >= n
    };
    assert!(warned(&b.logs(), 1), "no warning at start: {:?}", b.logs());
    let resp = admin_a
        .post(
            "/admin/scopes",
            &json!({"name": "vault", "paths": ["/vault/*"]}),
        )
        .await;
    assert_eq!(resp.status, 201, "{resp}");
    let reachable = poll(SECOND, || async {
        b.logs()
            .iter()
            .any(|l| l.contains("route is reachable now") && l.contains("vault"))
            .then_some(())
    })
    .await;
    assert!(reachable.is_some(), "B did not log the route reachable");
    assert_eq!(admin_a.delete("/admin/scopes/vault").await.status, 204);
    let again = poll(SECOND, || async { warned(&b.logs(), 2).then_some(()) }).await;
    assert!(again.is_some(), "B did not warn again: {:?}", b.logs());
}

/// Two creates of one scope name (differing in case) at once, on two nodes: one wins, the
/// other is told 409, and the winner's scope is the one stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_of_one_name_have_one_winner() {
    let (_fx, _b, admin_a, admin_b) = two_nodes(|_| {}).await;
    for round in 0..5 {
        let (lower, upper) = (format!("race{round}"), format!("RACE{round}"));
        let (body_a, body_b) = (
            json!({"name": lower, "paths": ["/a/*"]}),
            json!({"name": upper, "paths": ["/b/*"]}),
        );
        let (ra, rb) = tokio::join!(
            admin_a.post("/admin/scopes", &body_a),
            admin_b.post("/admin/scopes", &body_b),
        );
        let mut statuses = [ra.status, rb.status];
        statuses.sort();
        assert_eq!(statuses, [201, 409], "round {round}: {ra} / {rb}");
        let winner = if ra.status == 201 { &lower } else { &upper };
        let shown = poll(SECOND, || async {
            let shown = admin_a.get(&format!("/admin/scopes/{lower}")).await;
            (shown.status == 200).then(|| shown.json())
        })
        .await
        .expect("the winner reaches node A within 1 s");
        assert_eq!(&shown["name"], winner.as_str(), "{shown}");
    }
}

/// A Redis that loses the registry (restarted empty, or a failover that lost writes) moves
/// the version back: the nodes take the store's word, so a scope created afterwards works
/// everywhere within a second, and the lost one is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_version_that_goes_back_is_taken_as_the_store_s_word() {
    let (fx, b, admin_a, admin_b) = two_nodes(|_| {}).await;
    for i in 0..3 {
        let resp = admin_a
            .post(
                "/admin/scopes",
                &json!({"name": format!("before{i}"), "paths": ["/x/*"]}),
            )
            .await;
        assert_eq!(resp.status, 201, "{resp}");
    }
    // This test's own redis-server: the registry hash goes, as after a restart without data.
    let mut conn = fx.store.redis_connection().await;
    let keys = tollgate::store::keys::Keys::new(&fx.store.prefix);
    redis::cmd("DEL")
        .arg(keys.registry())
        .query_async::<i64>(&mut conn)
        .await
        .expect("DEL");
    let resp = admin_b
        .post(
            "/admin/scopes",
            &json!({"name": "after", "description": "new", "paths": ["/reports/archive/*"]}),
        )
        .await;
    assert_eq!(resp.status, 201, "{resp}");
    let seen = poll(SECOND, || async {
        let listed = admin_a.get("/admin/scopes").await.json();
        let names: Vec<String> = listed["scopes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["name"].as_str().map(str::to_owned))
            .collect();
        (names.contains(&"after".to_owned()) && !names.iter().any(|n| n.starts_with("before")))
            .then_some(())
    })
    .await;
    assert!(
        seen.is_some(),
        "node A kept its newer-numbered copy after the store's reset"
    );
    drop(b);
}

/// A user whose `scopes` is omitted may grant every declared scope but no built-in one: an
/// ops client with the password grant does not turn any user into an admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_listed_scopes_cannot_grant_admin() {
    let (fx, _admin) = admin_fixture(Store::memory(), |c| {
        c.add_client(
            "opsapp",
            &["password"],
            &["admin", "admin:read", "reports"],
            "",
        );
        c.extra.push_str(&format!(
            "\n[[users]]\nusername = \"anyone\"\npassword_hash = \"{}\"\n",
            c.password_hash
        ));
        c.add_user("operator", &["admin"]);
    })
    .await;
    let password = fx.creds.password.clone();
    let grant = |user: &'static str, scope: &'static str| {
        let password = password.clone();
        let fx = &fx;
        async move {
            fx.token_request(
                "opsapp",
                &[
                    ("grant_type", "password"),
                    ("username", user),
                    ("password", &password),
                    ("scope", scope),
                ],
            )
            .await
        }
    };
    for scope in ["admin", "admin:read"] {
        assert_error(&grant("anyone", scope).await, 400, "invalid_scope");
    }
    let resp = grant("anyone", "reports").await;
    assert_eq!(resp.status, 200, "{resp}");
    // No scope asked: everything the client may have that the user may grant.
    let resp = fx
        .token_request(
            "opsapp",
            &[
                ("grant_type", "password"),
                ("username", "anyone"),
                ("password", &fx.creds.password),
            ],
        )
        .await;
    assert_eq!(resp.json()["scope"], "reports", "{resp}");
    let resp = grant("operator", "admin").await;
    assert_eq!(resp.status, 200, "a listed admin scope: {resp}");
}

/// A store that lost writes and was written again up to the same version (a failover while
/// a node could not poll) is another history: the nonce tells it, and the node reads it. Here
/// the registry is replaced by one at the same version that disables a client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_version_with_another_nonce_is_read_again() {
    let (fx, b, admin_a, _) = two_nodes(|_| {}).await;
    let created = admin_a
        .create_client(&json!({"name": "Failover", "scopes": ["reports"]}))
        .await;
    let (id, secret) = id_and_secret(&created);
    let token = token_from(&b, &id, &secret).await;
    let url_b = format!("{}/abc/x", b.base_url());
    assert_eq!(get_with_token(&url_b, Some(&token)).await.status, 200);
    let mut conn = fx.store.redis_connection().await;
    let key = tollgate::store::keys::Keys::new(&fx.store.prefix).registry();
    let version: String = redis::cmd("HGET")
        .arg(&key)
        .arg("v")
        .query_async(&mut conn)
        .await
        .expect("HGET");
    // Written as REGISTRY_PUT would have on the other history, in one step.
    redis::pipe()
        .atomic()
        .del(&key)
        .hset(&key, "v", &version)
        .hset(&key, "n", "another-history")
        .hset(&key, format!("d:{id}"), "1")
        .query_async::<()>(&mut conn)
        .await
        .expect("rewrite");
    let took = time_until_status(&url_b, &token, 401, SECOND).await;
    assert!(took.is_some(), "node B kept its copy of the same version");
}
