//! End-to-end: the console (SPEC §10) with a plain HTTP client: sign-in for users holding
//! `admin` or `admin:read` only, the session cookie's attributes, the pages' headers, CSRF
//! on every POST, read-only sessions, throttled sign-in, and `[admin.tls]` (HTTPS, `Secure`
//! cookies, certificates re-read on reload, the CLI trusting a private CA).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{
    CONSOLE_ADMIN, CONSOLE_READER, ConsoleAgent, Fixture, Form, Leaf, OPS_CLIENT, Store, TempDir,
    TestCa, add_console_users, add_ops_client, admin_token, assert_html_page, cookie_attributes,
    https_request, location, poll, set_cookie_line, tollgate,
};

async fn fixture() -> Fixture {
    Fixture::start_with(Store::memory(), |c| {
        add_ops_client(c);
        add_console_users(c);
    })
    .await
}

/// An admin user signs in: the session cookie is HttpOnly, SameSite=Strict, scoped to
/// /console, not Secure over plain HTTP; every page carries the login page's headers. A
/// user without admin scopes is refused with a clear message even with the right password;
/// a wrong password says so. Signing out ends the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_cookie_headers_and_refusals() {
    let fx = fixture().await;
    let admin = fx.gw.admin_url();
    let mut anon = ConsoleAgent::new(&admin);
    let page = anon.get("/console/clients").await;
    assert_eq!(page.status, 303, "{page}");
    assert_eq!(location(&page), "/console/signin");
    let signin = anon.get("/console/signin").await;
    assert_html_page(&signin);

    let mut agent = ConsoleAgent::new(&admin);
    let resp = agent.sign_in(CONSOLE_ADMIN, &fx.creds.password).await;
    assert_eq!(resp.status, 303, "{resp}");
    let line = set_cookie_line(&resp, "tollgate_console").expect("session cookie");
    let attrs = cookie_attributes(line);
    assert!(attrs.contains_key("httponly"), "{line}");
    assert_eq!(
        attrs.get("samesite").map(String::as_str),
        Some("Strict"),
        "{line}"
    );
    assert_eq!(
        attrs.get("path").map(String::as_str),
        Some("/console"),
        "{line}"
    );
    assert!(!attrs.contains_key("secure"), "plain HTTP: {line}");
    for path in [
        "/console/clients",
        "/console/tokens",
        "/console/scopes",
        "/console/credentials",
        "/console/explain",
        "/console/new/client",
    ] {
        let page = agent.get(path).await;
        assert_eq!(page.status, 200, "{path}: {page}");
        assert_html_page(&page);
        let csp = page.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("default-src 'none'"), "{csp}");
    }

    let mut alice = ConsoleAgent::new(&admin);
    let refused = alice.sign_in("alice", &fx.creds.password).await;
    assert_eq!(refused.status, 403, "{refused}");
    assert!(
        refused.body.contains("may not use the console"),
        "{refused}"
    );
    assert!(alice.jar.get("tollgate_console").is_none());
    let wrong = alice.sign_in(CONSOLE_ADMIN, "not-the-password").await;
    assert_eq!(wrong.status, 200, "{wrong}");
    assert!(
        wrong.body.contains("Invalid username or password"),
        "{wrong}"
    );
    assert!(alice.jar.get("tollgate_console").is_none());

    let out = agent
        .post("/console/clients", "/console/signout", &[])
        .await;
    assert_eq!(out.status, 303, "{out}");
    let after = agent.get("/console/clients").await;
    assert_eq!(after.status, 303, "signed out: {after}");
}

