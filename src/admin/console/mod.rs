//! The console (SPEC §10): server-rendered pages under `/console/` on the admin listener, for
//! the work the admin API does. Every change goes through the same action functions as the
//! API (`admin::clients`, `tokens`, `scopes`, `credentials`, `explain`); the pages only turn
//! forms into the API's JSON and its `Reply`/`AdminError` back into HTML.
//!
//! # Layout
//! - this file: the router, the signed-in [`Console`] context, form bodies, the CSRF and
//!   read-only checks every POST passes before any page module sees it.
//! - `session.rs`: sessions in the store, cookies, the sign-in CSRF cookie.
//! - `page.rs`: page chrome (nav, styles, the copy button's script), HTML helpers, errors
//!   placed next to the field that caused them.
//! - one module per page: `signin`, `clients`, `tokens`, `scopes`, `credentials`, `explain`.
//!
//! Usable without JavaScript: deletes go through a confirmation page, and the only script
//! is the copy button (allowed by its hash in the CSP).

mod clients;
mod credentials;
mod explain;
mod page;
mod scopes;
mod session;
mod signin;
mod tokens;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::{Method, Request, Response, StatusCode};

use self::page::message;
use self::session::Signed;
use crate::error::Body;
use crate::gateway::{Gateway, Runtime};
use crate::server::Conn;

/// Largest form body a console page reads.
const MAX_FORM: usize = 64 * 1024;

/// Where the console lives on the admin listener.
pub const BASE: &str = "/console";

/// What every page handler gets: the node, the config it runs on now, the connection, and
/// the signed-in operator.
pub struct Console<'a> {
    pub gateway: &'a Gateway,
    pub rt: Arc<Runtime>,
    pub conn: Conn,
    pub who: Signed,
    /// The request's `Host` header (see [`Console::origin`]).
    host: Option<hyper::header::HeaderValue>,
}

impl Console<'_> {
    /// May this session change anything (`admin`), or only look (`admin:read`)?
    pub fn can_write(&self) -> bool {
        self.who.can_write
    }

    /// `scheme://host[:port]` the operator's browser reached the console at (its `Host`
    /// header, when that is a plain host name or address): where a credential's Connect
    /// comes back to.
    pub fn origin(&self) -> Option<String> {
        let host = self.host.as_ref()?.to_str().ok()?;
        let plain = !host.is_empty()
            && host.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
            });
        let scheme = if self.conn.tls { "https" } else { "http" };
        plain.then(|| format!("{scheme}://{host}"))
    }
}

