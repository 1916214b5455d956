//! End-to-end: clients written against the seed platforms keep working (SPEC §5 "Existing
//! clients, unchanged"), called as those clients call them, with a plain HTTP client: the
//! webMethods paths (`[oauth] aliases`), FlowWright's form and fields, JSON bodies (seed
//! 004); and a config whose route no scope reaches yet still starts (SPEC §2).

mod common;

use std::time::Duration;

use common::{
    Admin, Fixture, GatewayConfig, Pkce, Resp, Store, access_token, add_auth_clients,
    add_ops_client, admin_token, assert_oauth_error, assert_token_response, code_params,
    exchange_code, location, parse_rfc3339_utc, poll, post_form, query_params, refresh_token, send,
};
use serde_json::{Value, json};

const TOKEN_ALIAS: &str = "/integration/rest/oAuth/getToken";
const AUTHORIZE_ALIAS: &str = "/integration/rest/oAuth/authorize";

/// The typical config, the authorization clients, the ops client, both aliases, and:
/// - `legacy`: public, password + refresh_token, FlowWright fields; `[oauth].default_client`,
///   so a request naming no client is its;
/// - `fw`: confidential, client_credentials, FlowWright fields;
/// - `fw-forever`: as `fw`, tokens that never expire.
fn compat(c: &mut GatewayConfig) {
    add_auth_clients(c);
    add_ops_client(c);
    c.oauth.push((
        "aliases".into(),
        format!("{{ \"{TOKEN_ALIAS}\" = \"token\", \"{AUTHORIZE_ALIAS}\" = \"authorize\" }}"),
    ));
    c.set_oauth("default_client", "legacy");
    c.extra.push_str(
        "\n[[clients]]\nclient_id = \"legacy\"\nname = \"Legacy\"\ntype = \"public\"\n\
         grants = [\"password\", \"refresh_token\"]\nscopes = [\"reports\"]\n\
         token_response = \"flowwright\"\n",
    );
    let fw = "token_response = \"flowwright\"";
    c.add_client("fw", &["client_credentials"], &["reports"], fw);
    let forever = format!("{fw}\naccess_token_ttl = \"never\"");
    c.add_client(
        "fw-forever",
        &["client_credentials"],
        &["reports"],
        &forever,
    );
}

/// Parses `Tue, 01 Dec 2026 10:00:00 GMT` (RFC 1123 as HTTP dates write it: two-digit day,
/// English names, GMT) to Unix seconds, checking that the weekday is the date's.
fn parse_rfc1123(s: &str) -> Option<i64> {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (weekday, rest) = s.split_once(", ")?;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts[..] else {
        return None;
    };
    let digits =
        |t: &str, n: usize| (t.len() == n && t.bytes().all(|b| b.is_ascii_digit())).then_some(());
    digits(day, 2)?;
    digits(year, 4)?;
    let month = MONTHS.iter().position(|m| *m == month)? + 1;
    let as_rfc3339 = format!("{year}-{month:02}-{day}T{time}Z");
    let at = parse_rfc3339_utc(&as_rfc3339)?;
    (DAYS[at.div_euclid(86_400).rem_euclid(7) as usize] == weekday).then_some(at)
}

/// The FlowWright fields of `body` hold the same instants as the standard ones: `.issued` is
/// `issued_at`, `.expires` is `expires_at` (`expires_in` after `.issued`), and
/// `refreshTokenExpire` is `refresh_token_expires_at`; each is absent where its twin is.
fn assert_flowwright_fields(body: &Value) {
    let date = |name: &str| {
        body.get(name).map(|v| {
            let text = v
                .as_str()
                .unwrap_or_else(|| panic!("{name} not a string: {body}"));
            parse_rfc1123(text).unwrap_or_else(|| panic!("{name} {text:?} is not RFC 1123 GMT"))
        })
    };
    let twin = |name: &str| {
        body.get(name)
            .map(|v| parse_rfc3339_utc(v.as_str().unwrap_or_default()).expect(name))
    };
    let issued = date(".issued").unwrap_or_else(|| panic!("no .issued: {body}"));
    assert_eq!(Some(issued), twin("issued_at"), "{body}");
    assert_eq!(date(".expires"), twin("expires_at"), "{body}");
    if let Some(expires) = date(".expires") {
        assert_eq!(
            Some(expires - issued),
            body["expires_in"].as_i64(),
            "{body}"
        );
    }
    assert_eq!(
        date("refreshTokenExpire"),
        twin("refresh_token_expires_at"),
        "{body}"
    );
    assert_eq!(
        body.get("refreshTokenExpire").is_some(),
        body.get("refresh_token").is_some(),
        "{body}"
    );
}