/// Every POST needs the session's CSRF token: none, a wrong one, or no session → 403 and
/// nothing changes. An admin:read session sees the pages (no forms to change things) and
/// its POST with its own valid token is refused 403. The sign-in form needs its CSRF
/// cookie too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csrf_and_read_only_sessions() {
    let fx = fixture().await;
    let admin_api = common::Admin::new(&fx.gw.admin_url(), &admin_token(&fx).await);
    let base = fx.gw.admin_url();
    let mut agent = ConsoleAgent::signed_in(&base, CONSOLE_ADMIN, &fx.creds.password).await;
    let fields = [
        ("name", "Forged"),
        ("type", "confidential"),
        ("grants", "client_credentials"),
    ];
    for (what, csrf) in [
        ("no token", None),
        ("a wrong token", Some("0123456789abcdef")),
    ] {
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        if let Some(t) = csrf {
            all.push(("csrf", t));
        }
        let resp = agent.post_raw("/console/clients", &all).await;
        assert_eq!(resp.status, 403, "{what}: {resp}");
        assert_html_page(&resp);
    }
    let mut stranger = ConsoleAgent::new(&base);
    let resp = stranger.post_raw("/console/clients", &fields).await;
    assert_eq!(resp.status, 403, "no session: {resp}");
    let none = admin_api.get("/admin/clients").await.json();
    assert!(!none.to_string().contains("Forged"), "{none}");

    let made = agent
        .post("/console/new/client", "/console/clients", &fields)
        .await;
    assert_eq!(made.status, 201, "{made}");
    assert!(made.body.contains("Client secret"), "{made}");
    assert!(
        made.headers
            .get("cache-control")
            .is_some_and(|v| v == "no-store")
    );

    let mut reader = ConsoleAgent::signed_in(&base, CONSOLE_READER, &fx.creds.password).await;
    let list = reader.get("/console/clients").await;
    assert!(
        list.body.contains("Forged"),
        "admin:read sees the clients: {list}"
    );
    assert!(!list.body.contains("Add client"), "{list}");
    assert!(list.body.contains("(read-only)"), "{list}");
    let forged = [
        ("name", "ByReader"),
        ("type", "public"),
        ("grants", "password"),
    ];
    let resp = reader
        .post("/console/clients", "/console/clients", &forged)
        .await;
    assert_eq!(resp.status, 403, "admin:read POST: {resp}");
    assert!(resp.body.contains("admin:read"), "{resp}");
    let clients = admin_api.get("/admin/clients").await.json();
    assert!(!clients.to_string().contains("ByReader"), "{clients}");
    // Explain only asks: a read-only session may use it.
    let explained = reader
        .post(
            "/console/explain",
            "/console/explain",
            &[("method", "GET"), ("path", "/abc/x")],
        )
        .await;
    assert_eq!(explained.status, 200, "{explained}");
    assert!(explained.body.contains("no token given"), "{explained}");

    // The sign-in form without its CSRF cookie (another site posting it).
    let mut cross = ConsoleAgent::new(&base);
    let page = cross.get("/console/signin").await;
    let csrf = Form::posting_to(&page, "/console/signin")
        .hidden_value("csrf")
        .expect("csrf");
    cross.jar.remove("tollgate_console_signin");
    let resp = cross
        .post_raw(
            "/console/signin",
            &[
                ("csrf", &csrf),
                ("username", CONSOLE_ADMIN),
                ("password", &fx.creds.password),
            ],
        )
        .await;
    assert_eq!(resp.status, 403, "{resp}");
    assert!(cross.jar.get("tollgate_console").is_none());
    let _ = OPS_CLIENT;
}

