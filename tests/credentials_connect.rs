//! End-to-end: connecting an upstream account through the provider's own consent page
//! (SPEC §8, `grant = "authorization_code"`), shared (an operator connects it from the admin
//! API) and `per_user` (every end user connects their own, after signing in to Tollgate), as a
//! browser without JavaScript would: following redirects and posting forms.

#[macro_use]
mod common;

use common::{
    Admin, Agent, CONSOLE_ADMIN, ConsoleAgent, Fixture, Form, GatewayConfig, PROVIDER_CLIENT_ID,
    PROVIDER_CLIENT_SECRET, Provider, Resp, Store, access_token, add_console_users, add_ops_client,
    admin_token, location, query_params,
};
use serde_json::json;

both_backends!(a_shared_credential_is_connected_by_an_operator);

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn with_code_credential(c: &mut GatewayConfig, provider: &Provider, per_user: bool) {
    c.use_fixed_port();
    add_ops_client(c);
    if c.store.contains("redis") {
        c.store.push_str(&format!("encryption_key = \"{KEY}\"\n"));
    }
    c.extra.push_str(&format!(
        "\n[[credentials]]\nname = \"crm\"\ngrant = \"authorization_code\"\ntoken_url = \"{}\"\n\
         authorize_url = \"{}\"\nclient_id = \"{PROVIDER_CLIENT_ID}\"\n\
         client_secret = \"{PROVIDER_CLIENT_SECRET}\"\nscope = \"contacts\"\nper_user = {per_user}\n\
         [[routes]]\nname = \"crm\"\npath = \"/abc/crm/*\"\nstrip_prefix = \"/abc/crm\"\n\
         upstreams = [\"{}\"]\ncredential = \"crm\"\n",
        provider.url("/token"),
        provider.url("/authorize"),
        provider.url("/api"),
    ));
}

/// At the provider: the consent page, "Allow", and the redirect back to Tollgate's callback.
async fn consent_at_provider(
    agent: &mut Agent,
    provider: &Provider,
    authorize_url: &str,
) -> String {
    let page = agent.get(authorize_url).await;
    assert_eq!(page.status, 200, "provider consent page: {page}");
    let form = Form::posting_to(&page, "/authorize/decide");
    let mut fields = form.hidden();
    fields.push(("user".into(), "svc".into()));
    fields.push(("decision".into(), "allow".into()));
    let back = agent
        .post(&provider.url("/authorize/decide"), &fields)
        .await;
    assert_eq!(back.status, 302, "{back}");
    location(&back).to_owned()
}

fn assert_connected_page(resp: &Resp) {
    assert_eq!(resp.status, 200, "callback: {resp}");
    assert!(resp.body.contains("Connected"), "{resp}");
    common::assert_html_page(resp);
}

