//! The browser side of connecting an upstream account (SPEC §8, `grant =
//! "authorization_code"`): `GET {path}/connect/{name}` signs the user in (the login page of
//! §5) and sends them to the provider; `GET {path}/callback` is where the provider sends them
//! back, and shows whether the credential is now connected.

use hyper::{Request, StatusCode};

use super::Ctx;
use super::browser::{self, Answer, Pending, random_id, see_other, store_down};
use super::pages::{self, error_page, escape};
use super::params::Params;
use crate::outbound::{ConnectError, Connected};

/// `GET {path}/connect/{name}`.
pub async fn connect(ctx: &Ctx<'_>, req: Request<hyper::body::Incoming>, name: &str) -> Answer {
    let session = match browser::session(ctx, req.headers()).await {
        Ok(s) => s,
        Err(e) => return store_down(e),
    };
    let Some(session) = session else {
        if let Err(denied) = ctx.throttle.begin_pending(ctx.remote).await {
            return super::authorize::not_parked(denied);
        }
        // Sign in first; the login page brings the browser back here.
        let pending = Pending {
            client_id: String::new(),
            redirect_uri: String::new(),
            redirect_uri_given: false,
            implicit: false,
            scopes: Vec::new(),
            state: None,
            code_challenge: None,
            csrf: random_id(),
            connect: Some(name.to_owned()),
        };
        return super::authorize::park(ctx, req.headers(), None, pending).await;
    };
    match ctx
        .outbound
        .authorize_url(name, Some(&session.username), None)
        .await
    {
        Ok(url) => see_other(&url),
        Err(ConnectError::Store(e)) => store_down(e),
        Err(e @ ConnectError::Unknown(_)) => error_page(StatusCode::NOT_FOUND, &e.to_string()),
        Err(e) => error_page(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// `GET {path}/callback?code=…&state=…` (or `error=…&state=…`).
pub async fn callback(ctx: &Ctx<'_>, req: Request<hyper::body::Incoming>) -> Answer {
    let params = match Params::parse(req.uri().query().unwrap_or("").as_bytes()) {
        Ok(p) => p,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e.description),
    };
    let Some(state) = params.get("state") else {
        return error_page(StatusCode::BAD_REQUEST, "The provider sent no state.");
    };
    let signed_in = match browser::session(ctx, req.headers()).await {
        Ok(s) => s.map(|s| s.username),
        Err(e) => return store_down(e),
    };
    let done = ctx
        .outbound
        .complete(
            state,
            params.get("code"),
            params.get("error"),
            signed_in.as_deref(),
        )
        .await;
    match done {
        // Started from the console: back to its credentials page.
        Ok(Connected {
            return_to: Some(to),
            ..
        }) => browser::see_other(&to),
        Ok(c) => {
            let who = c
                .username
                .as_deref()
                .map(|u| format!(" for <b>{}</b>", escape(u)))
                .unwrap_or_default();
            let body = format!(
                "<h1>Connected</h1><p>Credential <b>{}</b> is connected{who}. \
Requests through Tollgate now carry its token. You can close this page.</p>",
                escape(&c.credential)
            );
            pages::page(StatusCode::OK, "Connected", &body)
        }
        Err(ConnectError::Store(e)) => store_down(e),
        Err(e @ ConnectError::Exchange(_)) => error_page(StatusCode::BAD_GATEWAY, &e.to_string()),
        Err(e) => error_page(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}
