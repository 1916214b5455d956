//! End-to-end: outbound credentials (SPEC §8). Tollgate gets its own token from a real token
//! provider (`common::Provider`, an HTTP server that issues, rotates and checks tokens) and
//! sends it to an upstream that demands it (the provider's `/api`), while callers keep
//! presenting Tollgate's tokens, which never reach that upstream.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::{
    Admin, Fixture, GatewayConfig, Mode, PROVIDER_CLIENT_ID, PROVIDER_CLIENT_SECRET, Provider,
    Shape, Store, add_ops_client, admin_token,
};
use serde_json::{Value, json};

both_backends!(the_upstream_gets_the_credentials_token_never_the_callers);

/// A sealing key for the Redis store (32 bytes, base64).
const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// `[[credentials]] name = "crm"` against `provider` with `more` lines, and a route
/// `/abc/crm/*` (covered by scope `reports`) that sends its token to the provider's `/api`.
fn with_credential(c: &mut GatewayConfig, provider: &Provider, more: &str) {
    add_ops_client(c);
    if c.store.contains("redis") {
        c.store.push_str(&format!("encryption_key = \"{KEY}\"\n"));
    }
    c.env
        .push(("CRM_SECRET".into(), PROVIDER_CLIENT_SECRET.into()));
    c.extra.push_str(&format!(
        "\n[[credentials]]\nname = \"crm\"\ntoken_url = \"{}\"\nclient_id = \"{PROVIDER_CLIENT_ID}\"\n\
         client_secret = \"${{CRM_SECRET}}\"\n{more}\n\
         [[routes]]\nname = \"crm\"\npath = \"/abc/crm/*\"\nstrip_prefix = \"/abc/crm\"\n\
         upstreams = [\"{}\"]\ncredential = \"crm\"\n",
        provider.url("/token"),
        provider.url("/api"),
    ));
}

const CLIENT_CREDENTIALS: &str = "grant = \"client_credentials\"\nscope = \"contacts.read\"\n\
params = { audience = \"https://api.crm.example\" }";

async fn start(store: Store, provider: &Provider, more: &str) -> (Fixture, Admin) {
    let fx = Fixture::start_with(store, |c| with_credential(c, provider, more)).await;
    let admin = Admin::new(&fx.gw.admin_url(), &admin_token(&fx).await);
    (fx, admin)
}

/// The route's upstream receives `Authorization: Bearer <the provider's token>` and nothing
/// of the caller's token; the token request authenticated with HTTP Basic and carried the
/// scope and params; later requests reuse the token (one token request for many calls).
async fn the_upstream_gets_the_credentials_token_never_the_callers(store: Store) {
    let provider = Provider::start().await;
    let (fx, _admin) = start(store, &provider, CLIENT_CREDENTIALS).await;
    let caller = fx.client_token(Some("reports")).await;
    for i in 0..5 {
        let resp = fx
            .get(&format!("/abc/crm/contacts/{i}"), Some(&caller))
            .await;
        assert_eq!(resp.status, 200, "call {i}: {resp}");
        assert_eq!(resp.body, format!("api ok /api/contacts/{i}"));
    }
    let seen = provider.api_requests();
    assert_eq!(seen.len(), 5);
    let issued = provider.access_tokens();
    assert_eq!(issued.len(), 1, "one token for five calls");
    for r in &seen {
        assert!(
            r.valid,
            "the upstream saw an invalid token: {:?}",
            r.authorization
        );
        assert_eq!(r.token.as_deref(), Some(issued[0].as_str()));
        for (name, value) in &r.headers {
            let value = value.to_str().unwrap_or_default();
            assert!(
                !value.contains(&caller),
                "the caller's token reached the upstream in {name}"
            );
        }
    }
    let requests = provider.token_requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let first = &requests[0];
    assert_eq!(
        first.basic,
        Some((
            PROVIDER_CLIENT_ID.to_owned(),
            PROVIDER_CLIENT_SECRET.to_owned()
        )),
        "auth_method basic is the default"
    );
    assert_eq!(first.param("client_secret"), None, "{first:?}");
    assert_eq!(first.grant_type(), Some("client_credentials"));
    assert_eq!(first.param("scope"), Some("contacts.read"));
    assert_eq!(first.param("audience"), Some("https://api.crm.example"));
    assert!(!first.json, "form by default");

    let metrics = common::metrics(&fx.gw.admin_url()).await;
    let ok = [("credential", "crm"), ("outcome", "ok")];
    assert_eq!(
        metrics.sum("tollgate_credential_token_requests_total", &ok),
        1.0
    );
    let expiry = metrics.sum(
        "tollgate_credential_token_expiry_seconds",
        &[("credential", "crm")],
    );
    assert!(
        (expiry - (common::unix_now() + 3600) as f64).abs() < 10.0,
        "expiry {expiry}"
    );

    // A route without the credential still forwards to its own upstream, unchanged.
    assert_eq!(fx.get("/abc/plain", Some(&caller)).await.status, 200);
    assert!(
        fx.up.requests()[0].header("authorization").is_none(),
        "no Authorization towards an upstream without a credential"
    );
}

