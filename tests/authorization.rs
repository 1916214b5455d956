//! End-to-end: the authorization-code flow (SPEC §5, RFC 6749 §4.1 + RFC 7636 PKCE)
//! through the real binary, driving the login and consent pages over plain HTTP with a
//! cookie jar, as a browser without JavaScript would.

#[macro_use]
mod common;

use std::time::Duration;

use common::{
    Fixture, Form, Pkce, Store, access_token, add_auth_clients, assert_error, assert_html_page,
    code_params, cookie_attributes, location, query_params, refresh_token, scope_set,
    set_cookie_line, without_query,
};

both_backends!(
    code_flow_confidential_client,
    code_flow_public_client,
    code_reuse_revokes
);

/// The whole journey for a confidential client: a login page (a form posting username,
/// password and hidden `request` + `csrf`, with an HttpOnly SameSite=Lax CSRF cookie), a
/// session cookie and a redirect to consent after login, a consent page naming the client
/// and every requested scope ticked, then the code back at the redirect URI with the state,
/// exchanged (Basic + PKCE) for tokens that carry the user and work at the gateway. The
/// login is remembered: the next authorization request goes straight to consent.
async fn code_flow_confidential_client(store: Store) {
    let fx = Fixture::start_with(store, add_auth_clients).await;
    let (cb, pkce, state) = (fx.callback(), Pkce::random(), "st-42");
    let params = code_params("webapp", &cb, "reports secret", state, &pkce);
    let mut agent = fx.agent();
    let page = agent.authorize(&params).await;
    assert_eq!(page.status, 200, "login page: {page}");
    assert_html_page(&page);
    assert!(page.header("location").is_none(), "{page}");
    let form = Form::posting_to(&page, "/oauth/login");
    assert_eq!(form.method, "post");
    assert!(form.input("username").is_some(), "username input: {page}");
    let password = form.input("password").expect("password input");
    assert_eq!(password.attr("type"), Some("password"));
    for hidden in ["request", "csrf"] {
        assert!(
            form.hidden_value(hidden).is_some(),
            "hidden {hidden}: {page}"
        );
    }
    assert!(form.buttons.iter().any(|b| b.text == "Sign in"), "{page}");
    let csrf = set_cookie_line(&page, "tollgate_csrf").expect("tollgate_csrf cookie");
    assert_cookie_flags(csrf);

    let resp = agent.login(&page, "alice", &fx.creds.password).await;
    assert_eq!(resp.status, 303, "after login: {resp}");
    let session = set_cookie_line(&resp, "tollgate_session").expect("tollgate_session cookie");
    assert_cookie_flags(session);
    assert_eq!(
        cookie_attributes(session).get("path").map(String::as_str),
        Some("/oauth")
    );
    let to_consent = location(&resp);
    assert!(
        without_query(to_consent).ends_with("/oauth/consent"),
        "{resp}"
    );
    assert!(query_params(to_consent).contains_key("request"), "{resp}");

    let consent = agent.follow(&resp).await;
    assert_eq!(consent.status, 200, "consent page: {consent}");
    assert_html_page(&consent);
    for shown in [
        "WebApp",
        "2.1",
        "Builds monthly reports",
        "Read and print reports",
    ] {
        assert!(
            consent.body.contains(shown),
            "consent page lacks {shown:?}: {consent}"
        );
    }
    assert!(consent.body.contains("Secret documents"), "{consent}");
    let form = Form::posting_to(&consent, "/oauth/consent");
    assert_eq!(form.method, "post");
    let boxes = form.checkboxes("scope");
    let values: Vec<_> = boxes.iter().filter_map(|b| b.attr("value")).collect();
    assert_eq!(
        scope_set(&values.join(" ")),
        scope_set("reports secret"),
        "{consent}"
    );
    assert!(
        boxes.iter().all(|b| b.attrs.contains_key("checked")),
        "{consent}"
    );
    for hidden in ["request", "csrf"] {
        assert!(
            form.hidden_value(hidden).is_some(),
            "hidden {hidden}: {consent}"
        );
    }
    let grant = form.button("decision", "grant").expect("grant button");
    assert_eq!(grant.text, "Grant access");
    assert_eq!(
        form.button("decision", "deny").expect("deny button").text,
        "Deny"
    );

    let resp = agent.consent(&consent, None, "grant").await;
    assert_eq!(resp.status, 303, "{resp}");
    let back = location(&resp);
    assert_eq!(without_query(back), cb, "{resp}");
    assert!(!back.contains('#'), "code flow uses the query: {back}");
    let query = query_params(back);
    assert_eq!(query.get("state").map(String::as_str), Some(state));
    assert_eq!(
        query.get("iss").map(String::as_str),
        Some(ISSUER),
        "RFC 9207: the code comes with the issuer: {back}"
    );
    let code = query.get("code").expect("code");

    let resp = fx
        .exchange_code("webapp", true, code, &cb, Some(&pkce.verifier))
        .await;
    assert_eq!(resp.status, 200, "code exchange: {resp}");
    let tokens = resp.json();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(
        scope_set(tokens["scope"].as_str().unwrap_or_default()),
        scope_set("reports secret")
    );
    let access = access_token(&tokens);
    assert_eq!(fx.get("/abc/x", Some(&access)).await.status, 200);
    assert_eq!(fx.get("/secret/x", Some(&access)).await.status, 200);
    let seen = &fx.up.requests()[0];
    assert_eq!(seen.header("x-auth-client-id"), Some("webapp"));
    assert_eq!(seen.header("x-auth-subject"), Some("alice"));
    let refresh = [
        ("grant_type", "refresh_token"),
        ("refresh_token", &refresh_token(&tokens)),
    ];
    let resp = fx.token_request("webapp", &refresh).await;
    assert_eq!(resp.status, 200, "refresh of a code grant: {resp}");

    let again = agent.authorize(&params).await;
    assert_eq!(
        again.status, 303,
        "a logged-in user skips the login page: {again}"
    );
    assert!(
        without_query(location(&again)).ends_with("/oauth/consent"),
        "{again}"
    );
}

