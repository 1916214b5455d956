//! End-to-end: the token and revocation endpoints (SPEC §5) through the real binary, on
//! both store backends where the store is involved. Their error answers are in
//! `tests/token_errors.rs`.

#[macro_use]
mod common;

use std::time::Duration;

use common::{
    Fixture, Store, access_token, assert_error, assert_invalid_token, assert_oauth_error,
    assert_token_response, client_toml, post_form, random_token, refresh, refresh_token, scope_set,
    time_until_status,
};
use serde_json::Value;

both_backends!(
    client_credentials_with_basic_auth,
    client_credentials_with_body_auth,
    password_grant_forwards_the_user,
    refresh_rotates_and_reuse_revokes_the_grant,
    refresh_count_caps_refreshes,
    never_expiring_token,
    revocation,
    logs_never_contain_credentials,
);

const TEN_MINUTES: Option<i64> = Some(600);

/// client_credentials with HTTP Basic: a usable token whose scope is everything the client
/// may have when no `scope` is asked, or exactly what was asked.
async fn client_credentials_with_basic_auth(store: Store) {
    let fx = Fixture::start(store).await;
    let resp = fx
        .token_request("photoprint", &[("grant_type", "client_credentials")])
        .await;
    let body = assert_token_response(&resp, TEN_MINUTES);
    assert_eq!(
        scope_set(body["scope"].as_str().unwrap_or_default()),
        scope_set("reports secret publish infra")
    );
    let token = access_token(&body);
    assert_eq!(fx.get("/abc/x", Some(&token)).await.status, 200);
    assert_eq!(fx.get("/secret/x", Some(&token)).await.status, 200);

    let resp = fx
        .token_request(
            "photoprint",
            &[("grant_type", "client_credentials"), ("scope", "reports")],
        )
        .await;
    let body = assert_token_response(&resp, TEN_MINUTES);
    assert_eq!(body["scope"], "reports");
    let narrow = access_token(&body);
    assert_ne!(narrow, token, "every token is new");
    assert_eq!(fx.get("/abc/x", Some(&narrow)).await.status, 200);
    assert_eq!(fx.get("/secret/x", Some(&narrow)).await.status, 403);
}

/// client_credentials with `client_id`+`client_secret` in the body; and, when the body is
/// empty, with the parameters in the query string.
async fn client_credentials_with_body_auth(store: Store) {
    let fx = Fixture::start(store).await;
    let params = [
        ("grant_type", "client_credentials"),
        ("client_id", "photoprint"),
        ("client_secret", fx.creds.secret.as_str()),
        ("scope", "reports"),
    ];
    let resp = post_form(&fx.token_url(), &params, None).await;
    let token = access_token(&assert_token_response(&resp, TEN_MINUTES));
    assert_eq!(fx.get("/abc/x", Some(&token)).await.status, 200);

    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    let resp = common::send("POST", &format!("{}?{query}", fx.token_url()), &[], "").await;
    let token = access_token(&assert_token_response(&resp, TEN_MINUTES));
    assert_eq!(fx.get("/abc/x", Some(&token)).await.status, 200);
}

/// A client secret given as `secret = "${ENV}"` works (and only that secret).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_secret_from_environment() {
    let env_secret = format!("env-{}", common::random_hex(16));
    let env_secret_for_config = env_secret.clone();
    let fx = Fixture::start_with(Store::memory(), |c| {
        c.extra.push_str(&client_toml(
            "envclient",
            "secret = \"${E2E_ENVCLIENT_SECRET}\"",
            &["client_credentials"],
            &["reports"],
            "",
        ));
        c.env
            .push(("E2E_ENVCLIENT_SECRET".into(), env_secret_for_config));
    })
    .await;
    let grant = [("grant_type", "client_credentials")];
    let resp = post_form(&fx.token_url(), &grant, Some(("envclient", &env_secret))).await;
    let token = access_token(&assert_token_response(&resp, TEN_MINUTES));
    assert_eq!(fx.get("/abc/x", Some(&token)).await.status, 200);
    let resp = post_form(
        &fx.token_url(),
        &grant,
        Some(("envclient", "${E2E_ENVCLIENT_SECRET}")),
    )
    .await;
    assert_oauth_error(&resp, 401, "invalid_client");
    fx.gw.assert_logs_free_of(&[&env_secret]);
}