/// `POST /admin/credentials/crm/authorize` gives the provider URL with `state`, PKCE S256 and
/// `redirect_uri = {public_url}/oauth/callback`; after consent, the callback exchanges the
/// code (with the verifier) and the route works. The state is single use. Before the connect
/// the route answers 502 and the listing says `not_connected`.
async fn a_shared_credential_is_connected_by_an_operator(store: Store) {
    let provider = Provider::start().await;
    let fx = Fixture::start_with(store, |c| with_code_credential(c, &provider, false)).await;
    let admin = Admin::new(&fx.gw.admin_url(), &admin_token(&fx).await);
    let caller = fx.client_token(Some("reports")).await;
    let listed = admin.get("/admin/credentials").await.json();
    assert_eq!(
        listed["credentials"][0]["status"], "not_connected",
        "{listed}"
    );
    let resp = fx.get("/abc/crm/x", Some(&caller)).await;
    assert_eq!(resp.status, 502, "not connected yet: {resp}");

    let resp = admin
        .post("/admin/credentials/crm/authorize", &json!({}))
        .await;
    assert_eq!(resp.status, 200, "{resp}");
    let url = resp.json()["authorize_url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(url.starts_with(&provider.url("/authorize?")), "{url}");
    let query = query_params(&url);
    assert_eq!(query.get("response_type").map(String::as_str), Some("code"));
    assert_eq!(
        query.get("client_id").map(String::as_str),
        Some(PROVIDER_CLIENT_ID)
    );
    assert_eq!(
        query.get("code_challenge_method").map(String::as_str),
        Some("S256")
    );
    assert_eq!(query.get("scope").map(String::as_str), Some("contacts"));
    assert_eq!(
        query.get("redirect_uri").cloned(),
        Some(format!("{}/oauth/callback", fx.gw.base_url()))
    );
    assert!(query.get("state").is_some_and(|s| s.len() >= 32));

    let mut browser = Agent::new(&fx.gw.base_url());
    let callback = consent_at_provider(&mut browser, &provider, &url).await;
    let done = browser.get(&callback).await;
    assert_connected_page(&done);
    let exchange = provider.token_requests().pop().expect("a code exchange");
    assert_eq!(exchange.grant_type(), Some("authorization_code"));
    assert!(
        exchange
            .param("code_verifier")
            .is_some_and(|v| v.len() >= 43)
    );

    let resp = fx.get("/abc/crm/x", Some(&caller)).await;
    assert_eq!(resp.status, 200, "connected: {resp}");
    assert!(provider.api_requests().last().is_some_and(|r| r.valid));
    let listed = admin.get("/admin/credentials").await.json();
    assert_eq!(listed["credentials"][0]["status"], "ok", "{listed}");

    let replay = browser.get(&callback).await;
    assert_eq!(replay.status, 400, "a state is single use: {replay}");
    assert_eq!(
        admin.delete("/admin/credentials/crm/tokens").await.status,
        204
    );
    assert_eq!(
        fx.get("/abc/crm/x", Some(&caller)).await.status,
        502,
        "disconnected"
    );
}

/// `per_user`: a user who has not connected gets 403 `credential_not_connected` with the
/// `connect_uri`; opening it signs them in to Tollgate, sends them to the provider and back,
/// and from then on their requests carry their own upstream token. A token without a user
/// never gets one. Disconnecting that user brings the 403 back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_credentials_are_connected_by_each_user() {
    let provider = Provider::start().await;
    let fx = Fixture::start_with(Store::memory(), |c| {
        with_code_credential(c, &provider, true)
    })
    .await;
    let admin = Admin::new(&fx.gw.admin_url(), &admin_token(&fx).await);
    let alice = access_token(&fx.password_token_for("photoprint", "reports").await);

    let resp = fx.get("/abc/crm/x", Some(&alice)).await;
    assert_eq!(resp.status, 403, "{resp}");
    let body = resp.json();
    assert_eq!(body["error"], "credential_not_connected", "{body}");
    let connect = body["connect_uri"].as_str().unwrap_or_default().to_owned();
    assert_eq!(connect, format!("{}/oauth/connect/crm", fx.gw.base_url()));

    let mut browser = Agent::new(&fx.gw.base_url());
    let login = browser.get(&connect).await;
    assert_eq!(login.status, 200, "the login page first: {login}");
    let resp = browser.login(&login, "alice", &fx.creds.password).await;
    assert_eq!(resp.status, 303, "{resp}");
    assert!(location(&resp).ends_with("/oauth/connect/crm"), "{resp}");
    let to_provider = browser.follow(&resp).await;
    assert_eq!(to_provider.status, 303, "{to_provider}");
    let url = location(&to_provider).to_owned();
    assert!(url.starts_with(&provider.url("/authorize?")), "{url}");
    let callback = consent_at_provider(&mut browser, &provider, &url).await;
    let done = browser.get(&callback).await;
    assert_connected_page(&done);
    assert!(done.body.contains("alice"), "{done}");

    let resp = fx.get("/abc/crm/x", Some(&alice)).await;
    assert_eq!(resp.status, 200, "alice connected: {resp}");
    let machine = fx.client_token(Some("reports")).await;
    let resp = fx.get("/abc/crm/x", Some(&machine)).await;
    assert_eq!(resp.status, 403, "a token without a user: {resp}");
    assert_eq!(resp.json()["error"], "credential_not_connected");
    let listed = admin.get("/admin/credentials").await.json();
    assert_eq!(listed["credentials"][0]["connected_users"], 1, "{listed}");

    let resp = admin
        .delete("/admin/credentials/crm/tokens?username=alice")
        .await;
    assert_eq!(resp.status, 204, "{resp}");
    assert_eq!(fx.get("/abc/crm/x", Some(&alice)).await.status, 403);
}