/// A client or a scope may be called `new`: its page is its own, not an "add" form (the add
/// forms live under /console/new/).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_like_console_words_have_their_pages() {
    let fx = fixture().await;
    let admin_api = common::Admin::new(&fx.gw.admin_url(), &admin_token(&fx).await);
    let made = admin_api
        .post(
            "/admin/scopes",
            &serde_json::json!({"name": "new", "description": "the scope called new", "paths": ["/new/*"]}),
        )
        .await;
    assert_eq!(made.status, 201, "{made}");
    admin_api
        .create_client(&serde_json::json!({
            "client_id": "new", "name": "Called new", "type": "confidential",
            "grants": ["client_credentials"], "scopes": ["new"]
        }))
        .await;
    let mut agent =
        ConsoleAgent::signed_in(&fx.gw.admin_url(), CONSOLE_ADMIN, &fx.creds.password).await;
    let client = agent.get("/console/clients/new").await;
    assert_eq!(client.status, 200, "{client}");
    assert!(client.body.contains("Called new"), "{client}");
    assert!(
        client.body.contains("Delete"),
        "the client's own page: {client}"
    );
    let scope = agent.get("/console/scopes/new").await;
    assert_eq!(scope.status, 200, "{scope}");
    assert!(scope.body.contains("the scope called new"), "{scope}");
    for (list, add) in [
        ("/console/clients", "/console/new/client"),
        ("/console/scopes", "/console/new/scope"),
        ("/console/tokens", "/console/new/token"),
    ] {
        let page = agent.get(list).await;
        assert!(
            page.body.contains(&format!("href=\"{add}")),
            "{list}: {page}"
        );
        assert_eq!(agent.get(add).await.status, 200, "{add}");
    }
}

/// Wrong passwords on the console's sign-in are throttled like the login page's: a 429
/// page saying how long to wait, with Retry-After; then even the right password waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_is_throttled() {
    let fx = fixture().await;
    let mut agent = ConsoleAgent::new(&fx.gw.admin_url());
    let mut throttled = None;
    for _ in 0..40 {
        let resp = agent.sign_in(CONSOLE_ADMIN, "guess").await;
        if resp.status == 429 {
            throttled = Some(resp);
            break;
        }
        assert_eq!(resp.status, 200, "{resp}");
    }
    let resp = throttled.expect("40 wrong passwords never throttled");
    assert!(resp.header("retry-after").is_some(), "{resp}");
    assert!(
        resp.body.contains("Too many failed attempts. Try again in"),
        "{resp}"
    );
    let right = agent.sign_in(CONSOLE_ADMIN, &fx.creds.password).await;
    assert_eq!(
        right.status, 429,
        "the right password during the lock: {right}"
    );
}