/// `POST url` with `body` as `application/json`.
async fn post_json(url: &str, body: &str, basic: Option<(&str, &str)>) -> Resp {
    let auth = basic.map(|(id, secret)| common::basic_auth(id, secret));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("authorization", auth));
    }
    send("POST", url, &headers, body.to_owned()).await
}

/// FlowWright's token request: a form with only `username` and `password`, at the
/// webMethods path; the answer has FlowWright's fields as RFC 1123 dates beside the
/// standard ones, its refresh (`grant_type=refresh_token`, same URL) too, and the token
/// works at the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flowwright_password_form_at_the_token_alias() {
    let fx = Fixture::start_with(Store::memory(), compat).await;
    let url = fx.url(TOKEN_ALIAS);
    let form = [
        ("username", "alice"),
        ("password", fx.creds.password.as_str()),
    ];
    let resp = post_form(&url, &form, None).await;
    let body = assert_token_response(&resp, Some(600));
    assert_flowwright_fields(&body);
    let shape = body[".issued"].as_str().expect(".issued");
    assert!(shape.ends_with(" GMT") && shape.len() == 29, "{shape:?}");
    assert_eq!(
        fx.get("/abc/x", Some(&access_token(&body))).await.status,
        200
    );
    let seen = fx.up.only_request();
    assert_eq!(seen.header("x-auth-client-id"), Some("legacy"));
    assert_eq!(seen.header("x-auth-subject"), Some("alice"));

    let rt = refresh_token(&body);
    let again = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt.as_str()),
    ];
    let body = assert_token_response(&post_form(&url, &again, None).await, Some(600));
    assert_flowwright_fields(&body);

    // Only the pair makes the guess: without a password, grant_type is still required.
    let resp = post_form(&url, &[("username", "alice")], None).await;
    assert_oauth_error(&resp, 400, "invalid_request");
    // A wrong password is the password grant's own error.
    let resp = post_form(&url, &[("username", "alice"), ("password", "nope")], None).await;
    assert_oauth_error(&resp, 400, "invalid_grant");
}

/// Without a refresh token there is no `refreshTokenExpire`; a token that never expires has
/// no `.expires` (as it has no `expires_in`); a standard client gets none of the three; and
/// `POST /admin/tokens` answers a FlowWright client with them too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flowwright_fields_follow_the_standard_ones() {
    let fx = Fixture::start_with(Store::memory(), compat).await;
    let grant = [("grant_type", "client_credentials")];
    let body = fx.client_token_for("fw", None).await;
    assert_flowwright_fields(&body);
    assert!(
        body.get(".expires").is_some() && body.get("refreshTokenExpire").is_none(),
        "{body}"
    );

    let body = assert_token_response(&fx.token_request("fw-forever", &grant).await, None);
    assert_flowwright_fields(&body);
    assert!(body.get(".expires").is_none(), "{body}");

    let body = fx.password_token_for("photoprint", "reports").await;
    for name in [".issued", ".expires", "refreshTokenExpire"] {
        assert!(
            body.get(name).is_none(),
            "standard client got {name}: {body}"
        );
    }

    let admin = Admin::new(&fx.gw.admin_url(), &admin_token(&fx).await);
    let resp = admin
        .post("/admin/tokens", &json!({"client_id": "fw", "days": 2}))
        .await;
    assert_eq!(resp.status, 201, "{resp}");
    let body = resp.json();
    assert_flowwright_fields(&body);
    assert_eq!(body["expires_in"], 2 * 86_400, "{body}");
}

