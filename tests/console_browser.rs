//! End-to-end in a real browser (headless Chromium over WebDriver, as `tests/browser.rs`):
//! an operator works the console (SPEC §10) on node `a` of two nodes sharing one Redis, and
//! every change is seen by node `b` within a second. Saves a screenshot of each page to
//! `$TOLLGATE_SCREENSHOTS` (default `target/console-screenshots`; the README's come from a
//! run with `TOLLGATE_SCREENSHOTS=docs`).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{
    CONSOLE_ADMIN, CONSOLE_READER, Chromedriver, ConsoleAgent, Fixture, Store, WebDriver,
    add_console_users, add_ops_client, assert_invalid_token, basic_auth, get_with_token, poll,
    post_form,
};

fn shots() -> PathBuf {
    let dir = std::env::var_os("TOLLGATE_SCREENSHOTS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

async fn shot(browser: &WebDriver, name: &str) {
    browser
        .screenshot(&shots().join(format!("console-{name}.png")))
        .await;
}

async fn fill(browser: &WebDriver, css: &str, text: &str) {
    let input = browser.wait_for(css).await;
    browser.clear(&input).await;
    browser.send_keys(&input, text).await;
}

async fn submit(browser: &WebDriver, form_action: &str) {
    let css = format!("main form[action='{form_action}'] button[type=submit]");
    let button = browser.find(&css).await;
    browser.click(&button).await;
}

async fn sign_in(browser: &WebDriver, admin: &str, username: &str, password: &str) {
    browser.goto(&format!("{admin}/console/signin")).await;
    fill(browser, "input[name=username]", username).await;
    fill(browser, "input[name=password]", password).await;
    submit(browser, "/console/signin").await;
}

/// The text of the element matching `css` once it is there.
async fn text_of(browser: &WebDriver, css: &str) -> String {
    let element = browser.wait_for(css).await;
    browser.text(&element).await
}

/// Polls `check` for up to 1 s (SPEC §9, §7: every node within a second).
async fn within_a_second<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<()>>,
{
    assert!(
        poll(Duration::from_millis(1000), check).await.is_some(),
        "{what} not seen on the other node within 1 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_works_the_console_and_every_node_follows() {
    let fx = Fixture::start_with(Store::redis().await, |c| {
        add_ops_client(c);
        add_console_users(c);
    })
    .await;
    let b = fx.start_node().await;
    let admin = fx.gw.admin_url();
    let driver = Chromedriver::start().await;
    let browser = driver.session().await;
    browser.set_window(1100, 760).await;

    // A user without admin scopes is refused, with the reason.
    sign_in(&browser, &admin, "alice", &fx.creds.password).await;
    let refusal = text_of(&browser, "p.error").await;
    assert!(refusal.contains("may not use the console"), "{refusal}");
    shot(&browser, "signin-refused").await;

    sign_in(&browser, &admin, CONSOLE_ADMIN, &fx.creds.password).await;
    browser
        .wait_for_url("the clients page", |u| u.ends_with("/console/clients"))
        .await;

    // Add a client; its secret, shown once, works at node b's token endpoint.
    browser.goto(&format!("{admin}/console/new/client")).await;
    fill(&browser, "input[name=name]", "Browser App").await;
    fill(&browser, "input[name=version]", "1.0").await;
    fill(&browser, "input[name=description]", "Made in the console").await;
    let reports = browser.find("input[name=scopes][value=reports]").await;
    browser.click(&reports).await;
    shot(&browser, "client-add").await;
    submit(&browser, "/console/clients").await;
    let secret = text_of(&browser, "#client-secret").await;
    let client_id = text_of(&browser, "main p code").await;
    shot(&browser, "client-created").await;
    let token_url = format!("{}/oauth/token", b.base_url());
    let resp = post_form(
        &token_url,
        &[("grant_type", "client_credentials")],
        Some((&client_id, &secret)),
    )
    .await;
    assert_eq!(resp.status, 200, "the console's secret at node b: {resp}");
    let client_token = resp.json()["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let _ = basic_auth;

    browser.goto(&format!("{admin}/console/clients")).await;
    let list = browser.source().await;
    assert!(list.contains("Browser App"), "{list}");
    shot(&browser, "clients").await;

    // Add a token; use it on node a; delete it; node b refuses it within a second.
    browser
        .goto(&format!("{admin}/console/new/token?client_id={client_id}"))
        .await;
    fill(&browser, "input[name=scope]", "reports").await;
    submit(&browser, "/console/tokens").await;
    let token = text_of(&browser, "#access-token").await;
    shot(&browser, "token-added").await;
    let on_a = get_with_token(&format!("{}/abc/x", fx.gw.base_url()), Some(&token)).await;
    assert_eq!(on_a.status, 200, "{on_a}");
    b.assert_cached("/abc/x", &token).await;
    browser
        .goto(&format!("{admin}/console/tokens?client_id={client_id}"))
        .await;
    shot(&browser, "tokens").await;
    // The client has two tokens (its own from node b first): delete the newest, listed last.
    browser.wait_for("a.danger").await;
    let delete = browser
        .find_all("a.danger")
        .await
        .pop()
        .expect("a delete link");
    browser.click(&delete).await;
    let confirm = browser.wait_for("main form button.danger").await;
    shot(&browser, "token-delete").await;
    browser.click(&confirm).await;
    browser.wait_for("p.ok").await;
    let b_url = format!("{}/abc/x", b.base_url());
    within_a_second("the deleted token", || async {
        (get_with_token(&b_url, Some(&token)).await.status == 401).then_some(())
    })
    .await;

    // Scopes: a bad pattern is shown next to the paths, the input kept; then saved.
    browser.goto(&format!("{admin}/console/new/scope")).await;
    fill(&browser, "input[name=name]", "browser-docs").await;
    fill(
        &browser,
        "input[name=description]",
        "Docs for the browser app",
    )
    .await;
    fill(&browser, "textarea[name=paths]", "/docs/*\nGET docs").await;
    submit(&browser, "/console/scopes").await;
    let error = text_of(&browser, "#paths-error").await;
    assert!(error.contains("docs"), "{error}");
    shot(&browser, "scope-error").await;
    fill(
        &browser,
        "textarea[name=paths]",
        "/docs/*\nGET /manuals/{id}",
    )
    .await;
    submit(&browser, "/console/scopes").await;
    browser.wait_for("p.ok").await;
    shot(&browser, "scopes").await;

    // The client lists the scope: deleting it is refused, with the reason.
    browser
        .goto(&format!("{admin}/console/clients/{client_id}"))
        .await;
    let tick = browser
        .wait_for("input[name=scopes][value='browser-docs']")
        .await;
    browser.click(&tick).await;
    submit(&browser, &format!("/console/clients/{client_id}")).await;
    browser.wait_for("p.ok").await;
    shot(&browser, "client").await;
    browser
        .goto(&format!("{admin}/console/scopes/browser-docs/delete"))
        .await;
    let confirm = browser.wait_for("main form button.danger").await;
    browser.click(&confirm).await;
    let refused = text_of(&browser, "#refused").await;
    assert!(refused.contains(&client_id), "{refused}");
    shot(&browser, "scope-delete-refused").await;

    // A scope nobody uses is deleted.
    browser.goto(&format!("{admin}/console/new/scope")).await;
    fill(&browser, "input[name=name]", "scratch").await;
    fill(&browser, "textarea[name=paths]", "/scratch/*").await;
    submit(&browser, "/console/scopes").await;
    browser.wait_for("p.ok").await;
    browser
        .goto(&format!("{admin}/console/scopes/scratch/delete"))
        .await;
    let confirm = browser.wait_for("main form button.danger").await;
    browser.click(&confirm).await;
    let done = text_of(&browser, "p.ok").await;
    assert!(done.contains("scratch"), "{done}");

    // Disable the client: node b refuses its token within a second.
    let b_abc = format!("{}/abc/y", b.base_url());
    assert_eq!(
        get_with_token(&b_abc, Some(&client_token)).await.status,
        200
    );
    browser
        .goto(&format!("{admin}/console/clients/{client_id}"))
        .await;
    submit(&browser, &format!("/console/clients/{client_id}/enabled")).await;
    browser.wait_for("p.ok").await;
    within_a_second("the disabled client", || async {
        (get_with_token(&b_abc, Some(&client_token)).await.status == 401).then_some(())
    })
    .await;
    assert_invalid_token(
        &get_with_token(&b_abc, Some(&client_token)).await,
        "client disabled",
    );

    // Explain and credentials.
    browser.goto(&format!("{admin}/console/explain")).await;
    fill(&browser, "input[name=path]", "/secret/plans").await;
    fill(&browser, "input[name=token]", &client_token).await;
    submit(&browser, "/console/explain").await;
    let verdict = text_of(&browser, "#verdict").await;
    assert!(verdict.contains("Refused"), "{verdict}");
    shot(&browser, "explain").await;
    browser.goto(&format!("{admin}/console/credentials")).await;
    browser.wait_for("h1").await;
    shot(&browser, "credentials").await;
    browser.quit().await;

    // admin:read on node b: it sees, and its POST with its own valid CSRF token is refused.
    let mut reader =
        ConsoleAgent::signed_in(&b.admin_url(), CONSOLE_READER, &fx.creds.password).await;
    let page = reader.get("/console/clients").await;
    assert!(page.body.contains("Browser App"), "{page}");
    let forged = reader
        .post(
            "/console/clients",
            &format!("/console/clients/{client_id}/delete"),
            &[],
        )
        .await;
    assert_eq!(forged.status, 403, "{forged}");
    // And an admin's POST without a CSRF token.
    let mut olga = ConsoleAgent::signed_in(&b.admin_url(), CONSOLE_ADMIN, &fx.creds.password).await;
    let bare = olga
        .post_raw(&format!("/console/clients/{client_id}/delete"), &[])
        .await;
    assert_eq!(bare.status, 403, "{bare}");
    let still = olga.get(&format!("/console/clients/{client_id}")).await;
    assert_eq!(still.status, 200, "the client survived both: {still}");
}
