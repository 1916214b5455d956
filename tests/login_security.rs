//! End-to-end: the login and consent pages' defences (SPEC §5, issue 3): login errors,
//! CSRF on both forms, escaping of everything a page echoes, and the session cookie's
//! flags under TLS.

mod common;

use common::{
    Agent, CookieJar, Fixture, Form, Pkce, Resp, Store, TempDir, TestCa, access_token,
    add_auth_clients, assert_html_page, authorize_query, code_params, cookie_attributes,
    html_unescape, https_request, location, query_params, set_cookie_line, without_query,
};

/// A state full of characters that need escaping in HTML and encoding in URLs.
const NASTY_STATE: &str = "st<script>alert('state')</script>&x=\"1\" #";

/// A wrong password or unknown user shows the login page again with the error and sets no
/// session; so does a POST whose CSRF cookie or field is missing or wrong. Without a
/// session there is no consent page, and a consent POST without the session or with a
/// wrong CSRF value yields no code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_errors_and_csrf() {
    let fx = Fixture::start_with(Store::memory(), add_auth_clients).await;
    let (cb, pkce) = (fx.callback(), Pkce::random());
    let params = code_params("webapp", &cb, "reports", "s1", &pkce);
    let mut agent = fx.agent();
    let mut page = agent.authorize(&params).await;
    assert_eq!(page.status, 200, "{page}");
    for (user, password) in [
        ("alice", "wrong-password"),
        ("mallory", fx.creds.password.as_str()),
    ] {
        // Each attempt uses the page the previous one returned, as a user would.
        let resp = agent.login(&page, user, password).await;
        assert_eq!(resp.status, 200, "{user}: {resp}");
        assert_html_page(&resp);
        let alert = r#"<p class="error" role="alert">Invalid username or password</p>"#;
        assert!(resp.body.contains(alert), "{user}: no error shown: {resp}");
        assert!(
            set_cookie_line(&resp, "tollgate_session").is_none(),
            "{resp}"
        );
        Form::posting_to(&resp, "/oauth/login");
        page = resp;
    }
    assert!(agent.jar.get("tollgate_session").is_none());

    let form = Form::posting_to(&page, "/oauth/login");
    let login = |csrf: &str| {
        let mut fields = form.hidden();
        fields.retain(|(n, _)| n != "csrf");
        fields.push(("csrf".into(), csrf.into()));
        fields.push(("username".into(), "alice".into()));
        fields.push(("password".into(), fx.creds.password.clone()));
        fields
    };
    let right = form.hidden_value("csrf").expect("csrf field");
    let mut no_cookie = Agent::new(&fx.gw.base_url());
    let forged = [
        ("no CSRF cookie", &mut no_cookie, right.as_str()),
        ("wrong CSRF field", &mut agent, "forged"),
    ];
    for (case, who, csrf) in forged {
        let resp = who.post(&form.action, &login(csrf)).await;
        assert!(
            set_cookie_line(&resp, "tollgate_session").is_none(),
            "{case}: {resp}"
        );
        assert!(!is_consent_redirect(&resp), "{case}: {resp}");
    }

    // The control: the same form, with its own CSRF value and cookie, signs in. So the two
    // refusals above were the CSRF check's doing and nothing else.
    let resp = agent.post(&form.action, &login(&right)).await;
    assert!(
        is_consent_redirect(&resp),
        "the real login after failures: {resp}"
    );
    let consent = agent.follow(&resp).await;
    assert_eq!(consent.status, 200, "{consent}");
    let consent_url = location(&resp).to_owned();
    let stranger = Agent::new(&fx.gw.base_url()).get(&consent_url).await;
    let forms = Form::all(&stranger.body);
    let consent_form = forms
        .iter()
        .any(|f| without_query(&f.action).ends_with("/oauth/consent"));
    assert!(
        !consent_form,
        "a consent page without a session: {stranger}"
    );

    let form = Form::posting_to(&consent, "/oauth/consent");
    let mut fields = form.hidden();
    fields.push(("scope".into(), "reports".into()));
    fields.push(("decision".into(), "grant".into()));
    let resp = Agent::new(&fx.gw.base_url())
        .post(&form.action, &fields)
        .await;
    assert!(
        !has_code(&resp),
        "consent POST without a session gave a code: {resp}"
    );
    for (name, value) in fields.iter_mut() {
        if name == "csrf" {
            *value = "forged".into();
        }
    }
    let resp = agent.post(&form.action, &fields).await;
    assert!(
        !has_code(&resp),
        "consent POST with a forged CSRF value gave a code: {resp}"
    );
    assert_eq!(resp.status, 403, "{resp}");
    // The control: the same POST with the form's own CSRF value gives the code.
    let resp = agent.post(&form.action, &form_fields(&form)).await;
    assert!(has_code(&resp), "the genuine consent POST: {resp}");
}

