//! End-to-end: throttling of credential guessing (SPEC §5 "Guessing"). After 5 failed
//! password checks for one username, or 5 failed secret checks for one client, from one
//! address within 60 s, that username or client is refused from that address with 429 +
//! `Retry-After` (even with the right credentials) on the token endpoint and the login page;
//! other addresses are not, until 50 failures over all addresses. After 20 failures from one
//! address, that address is refused for everyone. Parallel guesses count before any is
//! answered. Everything else keeps working.

#[macro_use]
mod common;

use common::{
    Agent, Fixture, Pkce, Resp, Store, add_auth_clients, assert_error, code_params, set_cookie_line,
};

both_backends!(failed_passwords_throttle_that_username);

fn loopback(last: u8) -> Option<std::net::IpAddr> {
    Some(std::net::IpAddr::from([127, 0, 0, last]))
}

async fn password_grant_from(
    fx: &Fixture,
    from: Option<std::net::IpAddr>,
    username: &str,
    password: &str,
) -> Resp {
    let params = [
        ("grant_type", "password"),
        ("username", username),
        ("password", password),
    ];
    let basic = Some(("photoprint", fx.creds.secret.as_str()));
    common::post_form_from(from, &fx.token_url(), &params, basic).await
}

/// Twenty wrong passwords sent at once: each is counted before it is checked, so only the
/// first five are verified (400 `invalid_grant`) and the rest are refused (429) unverified.
/// The same for twenty wrong client secrets at once. And that address's lock is its own:
/// alice signs in from another address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_count_before_they_are_answered() {
    let fx = Fixture::start_with(Store::memory(), |_| {}).await;
    let guesses = (0..20).map(|i| {
        let fx = &fx;
        async move { password_grant_from(fx, loopback(1), "alice", &format!("wrong-{i}")).await }
    });
    let answers = futures_util::future::join_all(guesses).await;
    let verified = answers.iter().filter(|r| r.status == 400).count();
    let refused = answers.iter().filter(|r| r.status == 429).count();
    assert_eq!(
        (verified, refused),
        (5, 15),
        "statuses: {:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let right = fx.creds.password.clone();
    assert_throttled(
        &password_grant_from(&fx, loopback(1), "alice", &right).await,
        "alice from the guessing address",
    );
    let resp = password_grant_from(&fx, loopback(2), "alice", &right).await;
    assert_eq!(
        resp.status, 200,
        "one address cannot lock alice out everywhere: {resp}"
    );

    let url = fx.token_url();
    let grant = [("grant_type", "client_credentials")];
    let guesses = (0..20).map(|i| {
        let (url, secret) = (&url, format!("wrong-{i}"));
        async move {
            common::post_form_from(loopback(3), url, &grant, Some(("photoprint", &secret))).await
        }
    });
    let answers = futures_util::future::join_all(guesses).await;
    let verified = answers.iter().filter(|r| r.status == 401).count();
    let refused = answers.iter().filter(|r| r.status == 429).count();
    assert_eq!((verified, refused), (5, 15), "secret guesses at once");
}

/// Many addresses together meet the loose per-account limit: ten addresses with five wrong
/// guesses each (none past its own tight limit) lock alice's password checks everywhere,
/// while bob is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_addresses_cannot_guess_fast() {
    let fx = Fixture::start_with(Store::memory(), |c| c.add_user("bob", &["reports"])).await;
    for last in 10..20u8 {
        for _ in 0..5 {
            let resp = password_grant_from(&fx, loopback(last), "alice", "wrong").await;
            assert_error(&resp, 400, "invalid_grant");
        }
    }
    let right = fx.creds.password.clone();
    assert_throttled(
        &password_grant_from(&fx, loopback(30), "alice", &right).await,
        "alice from a fresh address after 50 failures",
    );
    let resp = password_grant_from(&fx, loopback(30), "bob", &right).await;
    assert_eq!(resp.status, 200, "bob is unaffected: {resp}");
}

async fn password_grant(fx: &Fixture, username: &str, password: &str) -> Resp {
    let params = [
        ("grant_type", "password"),
        ("username", username),
        ("password", password),
    ];
    fx.token_request("photoprint", &params).await
}

/// Asserts a throttled token-endpoint answer: 429, a sane `Retry-After`, `slow_down`.
fn assert_throttled(resp: &Resp, what: &str) {
    assert_eq!(resp.status, 429, "{what}: {resp}");
    assert_retry_after(resp, what);
    assert_error(resp, 429, "slow_down");
}

fn assert_retry_after(resp: &Resp, what: &str) {
    let retry = resp
        .header("retry-after")
        .unwrap_or_else(|| panic!("{what}: no Retry-After: {resp}"));
    let seconds: u64 = retry
        .parse()
        .unwrap_or_else(|_| panic!("{what}: Retry-After {retry:?}"));
    assert!((1..=60).contains(&seconds), "{what}: Retry-After {seconds}");
}

