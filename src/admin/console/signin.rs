//! Signing in to the console with a `[[users]]` entry whose `scopes` list `admin` or
//! `admin:read`, and signing out. The password check is the login page's (`check_user`),
//! throttled the same way (SPEC §5 "Guessing"). The form's CSRF token is a random value in a
//! cookie and in the form (there is no session yet to bind it to); the session gets its own.

use std::time::Duration;

use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::{HeaderMap, Response, StatusCode};

use super::page::{bare, esc, store_down};
use super::session::{self, SESSION_COOKIE, SIGNIN_COOKIE, SIGNIN_TTL, role};
use super::{BASE, Console, Form};
use crate::error::Body;
use crate::gateway::{Gateway, Runtime};
use crate::oauth::browser::{cookie, csrf_ok, random_id};
use crate::oauth::params::{PasswordRefused, check_user};
use crate::server::Conn;

/// The sign-in page, with a fresh CSRF token in the form and its cookie.
pub fn form(conn: Conn, username: &str, error: Option<(&str, StatusCode)>) -> Response<Body> {
    let token = random_id();
    let (alert, status) = match error {
        Some((text, status)) => (
            format!("<p class=\"error\" role=\"alert\">{}</p>", esc(text)),
            status,
        ),
        None => (String::new(), StatusCode::OK),
    };
    let body = format!(
        "<div style=\"max-width:24rem;margin:1rem auto\"><h1>Sign in to the console</h1>\
<p class=\"note\">Users whose scopes include <code>admin</code> (or <code>admin:read</code> to look only).</p>{alert}\
<form method=\"post\" action=\"{BASE}/signin\"><input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
<label for=\"username\">Username</label>\
<input type=\"text\" id=\"username\" name=\"username\" value=\"{}\" autocomplete=\"username\" required autofocus>\
<label for=\"password\">Password</label>\
<input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
<button type=\"submit\">Sign in</button></form></div>",
        esc(username)
    );
    let mut resp = bare(status, "Sign in", &body);
    let secure = conn.tls;
    session::set_cookie(&mut resp, secure, SIGNIN_COOKIE, &token, SIGNIN_TTL);
    resp
}

pub async fn submit(
    gateway: &Gateway,
    rt: &Runtime,
    conn: Conn,
    headers: &HeaderMap,
    f: &Form,
) -> Response<Body> {
    let username = f.text("username");
    let given = f.get("csrf");
    if given.is_none_or(str::is_empty)
        || !csrf_ok(cookie(headers, SIGNIN_COOKIE), given.unwrap_or(""))
    {
        return super::forbidden(
            "This sign-in form has expired or did not come from the console. Reload it and try again.",
        );
    }
    let refuse = |text: &str, status| form(conn, username, Some((text, status)));
    let ctx = crate::oauth::Ctx {
        config: &rt.config,
        store: gateway.store(),
        throttle: gateway.throttle(),
        remote: conn.remote.ip(),
        tls: conn.tls,
        outbound: gateway.outbound(),
        rules: &rt.rules,
    };
    let user = match check_user(&ctx, username, f.get("password").unwrap_or("")).await {
        Ok(user) => user,
        Err(PasswordRefused::SlowDown(wait)) => {
            let secs = wait.as_secs().max(1);
            let text = format!("Too many failed attempts. Try again in {secs} seconds.");
            let mut resp = refuse(&text, StatusCode::TOO_MANY_REQUESTS);
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
            return resp;
        }
        Err(PasswordRefused::Unavailable(e)) => return store_down(e),
        Err(PasswordRefused::Wrong) => {
            return refuse("Invalid username or password.", StatusCode::OK);
        }
    };
    // Only after the password is right: a guesser learns nothing about who is an operator.
    if role(user).is_none() {
        tracing::info!(
            username,
            "console sign-in refused: no admin or admin:read scope"
        );
        return refuse(
            "This account may not use the console: its scopes in gateway.toml do not include admin or admin:read.",
            StatusCode::FORBIDDEN,
        );
    }
    let id = match session::create(gateway, &user.username).await {
        Ok(id) => id,
        Err(e) => return store_down(e),
    };
    tracing::info!(username, "console sign-in");
    let mut resp = session::see_other(&format!("{BASE}/clients"));
    let secure = conn.tls;
    session::set_cookie(&mut resp, secure, SESSION_COOKIE, &id, session::IDLE);
    session::set_cookie(&mut resp, secure, SIGNIN_COOKIE, "", Duration::ZERO);
    resp
}

pub async fn sign_out(c: &Console<'_>) -> Response<Body> {
    if let Err(e) = session::end(c.gateway, &c.who).await {
        return store_down(e);
    }
    let mut resp = session::see_other(&format!("{BASE}/signin"));
    let secure = c.conn.tls;
    session::set_cookie(&mut resp, secure, SESSION_COOKIE, "", Duration::ZERO);
    resp
}