/// The consent form's fields as the page has them, ticking `reports` and granting.
fn form_fields(form: &Form) -> Vec<(String, String)> {
    let mut fields = form.hidden();
    fields.push(("scope".into(), "reports".into()));
    fields.push(("decision".into(), "grant".into()));
    fields
}

/// CSRF tokens are made by the server, never adopted from the browser: a `tollgate_csrf`
/// cookie planted before the flow (say by a sibling domain) is replaced, and the login form
/// carries a fresh value. The consent form's token belongs to the login session and is
/// renewed at every login: one session's token is refused with another session's cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csrf_tokens_are_made_by_the_server_and_bound_to_the_session() {
    let fx = Fixture::start_with(Store::memory(), add_auth_clients).await;
    let (cb, pkce) = (fx.callback(), Pkce::random());
    let params = code_params("webapp", &cb, "reports", "s", &pkce);
    let planted = "0123456789abcdef0123456789abcdef";
    let mut agent = fx.agent();
    agent.jar.set("tollgate_csrf", planted);
    let page = agent.authorize(&params).await;
    assert_eq!(page.status, 200, "{page}");
    let login_csrf = Form::posting_to(&page, "/oauth/login")
        .hidden_value("csrf")
        .expect("csrf field");
    assert_ne!(login_csrf, planted, "the planted CSRF cookie was adopted");
    assert_eq!(agent.jar.get("tollgate_csrf"), Some(login_csrf.as_str()));

    let resp = agent.login(&page, "alice", &fx.creds.password).await;
    assert!(is_consent_redirect(&resp), "{resp}");
    let consent = agent.follow(&resp).await;
    let first = Form::posting_to(&consent, "/oauth/consent");
    let first_csrf = first.hidden_value("csrf").expect("csrf field");
    assert_ne!(first_csrf, login_csrf, "the CSRF token is renewed at login");

    // A second browser signs in as alice too: its session has a token of its own.
    let mut other = fx.agent();
    let page = other.authorize(&params).await;
    let resp = other.login(&page, "alice", &fx.creds.password).await;
    let consent = other.follow(&resp).await;
    let second = Form::posting_to(&consent, "/oauth/consent");
    assert_ne!(second.hidden_value("csrf"), Some(first_csrf.clone()));

    // The first session's token with the second session's cookie: refused.
    let mut crossed = form_fields(&second);
    for (name, value) in crossed.iter_mut() {
        if name == "csrf" {
            *value = first_csrf.clone();
        }
    }
    let resp = other.post(&second.action, &crossed).await;
    assert_eq!(resp.status, 403, "a token of another session: {resp}");
    assert!(!has_code(&resp), "{resp}");
    // Each session's own form works.
    let resp = other.post(&second.action, &form_fields(&second)).await;
    assert!(has_code(&resp), "{resp}");
    let resp = agent.post(&first.action, &form_fields(&first)).await;
    assert!(has_code(&resp), "{resp}");
}

/// TLS may end in front of Tollgate: with an `https://` public_url and a plain listener,
/// the CSRF and session cookies are `Secure` all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_are_secure_behind_tls_termination() {
    let fx = Fixture::start_with(Store::memory(), |c| {
        add_auth_clients(c);
        c.public_url = "https://gateway.example.test".into();
    })
    .await;
    let (cb, pkce) = (fx.callback(), Pkce::random());
    let mut agent = fx.agent();
    let page = agent
        .authorize(&code_params("webapp", &cb, "reports", "s", &pkce))
        .await;
    assert_eq!(page.status, 200, "{page}");
    let csrf = set_cookie_line(&page, "tollgate_csrf").expect("tollgate_csrf cookie");
    assert!(cookie_attributes(csrf).contains_key("secure"), "{csrf}");
    let resp = agent.login(&page, "alice", &fx.creds.password).await;
    assert_eq!(resp.status, 303, "{resp}");
    let session = set_cookie_line(&resp, "tollgate_session").expect("tollgate_session cookie");
    assert!(
        cookie_attributes(session).contains_key("secure"),
        "{session}"
    );
}

fn is_consent_redirect(resp: &Resp) -> bool {
    resp.status == 303
        && resp
            .header("location")
            .is_some_and(|l| without_query(l).ends_with("/oauth/consent"))
}

fn has_code(resp: &Resp) -> bool {
    resp.header("location")
        .is_some_and(|l| query_params(l).contains_key("code"))
}

