//! End-to-end harness: drives the `tollgate` binary as a black box, only through SPEC.md's
//! names, against real processes: a `redis-server` on a free port, a recording upstream HTTP
//! server, and the gateway itself on port 0.
//!
//! # Layout
//! - `gateway.rs`: spawn `tollgate run`, wait for its `listening` log lines, capture its logs.
//! - `redis_server.rs`: a private `redis-server` that can be stopped and started again.
//! - `redis_cluster.rs`: a private six-node Redis Cluster: failover, pause, slot moves.
//! - `redis_tls.rs`: a private TLS-only `redis-server` with its own test CA.
//! - `upstream.rs`: a hyper server that records every request it receives.
//! - `provider.rs`: an OAuth 2.0 token provider (token, refresh, authorize pages, a protected
//!   API) for the outbound-credential tests, with switchable failure modes.
//! - `client.rs`: small HTTP helpers (hyper client, and raw TCP for verbatim request lines).
//! - `load.rs` / `sick.rs`: request loops that record every answer; misbehaving upstreams.
//! - `admin.rs`: the admin API with an ops client's `admin` token; `/metrics` parsing.
//! - `tls.rs`: test certificates (openssl CLI), an HTTPS client reporting ALPN, a TLS upstream.
//! - `config.rs`: renders a typical `gateway.toml`; credentials and store sections.
//! - `oauth.rs`: a user agent for the login and consent pages (cookie jar), PKCE, redirect
//!   parsing, and the clients the authorization tests register.
//! - `html.rs`: a small HTML form parser and the headers every page must carry.
//! - `console.rs`: the console's pages from a plain HTTP client (cookie jar, CSRF tokens).
//! - `webdriver.rs`: a minimal W3C WebDriver client driving headless Chromium.
//! - this file: the [`Fixture`] that ties them together, polling and assertion helpers.

// Every test file compiles this module on its own and uses a different part of it.
#![allow(dead_code, unused_imports, unused_macros)]

mod admin;
mod cli;
mod client;
mod config;
mod console;
mod gateway;
mod html;
mod load;
mod oauth;
mod provider;
mod redis_cluster;
mod redis_server;
mod redis_tls;
mod sick;
mod tls;
mod token;
mod upstream;
mod webdriver;

pub use admin::{
    Admin, Metrics, OPS_CLIENT, Sample, add_ops_client, admin_call, admin_fixture, admin_token,
    assert_no_store, metrics,
};
pub use cli::{Run, tollgate, tollgate_in};
pub use client::{Resp, basic_auth, get, post_form, post_form_from, raw, raw_get, send, send_from};
pub use config::{Creds, GatewayConfig, Store, TlsCa, argon2_hash, client_toml, toml_list};
pub use console::{CONSOLE_ADMIN, CONSOLE_READER, ConsoleAgent, add_console_users};
pub use gateway::{Gateway, assert_invalid_token};
pub use html::{Element, Form, assert_html_page, html_unescape};
pub use load::{Answered, Load, Pooled, pooled_client, try_issue, try_send};
pub use oauth::{
    Agent, CookieJar, Pkce, add_auth_clients, authorize_query, code_params, cookie_attributes,
    exchange_code, fragment_params, location, query_params, set_cookie_line, without_query,
};
pub use provider::{
    ApiRequest, Mode, PROVIDER_CLIENT_ID, PROVIDER_CLIENT_SECRET, PROVIDER_PASSWORD, PROVIDER_USER,
    Provider, ProviderClient, Shape, TokenRequest,
};
pub use redis_cluster::{RedisCluster, SlotMove, Topology};
pub use redis_server::Redis;
pub use redis_tls::RedisTls;
pub use sick::{FIRST_BYTES, Reply, Sick, SickUpstream, TlsClient};
pub use tls::{
    Leaf, TestCa, TlsExchange, TlsUpstream, client_config, connect_tls, https_request, load_certs,
};
pub use token::{
    assert_oauth_error, assert_token_endpoint_headers, assert_token_response, password_attempt,
    refresh,
};
pub use upstream::{Recorded, Upstream, dead_port_url};
pub use webdriver::{Chromedriver, WebDriver};

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// Runs an async test body once per store backend, as two tests `NAME::memory` and
/// `NAME::redis`. The body is `async fn NAME(store: Store)` in the calling file.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                super::$name(crate::common::Store::memory()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::$name(crate::common::Store::redis().await).await
            }
        }
    )*};
}

/// The binary under test: Cargo's path when these files live in the tollgate crate,
/// otherwise `$TOLLGATE_BIN` (for developing the harness outside the crate).
pub fn tollgate_bin() -> PathBuf {
    if let Some(path) = option_env!("CARGO_BIN_EXE_tollgate") {
        return PathBuf::from(path);
    }
    match std::env::var_os("TOLLGATE_BIN") {
        Some(path) => PathBuf::from(path),
        None => panic!("set TOLLGATE_BIN to the tollgate binary (Cargo sets the path in-crate)"),
    }
}