/// `auth_method = "post"`, `request_format = "json"`, nested JSON pointers and a string
/// `expires_in`: the request is a JSON object with the client's id and secret in it and no
/// Basic header, and the token is found where the pointers say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_authentication_json_bodies_and_nested_pointers() {
    let provider = Provider::start().await;
    provider.set_shape(Shape::Nested);
    provider.set_expires_in(Some(json!("120")));
    let more = "grant = \"client_credentials\"\nauth_method = \"post\"\nrequest_format = \"json\"\n\
access_token_path = \"/data/auth/token\"\nrefresh_token_path = \"/data/auth/refresh\"\n\
expires_in_path = \"/data/auth/ttl\"";
    let (fx, admin) = start(Store::memory(), &provider, more).await;
    let caller = fx.client_token(Some("reports")).await;
    let resp = fx.get("/abc/crm/x", Some(&caller)).await;
    assert_eq!(resp.status, 200, "{resp}");
    let request = &provider.token_requests()[0];
    assert!(request.json, "{request:?}");
    assert_eq!(request.basic, None);
    assert_eq!(request.param("client_id"), Some(PROVIDER_CLIENT_ID));
    assert_eq!(request.param("client_secret"), Some(PROVIDER_CLIENT_SECRET));
    let listed = credential(&admin).await;
    let expires = listed["expires_at"].as_str().unwrap_or_default().to_owned();
    let left = common::parse_rfc3339_utc(&expires)
        .unwrap_or_else(|| panic!("expires_at {expires:?}"))
        - common::unix_now();
    assert!(
        (100..=121).contains(&left),
        "the string expires_in \"120\": {left} s left"
    );
}

/// The one credential as `GET /admin/credentials` lists it.
async fn credential(admin: &Admin) -> Value {
    let resp = admin.get("/admin/credentials").await;
    assert_eq!(resp.status, 200, "{resp}");
    let list = resp.json()["credentials"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(list.len(), 1, "{resp}");
    list[0].clone()
}

/// Two nodes on one Redis, 50 concurrent first requests spread over them, and a provider
/// slow enough that they all overlap: one token request, and every call gets the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_on_two_nodes_make_one_token_request() {
    let provider = Provider::start().await;
    provider.set_mode(Mode::Slow(Duration::from_millis(400)));
    let (fx, _admin) = start(Store::redis().await, &provider, CLIENT_CREDENTIALS).await;
    let second = fx.start_node().await;
    let caller = fx.client_token(Some("reports")).await;
    let bases = [fx.gw.base_url(), second.base_url()];
    let calls = (0..50).map(|i| {
        let (url, caller) = (format!("{}/abc/crm/c{i}", bases[i % 2]), caller.clone());
        async move {
            let auth = format!("Bearer {caller}");
            common::get(&url, &[("authorization", &auth)]).await.status
        }
    });
    let statuses = futures_util::future::join_all(calls).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        provider.token_request_count(),
        1,
        "N nodes and M callers, one token request"
    );
    assert!(provider.api_requests().iter().all(|r| r.valid));
}

