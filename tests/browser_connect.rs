//! End-to-end in a real browser (headless Chromium over WebDriver, as `browser.rs`):
//! connecting an upstream account through the provider's consent page (SPEC §8), for a
//! shared credential (an operator opens the admin API's `authorize_url`) and a per-user one
//! (the user opens `connect_uri`, signs in to Tollgate, consents at the provider).

mod common;

use common::{
    Admin, Chromedriver, Fixture, GatewayConfig, PROVIDER_CLIENT_ID, PROVIDER_CLIENT_SECRET,
    Provider, Store, WebDriver, access_token, add_ops_client, admin_token, without_query,
};
use serde_json::json;

fn with_code_credential(c: &mut GatewayConfig, provider: &Provider, per_user: bool) {
    c.use_fixed_port();
    add_ops_client(c);
    c.extra.push_str(&format!(
        "\n[[credentials]]\nname = \"drive\"\ngrant = \"authorization_code\"\ntoken_url = \"{}\"\n\
         authorize_url = \"{}\"\nclient_id = \"{PROVIDER_CLIENT_ID}\"\n\
         client_secret = \"{PROVIDER_CLIENT_SECRET}\"\nper_user = {per_user}\n\
         [[routes]]\nname = \"drive\"\npath = \"/abc/drive/*\"\nstrip_prefix = \"/abc/drive\"\n\
         upstreams = [\"{}\"]\ncredential = \"drive\"\n",
        provider.url("/token"),
        provider.url("/authorize"),
        provider.url("/api"),
    ));
}

/// At the provider's page: Allow; then Tollgate's callback page must say "Connected".
async fn allow_and_land(browser: &WebDriver, fx: &Fixture) -> String {
    let allow = browser.wait_for("button[name=decision][value=allow]").await;
    browser.click(&allow).await;
    let callback = format!("{}/oauth/callback", fx.gw.base_url());
    browser
        .wait_for_url("Tollgate's callback", |url| without_query(url) == callback)
        .await;
    let heading = browser.wait_for("h1").await;
    assert_eq!(browser.text(&heading).await, "Connected");
    browser.source().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_connects_a_shared_credential_in_a_browser() {
    let provider = Provider::start().await;
    let fx = Fixture::start_with(Store::memory(), |c| {
        with_code_credential(c, &provider, false)
    })
    .await;
    let admin = Admin::new(&fx.gw.admin_url(), &admin_token(&fx).await);
    let caller = fx.client_token(Some("reports")).await;
    assert_eq!(fx.get("/abc/drive/f", Some(&caller)).await.status, 502);
    let resp = admin
        .post("/admin/credentials/drive/authorize", &json!({}))
        .await;
    let url = resp.json()["authorize_url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let driver = Chromedriver::start().await;
    let browser = driver.session().await;
    browser.goto(&url).await;
    let page = allow_and_land(&browser, &fx).await;
    assert!(page.contains("drive"), "{page}");
    browser.quit().await;

    let resp = fx.get("/abc/drive/f", Some(&caller)).await;
    assert_eq!(resp.status, 200, "connected: {resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_connects_their_own_account_in_a_browser() {
    let provider = Provider::start().await;
    let fx = Fixture::start_with(Store::memory(), |c| {
        with_code_credential(c, &provider, true)
    })
    .await;
    let alice = access_token(&fx.password_token_for("photoprint", "reports").await);
    let refused = fx.get("/abc/drive/f", Some(&alice)).await;
    assert_eq!(refused.status, 403, "{refused}");
    let connect = refused.json()["connect_uri"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let driver = Chromedriver::start().await;
    let browser = driver.session().await;
    browser.goto(&connect).await;
    for (css, text) in [
        ("input[name=username]", "alice"),
        ("input[name=password]", fx.creds.password.as_str()),
    ] {
        let input = browser.wait_for(css).await;
        browser.send_keys(&input, text).await;
    }
    let sign_in = browser
        .find("form[action$='/oauth/login'] button[type=submit]")
        .await;
    browser.click(&sign_in).await;
    let page = allow_and_land(&browser, &fx).await;
    assert!(page.contains("alice"), "{page}");
    browser.quit().await;

    let resp = fx.get("/abc/drive/f", Some(&alice)).await;
    assert_eq!(resp.status, 200, "alice connected: {resp}");
    assert!(provider.api_requests().last().is_some_and(|r| r.valid));
}
