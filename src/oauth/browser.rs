//! What the authorization pages share: the pending request and login session records, cookies,
//! CSRF tokens, redirects back to the client, and the answers for expired forms or a store
//! that is down.
//!
//! CSRF tokens are always minted here, never taken from the browser. The login form's token is
//! bound to the pending request (it must come back in the form and in the `tollgate_csrf`
//! cookie, and match the stored request); the consent form's token is bound to the login
//! session and renewed at every login.

use std::time::Duration;

use hyper::header::{COOKIE, HeaderValue, LOCATION, SET_COOKIE};
use hyper::{HeaderMap, Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::Ctx;
use super::pages::{self, Login, error_page};
use crate::config::Client;
use crate::error::{Body, full};
use crate::store::RecordKind;
use crate::token::{self, TokenHash};

/// How long a user has to sign in and decide.
pub const REQUEST_TTL: Duration = Duration::from_secs(600);
/// How long a login lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(3600);
pub const SESSION_COOKIE: &str = "tollgate_session";
pub const CSRF_COOKIE: &str = "tollgate_csrf";

pub type Answer = Response<Body>;

/// An authorization request waiting for the user.
#[derive(Debug, Serialize, Deserialize)]
pub struct Pending {
    pub client_id: String,
    pub redirect_uri: String,
    pub redirect_uri_given: bool,
    /// `code` or `token`.
    pub implicit: bool,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    /// The login form's CSRF token (server-made, one per request).
    pub csrf: String,
    /// Not an authorization request but a sign-in on the way to connecting this outbound
    /// credential (`{path}/connect/{name}`, SPEC §8): after login, back there.
    #[serde(default)]
    pub connect: Option<String>,
}

impl Pending {
    /// What the login page says the user signs in for.
    pub fn app_name<'c>(&'c self, client: Option<&'c Client>) -> std::borrow::Cow<'c, str> {
        match (&self.connect, client) {
            (Some(name), _) => format!("connecting {name}").into(),
            (None, Some(c)) => c.name.as_str().into(),
            (None, None) => "".into(),
        }
    }
}

/// A signed-in user, and the CSRF token of the forms they post while signed in.
#[derive(Debug, Serialize, Deserialize)]
pub struct Session {
    pub username: String,
    pub csrf: String,
}

/// Stores a new login session for `username`; returns its cookie value.
pub async fn new_session(ctx: &Ctx<'_>, username: &str) -> Result<String, Answer> {
    let id = random_id();
    let record = serde_json::to_string(&Session {
        username: username.to_owned(),
        csrf: random_id(),
    })
    .unwrap_or_default();
    ctx.store
        .put_record(
            RecordKind::Session,
            &TokenHash::of(&id).to_hex(),
            &record,
            SESSION_TTL,
        )
        .await
        .map_err(store_down)?;
    Ok(id)
}

/// The signed-in user of this browser, if the session exists and the user still does.
pub async fn session(
    ctx: &Ctx<'_>,
    headers: &HeaderMap,
) -> Result<Option<Session>, crate::store::StoreError> {
    let Some(id) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let found = ctx
        .store
        .get_record(RecordKind::Session, &TokenHash::of(id).to_hex())
        .await?;
    Ok(found
        .and_then(|json| serde_json::from_str::<Session>(&json).ok())
        .filter(|s| ctx.config.user(&s.username).is_some()))
}

pub async fn get_pending(ctx: &Ctx<'_>, request: &str) -> Result<Option<Pending>, Answer> {
    match ctx.store.get_record(RecordKind::Request, request).await {
        Ok(found) => Ok(found.and_then(|json| serde_json::from_str(&json).ok())),
        Err(e) => Err(store_down(e)),
    }
}

/// The pending request a form names, and its client.
pub async fn load_pending<'c>(
    ctx: &Ctx<'c>,
    request: Option<&str>,
) -> Result<(String, Pending, std::borrow::Cow<'c, Client>), Answer> {
    let request = request.ok_or_else(expired)?;
    let pending = get_pending(ctx, request).await?.ok_or_else(expired)?;
    let client = ctx
        .client(&pending.client_id)
        .await
        .map_err(store_down)?
        .ok_or_else(expired)?;
    Ok((request.to_owned(), pending, client))
}

/// Does `given` equal the expected CSRF token? Compared in constant time.
pub fn csrf_ok(given: Option<&str>, expected: &str) -> bool {
    given.is_some_and(|g| token::constant_time_eq(g.as_bytes(), expected.as_bytes()))
}

