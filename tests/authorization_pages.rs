//! End-to-end: the authorization endpoint's rules (SPEC §5, RFC 6749 §4.1.2.1, §4.2):
//! which mistakes get an error page and which go back to the client, and the implicit
//! grant. The pages' defences (CSRF, escaping, cookies) are in `login_security.rs`.

mod common;

use common::{
    Fixture, Pkce, Resp, Store, add_auth_clients, assert_html_page, code_params, fragment_params,
    html_unescape, location, query_params, without_query,
};

/// A state full of characters that need escaping in HTML and encoding in URLs.
const NASTY_STATE: &str = "st<script>alert('state')</script>&x=\"1\" #";

/// Until `redirect_uri` is known good, nothing may redirect: an unknown or missing client,
/// an unregistered redirect URI (any difference counts), or an omitted one when the client
/// has several, is a 400 HTML page with no `Location`. After that, errors go back to the
/// client with `error` and the state: in the query for `code`, in the fragment for `token`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_rules() {
    let fx = Fixture::start_with(Store::memory(), add_auth_clients).await;
    let cb = fx.callback();
    let pkce = Pkce::random();
    let base = |client: &'static str, redirect: Option<String>| {
        let mut params = vec![
            ("response_type".to_owned(), "code".to_owned()),
            ("client_id".to_owned(), client.to_owned()),
            ("scope".to_owned(), "reports".to_owned()),
            ("state".to_owned(), NASTY_STATE.to_owned()),
            ("code_challenge".to_owned(), pkce.challenge.clone()),
            ("code_challenge_method".to_owned(), "S256".to_owned()),
        ];
        if let Some(redirect) = redirect {
            params.push(("redirect_uri".to_owned(), redirect));
        }
        params
    };
    let error_pages = [
        ("unknown client", base("nosuchclient", Some(cb.clone()))),
        (
            "unregistered redirect_uri",
            base("webapp", Some("http://evil.example/callback".into())),
        ),
        ("trailing slash", base("webapp", Some(format!("{cb}/")))),
        ("extra query", base("webapp", Some(format!("{cb}?next=1")))),
        (
            "other case",
            base("webapp", Some(cb.replace("callback", "Callback"))),
        ),
        ("omitted, two registered", base("webapp", None)),
        (
            "client without redirect URIs",
            base("photoprint", Some(cb.clone())),
        ),
        (
            "no client_id",
            base("webapp", Some(cb.clone()))
                .into_iter()
                .filter(|(n, _)| n != "client_id")
                .collect(),
        ),
    ];
    let messages = [
        (
            "unregistered redirect_uri",
            "is not registered for this client",
        ),
        (
            "omitted, two registered",
            "this client has several registered",
        ),
        (
            "client without redirect URIs",
            "is not registered for this client",
        ),
    ];
    for (case, params) in &error_pages {
        let resp = authorize(&fx, params).await;
        assert_eq!(resp.status, 400, "{case}: {resp}");
        if let Some((_, text)) = messages.iter().find(|(c, _)| c == case) {
            assert!(resp.body.contains(text), "{case}: says {text:?}: {resp}");
        }
        assert!(
            resp.header("location").is_none(),
            "{case} redirected: {resp}"
        );
        assert_html_page(&resp);
        assert!(
            !resp.body.contains("<script>alert"),
            "{case}: unescaped state: {resp}"
        );
    }

    let with = |client: &'static str, changes: &[(&str, Option<&str>)]| {
        let mut params = base(client, Some(cb.clone()));
        for (name, value) in changes {
            params.retain(|(n, _)| n != name);
            if let Some(value) = value {
                params.push(((*name).to_owned(), (*value).to_owned()));
            }
        }
        params
    };
    let in_query = [
        (
            "unknown response_type",
            with("webapp", &[("response_type", Some("magic"))]),
            "unsupported_response_type",
        ),
        (
            "undeclared scope",
            with("webapp", &[("scope", Some("reports \"nonexistent<x>"))]),
            "invalid_scope",
        ),
        (
            "scope the client may not have",
            with("spa", &[("scope", Some("publish"))]),
            "invalid_scope",
        ),
        (
            "client without the code grant",
            with("ccapp", &[]),
            "unauthorized_client",
        ),
        (
            "implicit-only client asks for a code",
            with("implicit-app", &[]),
            "unauthorized_client",
        ),
        (
            "public client without PKCE",
            with(
                "spa",
                &[("code_challenge", None), ("code_challenge_method", None)],
            ),
            "invalid_request",
        ),
        (
            "plain PKCE",
            with("spa", &[("code_challenge_method", Some("plain"))]),
            "invalid_request",
        ),
        (
            "plain PKCE, confidential",
            with("webapp", &[("code_challenge_method", Some("plain"))]),
            "invalid_request",
        ),
    ];
    for (case, params, error) in &in_query {
        let resp = authorize(&fx, params).await;
        assert_eq!(resp.status, 303, "{case}: {resp}");
        let back = location(&resp);
        assert_eq!(without_query(back), cb, "{case}: {resp}");
        let query = query_params(back);
        assert_eq!(
            query.get("error").map(String::as_str),
            Some(*error),
            "{case}: {back}"
        );
        assert_eq!(
            query.get("state").map(String::as_str),
            Some(NASTY_STATE),
            "{case}: {back}"
        );
        assert!(!query.contains_key("code"), "{case}: {back}");
        assert_eq!(
            query.get("iss").map(String::as_str),
            Some("http://127.0.0.1:1"),
            "{case}: RFC 9207 iss: {back}"
        );
        // The description is Tollgate's own fixed text, never the request's input.
        let description = query.get("error_description").cloned().unwrap_or_default();
        for input in ["magic", "nonexistent", "publish", "<x>", "\""] {
            assert!(
                !description.contains(input),
                "{case}: error_description echoes {input:?}: {description}"
            );
        }
    }

    let in_fragment = [
        (
            "client without implicit",
            with("webapp", &[("response_type", Some("token"))]),
            "unauthorized_client",
        ),
        (
            "undeclared scope",
            with(
                "implicit-app",
                &[
                    ("response_type", Some("token")),
                    ("scope", Some("nonexistent")),
                ],
            ),
            "invalid_scope",
        ),
    ];
    for (case, params, error) in &in_fragment {
        let resp = authorize(&fx, params).await;
        assert_eq!(resp.status, 303, "{case}: {resp}");
        let back = location(&resp);
        assert_eq!(without_query(back), cb, "{case}: {resp}");
        assert!(
            !query_params(back).contains_key("error"),
            "{case}: error in the query: {back}"
        );
        let fragment = fragment_params(back);
        assert_eq!(
            fragment.get("error").map(String::as_str),
            Some(*error),
            "{case}: {back}"
        );
        assert_eq!(
            fragment.get("state").map(String::as_str),
            Some(NASTY_STATE),
            "{case}: {back}"
        );
        assert_eq!(
            fragment.get("iss").map(String::as_str),
            Some("http://127.0.0.1:1"),
            "{case}: RFC 9207 iss: {back}"
        );
    }
}

