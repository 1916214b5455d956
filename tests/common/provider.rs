//! A real OAuth 2.0 token provider (hyper 1.x, HTTP/1.1) for the outbound-credential tests
//! (SPEC §8), where Tollgate is the *client*: token endpoints at `/token` and `/refresh`, an
//! authorization page at `/authorize`, and a protected API at `/api/*` that accepts only
//! this provider's live access tokens. Tests switch how the token endpoints answer (errors,
//! wrong formats, slowness, hangups) and read back every request.
//!
//! `provider/state.rs` keeps the tokens and applies the grant rules, `provider/pages.rs`
//! serves the authorization pages, `provider/token.rs` the token endpoints,
//! `provider/tests.rs` is the self-test.

mod pages;
mod state;
mod tests;
mod token;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};

use crate::common::random_token;
use state::State;
use token::{Hangup, token_endpoint};

/// The client Tollgate is registered as at the provider.
pub const PROVIDER_CLIENT_ID: &str = "tollgate";
pub const PROVIDER_CLIENT_SECRET: &str = "provider-secret";
/// The resource owner of the password grant (and the default user of the consent page).
pub const PROVIDER_USER: &str = "svc";
pub const PROVIDER_PASSWORD: &str = "svc-password";

/// How `/token` and `/refresh` answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Apply the grant rules and answer as a correct provider does.
    Normal,
    /// As `Normal`, after this delay.
    Slow(Duration),
    /// This status with a plain-text body.
    Status(u16),
    /// `{"error": code}` with 400 (401 for `invalid_client`).
    OAuthError(&'static str),
    /// 200 with an HTML page (a login wall, a misconfigured URL).
    Html,
    /// 200 `application/x-www-form-urlencoded` `access_token=...&token_type=bearer`.
    FormEncoded,
    /// 200 JSON in the current shape with no access token at its place.
    NoAccessToken,
    /// As `Normal`, with this `token_type`.
    TokenType(&'static str),
    /// 200 with an empty body.
    Empty,
    /// Close the connection without answering.
    Hangup,
}

/// Where the token response puts its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Shape {
    /// `{"access_token","refresh_token","expires_in","token_type","scope"}`
    #[default]
    Flat,
    /// `{"data":{"auth":{"token","refresh","ttl"}},"token_type","scope"}`; pointers
    /// `/data/auth/token`, `/data/auth/refresh`, `/data/auth/ttl`.
    Nested,
}

/// One request to `/token` or `/refresh`, as received.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub path: String,
    pub content_type: Option<String>,
    pub headers: HeaderMap,
    /// HTTP Basic credentials, id and secret form-decoded (RFC 6749 §2.3.1).
    pub basic: Option<(String, String)>,
    /// From the form, or from the JSON object body (non-string values as JSON text).
    pub params: BTreeMap<String, String>,
    /// The body was `application/json`.
    pub json: bool,
    pub at: Instant,
}

impl TokenRequest {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    pub fn grant_type(&self) -> Option<&str> {
        self.param("grant_type")
    }
}

