//! End-to-end: what Tollgate says about tokens and itself (SPEC §5): introspection
//! (RFC 7662), tokeninfo (Google style) and authorization server metadata (RFC 8414).

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{
    Fixture, Resp, Store, access_token, assert_error, get, post_form, random_token, refresh_token,
    time_until_status, unix_now,
};
use serde_json::{Value, json};

both_backends!(
    introspection_describes_live_tokens_only,
    introspection_answers_confidential_clients_about_their_own_tokens
);

fn assert_no_store(resp: &Resp) {
    let cache = resp.header("cache-control").unwrap_or_default();
    assert!(
        cache.to_ascii_lowercase().contains("no-store"),
        "Cache-Control in {resp}"
    );
}

/// Asserts `{"active": false}` and nothing else.
fn assert_inactive(resp: &Resp, what: &str) {
    assert_eq!(resp.status, 200, "{what}: {resp}");
    assert_eq!(resp.json(), json!({"active": false}), "{what}: {resp}");
}

/// Live access and refresh tokens are described (scope, client, user, type, times, issuer);
/// unknown, revoked and expired ones are exactly `{"active": false}`. The endpoint needs
/// client authentication.
async fn introspection_describes_live_tokens_only(store: Store) {
    let fx = Fixture::start_with(store, |c| {
        c.add_client(
            "brief",
            &["client_credentials"],
            &["reports"],
            "access_token_ttl = \"1s\"",
        );
        c.add_client(
            "forever",
            &["client_credentials"],
            &["reports"],
            "access_token_ttl = \"never\"",
        );
    })
    .await;
    let grant = fx.password_token_for("photoprint", "reports secret").await;
    let resp = fx.introspect(&access_token(&grant)).await;
    assert_eq!(resp.status, 200, "{resp}");
    assert_no_store(&resp);
    let info = resp.json();
    let now = unix_now();
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(
        scope_of(&info),
        ["reports", "secret"].map(String::from).into(),
        "{info}"
    );
    assert_eq!(info["client_id"], "photoprint", "{info}");
    assert_eq!(info["username"], "alice", "{info}");
    assert_eq!(info["sub"], "alice", "{info}");
    assert_eq!(info["token_type"], "Bearer", "{info}");
    assert_eq!(
        info["iss"], "http://127.0.0.1:1",
        "iss is public_url: {info}"
    );
    let exp = info["exp"]
        .as_i64()
        .unwrap_or_else(|| panic!("exp: {info}"));
    let iat = info["iat"]
        .as_i64()
        .unwrap_or_else(|| panic!("iat: {info}"));
    assert!((exp - now - 600).abs() <= 5, "exp: {info}");
    assert!((iat - now).abs() <= 5, "iat: {info}");

    let hinted = [
        ("token", refresh_token(&grant)),
        ("token_type_hint", "refresh_token".into()),
    ];
    let hinted: Vec<(&str, &str)> = hinted.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let basic = Some(("photoprint", fx.creds.secret.as_str()));
    let info = post_form(&fx.url("/oauth/introspect"), &hinted, basic)
        .await
        .json();
    assert_eq!(info["active"], true, "refresh token: {info}");
    assert_eq!(info["token_type"], "refresh_token", "{info}");
    assert_eq!(info["client_id"], "photoprint", "{info}");

    let machine = fx.client_token(Some("reports")).await;
    let info = fx.introspect(&machine).await.json();
    assert_eq!(info["active"], true, "{info}");
    assert!(
        info.get("username").is_none() && info.get("sub").is_none(),
        "{info}"
    );
    let never = access_token(&fx.client_token_for("forever", None).await);
    let info = fx.introspect_as("forever", &never).await.json();
    assert_eq!(info["active"], true, "{info}");
    assert!(
        info.get("exp").is_none(),
        "a never-expiring token has no exp: {info}"
    );

    assert_inactive(&fx.introspect(&random_token()).await, "unknown token");
    let revoke = post_form(&fx.url("/oauth/revoke"), &[("token", &machine)], basic).await;
    assert_eq!(revoke.status, 200, "{revoke}");
    let inactive = common::poll(Duration::from_secs(1), || async {
        let resp = fx.introspect(&machine).await;
        (resp.json()["active"] == false).then_some(resp)
    })
    .await;
    assert_inactive(
        &inactive.expect("revoked token still active after 1 s"),
        "revoked",
    );
    let brief = access_token(&fx.client_token_for("brief", None).await);
    let took = time_until_status(&fx.url("/abc/x"), &brief, 401, Duration::from_secs(4)).await;
    assert!(took.is_some(), "a 1 s token never expired");
    assert_inactive(&fx.introspect_as("brief", &brief).await, "expired token");

    let url = fx.url("/oauth/introspect");
    let token = access_token(&grant);
    assert_error(
        &post_form(&url, &[("token", &token)], None).await,
        401,
        "invalid_client",
    );
    let wrong = Some(("photoprint", "wrong-secret"));
    assert_error(
        &post_form(&url, &[("token", &token)], wrong).await,
        401,
        "invalid_client",
    );
}