fn assert_cookie_flags(line: &str) {
    let attrs = cookie_attributes(line);
    assert!(attrs.contains_key("httponly"), "not HttpOnly: {line}");
    let same_site = attrs.get("samesite").map(|v| v.to_ascii_lowercase());
    assert_eq!(same_site.as_deref(), Some("lax"), "SameSite: {line}");
}

/// A public client: PKCE S256, no secret anywhere (client_id in the token request body),
/// a refresh with client_id alone; and since it registered exactly one redirect URI, an
/// authorization request may leave `redirect_uri` out.
async fn code_flow_public_client(store: Store) {
    let fx = Fixture::start_with(store, add_auth_clients).await;
    let cb = fx.callback();
    let mut agent = fx.agent();
    let (code, pkce) = fx.code_for(&mut agent, "spa", &cb, "reports").await;
    let resp = fx
        .exchange_code("spa", false, &code, &cb, Some(&pkce.verifier))
        .await;
    assert_eq!(resp.status, 200, "public code exchange: {resp}");
    let tokens = resp.json();
    assert_eq!(tokens["scope"], "reports");
    assert_eq!(
        fx.get("/abc/x", Some(&access_token(&tokens))).await.status,
        200
    );
    let rt = refresh_token(&tokens);
    let refresh = [
        ("grant_type", "refresh_token"),
        ("refresh_token", &rt),
        ("client_id", "spa"),
    ];
    let resp = common::post_form(&fx.token_url(), &refresh, None).await;
    assert_eq!(resp.status, 200, "public refresh: {resp}");
    assert_eq!(
        fx.get("/abc/x", Some(&access_token(&resp.json())))
            .await
            .status,
        200
    );

    let pkce = Pkce::random();
    let without_redirect = [
        ("response_type", "code"),
        ("client_id", "spa"),
        ("scope", "reports"),
        ("state", "s"),
        ("code_challenge", pkce.challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let page = fx.agent().authorize(&without_redirect).await;
    assert_eq!(
        page.status, 200,
        "one registered redirect URI may be implied: {page}"
    );
    Form::posting_to(&page, "/oauth/login");
}

/// A code is single-use: the second exchange is `invalid_grant`, and what the first one
/// issued is revoked (the access token fails within 1 s, the refresh token is refused).
async fn code_reuse_revokes(store: Store) {
    let fx = Fixture::start_with(store, add_auth_clients).await;
    let cb = fx.callback();
    let (code, pkce) = fx.code_for(&mut fx.agent(), "webapp", &cb, "reports").await;
    let first = fx
        .exchange_code("webapp", true, &code, &cb, Some(&pkce.verifier))
        .await;
    assert_eq!(first.status, 200, "{first}");
    let tokens = first.json();
    let access = access_token(&tokens);
    assert_eq!(fx.get("/abc/x", Some(&access)).await.status, 200);

    let second = fx
        .exchange_code("webapp", true, &code, &cb, Some(&pkce.verifier))
        .await;
    fx.assert_code_replay_revoked(&second, &tokens).await;
}

/// A code only works for the client, redirect URI and PKCE challenge it was issued for,
/// and only within `authorization_code_ttl`; every mismatch is `invalid_grant` (a missing
/// verifier may also be `invalid_request`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_is_bound_to_client_redirect_and_pkce() {
    let fx = Fixture::start_with(Store::memory(), |c| {
        add_auth_clients(c);
        c.set_oauth("authorization_code_ttl", "2s");
    })
    .await;
    let cb = fx.callback();
    let cb2 = format!("{}/callback2", fx.up.url());
    let mut agent = fx.agent();
    let wrong = Pkce::random().verifier;
    // (case, client, confidential, redirect_uri, verifier)
    let cases: [(&str, &str, bool, &str, Option<&str>); 4] = [
        ("wrong verifier", "webapp", true, &cb, Some(&wrong)),
        ("other registered redirect_uri", "webapp", true, &cb2, None),
        ("another client", "webapp2", true, &cb, None),
        ("no verifier", "webapp", true, &cb, Some("")),
    ];
    for (case, client, confidential, redirect, verifier) in cases {
        let (code, pkce) = fx.code_for(&mut agent, "webapp", &cb, "reports").await;
        let verifier = match verifier {
            Some("") => None,
            Some(v) => Some(v),
            None => Some(pkce.verifier.as_str()),
        };
        let resp = fx
            .exchange_code(client, confidential, &code, redirect, verifier)
            .await;
        assert_eq!(resp.status, 400, "{case}: {resp}");
        let error = resp.json()["error"].as_str().unwrap_or_default().to_owned();
        let allowed: &[&str] = match case {
            "no verifier" => &["invalid_grant", "invalid_request"],
            _ => &["invalid_grant"],
        };
        assert!(allowed.contains(&error.as_str()), "{case}: {resp}");
    }

    let (code, _) = fx.code_for(&mut agent, "spa", &cb, "reports").await;
    let resp = fx.exchange_code("spa", false, &code, &cb, None).await;
    assert_eq!(
        resp.status, 400,
        "public client without its verifier: {resp}"
    );

    let (code, pkce) = fx.code_for(&mut agent, "webapp", &cb, "reports").await;
    let basic = Some(("webapp", "wrong-secret"));
    let params = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", cb.as_str()),
        ("code_verifier", pkce.verifier.as_str()),
    ];
    assert_error(
        &common::post_form(&fx.token_url(), &params, basic).await,
        401,
        "invalid_client",
    );

    let random = common::random_token();
    let resp = fx
        .exchange_code("webapp", true, &random, &cb, Some(&pkce.verifier))
        .await;
    assert_error(&resp, 400, "invalid_grant");

    let (code, pkce) = fx.code_for(&mut agent, "webapp", &cb, "reports").await;
    // Waiting out a lifetime, not for readiness.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let resp = fx
        .exchange_code("webapp", true, &code, &cb, Some(&pkce.verifier))
        .await;
    assert_error(&resp, 400, "invalid_grant");
}