/// A JSON object of strings is read like the form, at either path, with client
/// authentication in it or by Basic; anything else JSON is `invalid_request`, a repeated
/// key included, and a body over 64 KiB is 413 as for forms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_bodies_are_read_like_the_form() {
    let fx = Fixture::start_with(Store::memory(), compat).await;
    let secret = fx.creds.secret.clone();
    let good = json!({"grant_type": "client_credentials", "client_id": "photoprint",
        "client_secret": secret, "scope": "reports"})
    .to_string();
    for url in [fx.token_url(), fx.url(TOKEN_ALIAS)] {
        let body = assert_token_response(&post_json(&url, &good, None).await, Some(600));
        assert_eq!(body["scope"], "reports");
    }
    let basic = Some(("photoprint", secret.as_str()));
    let cc = r#"{"grant_type":"client_credentials"}"#;
    assert_token_response(&post_json(&fx.token_url(), cc, basic).await, Some(600));
    let flowwright = json!({"username": "alice", "password": fx.creds.password}).to_string();
    let body = assert_token_response(
        &post_json(&fx.url(TOKEN_ALIAS), &flowwright, None).await,
        Some(600),
    );
    assert_flowwright_fields(&body);

    let bad = [
        r#"{"grant_type":"client_credentials","expires":5}"#.to_owned(),
        r#"{"grant_type":"client_credentials","scope":null}"#.to_owned(),
        r#"{"grant_type":["client_credentials"]}"#.to_owned(),
        r#"["grant_type","client_credentials"]"#.to_owned(),
        r#""grant_type=client_credentials""#.to_owned(),
        r#"{"grant_type":"client_credentials""#.to_owned(),
        r#"{"grant_type":"client_credentials","scope":"reports","scope":"secret"}"#.to_owned(),
    ];
    for body in &bad {
        let resp = post_json(&fx.token_url(), body, basic).await;
        assert_oauth_error(&resp, 400, "invalid_request");
        assert!(
            resp.json()["error_description"].is_string(),
            "{body}: {resp}"
        );
    }
    let huge = json!({"grant_type": "client_credentials", "pad": "x".repeat(70_000)}).to_string();
    assert_eq!(post_json(&fx.token_url(), &huge, basic).await.status, 413);
    // Neither form nor JSON.
    let resp = send(
        "POST",
        &fx.token_url(),
        &[("content-type", "text/plain")],
        "grant_type=x",
    )
    .await;
    assert_oauth_error(&resp, 400, "invalid_request");
}

/// The authorize alias runs the whole code flow (login, consent, redirect with `iss`), its
/// code is exchanged at the token alias; the canonical paths keep working; and the
/// metadata names only the canonical paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorize_alias_and_metadata_keep_the_canonical_paths() {
    let fx = Fixture::start_with(Store::memory(), compat).await;
    let cb = fx.callback();
    let pkce = Pkce::random();
    let params = code_params("webapp", &cb, "reports", "st-1", &pkce);
    let mut agent = fx.agent();
    let page = agent
        .get(&format!(
            "{AUTHORIZE_ALIAS}?{}",
            common::authorize_query(&params)
        ))
        .await;
    assert_eq!(page.status, 200, "login page at the alias: {page}");
    let resp = agent.login(&page, "alice", &fx.creds.password).await;
    assert_eq!(resp.status, 303, "{resp}");
    let consent = agent.follow(&resp).await;
    let resp = agent.consent(&consent, None, "grant").await;
    assert_eq!(resp.status, 303, "{resp}");
    let back = query_params(location(&resp));
    assert_eq!(
        back.get("state").map(String::as_str),
        Some("st-1"),
        "{resp}"
    );
    let code = back
        .get("code")
        .unwrap_or_else(|| panic!("no code: {resp}"));
    let resp = exchange_code(
        &fx.url(TOKEN_ALIAS),
        "webapp",
        Some(&fx.creds.secret),
        code,
        &cb,
        Some(&pkce.verifier),
    )
    .await;
    let body = assert_token_response(&resp, Some(600));
    assert!(
        body.get(".issued").is_none(),
        "webapp is a standard client: {body}"
    );
    fx.client_token_for("photoprint", None).await;

    let meta = fx
        .get("/.well-known/oauth-authorization-server", None)
        .await;
    assert_eq!(meta.status, 200, "{meta}");
    let meta = meta.json();
    let base = "http://127.0.0.1:1/oauth";
    assert_eq!(meta["token_endpoint"], format!("{base}/token"), "{meta}");
    assert_eq!(
        meta["authorization_endpoint"],
        format!("{base}/authorize"),
        "{meta}"
    );
    assert!(!meta.to_string().contains("integration"), "{meta}");
    // An alias is one exact path: nothing below it, and GET is not POST.
    assert_eq!(fx.get(&format!("{TOKEN_ALIAS}/x"), None).await.status, 404);
    assert_eq!(fx.get(TOKEN_ALIAS, None).await.status, 405);
}