/// A client with no redirect URIs at all is told so (not that it has several), and what a
/// parked request costs is bounded: `state` has a length limit, and one address may park only
/// so many requests a minute (each is a 10-minute record in the store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_request_may_cost_is_bounded() {
    let fx = Fixture::start_with(Store::memory(), add_auth_clients).await;
    let cb = fx.callback();
    let pkce = Pkce::random();
    let request = |client: &str, redirect: Option<&str>, state: &str| {
        let mut params = vec![
            ("response_type".to_owned(), "code".to_owned()),
            ("client_id".to_owned(), client.to_owned()),
            ("scope".to_owned(), "reports".to_owned()),
            ("state".to_owned(), state.to_owned()),
            ("code_challenge".to_owned(), pkce.challenge.clone()),
            ("code_challenge_method".to_owned(), "S256".to_owned()),
        ];
        if let Some(r) = redirect {
            params.push(("redirect_uri".to_owned(), r.to_owned()));
        }
        params
    };
    let resp = authorize(&fx, &request("photoprint", None, "s")).await;
    assert_eq!(resp.status, 400, "{resp}");
    assert!(
        resp.body.contains("no registered redirect_uri"),
        "a client without redirect URIs: {resp}"
    );
    assert!(!resp.body.contains("several"), "{resp}");

    let long = "s".repeat(1025);
    let resp = authorize(&fx, &request("webapp", Some(&cb), &long)).await;
    assert_eq!(resp.status, 400, "a 1025-byte state: {resp}");
    assert!(resp.header("location").is_none(), "{resp}");
    let fits = "s".repeat(1024);
    let resp = authorize(&fx, &request("webapp", Some(&cb), &fits)).await;
    assert_eq!(resp.status, 200, "a 1024-byte state is fine: {resp}");

    // 60 parked requests a minute per address (one was parked just above).
    let mut statuses = Vec::new();
    for i in 0..60 {
        let resp = authorize(&fx, &request("webapp", Some(&cb), &format!("s{i}"))).await;
        statuses.push(resp.status);
        if resp.status == 429 {
            assert!(resp.header("retry-after").is_some(), "{resp}");
            assert_html_page(&resp);
        }
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        59,
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
}

async fn authorize(fx: &Fixture, params: &[(String, String)]) -> Resp {
    let params: Vec<(&str, &str)> = params
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    fx.agent().authorize(&params).await
}