/// A fresh login page for webapp on a new agent, and the agent.
async fn login_page(fx: &Fixture) -> (Agent, Resp) {
    let (cb, pkce) = (fx.callback(), Pkce::random());
    let mut agent = fx.agent();
    let page = agent
        .authorize(&code_params("webapp", &cb, "reports", "s", &pkce))
        .await;
    assert_eq!(page.status, 200, "login page: {page}");
    (agent, page)
}

/// Failures on the token endpoint and the login page add up per username; the sixth
/// attempt is refused with 429 on both, with the right password too. Another user, the
/// client's own grants and the proxy are unaffected. Successful logins are not failures.
async fn failed_passwords_throttle_that_username(store: Store) {
    let fx = Fixture::start_with(store, |c| {
        add_auth_clients(c);
        c.add_user("bob", &["reports"]);
    })
    .await;
    let token = fx.client_token(Some("reports")).await;
    let right = fx.creds.password.clone();

    // Successes between failures are no failures: 4 failures, then 10 successes.
    for _ in 0..4 {
        assert_error(
            &password_grant(&fx, "bob", "wrong").await,
            400,
            "invalid_grant",
        );
    }
    for i in 0..10 {
        let resp = password_grant(&fx, "bob", &right).await;
        assert_eq!(resp.status, 200, "success #{i} after 4 failures: {resp}");
    }

    for _ in 0..3 {
        assert_error(
            &password_grant(&fx, "alice", "wrong").await,
            400,
            "invalid_grant",
        );
    }
    for _ in 0..2 {
        let (mut agent, page) = login_page(&fx).await;
        let resp = agent.login(&page, "alice", "wrong").await;
        assert_eq!(resp.status, 200, "{resp}");
    }
    assert_throttled(
        &password_grant(&fx, "alice", &right).await,
        "alice, right password",
    );
    let (mut agent, page) = login_page(&fx).await;
    let resp = agent.login(&page, "alice", &right).await;
    assert_eq!(
        resp.status, 429,
        "login page while alice is throttled: {resp}"
    );
    assert_retry_after(&resp, "login page");
    assert!(
        resp.body.contains("role=\"alert\""),
        "no error shown: {resp}"
    );
    assert!(
        set_cookie_line(&resp, "tollgate_session").is_none(),
        "{resp}"
    );

    let resp = password_grant(&fx, "bob", &right).await;
    assert_eq!(resp.status, 200, "another user is unaffected: {resp}");
    let (mut agent, page) = login_page(&fx).await;
    let resp = agent.login(&page, "bob", &right).await;
    assert_eq!(resp.status, 303, "another user logs in: {resp}");
    assert_eq!(
        fx.client_token_for("photoprint", None).await["token_type"],
        "Bearer"
    );
    assert_eq!(fx.get("/abc/x", Some(&token)).await.status, 200);
}

/// Five wrong secrets for one client: the sixth request is refused with 429 even with the
/// right secret; another client with the same secret is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_secrets_throttle_that_client() {
    let fx = Fixture::start_with(Store::memory(), |c| {
        c.add_client("other", &["client_credentials"], &["reports"], "");
    })
    .await;
    let url = fx.token_url();
    let grant = [("grant_type", "client_credentials")];
    for _ in 0..5 {
        let resp = common::post_form(&url, &grant, Some(("photoprint", "wrong"))).await;
        assert_error(&resp, 401, "invalid_client");
    }
    let resp = fx.token_request("photoprint", &grant).await;
    assert_throttled(&resp, "photoprint, right secret");
    let body_auth = [
        ("grant_type", "client_credentials"),
        ("client_id", "photoprint"),
        ("client_secret", fx.creds.secret.as_str()),
    ];
    assert_throttled(
        &common::post_form(&url, &body_auth, None).await,
        "body auth",
    );
    let resp = fx.token_request("other", &grant).await;
    assert_eq!(resp.status, 200, "another client is unaffected: {resp}");
}

/// Twenty failures from one address (spread over users so that none reaches its own
/// limit) throttle that address: a user who never failed is refused with 429 on the token
/// endpoint and the login page. Tokens already issued keep working at the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_from_one_address_throttle_it() {
    let users = ["u1", "u2", "u3", "u4", "u5"];
    let fx = Fixture::start_with(Store::memory(), |c| {
        add_auth_clients(c);
        for user in users.iter().chain(&["carol"]) {
            c.add_user(user, &["reports"]);
        }
    })
    .await;
    let token = fx.client_token(Some("reports")).await;
    for user in users {
        for _ in 0..4 {
            let resp = password_grant(&fx, user, "wrong").await;
            assert_error(&resp, 400, "invalid_grant");
        }
    }
    let right = fx.creds.password.clone();
    assert_throttled(
        &password_grant(&fx, "carol", &right).await,
        "carol after 20 failures",
    );
    let (mut agent, page) = login_page(&fx).await;
    let resp = agent.login(&page, "carol", &right).await;
    assert_eq!(
        resp.status, 429,
        "login page for a throttled address: {resp}"
    );
    assert_retry_after(&resp, "login page");
    assert_eq!(
        fx.get("/abc/x", Some(&token)).await.status,
        200,
        "the proxy is unaffected"
    );
}