/// A URL-encoded form body: every pair in order, repeated names kept (check boxes).
#[derive(Debug, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(bytes: &[u8]) -> Form {
        Form(
            form_urlencoded::parse(bytes)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name`, trimmed; "" when absent.
    pub fn text(&self, name: &str) -> &str {
        self.get(name).map_or("", str::trim)
    }

    /// Every value of `name` (ticked check boxes).
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

pub async fn handle(
    gateway: &Gateway,
    req: Request<hyper::body::Incoming>,
    conn: Conn,
) -> Response<Body> {
    let rt = gateway.runtime();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = Form::parse(req.uri().query().unwrap_or("").as_bytes());
    let segments: Vec<String> = path
        .strip_prefix(BASE)
        .unwrap_or("")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let headers = req.headers().clone();
    let form = if method == Method::POST {
        match read_form(req).await {
            Ok(form) => form,
            Err(resp) => return resp,
        }
    } else {
        Form::default()
    };
    // Signing in is the only thing done without a session.
    match (&method, segs.as_slice()) {
        (&Method::GET, ["signin"]) => return signin::form(conn, "", None),
        (&Method::POST, ["signin"]) => {
            return signin::submit(gateway, &rt, conn, &headers, &form).await;
        }
        _ => {}
    }
    let who = match session::load(gateway, &headers).await {
        Ok(Some(who)) => who,
        Ok(None) if method == Method::GET || method == Method::HEAD => {
            return session::see_other(&format!("{BASE}/signin"));
        }
        Ok(None) => return forbidden("You are not signed in, or your session has ended."),
        Err(e) => return page::store_down(e),
    };
    let host = headers.get(hyper::header::HOST).cloned();
    let c = Console {
        gateway,
        rt,
        conn,
        who,
        host,
    };
    if method == Method::POST {
        // Every POST carries the session's CSRF token; a read-only session may only ask
        // questions (Explain) and sign out.
        if !crate::oauth::browser::csrf_ok(form.get("csrf"), &c.who.csrf) {
            return forbidden("This form has expired or did not come from the console.");
        }
        let harmless = matches!(segs.as_slice(), ["explain"] | ["signout"]);
        if !c.can_write() && !harmless {
            return forbidden("Your account may look (admin:read) but not change anything.");
        }
    }
    route(&c, &method, &segs, &query, &form).await
}

async fn route(
    c: &Console<'_>,
    method: &Method,
    segs: &[&str],
    q: &Form,
    f: &Form,
) -> Response<Body> {
    match (method, segs) {
        (&Method::GET, []) => session::see_other(&format!("{BASE}/clients")),
        (&Method::POST, ["signout"]) => signin::sign_out(c).await,
        (&Method::GET, ["clients"]) => clients::list(c, q).await,
        (&Method::GET, ["new", "client"]) => clients::new(c).await,
        (&Method::POST, ["clients"]) => clients::create(c, f).await,
        (&Method::GET, ["clients", id]) => clients::show(c, id, q).await,
        (&Method::POST, ["clients", id]) => clients::update(c, id, f).await,
        (&Method::POST, ["clients", id, "enabled"]) => clients::set_enabled(c, id, f).await,
        (&Method::GET, ["clients", id, "delete"]) => clients::confirm_delete(c, id, None).await,
        (&Method::POST, ["clients", id, "delete"]) => clients::delete(c, id).await,
        (&Method::GET, ["tokens"]) => tokens::list(c, q).await,
        (&Method::GET, ["new", "token"]) => tokens::new(c, q).await,
        (&Method::POST, ["tokens"]) => tokens::issue(c, f).await,
        (&Method::GET, ["tokens", id, "delete"]) => tokens::confirm_delete(c, id, None),
        (&Method::POST, ["tokens", id, "delete"]) => tokens::delete(c, id).await,
        (&Method::GET, ["scopes"]) => scopes::list(c, q).await,
        (&Method::GET, ["new", "scope"]) => scopes::new(c),
        (&Method::POST, ["scopes"]) => scopes::create(c, f).await,
        (&Method::GET, ["scopes", name]) => scopes::show(c, name).await,
        (&Method::POST, ["scopes", name]) => scopes::update(c, name, f).await,
        (&Method::GET, ["scopes", name, "delete"]) => scopes::confirm_delete(c, name, None),
        (&Method::POST, ["scopes", name, "delete"]) => scopes::delete(c, name).await,
        (&Method::GET, ["credentials"]) => {
            let flash = q.get("connected").map(|name| {
                (
                    true,
                    format!("Back from the provider: {name}'s status is below."),
                )
            });
            credentials::list(c, flash).await
        }
        (&Method::POST, ["credentials", name, "refresh"]) => credentials::refresh(c, name).await,
        (&Method::POST, ["credentials", name, "connect"]) => credentials::connect(c, name).await,
        (&Method::GET, ["credentials", name, "disconnect"]) => {
            credentials::confirm_disconnect(c, name)
        }
        (&Method::POST, ["credentials", name, "disconnect"]) => {
            credentials::disconnect(c, name, f).await
        }
        (&Method::GET, ["explain"]) => explain::form(c),
        (&Method::POST, ["explain"]) => explain::run(c, f).await,
        _ => page::not_found(c),
    }
}

/// A 403 page for a refused POST (no session, wrong CSRF token, read-only session).
fn forbidden(why: &str) -> Response<Body> {
    message(StatusCode::FORBIDDEN, "Not allowed", why)
}

async fn read_form(req: Request<hyper::body::Incoming>) -> Result<Form, Response<Body>> {
    let body: Bytes = Limited::new(req.into_body(), MAX_FORM)
        .collect()
        .await
        .map_err(|_| {
            message(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Form too large",
                "The form could not be read.",
            )
        })?
        .to_bytes();
    Ok(Form::parse(&body))
}

/// A path segment with its `%XX` escapes decoded (client ids and scope names in URLs).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `s` for a URL path segment.
pub fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The names of the declared scopes (file and store), for the clients' scope pickers.
pub async fn scope_names(c: &Console<'_>) -> Vec<String> {
    let Ok(reply) = crate::admin::scopes::list(c.gateway).await else {
        return Vec::new();
    };
    reply.body["scopes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