/// `n` random bytes from the OS, hex encoded.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("OS random generator");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A made-up token with the shape of a real one (256 bits, base64url), known to no store.
pub fn random_token() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("OS random generator");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A directory of our own under the system temp dir, removed on drop unless the test failed
/// (then it is kept and its path printed, for the logs and config inside).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "tollgate-e2e-{tag}-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            random_hex(4)
        ));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Calls `check` every 20 ms until it returns `Some` or `within` has passed (one last call
/// is always made at the deadline). Used instead of fixed sleeps everywhere.
pub async fn poll<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A gateway in front of one recording upstream, configured by [`GatewayConfig`].
/// Fields drop in order: the gateway is killed before its upstream and store go away.
pub struct Fixture {
    pub gw: Gateway,
    pub up: Upstream,
    pub store: Store,
    pub creds: Creds,
    /// The rendered config and environment `gw` runs on (for [`Fixture::start_node`]).
    pub config: String,
    pub env: Vec<(String, String)>,
}

impl Fixture {
    pub async fn start(store: Store) -> Fixture {
        Fixture::start_with(store, |_| {}).await
    }

    /// Starts with the typical config after `tweak` has adjusted it.
    pub async fn start_with(store: Store, tweak: impl FnOnce(&mut GatewayConfig)) -> Fixture {
        Fixture::launch(store, tweak, true).await
    }

    /// Like [`Fixture::start_with`] but returns once the listeners are open, ready or not
    /// (for an admin listener on HTTPS, whose `/readyz` the harness cannot poll in plain HTTP).
    pub async fn start_with_unready(
        store: Store,
        tweak: impl FnOnce(&mut GatewayConfig),
    ) -> Fixture {
        Fixture::launch(store, tweak, false).await
    }

    async fn launch(store: Store, tweak: impl FnOnce(&mut GatewayConfig), ready: bool) -> Fixture {
        let up = Upstream::start("up").await;
        let creds = Creds::random();
        let mut config = GatewayConfig::new(&store, &up.url(), &creds);
        tweak(&mut config);
        let rendered = config.render();
        let gw = if ready {
            Gateway::start(&rendered, &config.env).await
        } else {
            Gateway::start_unready(&rendered, &config.env).await
        };
        Fixture {
            gw,
            up,
            store,
            creds,
            config: rendered,
            env: config.env,
        }
    }

    /// Another gateway node on the same config (same store, clients, users, upstream).
    /// Only meaningful with the Redis store, which the nodes then share. The config must
    /// listen on port 0 (not [`GatewayConfig::use_fixed_port`]).
    pub async fn start_node(&self) -> Gateway {
        assert!(
            self.store.is_redis(),
            "a second node needs the shared Redis store"
        );
        Gateway::start(&self.config, &self.env).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gw.base_url())
    }

    pub fn token_url(&self) -> String {
        self.url("/oauth/token")
    }

    /// `POST /oauth/token` authenticated with HTTP Basic as `client_id` (all test clients
    /// share the fixture's secret).
    pub async fn token_request(&self, client_id: &str, params: &[(&str, &str)]) -> Resp {
        post_form(
            &self.token_url(),
            params,
            Some((client_id, &self.creds.secret)),
        )
        .await
    }

    /// A client_credentials token for `client_id`; panics unless the endpoint says 200.
    pub async fn client_token_for(&self, client_id: &str, scope: Option<&str>) -> Value {
        let mut params = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            params.push(("scope", scope));
        }
        let resp = self.token_request(client_id, &params).await;
        assert_eq!(
            resp.status, 200,
            "client_credentials for {client_id}: {resp}"
        );
        resp.json()
    }

    /// A client_credentials access token for the `photoprint` client.
    pub async fn client_token(&self, scope: Option<&str>) -> String {
        access_token(&self.client_token_for("photoprint", scope).await)
    }

    /// A password-grant token response for alice through `client_id`.
    pub async fn password_token_for(&self, client_id: &str, scope: &str) -> Value {
        let resp = self
            .token_request(
                client_id,
                &[
                    ("grant_type", "password"),
                    ("username", "alice"),
                    ("password", &self.creds.password),
                    ("scope", scope),
                ],
            )
            .await;
        assert_eq!(resp.status, 200, "password grant via {client_id}: {resp}");
        resp.json()
    }

    /// `GET path` on the public listener, with a bearer token when given.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        get_with_token(&self.url(path), token).await
    }
}

/// `GET url`, with `Authorization: Bearer token` when given.
pub async fn get_with_token(url: &str, token: Option<&str>) -> Resp {
    match token {
        Some(token) => get(url, &[("authorization", &format!("Bearer {token}"))]).await,
        None => get(url, &[]).await,
    }
}

/// Polls `GET url` with `token` until it answers `status`; returns how long that took,
/// or `None` if it never did within `within`.
pub async fn time_until_status(
    url: &str,
    token: &str,
    status: u16,
    within: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    poll(within, || async move {
        (get_with_token(url, Some(token)).await.status == status).then(|| start.elapsed())
    })
    .await
}