/// Implicit grant, only for a client that lists it: the token comes back in the fragment
/// (never the query) with `token_type`, `expires_in`, the consented `scope` and the state,
/// and never with a refresh token; it works at the gateway for that scope only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_grant_returns_the_token_in_the_fragment() {
    let fx = Fixture::start_with(Store::memory(), add_auth_clients).await;
    let cb = fx.callback();
    let params = [
        ("response_type", "token"),
        ("client_id", "implicit-app"),
        ("redirect_uri", cb.as_str()),
        ("scope", "reports secret"),
        ("state", NASTY_STATE),
    ];
    let resp = fx
        .agent()
        .approve(
            &params,
            "alice",
            &fx.creds.password,
            Some(&["reports"]),
            "grant",
        )
        .await;
    assert_eq!(resp.status, 303, "{resp}");
    let back = location(&resp);
    assert_eq!(without_query(back), cb, "{resp}");
    assert!(
        query_params(back).is_empty(),
        "nothing belongs in the query: {back}"
    );
    let fragment = fragment_params(back);
    assert_eq!(
        fragment.get("token_type").map(String::as_str),
        Some("Bearer"),
        "{back}"
    );
    assert_eq!(
        fragment.get("scope").map(String::as_str),
        Some("reports"),
        "{back}"
    );
    assert_eq!(
        fragment.get("state").map(String::as_str),
        Some(NASTY_STATE),
        "{back}"
    );
    let expires_in: i64 = fragment["expires_in"].parse().expect("expires_in");
    assert!((590..=600).contains(&expires_in), "{back}");
    assert!(
        !fragment.contains_key("refresh_token"),
        "implicit issued a refresh token: {back}"
    );
    assert!(!fragment.contains_key("code"), "{back}");
    let token = fragment["access_token"].clone();
    common::assert_token_shape(&token);
    assert_eq!(fx.get("/abc/x", Some(&token)).await.status, 200);
    assert_eq!(fx.get("/secret/x", Some(&token)).await.status, 403);
    let seen = fx.up.only_request();
    assert_eq!(seen.header("x-auth-client-id"), Some("implicit-app"));
    assert_eq!(seen.header("x-auth-subject"), Some("alice"));
}

/// The consent page shows the client's `logo_uri` as an image whose alt text is the client's
/// name, both escaped, and its CSP lets images load from that one origin only; a client
/// without a logo gets no image and no image source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consent_page_shows_the_client_logo_from_its_origin_only() {
    let logo = "https://cdn.example.com:8443/logos/a.png?v=1&s=2";
    let name = "Logo \"<b>Co</b>\" & Sons";
    let fx = Fixture::start_with(Store::memory(), |c| {
        add_auth_clients(c);
        c.extra.push_str(&format!(
            "\n[[clients]]\nclient_id = \"logo-app\"\nname = '{name}'\ntype = \"public\"\n\
             redirect_uris = [\"{}/callback\"]\ngrants = [\"authorization_code\"]\n\
             scopes = [\"reports\"]\nlogo_uri = '{logo}'\n",
            c.upstream
        ));
    })
    .await;
    let cb = fx.callback();
    let consent_page = |client: &'static str| {
        let fx = &fx;
        let cb = cb.clone();
        async move {
            let pkce = Pkce::random();
            let params = code_params(client, &cb, "reports", "st", &pkce);
            let mut agent = fx.agent();
            let login = agent.authorize(&params).await;
            assert_eq!(login.status, 200, "{login}");
            let resp = agent.login(&login, "alice", &fx.creds.password).await;
            assert_eq!(resp.status, 303, "{resp}");
            let page = agent.follow(&resp).await;
            assert_eq!(page.status, 200, "{page}");
            assert_html_page(&page);
            page
        }
    };

    let page = consent_page("logo-app").await;
    let csp = page.header("content-security-policy").unwrap_or_default();
    let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
    assert!(directives.contains(&"default-src 'none'"), "{csp}");
    assert!(
        directives.contains(&"img-src https://cdn.example.com:8443"),
        "{csp}"
    );
    assert_eq!(
        directives
            .iter()
            .filter(|d| d.starts_with("img-src"))
            .count(),
        1,
        "{csp}"
    );
    let start = page
        .body
        .find("<img ")
        .unwrap_or_else(|| panic!("no <img>: {page}"));
    let tag = &page.body[start..start + page.body[start..].find('>').expect("tag end")];
    let attr = |attr: &str| {
        let at = tag
            .find(&format!(" {attr}=\""))
            .unwrap_or_else(|| panic!("{attr} in {tag}"));
        let value = &tag[at + attr.len() + 3..];
        html_unescape(&value[..value.find('"').expect("quote")])
    };
    assert_eq!(attr("src"), logo, "{tag}");
    assert_eq!(attr("alt"), name, "{tag}");
    assert_eq!((attr("width"), attr("height")), ("64".into(), "64".into()));
    assert!(!page.body.contains("<b>Co</b>"), "name unescaped: {page}");
    assert!(tag.contains("a.png?v=1&amp;s=2"), "src unescaped: {tag}");

    let page = consent_page("webapp").await;
    assert!(!page.body.contains("<img"), "{page}");
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(!csp.contains("img-src"), "{csp}");
}