/// Under steady load the token is refreshed ahead of expiry (3 s tokens, refreshed in their
/// second half), no request ever carries an expired token, and there is never more than one
/// token request in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshed_ahead_of_expiry_and_never_sent_expired() {
    let provider = Provider::start().await;
    provider.set_expires_in(Some(json!(3)));
    let more = format!("{CLIENT_CREDENTIALS}\nrefresh_before = \"1s\"");
    let (fx, _admin) = start(Store::memory(), &provider, &more).await;
    let caller = fx.client_token(Some("reports")).await;
    let until = Instant::now() + Duration::from_secs(7);
    let mut calls = 0;
    while Instant::now() < until {
        let resp = fx.get("/abc/crm/steady", Some(&caller)).await;
        assert_eq!(resp.status, 200, "call {calls}: {resp}");
        calls += 1;
    }
    let seen = provider.api_requests();
    assert_eq!(seen.len(), calls);
    assert!(
        seen.iter().all(|r| r.valid),
        "a request carried an expired or unknown token"
    );
    let n = provider.token_request_count();
    assert!(
        (3..=5).contains(&n),
        "7 s of 3 s tokens refreshed at 2 s: {n} token requests"
    );
    assert_eq!(provider.max_concurrent_token_requests(), 1);
    // Ahead of expiry: each token was replaced in its second half (at about 2 s), not when
    // it was about to run out.
    let at: Vec<Instant> = provider.token_requests().iter().map(|r| r.at).collect();
    for pair in at.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap < Duration::from_millis(2500),
            "refreshed {gap:?} after the previous token (3 s lifetime)"
        );
    }
}

/// An upstream 401 to a body-less idempotent request is answered by one more try with a
/// fresh token; a second 401 goes to the caller; a POST with a body is never sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_401_is_retried_once_with_a_fresh_token() {
    let provider = Provider::start().await;
    let (fx, _admin) = start(Store::memory(), &provider, CLIENT_CREDENTIALS).await;
    let caller = fx.client_token(Some("reports")).await;
    assert_eq!(fx.get("/abc/crm/a", Some(&caller)).await.status, 200);

    provider.invalidate_access_tokens();
    let resp = fx.get("/abc/crm/b", Some(&caller)).await;
    assert_eq!(resp.status, 200, "retried with a fresh token: {resp}");
    let seen = provider.api_requests();
    assert_eq!(seen.len(), 3, "first call, refused try, retry");
    assert!(!seen[1].valid && seen[2].valid);
    assert_ne!(seen[1].token, seen[2].token);
    assert_eq!(provider.token_request_count(), 2);

    provider.set_api_always_401(true);
    let resp = fx.get("/abc/crm/c", Some(&caller)).await;
    assert_eq!(
        resp.status, 401,
        "the second 401 goes to the caller: {resp}"
    );
    assert_eq!(provider.api_requests().len(), 5, "exactly one retry");

    let before = provider.api_requests().len();
    let auth = format!("Bearer {caller}");
    let resp = common::send(
        "POST",
        &fx.url("/abc/crm/d"),
        &[("authorization", &auth), ("content-type", "text/plain")],
        "a body",
    )
    .await;
    assert_eq!(resp.status, 401, "{resp}");
    assert_eq!(
        provider.api_requests().len(),
        before + 1,
        "a POST with a body is not replayed"
    );
}

