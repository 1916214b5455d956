//! End-to-end in a real browser: headless Chromium (Debian's `chromium` +
//! `chromium-driver`, installed by `.ci/test`) driven over WebDriver through the login and
//! consent pages, landing on a callback served by the test's upstream, which records it.

mod common;

use common::{
    Chromedriver, Fixture, Pkce, Store, WebDriver, access_token, add_auth_clients, authorize_query,
    code_params, query_params, without_query,
};

/// A gateway whose `public_url` is its real address (so any absolute URL it builds leads
/// back to it), with the authorization test clients; `webapp` redirects to the upstream.
async fn fixture() -> Fixture {
    Fixture::start_with(Store::memory(), |c| {
        c.use_fixed_port();
        add_auth_clients(c);
    })
    .await
}

/// The authorize URL for `webapp` asking for reports + secret with PKCE.
fn authorize_url(fx: &Fixture, state: &str, pkce: &Pkce) -> String {
    let cb = fx.callback();
    let params = code_params("webapp", &cb, "reports secret", state, pkce);
    format!(
        "{}/oauth/authorize?{}",
        fx.gw.base_url(),
        authorize_query(&params)
    )
}

async fn sign_in(browser: &WebDriver, username: &str, password: &str) {
    for (css, text) in [
        ("input[name=username]", username),
        ("input[name=password]", password),
    ] {
        let input = browser.wait_for(css).await;
        browser.clear(&input).await;
        browser.send_keys(&input, text).await;
    }
    let button = browser
        .find("form[action$='/oauth/login'] button[type=submit]")
        .await;
    browser.click(&button).await;
}

/// The user signs in, unticks `secret` on the consent page and grants: the browser lands
/// on the client's callback with a code and the state; the code (with the PKCE verifier)
/// buys a token that reaches `reports` paths and is refused (403) on `secret` ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unticked_scope_is_not_granted() {
    let fx = fixture().await;
    let driver = Chromedriver::start().await;
    let browser = driver.session().await;
    let pkce = Pkce::random();
    browser.goto(&authorize_url(&fx, "br-grant", &pkce)).await;
    sign_in(&browser, "alice", &fx.creds.password).await;
    browser
        .wait_for_url("the consent page", |url| {
            without_query(url).ends_with("/oauth/consent")
        })
        .await;

    let secret = browser
        .find("input[type=checkbox][name=scope][value=secret]")
        .await;
    let reports = browser
        .find("input[type=checkbox][name=scope][value=reports]")
        .await;
    assert!(browser.is_selected(&secret).await && browser.is_selected(&reports).await);
    browser.click(&secret).await;
    assert!(
        !browser.is_selected(&secret).await,
        "the check box did not untick"
    );
    let grant = browser.find("button[name=decision][value=grant]").await;
    assert_eq!(browser.text(&grant).await, "Grant access");
    browser.click(&grant).await;

    let cb = fx.callback();
    let landed = browser
        .wait_for_url("the callback", |url| without_query(url) == cb)
        .await;
    let query = query_params(&landed);
    assert_eq!(
        query.get("state").map(String::as_str),
        Some("br-grant"),
        "{landed}"
    );
    let code = query
        .get("code")
        .unwrap_or_else(|| panic!("no code in {landed}"));
    let recorded = fx.up.requests();
    assert!(
        recorded
            .iter()
            .any(|r| r.path() == "/callback" && query_params(&r.uri).get("code") == Some(code)),
        "the callback server never saw the code: {:?}",
        fx.up.uris()
    );
    browser.quit().await;

    let resp = fx
        .exchange_code("webapp", true, code, &cb, Some(&pkce.verifier))
        .await;
    assert_eq!(resp.status, 200, "code exchange: {resp}");
    let tokens = resp.json();
    assert_eq!(tokens["scope"], "reports", "{tokens}");
    let token = access_token(&tokens);
    assert_eq!(
        fx.get("/abc/x", Some(&token)).await.status,
        200,
        "consented scope"
    );
    let refused = fx.get("/secret/x", Some(&token)).await;
    assert_eq!(refused.status, 403, "unticked scope: {refused}");
}

/// Deny lands on the callback with `error=access_denied` and the state, and no code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_lands_on_the_callback_with_access_denied() {
    let fx = fixture().await;
    let driver = Chromedriver::start().await;
    let browser = driver.session().await;
    browser
        .goto(&authorize_url(&fx, "br-deny", &Pkce::random()))
        .await;
    sign_in(&browser, "alice", &fx.creds.password).await;
    let deny = browser.wait_for("button[name=decision][value=deny]").await;
    assert_eq!(browser.text(&deny).await, "Deny");
    browser.click(&deny).await;
    let cb = fx.callback();
    let landed = browser
        .wait_for_url("the callback", |url| without_query(url) == cb)
        .await;
    let query = query_params(&landed);
    assert_eq!(
        query.get("error").map(String::as_str),
        Some("access_denied"),
        "{landed}"
    );
    assert_eq!(
        query.get("state").map(String::as_str),
        Some("br-deny"),
        "{landed}"
    );
    assert!(!query.contains_key("code"), "{landed}");
    browser.quit().await;
}

/// A wrong password shows "Invalid username or password" on the login page, and the
/// browser stays there; the right password then gets through to consent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_shown_on_the_login_page() {
    let fx = fixture().await;
    let driver = Chromedriver::start().await;
    let browser = driver.session().await;
    browser
        .goto(&authorize_url(&fx, "br-pw", &Pkce::random()))
        .await;
    sign_in(&browser, "alice", "not-the-password").await;
    let alert = browser.wait_for("p.error[role=alert]").await;
    assert_eq!(browser.text(&alert).await, "Invalid username or password");
    let url = browser.current_url().await;
    assert!(
        url.starts_with(&fx.gw.base_url()),
        "left the gateway: {url}"
    );
    assert!(
        browser.find_all("button[name=decision]").await.is_empty(),
        "consent shown"
    );

    sign_in(&browser, "alice", &fx.creds.password).await;
    browser.wait_for("button[name=decision][value=grant]").await;
    browser.quit().await;
}