/// A route no scope covers does not stop the gateway (SPEC §2): it starts, logs the
/// warning `check` prints, serves the rest, and logs it again on SIGHUP and on
/// `POST /admin/reload`; a reload that adds a scope for it makes it reachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_starts_with_an_unreachable_route_and_warns_on_every_load() {
    let route = "\n[[routes]]\nname = \"later\"\npath = \"/later/*\"\nupstreams = [\"@UP@\"]\n";
    let fx = Fixture::start_with(Store::memory(), |c| {
        add_ops_client(c);
        let route = route.replace("@UP@", &c.upstream);
        c.extra.push_str(&route);
    })
    .await;
    let warning = "warning: route \"later\" is unreachable: auth = \"bearer\" but no scope covers any path of \"/later/*\"";
    // The gateway logs JSON lines here: the warning is a WARN whose message is `check`'s line.
    let warnings = || -> Vec<String> {
        let lines = fx.gw.logs();
        let parsed = lines
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok());
        parsed
            .filter(|l| l["level"] == "WARN")
            .filter_map(|l| l["fields"]["message"].as_str().map(str::to_owned))
            .filter(|m| m.contains(warning))
            .collect()
    };
    let count = || warnings().len();
    // Log lines reach the test through a log thread and a pipe: wait for them.
    let logged = |n: usize| {
        poll(Duration::from_secs(10), move || async move {
            (count() == n).then_some(())
        })
    };
    assert!(
        logged(1).await.is_some(),
        "no warning at start: {:#?}",
        fx.gw.logs()
    );
    let first = warnings();
    assert_eq!(first.len(), 1, "{:#?}", fx.gw.logs());
    let (at, _) = first[0].split_once(": warning: ").expect("located");
    let position: Vec<&str> = at.rsplitn(3, ':').collect();
    assert!(position[2].ends_with("gateway.toml"), "{at}");
    assert!(
        position[..2].iter().all(|n| n.parse::<u32>().is_ok()),
        "{at}"
    );
    let token = fx.client_token(Some("reports")).await;
    assert_eq!(fx.get("/abc/x", Some(&token)).await.status, 200);
    assert_eq!(fx.get("/later/x", Some(&token)).await.status, 403);

    fx.gw.signal("HUP");
    assert!(
        logged(2).await.is_some(),
        "no warning on SIGHUP: {:#?}",
        fx.gw.logs()
    );
    let admin = Admin::new(&fx.gw.admin_url(), &admin_token(&fx).await);
    let resp = admin.post("/admin/reload", &json!({})).await;
    assert_eq!(resp.status, 200, "{resp}");
    assert!(
        logged(3).await.is_some(),
        "no warning on /admin/reload: {:#?}",
        fx.gw.logs()
    );

    let path = fx.gw.config_path();
    let file = std::fs::read_to_string(&path).expect("config");
    let scope = "\n[[scopes]]\nname = \"later\"\npaths = [\"/later/*\"]\n";
    let file = file.replace(
        "scopes = [\"reports\", \"secret\", \"publish\", \"infra\"]",
        "scopes = [\"reports\", \"secret\", \"publish\", \"infra\", \"later\"]",
    );
    std::fs::write(&path, format!("{file}{scope}")).expect("write config");
    let resp = admin.post("/admin/reload", &json!({})).await;
    assert_eq!(resp.status, 200, "{resp}");
    let token = fx.client_token(Some("later")).await;
    assert_eq!(fx.get("/later/x", Some(&token)).await.status, 200);
}