/// A provider that fails answers callers 502 naming the credential (never the provider's
/// words), is asked at most about once a second meanwhile, and the gateway recovers on its
/// own once it is back. `invalid_client` is not retried at all until an operator asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_failures_are_502_without_a_retry_storm() {
    let provider = Provider::start().await;
    let more = format!("{CLIENT_CREDENTIALS}\ntimeout = \"500ms\"");
    let (fx, admin) = start(Store::memory(), &provider, &more).await;
    let caller = fx.client_token(Some("reports")).await;

    let failures = [
        (Mode::Status(503), "HTTP 503"),
        (Mode::Html, "HTML"),
        (Mode::NoAccessToken, "no access token"),
        (Mode::TokenType("mac"), "not Bearer"),
        (Mode::Slow(Duration::from_secs(2)), "timeout"),
        (Mode::Hangup, "unreachable"),
    ];
    for (mode, why) in failures {
        provider.set_mode(mode);
        let before = provider.token_request_count();
        let started = Instant::now();
        for _ in 0..5 {
            let resp = fx.get("/abc/crm/x", Some(&caller)).await;
            assert_eq!(resp.status, 502, "{mode:?}: {resp}");
            assert_eq!(resp.json()["error"], "bad_gateway");
            let description = resp.json()["error_description"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(
                description.contains("crm"),
                "{mode:?}: names the credential: {description}"
            );
            assert!(
                !resp.body.contains("provider says") && !resp.body.contains("<html"),
                "{resp}"
            );
        }
        let asked = provider.token_request_count() - before;
        let allowed = 1 + started.elapsed().as_secs() as usize;
        assert!(
            (1..=allowed).contains(&asked),
            "{mode:?}: {asked} token requests"
        );
        let listed = credential(&admin).await;
        assert_eq!(listed["status"], "failing", "{listed}");
        let last = listed["last_error"].as_str().unwrap_or_default();
        assert!(last.contains(why), "{mode:?}: last_error {last:?}");
        // Recovery without a restart, within the one-second backoff.
        provider.set_mode(Mode::Normal);
        let ok = common::poll(Duration::from_secs(3), || async {
            (fx.get("/abc/crm/x", Some(&caller)).await.status == 200).then_some(())
        })
        .await;
        assert!(ok.is_some(), "{mode:?}: no recovery");
        // Start the next case without a token in hand.
        assert_eq!(
            admin.delete("/admin/credentials/crm/tokens").await.status,
            204
        );
    }

    provider.set_mode(Mode::OAuthError("invalid_client"));
    assert_eq!(fx.get("/abc/crm/x", Some(&caller)).await.status, 502);
    let asked = provider.token_request_count();
    provider.set_mode(Mode::Normal);
    let end = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < end {
        assert_eq!(fx.get("/abc/crm/x", Some(&caller)).await.status, 502);
    }
    assert_eq!(
        provider.token_request_count(),
        asked,
        "invalid_client is not retried"
    );
    let resp = admin
        .post("/admin/credentials/crm/refresh", &json!({}))
        .await;
    assert_eq!(resp.status, 200, "an operator's refresh: {resp}");
    assert_eq!(resp.json()["status"], "ok");
    assert_eq!(fx.get("/abc/crm/x", Some(&caller)).await.status, 200);
}

/// `grant = "refresh_token"` with Redis: the provider rotates the refresh token at every
/// refresh; the new one is kept (sealed) in the store at once, so after both nodes restart
/// the stored access token is used without a token request, and the next refresh presents
/// the rotated refresh token, which the provider still accepts. No token or secret text is
/// in the logs, the admin listing or Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_survives_a_restart_of_both_nodes() {
    let provider = Provider::start().await;
    let seed = provider.issue_refresh_token();
    let more = format!("grant = \"refresh_token\"\nrefresh_token = \"{seed}\"");
    let (fx, admin) = start(Store::redis().await, &provider, &more).await;
    let second = fx.start_node().await;
    let caller = fx.client_token(Some("reports")).await;
    assert_eq!(fx.get("/abc/crm/x", Some(&caller)).await.status, 200);
    let auth = format!("Bearer {caller}");
    let on_second = common::get(
        &format!("{}/abc/crm/y", second.base_url()),
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(on_second.status, 200, "{on_second}");
    assert_eq!(provider.token_request_count(), 1);
    let rotated = provider
        .live_refresh_token()
        .expect("a rotated refresh token");
    assert_ne!(rotated, seed);

    let listing = admin.get("/admin/credentials").await.body;
    let mut secrets: Vec<String> = provider.access_tokens();
    secrets.extend([
        seed.clone(),
        rotated.clone(),
        PROVIDER_CLIENT_SECRET.to_owned(),
    ]);
    for s in &secrets {
        assert!(
            !listing.contains(s.as_str()),
            "the admin listing shows a secret"
        );
    }
    let dump = fx.store.redis_dump().await;
    for s in &secrets {
        assert!(
            !dump.contains(s.as_str()),
            "Redis holds a token or secret in the clear"
        );
    }
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    fx.gw.assert_logs_free_of(&refs);
    second.assert_logs_free_of(&refs);

    // Both nodes go; new ones come up on the same store.
    let config = fx.config.clone();
    let env = fx.env.clone();
    drop(second);
    let Fixture { gw, store, up, .. } = fx;
    drop(gw);
    let third = common::Gateway::start(&config, &env).await;
    let fourth = common::Gateway::start(&config, &env).await;
    for node in [&third, &fourth] {
        let resp = common::get(
            &format!("{}/abc/crm/z", node.base_url()),
            &[("authorization", &auth)],
        )
        .await;
        assert_eq!(resp.status, 200, "{resp}");
    }
    assert_eq!(
        provider.token_request_count(),
        1,
        "the stored token was used after the restart"
    );
    let admin = admin_for(&third, &admin).await;
    let resp = admin
        .post("/admin/credentials/crm/refresh", &json!({}))
        .await;
    assert_eq!(
        resp.status, 200,
        "refresh with the rotated refresh token: {resp}"
    );
    let last = provider.token_requests().pop().expect("a token request");
    assert_eq!(last.param("refresh_token"), Some(rotated.as_str()));
    drop((store, up));
}