/// One exchange with the HTTPS admin listener trusting `ca`.
async fn admin_https(
    fx: &Fixture,
    ca: &TestCa,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> common::TlsExchange {
    let addr = fx
        .gw
        .admin_url()
        .trim_start_matches("http://")
        .parse()
        .expect("admin addr");
    https_request(
        addr,
        &[ca.cert.as_path()],
        &["http/1.1"],
        method,
        path,
        headers,
        Bytes::from(body.to_owned()),
    )
    .await
    .unwrap_or_else(|e| panic!("{method} {path} over HTTPS: {e}"))
}

/// `[admin.tls]`: the admin listener (API, health and console) speaks HTTPS only; the
/// console's cookies are Secure; a new certificate serves new connections after SIGHUP;
/// the CLI reaches it with `--admin-ca`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_tls_serves_https_and_rereads_its_certificate() {
    let dir = TempDir::new("admin-tls");
    let ca = TestCa::new(dir.path(), "admin");
    let live: Leaf = ca.issue("admin-live");
    let section = format!(
        "\n[admin.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        live.cert.display(),
        live.key.display()
    );
    let fx = Fixture::start_with_unready(Store::memory(), |c| {
        add_ops_client(c);
        add_console_users(c);
        c.extra.push_str(&section);
    })
    .await;
    let ready = poll(Duration::from_secs(10), || async {
        let addr = fx
            .gw
            .admin_url()
            .trim_start_matches("http://")
            .parse()
            .ok()?;
        let x = https_request(
            addr,
            &[ca.cert.as_path()],
            &["h2"],
            "GET",
            "/readyz",
            &[],
            Bytes::new(),
        )
        .await
        .ok()?;
        (x.resp.status == 200).then_some(x)
    })
    .await
    .expect("/readyz over HTTPS");
    assert_eq!(ready.alpn.as_deref(), Some("h2"));
    assert_eq!(ready.peer_cert, live.der());
    assert!(
        fx.gw.readyz().await.is_none(),
        "plain HTTP must not be answered"
    );

    let page = admin_https(&fx, &ca, "GET", "/console/signin", &[], "")
        .await
        .resp;
    assert_html_page(&page);
    let jar_line = set_cookie_line(&page, "tollgate_console_signin")
        .expect("sign-in cookie")
        .to_owned();
    assert!(
        cookie_attributes(&jar_line).contains_key("secure"),
        "{jar_line}"
    );
    let csrf = Form::posting_to(&page, "/console/signin")
        .hidden_value("csrf")
        .expect("csrf");
    let cookie_pair = jar_line.split(';').next().unwrap_or_default().to_owned();
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("csrf", csrf.as_str()),
            ("username", CONSOLE_ADMIN),
            ("password", &fx.creds.password),
        ])
        .finish();
    let signed = admin_https(
        &fx,
        &ca,
        "POST",
        "/console/signin",
        &[
            ("cookie", &cookie_pair),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        &body,
    )
    .await
    .resp;
    assert_eq!(signed.status, 303, "{signed}");
    let line = set_cookie_line(&signed, "tollgate_console").expect("session cookie");
    let attrs = cookie_attributes(line);
    assert!(
        attrs.contains_key("secure") && attrs.contains_key("httponly"),
        "{line}"
    );

    // The CLI, trusting the test CA.
    let url = format!(
        "https://localhost:{}",
        fx.gw.admin_url().rsplit(':').next().unwrap_or_default()
    );
    let secret = fx.creds.secret.clone();
    let ca_path = ca.cert.display().to_string();
    let args = [
        "--admin-url",
        &url,
        "--admin-ca",
        &ca_path,
        "--url",
        &fx.gw.base_url(),
        "--client-id",
        OPS_CLIENT,
        "--client-secret",
        &secret,
        "--json",
        "clients",
        "list",
    ];
    let run = tollgate(&args, &[]).await;
    run.ok();
    assert!(run.json()["clients"].is_array(), "{run}");
    let mut untrusted: Vec<&str> = args.to_vec();
    untrusted.drain(2..4);
    let run = tollgate(&untrusted, &[]).await;
    assert_ne!(run.code, Some(0), "the test CA is not a system root: {run}");
    // With --config instead of --admin-url: https:// because of [admin.tls], the address
    // from [admin] listen (the file the CLI reads, with the port this gateway got).
    let admin_port = fx
        .gw
        .admin_url()
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let cli_config = dir.path().join("cli-gateway.toml");
    let with_port = fx.config.replacen(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        &format!("[admin]\nlisten = \"127.0.0.1:{admin_port}\""),
        1,
    );
    assert_ne!(with_port, fx.config, "the admin listen line moved");
    std::fs::write(&cli_config, with_port).expect("write the CLI's config");
    let cli_config = cli_config.display().to_string();
    let mut by_config: Vec<&str> = vec!["--config", &cli_config];
    by_config.extend_from_slice(&args[2..]);
    let env: Vec<(&str, &str)> = fx
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let run = tollgate(&by_config, &env).await;
    run.ok();
    assert!(run.json()["clients"].is_array(), "{run}");

    let next = ca.issue("admin-next");
    for (src, dst) in [(&next.key, &live.key), (&next.cert, &live.cert)] {
        let tmp = dst.with_extension("new");
        std::fs::copy(src, &tmp).expect("copy");
        std::fs::rename(&tmp, dst).expect("rename");
    }
    let second = live.der();
    fx.gw.signal("HUP");
    let switched = poll(Duration::from_secs(3), || async {
        let x = admin_https(&fx, &ca, "GET", "/healthz", &[], "").await;
        (x.peer_cert == second).then_some(())
    })
    .await;
    assert!(
        switched.is_some(),
        "the admin listener kept the old certificate after SIGHUP"
    );
}