/// The consent page decides what the client gets: Deny sends `access_denied` (with the
/// state) and no code; an unticked scope is left out of the token (its paths are 403);
/// nothing ticked is `access_denied`; a scope added to the form that was never requested
/// is never granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_decides_the_scopes() {
    let fx = Fixture::start_with(Store::memory(), add_auth_clients).await;
    let cb = fx.callback();
    let mut agent = fx.agent();
    let pkce = Pkce::random();
    let params = |state| code_params("webapp", &cb, "reports secret", state, &pkce);
    let password = fx.creds.password.clone();

    let resp = agent
        .approve(&params("deny-1"), "alice", &password, None, "deny")
        .await;
    assert_redirect_error(&resp, &cb, "access_denied", "deny-1");

    let resp = agent
        .approve(&params("none-1"), "alice", &password, Some(&[]), "grant")
        .await;
    assert_redirect_error(&resp, &cb, "access_denied", "none-1");

    let resp = agent
        .approve(
            &params("one-1"),
            "alice",
            &password,
            Some(&["reports"]),
            "grant",
        )
        .await;
    let code = query_params(location(&resp))
        .get("code")
        .cloned()
        .expect("code");
    let resp = fx
        .exchange_code("webapp", true, &code, &cb, Some(&pkce.verifier))
        .await;
    assert_eq!(resp.status, 200, "{resp}");
    let access = access_token(&resp.json());
    assert_eq!(
        resp.json()["scope"],
        "reports",
        "the unticked scope was granted"
    );
    assert_eq!(fx.get("/abc/x", Some(&access)).await.status, 200);
    assert_eq!(fx.get("/secret/x", Some(&access)).await.status, 403);

    // `publish` was never requested, so it is not on the form; adding it to the POST must
    // not widen the grant: the code carries exactly what was ticked of what was shown.
    let tampered = Some(&["reports", "publish"][..]);
    let resp = agent
        .approve(&params("tamper"), "alice", &password, tampered, "grant")
        .await;
    assert_eq!(resp.status, 303, "tampered consent: {resp}");
    let code = query_params(location(&resp))
        .get("code")
        .cloned()
        .unwrap_or_else(|| panic!("a code for the ticked, requested scope: {resp}"));
    let resp = fx
        .exchange_code("webapp", true, &code, &cb, Some(&pkce.verifier))
        .await;
    assert_eq!(resp.status, 200, "{resp}");
    assert_eq!(
        resp.json()["scope"],
        "reports",
        "unrequested scope granted: {resp}"
    );
}

/// Asserts a 303 back to `cb` with `error` and `state` in the query, and no code.
fn assert_redirect_error(resp: &common::Resp, cb: &str, error: &str, state: &str) {
    assert_eq!(resp.status, 303, "expected a redirect with {error}: {resp}");
    let back = location(resp);
    assert_eq!(without_query(back), cb, "{resp}");
    let query = query_params(back);
    assert_eq!(
        query.get("error").map(String::as_str),
        Some(error),
        "{back}"
    );
    assert_eq!(
        query.get("state").map(String::as_str),
        Some(state),
        "{back}"
    );
    assert!(!query.contains_key("code"), "{back}");
    assert_eq!(
        query.get("iss").map(String::as_str),
        Some(ISSUER),
        "RFC 9207 iss: {back}"
    );
}

/// The fixture's `public_url`, which authorization responses name as `iss`.
const ISSUER: &str = "http://127.0.0.1:1";