/// SPEC §5: introspection is for confidential clients only (a public client gets 401
/// `invalid_client`); a client learns about tokens issued to itself, and only a holder of the
/// built-in `introspect` scope (a resource server) about anyone's. Someone else's token,
/// access or refresh, is `{"active": false}`, exactly like an unknown one.
async fn introspection_answers_confidential_clients_about_their_own_tokens(store: Store) {
    let fx = Fixture::start_with(store, |c| {
        c.add_client("other", &["client_credentials"], &["reports"], "");
        c.add_client(
            "resource-server",
            &["client_credentials"],
            &["introspect"],
            "",
        );
        c.add_public_client(
            "spa",
            &["http://127.0.0.1:3000/cb"],
            &["authorization_code"],
            &["reports"],
        );
    })
    .await;
    let grant = fx.password_token_for("photoprint", "reports").await;
    let (access, refresh) = (access_token(&grant), refresh_token(&grant));

    // The token's own client sees it; this is the control for the refusals below.
    assert_eq!(fx.introspect(&access).await.json()["active"], true);
    assert_eq!(fx.introspect(&refresh).await.json()["active"], true);

    // Another confidential client learns nothing about it, access or refresh token.
    assert_inactive(
        &fx.introspect_as("other", &access).await,
        "other's access token",
    );
    assert_inactive(
        &fx.introspect_as("other", &refresh).await,
        "other's refresh token",
    );

    // A resource server holding `introspect` sees anyone's token.
    let info = fx.introspect_as("resource-server", &access).await.json();
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["client_id"], "photoprint", "{info}");
    assert_eq!(info["username"], "alice", "{info}");

    // A public client (no secret to prove anything with) is refused outright.
    let url = fx.url("/oauth/introspect");
    let resp = post_form(&url, &[("token", &access), ("client_id", "spa")], None).await;
    assert_error(&resp, 401, "invalid_client");
    assert!(
        resp.json().get("active").is_none(),
        "a public client must learn nothing: {resp}"
    );

    // `introspect` is built in: no client gets it by default and it is not advertised.
    let meta = get(&fx.url("/.well-known/oauth-authorization-server"), &[])
        .await
        .json();
    let scopes = meta["scopes_supported"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for builtin in ["admin", "introspect"] {
        assert!(
            !scopes.iter().any(|s| s == builtin),
            "{builtin} advertised: {meta}"
        );
    }
}

fn scope_of(info: &Value) -> BTreeSet<String> {
    common::scope_set(info["scope"].as_str().unwrap_or_default())
}

