//! The authorization endpoint (RFC 6749 §4.1, §4.2): `GET {path}/authorize` validates the
//! request and parks it in the store, then sends the browser to the login page (`login.rs`)
//! or, when already signed in, to consent (`consent.rs`).
//!
//! Pending requests live in the token store, so a flow started on one node can finish on
//! another. Each costs a 10-minute record, so an address may park only so many per minute and
//! `state` has a length limit.

use hyper::{Request, StatusCode};

use super::Ctx;
use super::browser::{
    self, Answer, Pending, REQUEST_TTL, login_page, random_id, redirect_error, see_other,
    store_down,
};
use super::code::is_s256_challenge;
use super::issue::resolve_scopes;
use super::pages::error_page;
use super::params::Params;
use crate::config::{Client, ClientType, Grant};
use crate::store::RecordKind;
use crate::throttle::Denied;

/// Longest `state` accepted. Clients use it for a random value or a small encoded blob;
/// without a limit every parked request could carry up to the whole query string.
pub const MAX_STATE_BYTES: usize = 1024;

/// `GET {path}/authorize`.
pub async fn start(ctx: &Ctx<'_>, req: Request<hyper::body::Incoming>) -> (Option<String>, Answer) {
    let params = match Params::parse(req.uri().query().unwrap_or("").as_bytes()) {
        Ok(p) => p,
        Err(e) => return (None, error_page(StatusCode::BAD_REQUEST, &e.description)),
    };
    let client = match params.get("client_id") {
        Some(id) => match ctx.client(id).await {
            Ok(c) => c,
            Err(e) => return (None, store_down(e)),
        },
        None => None,
    };
    let Some(client) = client else {
        return (
            None,
            error_page(StatusCode::BAD_REQUEST, "Unknown or missing client_id."),
        );
    };
    let client: &Client = &client;
    let client_id = Some(client.client_id.clone());
    // Until the redirect URI is known good, errors are shown here, never sent anywhere.
    let redirect_uri = match (params.get("redirect_uri"), client.redirect_uris.as_slice()) {
        (Some(uri), registered) if registered.iter().any(|r| r == uri) => uri.to_owned(),
        (Some(_), _) => {
            let msg = "The redirect_uri is not registered for this client.";
            return (client_id, error_page(StatusCode::BAD_REQUEST, msg));
        }
        (None, [only]) => only.clone(),
        (None, []) => {
            let msg = "This client has no registered redirect_uri, so it cannot use this page.";
            return (client_id, error_page(StatusCode::BAD_REQUEST, msg));
        }
        (None, _) => {
            let msg = "redirect_uri is required: this client has several registered.";
            return (client_id, error_page(StatusCode::BAD_REQUEST, msg));
        }
    };
    let state = params.get("state");
    if state.is_some_and(|s| s.len() > MAX_STATE_BYTES) {
        let msg = "The state parameter is too long.";
        return (client_id, error_page(StatusCode::BAD_REQUEST, msg));
    }
    let (implicit, scopes, code_challenge) = match validate(client, &params) {
        Ok(v) => v,
        Err(Refusal {
            fragment,
            code,
            description,
        }) => {
            let answer = redirect_error(ctx, &redirect_uri, fragment, code, description, state);
            return (client_id, answer);
        }
    };
    if let Err(denied) = ctx.throttle.begin_pending(ctx.remote).await {
        return (client_id, not_parked(denied));
    }
    let pending = Pending {
        client_id: client.client_id.clone(),
        redirect_uri,
        redirect_uri_given: params.get("redirect_uri").is_some(),
        implicit,
        scopes,
        state: state.map(str::to_owned),
        code_challenge,
        csrf: random_id(),
        connect: None,
    };
    (
        client_id,
        park(ctx, req.headers(), Some(client), pending).await,
    )
}

/// The page for a request the throttle would not let park: 429 with the wait, or 503 when
/// its counters (in the store) cannot be reached, as for any store outage.
pub(super) fn not_parked(denied: Denied) -> Answer {
    let wait = match denied {
        Denied::SlowDown(wait) => wait,
        Denied::Unavailable(e) => return store_down(e),
    };
    let msg = "Too many sign-in requests from this address. Try again in a minute.";
    let mut resp = error_page(StatusCode::TOO_MANY_REQUESTS, msg);
    resp.headers_mut().insert(
        "retry-after",
        hyper::header::HeaderValue::from(wait.as_secs().max(1)),
    );
    resp
}

/// Why a request is refused back to the client: a fixed text, never request input.
pub struct Refusal {
    pub fragment: bool,
    pub code: &'static str,
    pub description: &'static str,
}

/// Checks everything after the redirect URI: whether the request is implicit, the scopes
/// asked for, and the PKCE challenge.
pub fn validate(
    client: &Client,
    params: &Params,
) -> Result<(bool, Vec<String>, Option<String>), Refusal> {
    let implicit = params.get("response_type") == Some("token");
    let fail = |code, description| Refusal {
        fragment: implicit,
        code,
        description,
    };
    let grant = match params.get("response_type") {
        Some("code") => Grant::AuthorizationCode,
        Some("token") => Grant::Implicit,
        Some(_) => {
            // The client did not ask for the fragment, so the answer goes in the query.
            return Err(Refusal {
                fragment: false,
                code: "unsupported_response_type",
                description: "response_type must be code or token",
            });
        }
        None => return Err(fail("invalid_request", "response_type is required")),
    };
    if !client.allows_grant(grant) {
        return Err(fail(
            "unauthorized_client",
            "the client may not use this response_type",
        ));
    }
    let scopes = resolve_scopes(params.get("scope"), &client.scopes).map_err(|_| {
        fail(
            "invalid_scope",
            "a requested scope is unknown or not allowed for this client",
        )
    })?;
    let challenge = if implicit {
        None
    } else {
        match (
            params.get("code_challenge"),
            params.get("code_challenge_method"),
        ) {
            (Some(c), Some("S256")) if is_s256_challenge(c) => Some(c.to_owned()),
            (Some(_), Some("S256")) => {
                return Err(fail(
                    "invalid_request",
                    "code_challenge must be 43 base64url characters",
                ));
            }
            (Some(_), _) => {
                return Err(fail(
                    "invalid_request",
                    "code_challenge_method must be S256 (plain is refused)",
                ));
            }
            (None, _) if client.kind == ClientType::Public => {
                return Err(fail(
                    "invalid_request",
                    "PKCE (code_challenge, S256) is required for public clients",
                ));
            }
            (None, _) => None,
        }
    };
    Ok((implicit, scopes, challenge))
}

/// Stores the pending request, then sends the browser to consent (signed in) or login.
pub(super) async fn park(
    ctx: &Ctx<'_>,
    headers: &hyper::HeaderMap,
    client: Option<&Client>,
    pending: Pending,
) -> Answer {
    let request = random_id();
    let stored = serde_json::to_string(&pending).unwrap_or_default();
    if let Err(e) = ctx
        .store
        .put_record(RecordKind::Request, &request, &stored, REQUEST_TTL)
        .await
    {
        return store_down(e);
    }
    match browser::session(ctx, headers).await {
        Ok(Some(_)) => see_other(&browser::consent_url(ctx, &request)),
        Ok(None) => login_page(
            ctx,
            &pending.app_name(client),
            &request,
            &pending.csrf,
            "",
            None,
            StatusCode::OK,
        ),
        Err(e) => store_down(e),
    }
}