/// What the pages echo (the state, the client's name and description) is shown as text,
/// never interpreted as markup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_escape_what_they_echo() {
    let fx = Fixture::start_with(Store::memory(), |c| {
        add_auth_clients(c);
        c.extra.push_str(&format!(
            "\n[[clients]]\nclient_id = \"evil\"\nname = \"Evil & <b>Co</b>\"\nversion = \"1.0\"\n\
             description = \"<script>alert('desc')</script>\"\ntype = \"confidential\"\n\
             secret_hash = \"{}\"\nredirect_uris = [\"{}/callback\"]\n\
             grants = [\"authorization_code\"]\nscopes = [\"reports\"]\n",
            c.secret_hash, c.upstream
        ));
    })
    .await;
    let (cb, pkce) = (fx.callback(), Pkce::random());
    let params = code_params("evil", &cb, "reports", NASTY_STATE, &pkce);
    let mut agent = fx.agent();
    let page = agent.authorize(&params).await;
    assert_eq!(page.status, 200, "{page}");
    assert!(!page.body.contains("<script>alert"), "login page: {page}");
    // A failed login shows the username again: as text.
    let nasty_user = "<b>bob</b>\"'&";
    let page = agent.login(&page, nasty_user, "wrong").await;
    assert_eq!(page.status, 200, "{page}");
    assert!(
        !page.body.contains("<b>bob</b>"),
        "username unescaped: {page}"
    );
    let username = Form::posting_to(&page, "/oauth/login")
        .input("username")
        .and_then(|i| i.attr("value").map(html_unescape));
    assert_eq!(username.as_deref(), Some(nasty_user), "{page}");
    let resp = agent.login(&page, "alice", &fx.creds.password).await;
    let consent = agent.follow(&resp).await;
    assert_eq!(consent.status, 200, "{consent}");
    assert!(
        !consent.body.contains("<script>alert"),
        "consent page: {consent}"
    );
    assert!(
        !consent.body.contains("<b>Co</b>"),
        "consent page: {consent}"
    );
    let text = html_unescape(&consent.body);
    assert!(
        text.contains("Evil & <b>Co</b>"),
        "the name is shown as text: {consent}"
    );
    assert!(
        text.contains("<script>alert('desc')</script>"),
        "the description: {consent}"
    );

    let resp = agent.consent(&consent, None, "grant").await;
    let back = location(&resp);
    assert_eq!(
        query_params(back).get("state").map(String::as_str),
        Some(NASTY_STATE)
    );
    let code = query_params(back)["code"].clone();
    let resp = fx
        .exchange_code("evil", true, &code, &cb, Some(&pkce.verifier))
        .await;
    assert_eq!(
        fx.get("/abc/x", Some(&access_token(&resp.json())))
            .await
            .status,
        200
    );
}

/// Under TLS the login session cookie is also `Secure`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookie_is_secure_under_tls() {
    let dir = TempDir::new("tls-login");
    let ca = TestCa::new(dir.path(), "login");
    let leaf = ca.issue("gateway");
    let fx = Fixture::start_with(Store::memory(), |c| {
        add_auth_clients(c);
        c.public_url = "https://localhost:1".into();
        c.extra.push_str(&format!(
            "\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            leaf.cert.display(),
            leaf.key.display()
        ));
    })
    .await;
    let https =
        |method: &'static str, path: String, headers: Vec<(&'static str, String)>, body: String| {
            let (addr, ca) = (fx.gw.addr(), ca.cert.clone());
            async move {
                let headers: Vec<(&str, &str)> =
                    headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                https_request(
                    addr,
                    &[ca.as_path()],
                    &["http/1.1"],
                    method,
                    &path,
                    &headers,
                    body,
                )
                .await
                .unwrap_or_else(|e| panic!("{method} {path} over HTTPS: {e}"))
                .resp
            }
        };
    let (cb, pkce) = (fx.callback(), Pkce::random());
    let query = authorize_query(&code_params("webapp", &cb, "reports", "tls", &pkce));
    let page = https(
        "GET",
        format!("/oauth/authorize?{query}"),
        vec![],
        String::new(),
    )
    .await;
    assert_eq!(page.status, 200, "login page over HTTPS: {page}");
    let mut jar = CookieJar::default();
    jar.absorb(&page);
    let form = Form::posting_to(&page, "/oauth/login");
    let mut fields = form.hidden();
    fields.push(("username".into(), "alice".into()));
    fields.push(("password".into(), fx.creds.password.clone()));
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&fields)
        .finish();
    let headers = vec![
        (
            "content-type",
            "application/x-www-form-urlencoded".to_owned(),
        ),
        (
            "cookie",
            jar.header().expect("CSRF cookie from the login page"),
        ),
    ];
    let resp = https("POST", form.action.clone(), headers, body).await;
    assert_eq!(resp.status, 303, "login over HTTPS: {resp}");
    let line = set_cookie_line(&resp, "tollgate_session").expect("tollgate_session cookie");
    let attrs = cookie_attributes(line);
    assert!(
        attrs.contains_key("secure"),
        "session cookie not Secure under TLS: {line}"
    );
    assert!(attrs.contains_key("httponly"), "{line}");
}
