//! Checks and requests shared by the token-endpoint tests (SPEC §5).

// Each test file uses a different part of it.
#![allow(dead_code)]

use serde_json::Value;

use super::{
    Fixture, Resp, access_token, assert_error, assert_token_shape, parse_rfc3339_utc, unix_now,
};

/// Asserts what every token-endpoint answer carries: `Cache-Control: no-store` and JSON.
pub fn assert_token_endpoint_headers(resp: &Resp) {
    let cache_control = resp
        .header("cache-control")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        cache_control.contains("no-store"),
        "Cache-Control in {resp}"
    );
    let content_type = resp.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "Content-Type in {resp}"
    );
}

/// Asserts an RFC 6749 §5.2 error from the token endpoint.
pub fn assert_oauth_error(resp: &Resp, status: u16, error: &str) {
    assert_error(resp, status, error);
    assert_token_endpoint_headers(resp);
}

/// Checks a successful token response against SPEC §5 and returns it as JSON:
/// `token_type` Bearer, tokens of 256 bits in base64url, `issued_at`/`expires_at`/
/// `refresh_token_expires_at` as RFC 3339 UTC consistent with `expires_in` and the
/// configured lifetimes (10 min access, 30 days refresh, unless `access_ttl` says otherwise).
pub fn assert_token_response(resp: &Resp, access_ttl: Option<i64>) -> Value {
    assert_eq!(resp.status, 200, "{resp}");
    assert_token_endpoint_headers(resp);
    let body = resp.json();
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert_token_shape(&access_token(&body));
    let issued_at = parse_rfc3339_utc(body["issued_at"].as_str().unwrap_or_default())
        .unwrap_or_else(|| panic!("issued_at is not RFC 3339 UTC: {body}"));
    assert!(
        (issued_at - unix_now()).abs() <= 60,
        "issued_at far from now: {body}"
    );
    match access_ttl {
        Some(ttl) => {
            let expires_in = body["expires_in"]
                .as_i64()
                .unwrap_or_else(|| panic!("expires_in: {body}"));
            assert!(
                (ttl - 1..=ttl).contains(&expires_in),
                "expires_in {expires_in}, want {ttl}"
            );
            let expires_at = parse_rfc3339_utc(body["expires_at"].as_str().unwrap_or_default())
                .unwrap_or_else(|| panic!("expires_at is not RFC 3339 UTC: {body}"));
            assert!(
                (expires_at - issued_at - ttl).abs() <= 1,
                "expires_at - issued_at: {body}"
            );
        }
        None => {
            assert!(
                body.get("expires_in").is_none(),
                "never-expiring token has expires_in: {body}"
            );
            assert!(
                body.get("expires_at").is_none(),
                "never-expiring token has expires_at: {body}"
            );
        }
    }
    if let Some(refresh) = body.get("refresh_token") {
        let refresh = refresh
            .as_str()
            .unwrap_or_else(|| panic!("refresh_token: {body}"));
        assert_token_shape(refresh);
        assert_ne!(refresh, access_token(&body));
        let refresh_expires = parse_rfc3339_utc(
            body["refresh_token_expires_at"]
                .as_str()
                .unwrap_or_default(),
        )
        .unwrap_or_else(|| panic!("refresh_token_expires_at is not RFC 3339 UTC: {body}"));
        assert!(
            (refresh_expires - issued_at - 30 * 86_400).abs() <= 1,
            "refresh lifetime: {body}"
        );
    } else {
        assert!(body.get("refresh_token_expires_at").is_none(), "{body}");
    }
    body
}

/// A `refresh_token` grant request by `client_id`.
pub async fn refresh(fx: &Fixture, client_id: &str, refresh: &str) -> Resp {
    fx.token_request(
        client_id,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await
}

/// A `password` grant request by `photoprint` for the `reports` scope.
pub async fn password_attempt(fx: &Fixture, username: &str, password: &str) -> Resp {
    let params = [
        ("grant_type", "password"),
        ("username", username),
        ("password", password),
        ("scope", "reports"),
    ];
    fx.token_request("photoprint", &params).await
}
