//! End-to-end: the token endpoint's error answers (RFC 6749 §5.2, SPEC §5) through the real
//! binary, on both store backends: failed client authentication, bad grants, and malformed,
//! unsupported or unauthorized requests.

#[macro_use]
mod common;

use common::{
    Fixture, Store, assert_oauth_error, parse_challenge, password_attempt, post_form, random_token,
    refresh,
};

both_backends!(client_authentication_errors, grant_errors, request_errors);

/// Failed client authentication is 401 `invalid_client`, with `WWW-Authenticate: Basic`
/// when the client used HTTP Basic.
async fn client_authentication_errors(store: Store) {
    let fx = Fixture::start(store).await;
    let grant = [("grant_type", "client_credentials")];
    let url = fx.token_url();

    for (id, secret) in [
        ("photoprint", "wrong-secret"),
        ("nosuchclient", fx.creds.secret.as_str()),
    ] {
        let resp = post_form(&url, &grant, Some((id, secret))).await;
        assert_oauth_error(&resp, 401, "invalid_client");
        let challenge = resp
            .header("www-authenticate")
            .unwrap_or_else(|| panic!("{resp}"));
        let (scheme, _) = parse_challenge(challenge);
        assert!(scheme.eq_ignore_ascii_case("basic"), "{challenge}");
    }

    let body_auth = [
        ("grant_type", "client_credentials"),
        ("client_id", "photoprint"),
        ("client_secret", "wrong-secret"),
    ];
    assert_oauth_error(
        &post_form(&url, &body_auth, None).await,
        401,
        "invalid_client",
    );
    // No client authentication at all (and no default_client configured).
    assert_oauth_error(&post_form(&url, &grant, None).await, 401, "invalid_client");
}

/// Bad resource-owner credentials or refresh tokens are 400 `invalid_grant`.
async fn grant_errors(store: Store) {
    let fx = Fixture::start(store).await;
    let wrong = password_attempt(&fx, "alice", "wrong").await;
    assert_oauth_error(&wrong, 400, "invalid_grant");
    let unknown = password_attempt(&fx, "mallory", &fx.creds.password).await;
    assert_oauth_error(&unknown, 400, "invalid_grant");
    assert_oauth_error(
        &refresh(&fx, "photoprint", &random_token()).await,
        400,
        "invalid_grant",
    );
    let access = fx.client_token(Some("reports")).await;
    assert_oauth_error(
        &refresh(&fx, "photoprint", &access).await,
        400,
        "invalid_grant",
    );
}

/// The remaining RFC 6749 §5.2 errors: `invalid_request` (missing or repeated parameter),
/// `unsupported_grant_type`, `unauthorized_client`, `invalid_scope`.
async fn request_errors(store: Store) {
    let fx = Fixture::start_with(store, |c| {
        c.add_client("limited", &["client_credentials"], &["reports"], "");
    })
    .await;
    let pw = fx.creds.password.as_str();
    // (client, case, parameters, expected error)
    let cases = [
        (
            "photoprint",
            "missing grant_type",
            vec![("scope", "reports")],
            "invalid_request",
        ),
        (
            "photoprint",
            "repeated grant_type",
            vec![
                ("grant_type", "client_credentials"),
                ("grant_type", "client_credentials"),
            ],
            "invalid_request",
        ),
        (
            "photoprint",
            "repeated scope",
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "reports"),
                ("scope", "secret"),
            ],
            "invalid_request",
        ),
        (
            "photoprint",
            "password grant without password",
            vec![("grant_type", "password"), ("username", "alice")],
            "invalid_request",
        ),
        (
            "photoprint",
            "unknown grant",
            vec![("grant_type", "magic")],
            "unsupported_grant_type",
        ),
        (
            "limited",
            "grant not allowed for the client",
            vec![
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", pw),
            ],
            "unauthorized_client",
        ),
        (
            "photoprint",
            "undeclared scope",
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "nonexistent"),
            ],
            "invalid_scope",
        ),
        (
            "limited",
            "scope the client may not have",
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "reports secret"),
            ],
            "invalid_scope",
        ),
        (
            "photoprint",
            "scope the user may not grant",
            vec![
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", pw),
                ("scope", "publish"),
            ],
            "invalid_scope",
        ),
    ];
    for (client, case, params, error) in &cases {
        let resp = fx.token_request(client, params).await;
        assert_eq!(resp.status, 400, "{case}: {resp}");
        assert_oauth_error(&resp, 400, error);
    }
}