/// `GET /oauth/tokeninfo?access_token=`: client, scope, seconds left and the user when
/// there is one; 400 `invalid_token` for a missing, unknown, revoked or expired token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokeninfo_verifies_access_tokens() {
    let fx = Fixture::start_with(Store::memory(), |c| {
        c.add_client(
            "brief",
            &["client_credentials"],
            &["reports"],
            "access_token_ttl = \"1s\"",
        );
        c.add_client(
            "forever",
            &["client_credentials"],
            &["reports"],
            "access_token_ttl = \"never\"",
        );
    })
    .await;
    let info_url = |token: &str| fx.url(&format!("/oauth/tokeninfo?access_token={token}"));
    let grant = fx.password_token_for("photoprint", "reports").await;
    let resp = get(&info_url(&access_token(&grant)), &[]).await;
    assert_eq!(resp.status, 200, "{resp}");
    assert_no_store(&resp);
    let info = resp.json();
    assert_eq!(info["client_id"], "photoprint", "{info}");
    assert_eq!(info["scope"], "reports", "{info}");
    assert_eq!(info["username"], "alice", "{info}");
    let left = info["expires_in"]
        .as_i64()
        .unwrap_or_else(|| panic!("expires_in: {info}"));
    assert!((590..=600).contains(&left), "{info}");

    let machine = fx.client_token(Some("reports")).await;
    let info = get(&info_url(&machine), &[]).await.json();
    assert_eq!(info["client_id"], "photoprint", "{info}");
    assert!(info.get("username").is_none(), "{info}");
    let never = access_token(&fx.client_token_for("forever", None).await);
    let info = get(&info_url(&never), &[]).await.json();
    assert!(info.get("expires_in").is_none(), "never-expiring: {info}");

    let brief = access_token(&fx.client_token_for("brief", None).await);
    let basic = Some(("photoprint", fx.creds.secret.as_str()));
    let resp = post_form(&fx.url("/oauth/revoke"), &[("token", &machine)], basic).await;
    assert_eq!(resp.status, 200, "{resp}");
    let took = time_until_status(&fx.url("/abc/x"), &brief, 401, Duration::from_secs(4)).await;
    assert!(took.is_some(), "a 1 s token never expired");
    let refresh = refresh_token(&grant);
    let bad = [
        ("unknown", info_url(&random_token())),
        ("revoked", info_url(&machine)),
        ("expired", info_url(&brief)),
        ("a refresh token", info_url(&refresh)),
        ("missing", fx.url("/oauth/tokeninfo")),
    ];
    for (case, url) in bad {
        let resp = get(&url, &[]).await;
        assert_eq!(resp.status, 400, "{case}: {resp}");
        assert_error(&resp, 400, "invalid_token");
    }
}

/// RFC 8414 metadata at `/.well-known/oauth-authorization-server`: the issuer is
/// `public_url`, every endpoint an absolute URL under it and `[oauth].path`, and the
/// supported response types, grants, PKCE methods, client authentication methods and
/// scopes are listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_describes_the_server() {
    let fx = Fixture::start_with(Store::memory(), |c| {
        c.public_url = "https://auth.example.test".into();
        c.set_oauth("path", "/auth");
    })
    .await;
    let resp = get(&fx.url("/.well-known/oauth-authorization-server"), &[]).await;
    assert_eq!(resp.status, 200, "{resp}");
    assert!(
        resp.header("content-type")
            .unwrap_or_default()
            .starts_with("application/json")
    );
    let meta = resp.json();
    let issuer = "https://auth.example.test";
    assert_eq!(meta["issuer"], issuer, "{meta}");
    for (key, path) in [
        ("authorization_endpoint", "/auth/authorize"),
        ("token_endpoint", "/auth/token"),
        ("revocation_endpoint", "/auth/revoke"),
        ("introspection_endpoint", "/auth/introspect"),
    ] {
        assert_eq!(meta[key], format!("{issuer}{path}"), "{key} in {meta}");
    }
    let set = |key: &str| -> BTreeSet<String> {
        let list = meta[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} in {meta}"));
        list.iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    let owned = |items: &[&str]| {
        items
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(set("response_types_supported"), owned(&["code", "token"]));
    assert_eq!(set("code_challenge_methods_supported"), owned(&["S256"]));
    let auth_methods = ["client_secret_basic", "client_secret_post", "none"];
    assert_eq!(
        set("token_endpoint_auth_methods_supported"),
        owned(&auth_methods)
    );
    let grants = [
        "authorization_code",
        "client_credentials",
        "password",
        "refresh_token",
        "implicit",
    ];
    assert!(
        set("grant_types_supported").is_superset(&owned(&grants)),
        "{meta}"
    );
    let scopes = set("scopes_supported");
    assert!(
        scopes.is_superset(&owned(&["reports", "secret", "publish", "infra"])),
        "{meta}"
    );
    assert!(
        !scopes.contains("admin"),
        "built-in scopes are not advertised: {meta}"
    );
    assert_eq!(
        meta["authorization_response_iss_parameter_supported"], true,
        "RFC 9207: {meta}"
    );

    // The endpoints it names are where it serves them.
    let token = fx.url("/auth/token");
    let basic = Some(("photoprint", fx.creds.secret.as_str()));
    let resp = post_form(&token, &[("grant_type", "client_credentials")], basic).await;
    assert_eq!(
        resp.status, 200,
        "token endpoint under [oauth].path: {resp}"
    );
}