/// One request to `/api/*`.
#[derive(Clone, Debug)]
pub struct ApiRequest {
    pub method: String,
    /// Path and query as received.
    pub uri: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The whole `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The bearer token it carried, if any.
    pub token: Option<String>,
    /// Whether the request was let through (a live token of this provider).
    pub valid: bool,
    /// The user the token was issued for (password and code grants).
    pub user: Option<String>,
}

impl ApiRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The client credentials Tollgate must present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderClient {
    pub id: String,
    pub secret: String,
}

type Shared = Arc<Mutex<State>>;

/// The provider, serving in the test's tokio runtime; stops (with every open connection) on
/// drop.
pub struct Provider {
    addr: SocketAddr,
    state: Shared,
    accept: tokio::task::JoinHandle<()>,
}

impl Provider {
    pub async fn start() -> Provider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind provider");
        let addr = listener.local_addr().expect("provider addr");
        let state: Shared = Arc::new(Mutex::new(State::new()));
        let accept = tokio::spawn({
            let state = Arc::clone(&state);
            async move {
                // Owned by this task, so aborting it (drop) aborts every connection too.
                let mut connections = tokio::task::JoinSet::new();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    while connections.try_join_next().is_some() {}
                    let state = Arc::clone(&state);
                    connections.spawn(async move {
                        let service = service_fn(move |req| serve(req, Arc::clone(&state)));
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        });
        Provider {
            addr,
            state,
            accept,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn client(&self) -> ProviderClient {
        ProviderClient {
            id: PROVIDER_CLIENT_ID.to_owned(),
            secret: PROVIDER_CLIENT_SECRET.to_owned(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// How token requests answer from now on (after any queued by [`Provider::set_next_modes`]).
    pub fn set_mode(&self, mode: Mode) {
        self.state().mode = mode;
    }

    /// The next token requests answer in these modes, one each, before the
    /// [`Provider::set_mode`] one applies again (e.g. two 503s, then normal).
    pub fn set_next_modes(&self, modes: impl IntoIterator<Item = Mode>) {
        self.state().next_modes = modes.into_iter().collect();
    }

    /// `expires_in` of token responses: `None` omits it; a number or a string is sent as
    /// given. Tokens live for its numeric value (default 3600 s when omitted or not numeric;
    /// zero or negative: expired at once).
    pub fn set_expires_in(&self, value: Option<Value>) {
        self.state().expires_in = value;
    }

    pub fn set_shape(&self, shape: Shape) {
        self.state().shape = shape;
    }

    /// Whether client_credentials grants come with a refresh token (default false).
    pub fn set_issue_refresh_on_client_credentials(&self, on: bool) {
        self.state().refresh_on_client_credentials = on;
    }

    /// Makes `/api/*` answer 401 whatever token it is shown.
    pub fn set_api_always_401(&self, on: bool) {
        self.state().api_always_401 = on;
    }

    /// Every request to `/token` or `/refresh`, in arrival order.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.state().token_requests.clone()
    }

    pub fn token_request_count(&self) -> usize {
        self.state().token_requests.len()
    }

    /// The most token requests that were being answered at the same time (a `Slow` mode
    /// makes overlapping requests visible).
    pub fn max_concurrent_token_requests(&self) -> usize {
        self.state().max_in_flight
    }

    /// A new live refresh token (no user), to seed a `grant = "refresh_token"` credential.
    pub fn issue_refresh_token(&self) -> String {
        self.state().new_refresh_token(None)
    }

    /// The most recently issued refresh token that is still live (rotation retires the
    /// presented one).
    pub fn live_refresh_token(&self) -> Option<String> {
        let state = self.state();
        let live = state.refresh.iter().rev().find(|r| r.live);
        live.map(|r| r.token.clone())
    }

    /// Every live refresh token, oldest first (several with per-user credentials).
    pub fn live_refresh_tokens(&self) -> Vec<String> {
        let state = self.state();
        let live = state.refresh.iter().filter(|r| r.live);
        live.map(|r| r.token.clone()).collect()
    }

    /// Every access token issued, in order.
    pub fn access_tokens(&self) -> Vec<String> {
        self.state()
            .access
            .iter()
            .map(|a| a.token.clone())
            .collect()
    }

    /// Whether `token` is a live access token of this provider.
    pub fn is_valid_access_token(&self, token: &str) -> bool {
        self.state().valid_access(token).is_some()
    }

    /// Every access token issued so far stops being accepted by `/api/*` (tokens issued
    /// later are fine).
    pub fn invalidate_access_tokens(&self) {
        for token in &mut self.state().access {
            token.revoked = true;
        }
    }

    /// Every request to `/api/*`, in arrival order.
    pub fn api_requests(&self) -> Vec<ApiRequest> {
        self.state().api_requests.clone()
    }

    /// The query parameters of every `GET /authorize`, in order.
    pub fn authorize_requests(&self) -> Vec<BTreeMap<String, String>> {
        self.state().authorize_requests.clone()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// A poisoned lock only means another test thread panicked; the data is still what it was.
fn lock(state: &Shared) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

type Answer = Response<Full<Bytes>>;

async fn serve(req: Request<Incoming>, state: Shared) -> Result<Answer, Hangup> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    match (parts.method.as_str(), path.as_str()) {
        ("POST", "/token" | "/refresh") => token_endpoint(&state, &parts, &body).await,
        ("GET", "/authorize") => Ok(pages::authorize(&state, &parts)),
        ("POST", "/authorize/decide") => Ok(pages::decide(&state, &body)),
        (_, p) if p == "/api" || p.starts_with("/api/") => Ok(api(&state, parts, body)),
        _ => Ok(respond(StatusCode::NOT_FOUND, "text/plain", "not found")),
    }
}

/// The protected API: 200 `api ok <path>` for a live token of this provider, else 401.
fn api(state: &Shared, parts: hyper::http::request::Parts, body: Bytes) -> Answer {
    let authorization = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let token = authorization.as_deref().and_then(|header| {
        let (scheme, token) = header.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned())
    });
    let path = parts.uri.path().to_owned();
    let mut s = lock(state);
    let user = match (&token, s.api_always_401) {
        (Some(token), false) => s.valid_access(token).map(|a| a.user.clone()),
        _ => None,
    };
    s.api_requests.push(ApiRequest {
        method: parts.method.to_string(),
        uri: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.to_string(), |pq| pq.as_str().to_owned()),
        path: path.clone(),
        headers: parts.headers,
        body,
        authorization,
        token,
        valid: user.is_some(),
        user: user.clone().flatten(),
    });
    drop(s);
    match user {
        Some(user) => {
            let mut answer = respond(StatusCode::OK, "text/plain", format!("api ok {path}"));
            if let Some(value) = user.and_then(|u| HeaderValue::from_str(&u).ok()) {
                answer.headers_mut().insert("x-provider-user", value);
            }
            answer
        }
        None => {
            let mut answer = respond(StatusCode::UNAUTHORIZED, "text/plain", "invalid token");
            answer.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
            answer
        }
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Answer {
    let mut answer = Response::new(Full::new(body.into()));
    *answer.status_mut() = status;
    let headers = answer.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    answer
}
