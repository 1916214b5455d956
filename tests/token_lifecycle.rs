//! End-to-end: the refresh lifecycle beyond rotation (SPEC §5): the grace window for a
//! retried refresh, scope narrowing, `refresh_token_ttl`; revoking only one's own tokens;
//! and `[oauth].default_client`.

#[macro_use]
mod common;

use std::time::Duration;

use common::{
    Fixture, Resp, Store, access_token, assert_error, parse_rfc3339_utc, post_form, refresh_token,
    time_until_status,
};
use serde_json::Value;

both_backends!(
    retried_refresh_within_grace_gets_the_same_answer,
    reuse_after_grace_revokes_the_grant
);

async fn refresh(fx: &Fixture, client_id: &str, token: &str, scope: Option<&str>) -> Resp {
    let mut params = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    if let Some(scope) = scope {
        params.push(("scope", scope));
    }
    fx.token_request(client_id, &params).await
}

/// Within `[oauth].refresh_grace` (default 5 s), presenting the refresh token that was
/// just retired again returns the very same answer as the first refresh (same access and
/// refresh token), and the grant stays alive: those tokens keep working.
async fn retried_refresh_within_grace_gets_the_same_answer(store: Store) {
    let fx = Fixture::start(store).await;
    let grant = fx.password_token_for("photoprint", "reports").await;
    let r1 = refresh_token(&grant);
    let first = refresh(&fx, "photoprint", &r1, None).await;
    assert_eq!(first.status, 200, "{first}");
    let retry = refresh(&fx, "photoprint", &r1, None).await;
    assert_eq!(
        retry.status, 200,
        "a retried refresh within the grace window: {retry}"
    );
    let (first, retry) = (first.json(), retry.json());
    assert_eq!(
        access_token(&retry),
        access_token(&first),
        "{retry} vs {first}"
    );
    assert_eq!(
        refresh_token(&retry),
        refresh_token(&first),
        "{retry} vs {first}"
    );
    assert_eq!(
        fx.get("/abc/x", Some(&access_token(&first))).await.status,
        200
    );
    let next = refresh(&fx, "photoprint", &refresh_token(&first), None).await;
    assert_eq!(
        next.status, 200,
        "the grant survives a retry within grace: {next}"
    );
    assert_eq!(
        fx.get("/abc/x", Some(&access_token(&next.json())))
            .await
            .status,
        200
    );
}

/// Once the grace window has passed, the retired refresh token is a leak: `invalid_grant`,
/// and the grant is revoked (its newest access token stops within 1 s, its newest refresh
/// token is refused). With `refresh_grace = "0s"` that holds from the first retry.
async fn reuse_after_grace_revokes_the_grant(store: Store) {
    let fx = Fixture::start_with(store, |c| c.set_oauth("refresh_grace", "1s")).await;
    let grant = fx.password_token_for("photoprint", "reports").await;
    let r1 = refresh_token(&grant);
    let renewed = refresh(&fx, "photoprint", &r1, None).await.json();
    // Waiting out the grace window, not for readiness.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_error(
        &refresh(&fx, "photoprint", &r1, None).await,
        400,
        "invalid_grant",
    );
    assert_grant_revoked(&fx, &renewed).await;

    let fx = Fixture::start_with(Store::memory(), |c| c.set_oauth("refresh_grace", "0s")).await;
    let grant = fx.password_token_for("photoprint", "reports").await;
    let r1 = refresh_token(&grant);
    let renewed = refresh(&fx, "photoprint", &r1, None).await.json();
    assert_error(
        &refresh(&fx, "photoprint", &r1, None).await,
        400,
        "invalid_grant",
    );
    assert_grant_revoked(&fx, &renewed).await;
}

async fn assert_grant_revoked(fx: &Fixture, latest: &Value) {
    let access = access_token(latest);
    let took = time_until_status(&fx.url("/abc/x"), &access, 401, Duration::from_secs(1)).await;
    assert!(
        took.is_some(),
        "the grant's newest access token survived the reuse"
    );
    let resp = refresh(fx, "photoprint", &refresh_token(latest), None).await;
    assert_error(&resp, 400, "invalid_grant");
}