pub fn forged() -> Answer {
    error_page(
        StatusCode::FORBIDDEN,
        "This form has expired or did not come from this site. Start again from the application.",
    )
}

pub fn login_page(
    ctx: &Ctx<'_>,
    app_name: &str,
    request: &str,
    csrf: &str,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Answer {
    let action = format!("{}/login", ctx.config.oauth.path);
    let mut resp = pages::login(
        status,
        &Login {
            action: &action,
            request,
            csrf,
            client_name: app_name,
            username,
            error,
        },
    );
    set_cookie(&mut resp, ctx, CSRF_COOKIE, csrf, REQUEST_TTL);
    resp
}

pub fn consent_url(ctx: &Ctx<'_>, request: &str) -> String {
    format!("{}/consent?request={}", ctx.config.oauth.path, request)
}

pub fn expired() -> Answer {
    error_page(
        StatusCode::BAD_REQUEST,
        "This sign-in request has expired or is unknown. Start again from the application.",
    )
}

pub fn store_down(e: crate::store::StoreError) -> Answer {
    tracing::warn!(error = %e, "token store error on the authorization endpoint");
    let mut resp = error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "The service is briefly unavailable. Please try again.",
    );
    resp.headers_mut()
        .insert("retry-after", HeaderValue::from_static("1"));
    resp
}

/// RFC 6749 §4.1.2.1 / §4.2.2.1: the error goes back to the client. The description is a
/// fixed text (never request input: it lands in the client's page), and `iss` says who
/// answered (RFC 9207).
pub fn redirect_error<'a>(
    ctx: &'a Ctx<'_>,
    redirect_uri: &str,
    fragment: bool,
    code: &'a str,
    description: &'static str,
    state: Option<&'a str>,
) -> Answer {
    let mut params = vec![("error", code), ("error_description", description)];
    if let Some(state) = state {
        params.push(("state", state));
    }
    redirect_to_client(ctx, redirect_uri, fragment, params)
}

/// A redirect to the client's `redirect_uri` with `params` and `iss` in its query (or, for
/// implicit, its fragment).
pub fn redirect_to_client<'a>(
    ctx: &'a Ctx<'_>,
    redirect_uri: &str,
    fragment: bool,
    mut params: Vec<(&'a str, &'a str)>,
) -> Answer {
    params.push(("iss", &ctx.config.server.public_url));
    let encoded = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    let sep = if fragment {
        '#'
    } else if redirect_uri.contains('?') {
        '&'
    } else {
        '?'
    };
    see_other(&format!("{redirect_uri}{sep}{encoded}"))
}

pub fn see_other(location: &str) -> Answer {
    let mut resp = Response::new(full(""));
    *resp.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    resp
}

/// `Secure` whenever the browser reaches us over HTTPS: served here with TLS, or behind a
/// proxy that ends TLS, which `public_url`'s scheme tells.
pub fn set_cookie(resp: &mut Answer, ctx: &Ctx<'_>, name: &str, value: &str, max_age: Duration) {
    let secure = ctx.tls || ctx.config.server.public_url.starts_with("https://");
    let attrs = CookieAttrs {
        path: &ctx.config.oauth.path,
        same_site: "Lax",
        secure,
    };
    append_cookie(resp, name, value, max_age, &attrs);
}

/// Where a cookie goes and who may send it back; always `HttpOnly`.
pub struct CookieAttrs<'a> {
    pub path: &'a str,
    /// `Lax` for the login pages (the client's redirect brings the browser back), `Strict`
    /// for the console.
    pub same_site: &'static str,
    pub secure: bool,
}

/// Appends a `Set-Cookie`; `max_age` zero deletes the cookie.
pub fn append_cookie(
    resp: &mut Answer,
    name: &str,
    value: &str,
    max_age: Duration,
    attrs: &CookieAttrs<'_>,
) {
    let cookie = format!(
        "{name}={value}; Path={}; Max-Age={}; HttpOnly; SameSite={}{}",
        attrs.path,
        max_age.as_secs(),
        attrs.same_site,
        if attrs.secure { "; Secure" } else { "" }
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(SET_COOKIE, v);
    }
}

pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// 128 random bits as hex: request ids, session ids, CSRF tokens.
pub fn random_id() -> String {
    // Without the OS generator no id is safe to hand out: stopping is the only sound answer.
    token::new_grant_id().expect("the OS random generator failed")
}