/// The password grant issues a refresh token and names the user upstream.
async fn password_grant_forwards_the_user(store: Store) {
    let fx = Fixture::start(store).await;
    let resp = fx
        .token_request(
            "photoprint",
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", &fx.creds.password),
                ("scope", "reports"),
            ],
        )
        .await;
    let body = assert_token_response(&resp, TEN_MINUTES);
    assert_eq!(body["scope"], "reports");
    refresh_token(&body);
    let resp = fx.get("/abc/x", Some(&access_token(&body))).await;
    assert_eq!(resp.status, 200, "{resp}");
    let seen = fx.up.only_request();
    assert_eq!(seen.header("x-auth-subject"), Some("alice"));
    assert_eq!(seen.header("x-auth-client-id"), Some("photoprint"));
}

/// Each refresh returns a new access and refresh token and retires the old refresh
/// token; presenting a retired one is `invalid_grant` and revokes the whole grant: every
/// access token issued under it stops working (within 1 s, SPEC §7) and so does the
/// latest refresh token. A refresh token only works for the client it was issued to.
async fn refresh_rotates_and_reuse_revokes_the_grant(store: Store) {
    let fx = Fixture::start_with(store, |c| {
        // Reuse detection is tested here; the retry grace window has its own tests.
        c.set_oauth("refresh_grace", "0s");
        c.add_client(
            "other",
            &["client_credentials", "refresh_token"],
            &["reports"],
            "",
        );
    })
    .await;
    let first = fx.password_token_for("photoprint", "reports").await;
    let (a1, r1) = (access_token(&first), refresh_token(&first));

    let second = assert_token_response(&refresh(&fx, "photoprint", &r1).await, TEN_MINUTES);
    let (a2, r2) = (access_token(&second), refresh_token(&second));
    assert_eq!(second["scope"], "reports");
    assert!(a2 != a1 && r2 != r1, "refresh must issue new tokens");
    assert_eq!(fx.get("/abc/x", Some(&a2)).await.status, 200);

    let third = assert_token_response(&refresh(&fx, "photoprint", &r2).await, TEN_MINUTES);
    let (a3, r3) = (access_token(&third), refresh_token(&third));
    assert!(r3 != r2 && r3 != r1);
    assert_eq!(fx.get("/abc/x", Some(&a3)).await.status, 200);

    // r1 was retired by the first refresh: reuse means it leaked.
    assert_oauth_error(&refresh(&fx, "photoprint", &r1).await, 400, "invalid_grant");
    for (name, token) in [("a1", &a1), ("a2", &a2), ("a3", &a3)] {
        let took = time_until_status(&fx.url("/abc/x"), token, 401, Duration::from_secs(1)).await;
        assert!(
            took.is_some(),
            "{name} still accepted 1 s after the grant was revoked"
        );
        assert_invalid_token(&fx.get("/abc/x", Some(token)).await, "token revoked");
    }
    assert_oauth_error(&refresh(&fx, "photoprint", &r3).await, 400, "invalid_grant");

    // Another client cannot redeem it (what happens to the grant after that is not checked:
    // revoking it too would be a defensible reaction to a leaked token).
    let grant = fx.password_token_for("photoprint", "reports").await;
    let resp = refresh(&fx, "other", &refresh_token(&grant)).await;
    assert_oauth_error(&resp, 400, "invalid_grant");
}