/// A refresh that fails part-way costs the client nothing: its retry is an ordinary
/// refresh, and the grant (and its tokens) live on. The failure is staged with a Redis ACL
/// that lets the gateway write everything but access-token keys, so storing the new access
/// token fails after the old refresh token could have been retired. (Retiring and issuing as
/// two steps fails this: the retry finds the token retired without an answer to repeat, and
/// reuse detection revokes the grant.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_that_fails_part_way_keeps_the_grant() {
    let fx = Fixture::start(Store::redis().await).await;
    let grant = fx.password_token_for("photoprint", "reports").await;
    let (a1, r1) = (access_token(&grant), refresh_token(&grant));
    assert_eq!(fx.get("/abc/x", Some(&a1)).await.status, 200);

    let p = fx.store.prefix.clone();
    // Read anything, read and write (one pattern must grant both) all but access tokens.
    let writable = ["rt:", "g:", "ci:", "ui:"].map(|k| format!("~{p}{k}*"));
    let mut deny = vec!["SETUSER", "default", "resetkeys", "%R~*"];
    deny.extend(writable.iter().map(String::as_str));
    acl(&fx, &deny).await;
    let failed = refresh(&fx, "photoprint", &r1, None).await;
    acl(&fx, &["SETUSER", "default", "resetkeys", "~*"]).await;
    assert_error(&failed, 503, "temporarily_unavailable");

    let retry = refresh(&fx, "photoprint", &r1, None).await;
    assert_eq!(
        retry.status, 200,
        "the retry after a failed refresh: {retry}"
    );
    let renewed = retry.json();
    assert_eq!(
        fx.get("/abc/x", Some(&a1)).await.status,
        200,
        "grant revoked"
    );
    let a2 = access_token(&renewed);
    assert_eq!(fx.get("/abc/x", Some(&a2)).await.status, 200);
    let next = refresh(&fx, "photoprint", &refresh_token(&renewed), None).await;
    assert_eq!(next.status, 200, "the new refresh token: {next}");
}

/// A refresh sent while Redis is down gets 503; sent again once Redis is back, it is an
/// ordinary refresh and the grant lives on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_during_an_outage_can_be_retried() {
    let mut fx = Fixture::start(Store::redis().await).await;
    let grant = fx.password_token_for("photoprint", "reports").await;
    let (a1, r1) = (access_token(&grant), refresh_token(&grant));
    fx.store.redis_mut().stop();
    let failed = refresh(&fx, "photoprint", &r1, None).await;
    assert_error(&failed, 503, "temporarily_unavailable");
    fx.store.redis_mut().restart().await;
    fx.gw.wait_ready(Duration::from_secs(10)).await;
    let retry = refresh(&fx, "photoprint", &r1, None).await;
    assert_eq!(retry.status, 200, "the retry after the outage: {retry}");
    assert_eq!(
        fx.get("/abc/x", Some(&a1)).await.status,
        200,
        "grant revoked"
    );
    let a2 = access_token(&retry.json());
    assert_eq!(fx.get("/abc/x", Some(&a2)).await.status, 200);
}

/// Runs `ACL args…` on the fixture's Redis.
async fn acl(fx: &Fixture, args: &[&str]) {
    let url = fx.store.redis.as_ref().expect("redis store").url();
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis");
    redis::cmd("ACL")
        .arg(args)
        .query_async::<()>(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("ACL {args:?}: {e}"));
}

/// A refresh may ask for fewer scopes than the grant has (the new token has only those)
/// but never more: a scope outside the grant is `invalid_scope`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_may_narrow_the_scope_but_never_widen_it() {
    let fx = Fixture::start(Store::memory()).await;
    let grant = fx.password_token_for("photoprint", "reports secret").await;
    let narrowed = refresh(&fx, "photoprint", &refresh_token(&grant), Some("reports")).await;
    assert_eq!(narrowed.status, 200, "{narrowed}");
    let narrowed = narrowed.json();
    assert_eq!(narrowed["scope"], "reports");
    let access = access_token(&narrowed);
    assert_eq!(fx.get("/abc/x", Some(&access)).await.status, 200);
    assert_eq!(fx.get("/secret/x", Some(&access)).await.status, 403);

    let small = fx.password_token_for("photoprint", "reports").await;
    let widened = refresh(
        &fx,
        "photoprint",
        &refresh_token(&small),
        Some("reports secret"),
    )
    .await;
    assert_error(&widened, 400, "invalid_scope");
    let publish = refresh(&fx, "photoprint", &refresh_token(&small), Some("publish")).await;
    assert_error(&publish, 400, "invalid_scope");
}