/// `access_token` of a token response.
pub fn access_token(body: &Value) -> String {
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token in {body}"))
        .to_owned()
}

/// `refresh_token` of a token response.
pub fn refresh_token(body: &Value) -> String {
    body["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no refresh_token in {body}"))
        .to_owned()
}

/// Asserts status, a JSON body with `error` = `error` and a string `error_description` if
/// present (SPEC §4 and RFC 6749 §5.2 bodies).
pub fn assert_error(resp: &Resp, status: u16, error: &str) {
    assert_eq!(resp.status, status, "expected {status} {error}, got {resp}");
    let body = resp.json();
    assert_eq!(body["error"], error, "error code in {resp}");
    if let Some(description) = body.get("error_description") {
        assert!(
            description.is_string(),
            "error_description must be a string: {resp}"
        );
    }
}

/// Splits `Scheme k="v", k2=v2` into the scheme and its auth-params (names lower-cased).
pub fn parse_challenge(header: &str) -> (String, BTreeMap<String, String>) {
    let header = header.trim();
    let (scheme, mut rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        let Some((name, after)) = rest.split_once('=') else {
            break;
        };
        let name = name.trim().to_ascii_lowercase();
        let mut value = String::new();
        if let Some(quoted) = after.strip_prefix('"') {
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            rest = &quoted[end..];
        } else {
            let end = after.find(',').unwrap_or(after.len());
            value = after[..end].trim().to_owned();
            rest = &after[end..];
        }
        params.insert(name, value);
    }
    (scheme.to_owned(), params)
}

/// Asserts `WWW-Authenticate: Bearer realm="tollgate", error="<error>"...` and returns its
/// auth-params for further checks.
pub fn assert_bearer_challenge(resp: &Resp, error: &str) -> BTreeMap<String, String> {
    let header = resp
        .header("www-authenticate")
        .unwrap_or_else(|| panic!("no WWW-Authenticate in {resp}"));
    let (scheme, params) = parse_challenge(header);
    assert!(
        scheme.eq_ignore_ascii_case("bearer"),
        "scheme in {header:?}"
    );
    assert_eq!(
        params.get("realm").map(String::as_str),
        Some("tollgate"),
        "{header:?}"
    );
    assert_eq!(
        params.get("error").map(String::as_str),
        Some(error),
        "{header:?}"
    );
    params
}

/// A space-separated scope string as a set.
pub fn scope_set(scopes: &str) -> BTreeSet<String> {
    scopes.split_whitespace().map(str::to_owned).collect()
}

/// Asserts a token looks like SPEC §5 asks: at least 256 bits as base64url (43 characters,
/// `=` padding tolerated).
pub fn assert_token_shape(token: &str) {
    let unpadded = token.trim_end_matches('=');
    assert!(
        unpadded.len() >= 43,
        "token {} chars long, want >= 43",
        token.len()
    );
    assert!(
        unpadded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "token is not base64url"
    );
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_secs()).expect("sane clock")
}

/// Parses an RFC 3339 UTC timestamp ending in `Z` (`2026-11-23T10:00:00Z`, fraction
/// allowed) to Unix seconds; `None` for anything else.
pub fn parse_rfc3339_utc(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut date_parts = date.split('-');
    let year: i64 = fixed_digits(date_parts.next()?, 4)?;
    let month: i64 = fixed_digits(date_parts.next()?, 2)?;
    let day: i64 = fixed_digits(date_parts.next()?, 2)?;
    if date_parts.next().is_some() {
        return None;
    }
    let (time, fraction) = time.split_once('.').unwrap_or((time, "0"));
    if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut time_parts = time.split(':');
    let hour: i64 = fixed_digits(time_parts.next()?, 2)?;
    let minute: i64 = fixed_digits(time_parts.next()?, 2)?;
    let second: i64 = fixed_digits(time_parts.next()?, 2)?;
    if time_parts.next().is_some()
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

fn fixed_digits(s: &str, len: usize) -> Option<i64> {
    if s.len() != len || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[test]
fn harness_parses_timestamps_and_challenges() {
    assert_eq!(parse_rfc3339_utc("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        parse_rfc3339_utc("2026-11-23T10:00:00Z"),
        Some(1_795_428_000)
    );
    assert_eq!(
        parse_rfc3339_utc("2026-11-23T10:00:00.123Z"),
        Some(1_795_428_000)
    );
    assert_eq!(parse_rfc3339_utc("2026-11-23T10:00:00+00:00"), None);
    assert_eq!(parse_rfc3339_utc("2026-11-23 10:00:00Z"), None);
    let (scheme, params) =
        parse_challenge(r#"Bearer realm="tollgate", error="insufficient_scope", scope="a b", x=y"#);
    assert_eq!(scheme, "Bearer");
    assert_eq!(params["realm"], "tollgate");
    assert_eq!(params["scope"], "a b");
    assert_eq!(params["x"], "y");
}
