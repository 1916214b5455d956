//! `POST {path}/login`: signs a resource owner in on the way to the consent page. The form's
//! CSRF token must match the pending request it names and the `tollgate_csrf` cookie; a
//! success starts a new session with a fresh CSRF token.

use hyper::header::HeaderValue;
use hyper::{Request, StatusCode};

use super::Ctx;
use super::browser::{
    Answer, CSRF_COOKIE, SESSION_COOKIE, SESSION_TTL, consent_url, cookie, csrf_ok, expired,
    forged, get_pending, login_page, new_session, see_other, set_cookie, store_down,
};
use super::pages::error_page;
use super::params::{self, PasswordRefused};

pub async fn login(ctx: &Ctx<'_>, req: Request<hyper::body::Incoming>) -> Answer {
    let (headers, params) = match params::read(req).await {
        Ok(x) => x,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e.description),
    };
    let Some(request) = params.get("request") else {
        return expired();
    };
    let pending = match get_pending(ctx, request).await {
        Ok(Some(p)) => p,
        Ok(None) => return expired(),
        Err(resp) => return resp,
    };
    // An authorization request names its client; a connect sign-in has none.
    let client = match &pending.connect {
        Some(_) => None,
        None => match ctx.client(&pending.client_id).await {
            Ok(Some(c)) => Some(c),
            Ok(None) => return expired(),
            Err(e) => return store_down(e),
        },
    };
    let app_name = pending.app_name(client.as_deref()).into_owned();
    if !csrf_ok(params.get("csrf"), &pending.csrf)
        || !csrf_ok(cookie(&headers, CSRF_COOKIE), &pending.csrf)
    {
        return forged();
    }
    let username = params.get("username").unwrap_or("");
    let password = params.get("password").unwrap_or("");
    let page = |error: &str, status| {
        login_page(
            ctx,
            &app_name,
            request,
            &pending.csrf,
            username,
            Some(error),
            status,
        )
    };
    let user = match params::check_user(ctx, username, password).await {
        Ok(user) => user,
        Err(PasswordRefused::SlowDown(wait)) => {
            let secs = wait.as_secs().max(1);
            let msg = format!("Too many failed attempts. Try again in {secs} seconds.");
            let mut resp = page(&msg, StatusCode::TOO_MANY_REQUESTS);
            resp.headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
            return resp;
        }
        Err(PasswordRefused::Unavailable(e)) => return store_down(e),
        Err(PasswordRefused::Wrong) => return page("Invalid username or password", StatusCode::OK),
    };
    let session_id = match new_session(ctx, &user.username).await {
        Ok(id) => id,
        Err(resp) => return resp,
    };
    let next = match &pending.connect {
        Some(name) => format!("{}/connect/{name}", ctx.config.oauth.path),
        None => consent_url(ctx, request),
    };
    let mut resp = see_other(&next);
    set_cookie(&mut resp, ctx, SESSION_COOKIE, &session_id, SESSION_TTL);
    resp
}