/// `refresh_count = 0` issues no refresh token (and no `refresh_token_expires_at`);
/// `refresh_count = N` allows N refreshes per grant: the Nth answer carries no refresh
/// token, so there is nothing left to refresh with, and the retired one stays refused.
async fn refresh_count_caps_refreshes(store: Store) {
    let fx = Fixture::start_with(store, |c| {
        let grants = ["password", "refresh_token"];
        c.add_client("norefresh", &grants, &["reports"], "refresh_count = 0");
        c.add_client("onerefresh", &grants, &["reports"], "refresh_count = 1");
        c.add_client("tworefresh", &grants, &["reports"], "refresh_count = 2");
        c.set_oauth("refresh_grace", "0s");
    })
    .await;
    let none = fx.password_token_for("norefresh", "reports").await;
    assert!(
        none.get("refresh_token").is_none(),
        "refresh_count = 0 issued one: {none}"
    );
    assert!(none.get("refresh_token_expires_at").is_none(), "{none}");

    let first = fx.password_token_for("onerefresh", "reports").await;
    let once = assert_token_response(
        &refresh(&fx, "onerefresh", &refresh_token(&first)).await,
        TEN_MINUTES,
    );
    assert_eq!(
        fx.get("/abc/x", Some(&access_token(&once))).await.status,
        200
    );
    assert!(
        once.get("refresh_token").is_none() && once.get("refresh_token_expires_at").is_none(),
        "refresh_count = 1: the one refresh handed out another refresh token: {once}"
    );

    let first = fx.password_token_for("tworefresh", "reports").await;
    let second = assert_token_response(
        &refresh(&fx, "tworefresh", &refresh_token(&first)).await,
        TEN_MINUTES,
    );
    let r2 = second
        .get("refresh_token")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("refresh_count = 2: no refresh token after one: {second}"));
    let third = assert_token_response(&refresh(&fx, "tworefresh", r2).await, TEN_MINUTES);
    assert!(
        third.get("refresh_token").is_none(),
        "refresh_count = 2: a third refresh token: {third}"
    );
    assert_eq!(
        fx.get("/abc/x", Some(&access_token(&third))).await.status,
        200
    );
    assert_oauth_error(&refresh(&fx, "tworefresh", r2).await, 400, "invalid_grant");
}

/// `access_token_ttl = "never"`: no `expires_in`/`expires_at`, and the token works.
async fn never_expiring_token(store: Store) {
    let fx = Fixture::start_with(store, |c| {
        c.add_client(
            "forever",
            &["client_credentials"],
            &["reports"],
            "access_token_ttl = \"never\"",
        );
    })
    .await;
    let resp = fx
        .token_request("forever", &[("grant_type", "client_credentials")])
        .await;
    let body = assert_token_response(&resp, None);
    assert_eq!(
        fx.get("/abc/x", Some(&access_token(&body))).await.status,
        200
    );
}

