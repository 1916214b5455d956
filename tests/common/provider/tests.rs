//! Self-test of the token provider: the grants, both body formats, rotation, both shapes,
//! every mode, the authorization pages with PKCE, and the protected API.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Mode, Provider, Shape, state::lifetime};
use crate::common::{Form, Pkce, Resp, get, post_form, query_params, send};

const BASIC: Option<(&str, &str)> = Some(("tollgate", "provider-secret"));

async fn client_credentials(p: &Provider) -> Resp {
    post_form(
        &p.url("/token"),
        &[("grant_type", "client_credentials")],
        BASIC,
    )
    .await
}

async fn api_get(p: &Provider, token: &str) -> Resp {
    let bearer = format!("Bearer {token}");
    get(&p.url("/api/things?x=1"), &[("authorization", &bearer)]).await
}

async fn refresh(p: &Provider, token: &str) -> Resp {
    let params = [("grant_type", "refresh_token"), ("refresh_token", token)];
    post_form(&p.url("/refresh"), &params, BASIC).await
}

#[tokio::test]
async fn harness_provider_grants_and_formats() {
    let p = Provider::start().await;
    let params = [
        ("grant_type", "client_credentials"),
        ("scope", "read write"),
    ];
    let resp = post_form(&p.url("/token"), &params, BASIC).await;
    assert_eq!(resp.status, 200, "{resp}");
    let body = resp.json();
    assert_eq!(
        (&body["token_type"], &body["expires_in"]),
        (&json!("Bearer"), &json!(3600))
    );
    assert_eq!(body["scope"], "read write");
    assert!(body.get("refresh_token").is_none(), "{body}");
    let first = body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    assert_eq!(first.len(), 43);
    let recorded = &p.token_requests()[0];
    assert_eq!(
        recorded.basic,
        Some(("tollgate".to_owned(), "provider-secret".to_owned()))
    );
    assert_eq!((recorded.path.as_str(), recorded.json), ("/token", false));
    assert_eq!(recorded.grant_type(), Some("client_credentials"));

    // client_secret_post, and a wrong secret either way.
    let post = [
        ("grant_type", "client_credentials"),
        ("client_id", "tollgate"),
        ("client_secret", "provider-secret"),
    ];
    assert_eq!(post_form(&p.url("/token"), &post, None).await.status, 200);
    assert_eq!(p.token_requests()[1].basic, None);
    let wrong = post_form(&p.url("/token"), &post[..1], Some(("tollgate", "nope"))).await;
    assert_eq!(
        (wrong.status, wrong.json()["error"].clone()),
        (401, json!("invalid_client"))
    );
    assert_eq!(
        post_form(&p.url("/token"), &post[..2], None).await.status,
        401
    );
    p.set_issue_refresh_on_client_credentials(true);
    let body = client_credentials(&p).await.json();
    let cc_refresh = body["refresh_token"].as_str().expect("refresh").to_owned();

    // A JSON body at the refresh URL, password grant.
    let json_body = json!({"grant_type": "password", "username": "svc", "password": "svc-password",
        "client_id": "tollgate", "client_secret": "provider-secret"});
    let headers = [("content-type", "application/json")];
    let resp = send("POST", &p.url("/refresh"), &headers, json_body.to_string()).await;
    assert_eq!(resp.status, 200, "{resp}");
    let seeded = resp.json()["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let recorded = p.token_requests().pop().expect("recorded");
    assert!(
        recorded.json && recorded.path == "/refresh" && recorded.param("username") == Some("svc")
    );
    let mut wrong = json_body.clone();
    wrong["password"] = json!("guess");
    let resp = send("POST", &p.url("/token"), &headers, wrong.to_string()).await;
    assert_eq!(
        (resp.status, resp.json()["error"].clone()),
        (400, json!("invalid_grant"))
    );
    let resp = send("POST", &p.url("/token"), &headers, "[1]").await;
    assert_eq!(resp.json()["error"], "invalid_request");

    // Rotation: the new refresh token is live, the old one and unknown ones are refused.
    let r1 = p.issue_refresh_token();
    assert_eq!(p.live_refresh_token().as_deref(), Some(r1.as_str()));
    let resp = refresh(&p, &r1).await;
    let r2 = resp.json()["refresh_token"]
        .as_str()
        .expect("rotated")
        .to_owned();
    assert_ne!(r1, r2);
    assert_eq!(p.live_refresh_token(), Some(r2.clone()));
    assert_eq!(p.live_refresh_tokens(), vec![cc_refresh, seeded, r2]);
    assert_eq!(refresh(&p, &r1).await.json()["error"], "invalid_grant");
    assert_eq!(
        refresh(&p, "unknown").await.json()["error"],
        "invalid_grant"
    );
    assert_eq!(p.access_tokens().len(), 5);
    assert_eq!(p.access_tokens()[0], first);

    // Nested shape, expires_in as a string, then omitted, then zero (expired at once).
    p.set_shape(Shape::Nested);
    p.set_expires_in(Some(json!("120")));
    let body = refresh(&p, &p.live_refresh_token().expect("live"))
        .await
        .json();
    let auth = &body["data"]["auth"];
    assert_eq!(
        (&auth["ttl"], &body["token_type"]),
        (&json!("120"), &json!("Bearer"))
    );
    assert!(
        auth["refresh"].is_string() && body.get("access_token").is_none(),
        "{body}"
    );
    let nested = auth["token"].as_str().expect("nested token").to_owned();
    assert_eq!(api_get(&p, &nested).await.status, 200);
    p.set_expires_in(None);
    let body = client_credentials(&p).await.json();
    assert!(body["data"]["auth"].get("ttl").is_none(), "{body}");
    p.set_shape(Shape::Flat);
    p.set_expires_in(Some(json!(0)));
    let expired = client_credentials(&p).await.json()["access_token"]
        .as_str()
        .map(str::to_owned);
    assert!(!p.is_valid_access_token(&expired.expect("token")));
    assert_eq!(
        lifetime(Some(&json!("12.5"))),
        Duration::from_millis(12_500)
    );
    assert_eq!(lifetime(Some(&json!("soon"))), Duration::from_secs(3600));
    assert_eq!(lifetime(Some(&json!(-5))), Duration::ZERO);
}

#[tokio::test]
async fn harness_provider_modes() {
    let p = Provider::start().await;
    let cases: [(Mode, u16, &str); 8] = [
        (Mode::Status(503), 503, "text/plain"),
        (Mode::OAuthError("invalid_grant"), 400, "application/json"),
        (Mode::OAuthError("invalid_client"), 401, "application/json"),
        (Mode::Html, 200, "text/html; charset=utf-8"),
        (Mode::FormEncoded, 200, "application/x-www-form-urlencoded"),
        (Mode::NoAccessToken, 200, "application/json"),
        (Mode::TokenType("mac"), 200, "application/json"),
        (Mode::Empty, 200, "application/json"),
    ];
    for (mode, status, content_type) in cases {
        p.set_mode(mode);
        let resp = client_credentials(&p).await;
        assert_eq!(
            (resp.status, resp.header("content-type")),
            (status, Some(content_type)),
            "{mode:?}: {resp}"
        );
        let body: Value = serde_json::from_str(&resp.body).unwrap_or(Value::Null);
        match mode {
            Mode::OAuthError(code) => assert_eq!(body["error"], code),
            Mode::Html => assert!(resp.body.contains("<html>")),
            Mode::FormEncoded => assert!(resp.body.starts_with("access_token=")),
            Mode::NoAccessToken => {
                assert!(body.get("access_token").is_none() && body["token_type"] == "Bearer")
            }
            Mode::TokenType(t) => assert_eq!(body["token_type"], t),
            Mode::Empty => assert!(resp.body.is_empty()),
            _ => {}
        }
    }
    assert_eq!(
        p.access_tokens().len(),
        1,
        "only TokenType issues a real token"
    );

    // Queued modes first, then the set one; Slow overlaps are counted.
    p.set_mode(Mode::Slow(Duration::from_millis(40)));
    p.set_next_modes([Mode::Status(500)]);
    assert_eq!(client_credentials(&p).await.status, 500);
    let start = Instant::now();
    let (a, b) = tokio::join!(client_credentials(&p), client_credentials(&p));
    assert!(start.elapsed() >= Duration::from_millis(40));
    assert_eq!((a.status, b.status), (200, 200));
    assert_eq!(p.max_concurrent_token_requests(), 2);

    // Hangup: the request is recorded, the connection closes with no answer.
    p.set_mode(Mode::Hangup);
    let before = p.token_request_count();
    let mut stream = tokio::net::TcpStream::connect(p.addr())
        .await
        .expect("connect");
    let request = "POST /token HTTP/1.1\r\nHost: p\r\nContent-Type: application/x-www-form-urlencoded\r\n\
                   Content-Length: 29\r\n\r\ngrant_type=client_credentials";
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok() && answer.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(p.token_request_count(), before + 1);
}

#[tokio::test]
async fn harness_provider_authorization_code_and_api() {
    let p = Provider::start().await;
    let pkce = Pkce::random();
    let redirect = "http://127.0.0.1:1/oauth/callback";
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("response_type", "code"),
            ("client_id", "tollgate"),
            ("redirect_uri", redirect),
            ("state", "st<1>"),
            ("scope", "files"),
            ("code_challenge", &pkce.challenge),
            ("code_challenge_method", "S256"),
        ])
        .finish();
    let page = get(&p.url(&format!("/authorize?{query}")), &[]).await;
    assert_eq!(page.status, 200, "{page}");
    assert_eq!(p.authorize_requests()[0]["state"], "st<1>");
    let form = Form::posting_to(&page, "/authorize/decide");
    assert!(form.button("decision", "allow").is_some() && form.method == "post");
    let code_for = |user: &str| {
        let mut fields = form.hidden();
        fields.push(("user".to_owned(), user.to_owned()));
        fields.push(("decision".to_owned(), "allow".to_owned()));
        fields
    };
    let decide = |fields: Vec<(String, String)>| {
        let url = p.url(&form.action);
        async move {
            let fields: Vec<(&str, &str)> = fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let resp = post_form(&url, &fields, None).await;
            assert_eq!(resp.status, 302, "{resp}");
            let location = resp.header("location").expect("Location").to_owned();
            assert!(location.starts_with(redirect), "{location}");
            query_params(&location)
        }
    };
    let back = decide(code_for("bob")).await;
    assert_eq!(back["state"], "st<1>");
    let exchange = |code: String, verifier: String, redirect_uri: &'static str| {
        let url = p.url("/token");
        async move {
            let params = [
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", &verifier),
            ];
            post_form(&url, &params, BASIC).await
        }
    };
    let resp = exchange(back["code"].clone(), pkce.verifier.clone(), redirect).await;
    assert_eq!(resp.status, 200, "{resp}");
    let body = resp.json();
    assert_eq!(body["scope"], "files");
    assert!(body["refresh_token"].is_string());
    let token = body["access_token"].as_str().expect("access").to_owned();
    let again = exchange(back["code"].clone(), pkce.verifier.clone(), redirect).await;
    assert_eq!(
        again.json()["error"],
        "invalid_grant",
        "codes are single use"
    );
    let code = decide(code_for("bob")).await["code"].clone();
    let wrong_verifier = exchange(code, Pkce::random().verifier, redirect).await;
    assert_eq!(wrong_verifier.json()["error"], "invalid_grant");
    let code = decide(code_for("bob")).await["code"].clone();
    let wrong_redirect = exchange(code, pkce.verifier.clone(), "http://127.0.0.1:1/other").await;
    assert_eq!(wrong_redirect.json()["error"], "invalid_grant");
    let mut deny = form.hidden();
    deny.push(("decision".to_owned(), "deny".to_owned()));
    assert_eq!(decide(deny).await["error"], "access_denied");
    let plain = query.replace("S256", "plain");
    assert_eq!(
        get(&p.url(&format!("/authorize?{plain}")), &[])
            .await
            .status,
        400
    );

    // The protected API: the user's token works, others and invalidated ones do not.
    let ok = api_get(&p, &token).await;
    assert_eq!((ok.status, ok.body.as_str()), (200, "api ok /api/things"));
    assert_eq!(ok.header("x-provider-user"), Some("bob"));
    let bad = api_get(&p, "made-up").await;
    assert_eq!(bad.status, 401);
    assert_eq!(
        bad.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
    assert_eq!(get(&p.url("/api/x"), &[]).await.status, 401);
    p.set_api_always_401(true);
    assert_eq!(api_get(&p, &token).await.status, 401);
    p.set_api_always_401(false);
    p.invalidate_access_tokens();
    assert_eq!(api_get(&p, &token).await.status, 401);
    let api = p.api_requests();
    assert_eq!(
        api.iter().map(|r| r.valid).collect::<Vec<_>>(),
        [true, false, false, false, false]
    );
    assert_eq!(
        (api[0].uri.as_str(), api[0].user.as_deref()),
        ("/api/things?x=1", Some("bob"))
    );
    assert_eq!(api[0].token.as_deref(), Some(token.as_str()));
    assert_eq!(api[2].authorization, None);
}