/// `refresh_token_ttl` bounds each refresh token: the response says when it expires, and
/// after that it is `invalid_grant`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_token_expires_after_its_ttl() {
    let fx = Fixture::start_with(Store::memory(), |c| c.set_oauth("refresh_token_ttl", "2s")).await;
    let grant = fx.password_token_for("photoprint", "reports").await;
    let issued =
        parse_rfc3339_utc(grant["issued_at"].as_str().unwrap_or_default()).expect("issued_at");
    let expires = grant["refresh_token_expires_at"]
        .as_str()
        .unwrap_or_default();
    let expires = parse_rfc3339_utc(expires).expect("refresh_token_expires_at");
    assert!(
        (expires - issued - 2).abs() <= 1,
        "refresh_token_expires_at: {grant}"
    );
    // Waiting out a lifetime, not for readiness.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let resp = refresh(&fx, "photoprint", &refresh_token(&grant), None).await;
    assert_error(&resp, 400, "invalid_grant");
}

/// RFC 7009 between clients: a client may revoke its own tokens, not another client's:
/// that is 400 `unauthorized_client` and the token keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_revokes_only_its_own_tokens() {
    let fx = Fixture::start_with(Store::memory(), |c| {
        c.add_client("other", &["client_credentials"], &["reports"], "");
    })
    .await;
    let revoke_url = fx.url("/oauth/revoke");
    let grant = fx.password_token_for("photoprint", "reports").await;
    for token in [access_token(&grant), refresh_token(&grant)] {
        let by_other = Some(("other", fx.creds.secret.as_str()));
        let resp = post_form(&revoke_url, &[("token", &token)], by_other).await;
        assert_error(&resp, 400, "unauthorized_client");
    }
    let access = access_token(&grant);
    assert_eq!(
        fx.get("/abc/x", Some(&access)).await.status,
        200,
        "another client revoked it"
    );
    let renewed = refresh(&fx, "photoprint", &refresh_token(&grant), None).await;
    assert_eq!(
        renewed.status, 200,
        "another client revoked the refresh token: {renewed}"
    );

    let own = Some(("photoprint", fx.creds.secret.as_str()));
    let renewed = renewed.json();
    let resp = post_form(&revoke_url, &[("token", &access_token(&renewed))], own).await;
    assert_eq!(resp.status, 200, "{resp}");
    let took = time_until_status(
        &fx.url("/abc/x"),
        &access_token(&renewed),
        401,
        Duration::from_secs(1),
    )
    .await;
    assert!(took.is_some(), "own revocation did not take");
}

/// `[oauth].default_client`: a password or refresh request naming no client is made as
/// that client (form body and, FlowWright style, query string with an empty body); a
/// client_credentials request naming none is still 401 `invalid_client`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_client_serves_requests_that_name_none() {
    let fx = Fixture::start_with(Store::memory(), |c| {
        c.add_public_client("legacy", &[], &["password", "refresh_token"], &["reports"]);
        c.set_oauth("default_client", "legacy");
    })
    .await;
    let url = fx.token_url();
    let password = fx.creds.password.as_str();
    let params = [
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", password),
    ];
    let resp = post_form(&url, &params, None).await;
    assert_eq!(resp.status, 200, "password grant without a client: {resp}");
    let grant = resp.json();
    assert_eq!(
        grant["scope"], "reports",
        "the default client's scopes: {grant}"
    );
    assert_eq!(
        fx.get("/abc/x", Some(&access_token(&grant))).await.status,
        200
    );
    let seen = fx.up.only_request();
    assert_eq!(seen.header("x-auth-client-id"), Some("legacy"));
    assert_eq!(seen.header("x-auth-subject"), Some("alice"));

    let rt = refresh_token(&grant);
    let resp = post_form(
        &url,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
        None,
    )
    .await;
    assert_eq!(resp.status, 200, "refresh without a client: {resp}");

    let query = common::authorize_query(&params);
    let resp = common::send("POST", &format!("{url}?{query}"), &[], "").await;
    assert_eq!(
        resp.status, 200,
        "query-string password grant without a client: {resp}"
    );

    let resp = post_form(&url, &[("grant_type", "client_credentials")], None).await;
    assert_error(&resp, 401, "invalid_client");

    // A confidential client's refresh token always needs that client's authentication: the
    // default client does not stand in for it.
    let theirs = refresh_token(&fx.password_token_for("photoprint", "reports").await);
    let unauthenticated = [("grant_type", "refresh_token"), ("refresh_token", &theirs)];
    let resp = post_form(&url, &unauthenticated, None).await;
    assert_error(&resp, 400, "invalid_grant");
    let resp = fx.token_request("photoprint", &unauthenticated).await;
    assert_eq!(resp.status, 200, "the same refresh, authenticated: {resp}");
}