/// RFC 7009 revocation: an access token stops working; revoking a refresh token also
/// revokes the access tokens issued from it; unknown tokens are 200; the endpoint needs
/// client authentication, and a client cannot revoke another client's token.
async fn revocation(store: Store) {
    let fx = Fixture::start_with(store, |c| {
        c.add_client("limited", &["client_credentials"], &["reports"], "");
    })
    .await;
    let revoke_url = fx.url("/oauth/revoke");
    let abc = fx.url("/abc/x");
    let basic = Some(("photoprint", fx.creds.secret.as_str()));

    let token = fx.client_token(Some("reports")).await;
    assert_eq!(fx.get("/abc/x", Some(&token)).await.status, 200);
    let resp = post_form(&revoke_url, &[("token", &token)], basic).await;
    assert_eq!(resp.status, 200, "{resp}");
    assert!(
        time_until_status(&abc, &token, 401, Duration::from_secs(1))
            .await
            .is_some()
    );
    assert_invalid_token(&fx.get("/abc/x", Some(&token)).await, "token revoked");
    assert_invalid_token(
        &fx.get("/abc/x", Some(&random_token())).await,
        "unknown token",
    );

    let grant = fx.password_token_for("photoprint", "reports").await;
    let (access, refresh_tok) = (access_token(&grant), refresh_token(&grant));
    assert_eq!(fx.get("/abc/x", Some(&access)).await.status, 200);
    let body_auth = [
        ("token", refresh_tok.as_str()),
        ("client_id", "photoprint"),
        ("client_secret", fx.creds.secret.as_str()),
    ];
    let resp = post_form(&revoke_url, &body_auth, None).await;
    assert_eq!(resp.status, 200, "{resp}");
    assert!(
        time_until_status(&abc, &access, 401, Duration::from_secs(1))
            .await
            .is_some(),
        "access token survived the revocation of its refresh token"
    );
    assert_oauth_error(
        &refresh(&fx, "photoprint", &refresh_tok).await,
        400,
        "invalid_grant",
    );

    let resp = post_form(&revoke_url, &[("token", &random_token())], basic).await;
    assert_eq!(resp.status, 200, "unknown token: {resp}");

    let victim = fx.client_token(Some("reports")).await;
    let resp = post_form(&revoke_url, &[("token", &victim)], None).await;
    assert_error(&resp, 401, "invalid_client");
    let resp = post_form(
        &revoke_url,
        &[("token", &victim)],
        Some(("limited", &fx.creds.secret)),
    )
    .await;
    assert_oauth_error(&resp, 400, "unauthorized_client");
    assert_eq!(
        fx.get("/abc/x", Some(&victim)).await.status,
        200,
        "another client revoked it"
    );
}

/// No token, client secret, password (right or wrong) or Basic credential ever appears in
/// the gateway's output, whatever happened to the request.
async fn logs_never_contain_credentials(store: Store) {
    // The gateway's own events at every level, not only what is printed by default.
    let mut fx = Fixture::start_with(store, |c| {
        c.env
            .push(("RUST_LOG".into(), "info,tollgate=trace".into()));
    })
    .await;
    let basic = common::basic_auth("photoprint", &fx.creds.secret);
    let basic_value = basic.trim_start_matches("Basic ").to_owned();
    let wrong_password = format!("wrong-{}", common::random_hex(8));
    let bogus = random_token();

    let client = fx.client_token(None).await;
    let grant = fx.password_token_for("photoprint", "reports").await;
    let (access, refresh_tok) = (access_token(&grant), refresh_token(&grant));
    let renewed =
        assert_token_response(&refresh(&fx, "photoprint", &refresh_tok).await, TEN_MINUTES);
    let body_auth = [
        ("grant_type", "client_credentials"),
        ("client_id", "photoprint"),
        ("client_secret", fx.creds.secret.as_str()),
    ];
    assert_eq!(
        post_form(&fx.token_url(), &body_auth, None).await.status,
        200
    );
    let resp = fx
        .token_request(
            "photoprint",
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", &wrong_password),
            ],
        )
        .await;
    assert_eq!(resp.status, 400);
    assert_eq!(fx.get("/abc/x", Some(&client)).await.status, 200);
    assert_eq!(fx.get("/abc/x", Some(&access)).await.status, 200);
    assert_eq!(fx.get("/abc/x", Some(&bogus)).await.status, 401);
    assert_eq!(fx.get("/secret/x", Some(&access)).await.status, 403);
    assert_eq!(refresh(&fx, "photoprint", &bogus).await.status, 400);

    // Graceful shutdown flushes whatever the gateway still had to log.
    fx.gw.shutdown().await;
    let new_access = access_token(&renewed);
    let new_refresh = refresh_token(&renewed);
    fx.gw.assert_logs_free_of(&[
        &fx.creds.secret,
        &basic_value,
        &fx.creds.password,
        &wrong_password,
        &client,
        &access,
        &refresh_tok,
        &new_access,
        &new_refresh,
        &bogus,
    ]);
}