/// A user removed from `gateway.toml` by a reload loses their upstream tokens: back in the
/// file, they must connect again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_user_loses_their_upstream_tokens() {
    let provider = Provider::start().await;
    let fx = Fixture::start_with(Store::memory(), |c| {
        with_code_credential(c, &provider, true)
    })
    .await;
    let admin = Admin::new(&fx.gw.admin_url(), &admin_token(&fx).await);
    let mut browser = Agent::new(&fx.gw.base_url());
    let login = browser
        .get(&format!("{}/oauth/connect/crm", fx.gw.base_url()))
        .await;
    let resp = browser.login(&login, "alice", &fx.creds.password).await;
    let to_provider = browser.follow(&resp).await;
    let callback = consent_at_provider(&mut browser, &provider, location(&to_provider)).await;
    assert_connected_page(&browser.get(&callback).await);
    let alice = access_token(&fx.password_token_for("photoprint", "reports").await);
    assert_eq!(fx.get("/abc/crm/x", Some(&alice)).await.status, 200);

    let path = fx.gw.config_path();
    let original = std::fs::read_to_string(&path).expect("config");
    let without = original.replace("username = \"alice\"", "username = \"alice-gone\"");
    for text in [without, original] {
        std::fs::write(&path, text).expect("write config");
        let resp = admin.post("/admin/reload", &json!({})).await;
        assert_eq!(resp.status, 200, "{resp}");
    }
    let alice = access_token(&fx.password_token_for("photoprint", "reports").await);
    let resp = fx.get("/abc/crm/x", Some(&alice)).await;
    assert_eq!(
        resp.status, 403,
        "alice's upstream tokens survived her removal: {resp}"
    );
    assert_eq!(resp.json()["error"], "credential_not_connected");
}

/// The console's credentials page (SPEC §10): "Connect" goes off to the provider's consent
/// page and, after the callback stored the tokens, back to the console's list; "Refresh now"
/// fetches a new token; "Disconnect" (after a confirmation) forgets them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_connects_refreshes_and_disconnects_a_shared_credential() {
    let provider = Provider::start().await;
    let fx = Fixture::start_with(Store::memory(), |c| {
        with_code_credential(c, &provider, false);
        add_console_users(c);
    })
    .await;
    let admin = fx.gw.admin_url();
    let mut console = ConsoleAgent::signed_in(&admin, CONSOLE_ADMIN, &fx.creds.password).await;
    let list = console.get("/console/credentials").await;
    assert!(list.body.contains("not_connected"), "{list}");

    let resp = console
        .post(
            "/console/credentials",
            "/console/credentials/crm/connect",
            &[],
        )
        .await;
    assert_eq!(resp.status, 303, "{resp}");
    let url = location(&resp).to_owned();
    assert!(url.starts_with(&provider.url("/authorize?")), "{url}");
    let mut browser = Agent::new(&fx.gw.base_url());
    let callback = consent_at_provider(&mut browser, &provider, &url).await;
    let back = browser.get(&callback).await;
    assert_eq!(back.status, 303, "back to the console: {back}");
    assert_eq!(
        location(&back),
        format!("{admin}/console/credentials?connected=crm")
    );
    let list = console.get("/console/credentials?connected=crm").await;
    assert!(list.body.contains("Back from the provider"), "{list}");
    assert!(list.body.contains(">ok</span>"), "connected: {list}");
    let caller = fx.client_token(Some("reports")).await;
    assert_eq!(fx.get("/abc/crm/x", Some(&caller)).await.status, 200);

    let before = provider.token_requests().len();
    let refreshed = console
        .post(
            "/console/credentials",
            "/console/credentials/crm/refresh",
            &[],
        )
        .await;
    assert_eq!(refreshed.status, 200, "{refreshed}");
    assert!(refreshed.body.contains("new token fetched"), "{refreshed}");
    assert!(provider.token_requests().len() > before, "no token request");

    let confirm = console.get("/console/credentials/crm/disconnect").await;
    assert_eq!(confirm.status, 200, "{confirm}");
    let gone = console
        .post(
            "/console/credentials/crm/disconnect",
            "/console/credentials/crm/disconnect",
            &[("username", "")],
        )
        .await;
    assert!(gone.body.contains("stored tokens forgotten"), "{gone}");
    assert!(gone.body.contains("not_connected"), "{gone}");
    assert_eq!(fx.get("/abc/crm/x", Some(&caller)).await.status, 502);

    // A connect started from the admin API (no console page to go back to) ends on the
    // public "Connected" page as before.
    let api = Admin::new(&admin, &admin_token(&fx).await);
    let url = api
        .post("/admin/credentials/crm/authorize", &json!({}))
        .await
        .json()["authorize_url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let callback = consent_at_provider(&mut browser, &provider, &url).await;
    assert_connected_page(&browser.get(&callback).await);
}