/// The same admin token against another node's admin listener (tokens live in the store).
async fn admin_for(node: &common::Gateway, admin: &Admin) -> Admin {
    Admin::new(&node.admin_url(), &admin.token)
}

/// `tollgate credentials list | refresh | disconnect` over the admin API: the table names the
/// credential and never a token; refresh makes one token request (and fails with exit 1
/// naming the credential when the provider refuses); disconnect forgets the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_refreshes_and_disconnects_credentials() {
    let provider = Provider::start().await;
    let (fx, admin) = start(Store::memory(), &provider, CLIENT_CREDENTIALS).await;
    let cli = |args: &[&str]| {
        let mut all = vec!["--admin-url", &admin.base, "--token", &admin.token];
        all.extend_from_slice(args);
        let all: Vec<String> = all.iter().map(|s| (*s).to_owned()).collect();
        async move { common::tollgate(&all, &[]).await }
    };
    let run = cli(&["credentials", "refresh", "crm"]).await;
    run.ok();
    assert!(run.stdout.contains("credential crm: ok"), "{run}");
    assert_eq!(provider.token_request_count(), 1);
    let run = cli(&["credentials", "list"]).await;
    run.ok();
    assert!(
        run.stdout.contains("crm") && run.stdout.contains("client_credentials"),
        "{run}"
    );
    for token in provider.access_tokens() {
        assert!(!run.stdout.contains(&token), "the table shows a token");
    }
    let json = cli(&["--json", "credentials", "list"]).await;
    assert_eq!(json.ok().json()["credentials"][0]["status"], "ok");
    let run = cli(&["credentials", "disconnect", "crm"]).await;
    run.ok();
    assert_eq!(credential(&admin).await["expires_at"], Value::Null);

    provider.set_mode(Mode::OAuthError("invalid_client"));
    cli(&["credentials", "refresh", "crm"])
        .await
        .failed("credential crm: provider answered invalid_client");
    cli(&["credentials", "refresh", "nope"]).await.failed("404");
    drop(fx);
}

/// A failed refresh keeps the current token until it really expires: requests go on with
/// it, while the listing says `failing` with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_refresh_keeps_the_current_token() {
    let provider = Provider::start().await;
    let (fx, admin) = start(Store::memory(), &provider, CLIENT_CREDENTIALS).await;
    let caller = fx.client_token(Some("reports")).await;
    assert_eq!(fx.get("/abc/crm/a", Some(&caller)).await.status, 200);
    provider.set_mode(Mode::Status(500));
    let resp = admin
        .post("/admin/credentials/crm/refresh", &json!({}))
        .await;
    assert_eq!(resp.status, 502, "{resp}");
    assert_eq!(resp.json()["status"], "failing", "{resp}");
    assert_eq!(resp.json()["last_error"], "provider answered HTTP 500");
    let resp = fx.get("/abc/crm/b", Some(&caller)).await;
    assert_eq!(resp.status, 200, "the current token is still good: {resp}");
    let seen = provider.api_requests();
    assert_eq!(seen[0].token, seen[1].token);
}

/// `grant = "password"`: the service account's username and password go to the provider
/// (with the client's own authentication), and the upstream gets the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_grant_signs_in_the_service_account() {
    let provider = Provider::start().await;
    let more = format!(
        "grant = \"password\"\nusername = \"{}\"\npassword = \"{}\"",
        common::PROVIDER_USER,
        common::PROVIDER_PASSWORD
    );
    let (fx, _admin) = start(Store::memory(), &provider, &more).await;
    let caller = fx.client_token(Some("reports")).await;
    let resp = fx.get("/abc/crm/x", Some(&caller)).await;
    assert_eq!(resp.status, 200, "{resp}");
    let request = &provider.token_requests()[0];
    assert_eq!(request.grant_type(), Some("password"));
    assert_eq!(request.param("username"), Some(common::PROVIDER_USER));
    assert_eq!(request.param("password"), Some(common::PROVIDER_PASSWORD));
    fx.gw.assert_logs_free_of(&[common::PROVIDER_PASSWORD]);
}
