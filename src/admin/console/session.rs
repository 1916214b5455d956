//! Console sessions: a record in the store (so any node serves the next page, SPEC §11) under
//! the SHA-256 of a random cookie value, holding the operator's name and the CSRF token of
//! their forms. A session lasts while it is used: it ends after [`IDLE`] without a page.
//! What the operator may do is read from the running config on every request, so taking
//! `admin` away from a user in `gateway.toml` takes effect at the next reload.

use std::time::Duration;

use hyper::{HeaderMap, Response};
use serde::{Deserialize, Serialize};

use super::BASE;
use crate::config::{ADMIN_READ_SCOPE, ADMIN_SCOPE, User};
use crate::error::Body;
use crate::gateway::Gateway;
pub use crate::oauth::browser::see_other;
use crate::oauth::browser::{CookieAttrs, append_cookie, cookie, random_id};
use crate::store::{RecordKind, StoreError};
use crate::token::{TokenHash, now_millis};

/// A session unused this long is gone (a working day with lunch in it).
pub const IDLE: Duration = Duration::from_secs(8 * 3600);
/// The store's copy is renewed at most this often, not on every page.
const TOUCH_EVERY: u64 = 60_000;
pub const SESSION_COOKIE: &str = "tollgate_console";
/// The sign-in form's CSRF token, before there is a session to bind it to.
pub const SIGNIN_COOKIE: &str = "tollgate_console_signin";
/// How long the sign-in form stays valid.
pub const SIGNIN_TTL: Duration = Duration::from_secs(1800);

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    username: String,
    csrf: String,
    /// When a page was last served (ms since the epoch).
    touched: u64,
}

/// The signed-in operator.
#[derive(Debug, Clone)]
pub struct Signed {
    pub username: String,
    pub csrf: String,
    /// `admin` (may change things) rather than only `admin:read`.
    pub can_write: bool,
    /// The cookie's value (to end the session).
    id: String,
}

/// What a user may do in the console: `Some(true)` with `admin`, `Some(false)` with
/// `admin:read`, `None` without either. Only scopes listed explicitly count: a user whose
/// `scopes` is omitted may grant every declared scope, not the built-in ones.
pub fn role(user: &User) -> Option<bool> {
    let scopes = user.scopes.as_deref()?;
    if scopes.iter().any(|s| s == ADMIN_SCOPE) {
        Some(true)
    } else if scopes.iter().any(|s| s == ADMIN_READ_SCOPE) {
        Some(false)
    } else {
        None
    }
}

fn key(id: &str) -> String {
    format!("console:{}", TokenHash::of(id).to_hex())
}

/// Starts a session for `username`; returns its cookie value.
pub async fn create(gateway: &Gateway, username: &str) -> Result<String, StoreError> {
    let id = random_id();
    let record = Record {
        username: username.to_owned(),
        csrf: random_id(),
        touched: now_millis(),
    };
    put(gateway, &id, &record).await?;
    Ok(id)
}

async fn put(gateway: &Gateway, id: &str, record: &Record) -> Result<(), StoreError> {
    let json = serde_json::to_string(record).unwrap_or_default();
    gateway
        .store()
        .put_record(RecordKind::Session, &key(id), &json, IDLE)
        .await
}

/// The session this browser's cookie names, if it exists and its user may still use the
/// console.
pub async fn load(gateway: &Gateway, headers: &HeaderMap) -> Result<Option<Signed>, StoreError> {
    let Some(id) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let Some(json) = gateway
        .store()
        .get_record(RecordKind::Session, &key(id))
        .await?
    else {
        return Ok(None);
    };
    let Ok(mut record) = serde_json::from_str::<Record>(&json) else {
        return Ok(None);
    };
    let rt = gateway.runtime();
    let Some(can_write) = rt.config.user(&record.username).and_then(role) else {
        return Ok(None);
    };
    let now = now_millis();
    if now.saturating_sub(record.touched) > TOUCH_EVERY {
        record.touched = now;
        put(gateway, id, &record).await?;
    }
    Ok(Some(Signed {
        username: record.username,
        csrf: record.csrf,
        can_write,
        id: id.to_owned(),
    }))
}

/// Ends the session on every node.
pub async fn end(gateway: &Gateway, who: &Signed) -> Result<(), StoreError> {
    gateway
        .store()
        .delete_record(RecordKind::Session, &key(&who.id))
        .await
}

/// Sets a console cookie: HttpOnly, SameSite=Strict (no other site's link or form brings
/// it along), scoped to `/console`. `max_age` zero deletes it. `secure`: the admin listener
/// serves TLS (`[admin.tls]`, SPEC §10); not from `public_url`, which is the public
/// listener's, since a browser drops a `Secure` cookie set over plain HTTP.
pub fn set_cookie(
    resp: &mut Response<Body>,
    secure: bool,
    name: &str,
    value: &str,
    max_age: Duration,
) {
    let attrs = CookieAttrs {
        path: BASE,
        same_site: "Strict",
        secure,
    };
    append_cookie(resp, name, value, max_age, &attrs);
}
