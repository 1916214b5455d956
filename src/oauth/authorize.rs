//! The authorization endpoint (RFC 6749 §4.1, §4.2): `GET {path}/authorize` validates the
//! request and parks it in the store, `POST {path}/login` signs the user in, and
//! `{path}/consent` shows the requested scopes and turns the user's decision into a code or
//! (implicit) a token, delivered by redirect.
//!
//! Pending requests and login sessions live in the token store, so a flow started on one node
//! can finish on another. Forms carry a CSRF token that must also come back as a cookie and
//! match the pending request (double submit plus server-side check).

use std::borrow::Cow;
use std::time::Duration;

use hyper::header::{COOKIE, HeaderValue, LOCATION, SET_COOKIE};
use hyper::{HeaderMap, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::code::{CodeGrant, is_s256_challenge};
use super::issue::{self, resolve_scopes};
use super::pages::{self, Consent, Login, error_page};
use super::params::{self, Params};
use super::{Ctx, TokenResponse};
use crate::config::{Client, ClientType, Grant};
use crate::error::{Body, OAuthError, full};
use crate::store::RecordKind;
use crate::throttle::Key;
use crate::token::{self, TokenHash, now_millis};

/// How long a user has to sign in and decide.
const REQUEST_TTL: Duration = Duration::from_secs(600);
/// How long a login lasts.
const SESSION_TTL: Duration = Duration::from_secs(3600);
const SESSION_COOKIE: &str = "tollgate_session";
const CSRF_COOKIE: &str = "tollgate_csrf";

/// An authorization request waiting for the user.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    client_id: String,
    redirect_uri: String,
    redirect_uri_given: bool,
    /// `code` or `token`.
    implicit: bool,
    scopes: Vec<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    csrf: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Session {
    username: String,
}

type Answer = Response<Body>;

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
    let redirect_uri = match params.get("redirect_uri") {
        Some(uri) if client.redirect_uris.iter().any(|r| r == uri) => uri.to_owned(),
        Some(_) => {
            let msg = "The redirect_uri is not registered for this client.";
            return (client_id, error_page(StatusCode::BAD_REQUEST, msg));
        }
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        None => {
            let msg = "redirect_uri is required: this client has several registered.";
            return (client_id, error_page(StatusCode::BAD_REQUEST, msg));
        }
    };
    let state = params.get("state").map(str::to_owned);
    match validate(client, &params) {
        Ok((implicit, scopes, code_challenge)) => {
            let csrf = cookie(req.headers(), CSRF_COOKIE)
                .filter(|c| is_random_id(c))
                .map(str::to_owned)
                .unwrap_or_else(random_id);
            let pending = Pending {
                client_id: client.client_id.clone(),
                redirect_uri,
                redirect_uri_given: params.get("redirect_uri").is_some(),
                implicit,
                scopes,
                state,
                code_challenge,
                csrf,
            };
            (client_id, park(ctx, req.headers(), client, pending).await)
        }
        Err((implicit, e)) => {
            let fragment = implicit && e.code != "unsupported_response_type";
            (
                client_id,
                redirect_error(
                    &redirect_uri,
                    fragment,
                    e.code,
                    &e.description,
                    state.as_deref(),
                ),
            )
        }
    }
}

/// Checks everything after the redirect URI; on error says whether to answer in the fragment.
#[allow(clippy::type_complexity)]
fn validate(
    client: &Client,
    params: &Params,
) -> Result<(bool, Vec<String>, Option<String>), (bool, OAuthError)> {
    let implicit = params.get("response_type") == Some("token");
    let fail = |e: OAuthError| (implicit, e);
    let grant = match params.get("response_type") {
        Some("code") => Grant::AuthorizationCode,
        Some("token") => Grant::Implicit,
        Some(other) => {
            return Err(fail(OAuthError {
                code: "unsupported_response_type",
                ..OAuthError::invalid_request(format!("response_type {other:?} is not supported"))
            }));
        }
        None => {
            return Err(fail(OAuthError::invalid_request(
                "response_type is required",
            )));
        }
    };
    if !client.allows_grant(grant) {
        return Err(fail(OAuthError::unauthorized_client(format!(
            "client may not use the {} grant",
            grant.as_str()
        ))));
    }
    let scopes = resolve_scopes(params.get("scope"), &client.scopes).map_err(fail)?;
    let challenge = if implicit {
        None
    } else {
        match (
            params.get("code_challenge"),
            params.get("code_challenge_method"),
        ) {
            (Some(c), Some("S256")) if is_s256_challenge(c) => Some(c.to_owned()),
            (Some(_), Some("S256")) => {
                return Err(fail(OAuthError::invalid_request(
                    "code_challenge must be 43 base64url characters",
                )));
            }
            (Some(_), _) => {
                return Err(fail(OAuthError::invalid_request(
                    "code_challenge_method must be S256 (plain is refused)",
                )));
            }
            (None, _) if client.kind == ClientType::Public => {
                return Err(fail(OAuthError::invalid_request(
                    "PKCE (code_challenge, S256) is required for public clients",
                )));
            }
            (None, _) => None,
        }
    };
    Ok((implicit, scopes, challenge))
}

/// Stores the pending request, then sends the browser to consent (signed in) or login.
async fn park(ctx: &Ctx<'_>, headers: &HeaderMap, client: &Client, pending: Pending) -> Answer {
    let request = random_id();
    let stored = serde_json::to_string(&pending).unwrap_or_default();
    if let Err(e) = ctx
        .store
        .put_record(RecordKind::Request, &request, &stored, REQUEST_TTL)
        .await
    {
        return store_down(e);
    }
    let mut resp = match session(ctx, headers).await {
        Ok(Some(_)) => see_other(&consent_url(ctx, &request)),
        Ok(None) => login_page(
            ctx,
            client,
            &request,
            &pending.csrf,
            "",
            None,
            StatusCode::OK,
        ),
        Err(e) => return store_down(e),
    };
    set_cookie(&mut resp, ctx, CSRF_COOKIE, &pending.csrf, REQUEST_TTL);
    resp
}

/// `POST {path}/login`.
pub async fn login(ctx: &Ctx<'_>, req: Request<hyper::body::Incoming>) -> Answer {
    let (headers, params) = match params::read(req).await {
        Ok(x) => x,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e.description),
    };
    let (request, pending, client) = match load_pending(ctx, &headers, &params).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let username = params.get("username").unwrap_or("");
    let password = params.get("password").unwrap_or("");
    let keys = [Key::User(username.to_owned()), Key::Address(ctx.remote)];
    if let Err(wait) = ctx.throttle.check(&keys) {
        let msg = format!(
            "Too many failed attempts. Try again in {} seconds.",
            wait.as_secs().max(1)
        );
        let mut resp = login_page(
            ctx,
            &client,
            &request,
            &pending.csrf,
            username,
            Some(&msg),
            StatusCode::TOO_MANY_REQUESTS,
        );
        resp.headers_mut()
            .insert("retry-after", HeaderValue::from(wait.as_secs().max(1)));
        return resp;
    }
    let user = ctx.config.user(username);
    let hash = user.map_or(crate::secret::decoy_hash(), |u| u.password_hash.as_str());
    let ok = crate::secret::verify_blocking(password.to_owned(), hash.to_owned()).await;
    let Some(user) = user.filter(|_| ok) else {
        ctx.throttle.fail(&keys);
        let msg = "Invalid username or password";
        return login_page(
            ctx,
            &client,
            &request,
            &pending.csrf,
            username,
            Some(msg),
            StatusCode::OK,
        );
    };
    let session_id = random_id();
    let record = serde_json::to_string(&Session {
        username: user.username.clone(),
    })
    .unwrap_or_default();
    let key = TokenHash::of(&session_id).to_hex();
    if let Err(e) = ctx
        .store
        .put_record(RecordKind::Session, &key, &record, SESSION_TTL)
        .await
    {
        return store_down(e);
    }
    let mut resp = see_other(&consent_url(ctx, &request));
    set_cookie(&mut resp, ctx, SESSION_COOKIE, &session_id, SESSION_TTL);
    resp
}

/// `GET {path}/consent?request=…`.
pub async fn consent_page(ctx: &Ctx<'_>, req: Request<hyper::body::Incoming>) -> Answer {
    let params = match Params::parse(req.uri().query().unwrap_or("").as_bytes()) {
        Ok(p) => p,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e.description),
    };
    let Some(request) = params.get("request") else {
        return error_page(StatusCode::BAD_REQUEST, "Missing authorization request.");
    };
    let pending = match get_pending(ctx, request).await {
        Ok(Some(p)) => p,
        Ok(None) => return expired(),
        Err(resp) => return resp,
    };
    let client = match ctx.client(&pending.client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return expired(),
        Err(e) => return store_down(e),
    };
    let client: &Client = &client;
    let username = match session(ctx, req.headers()).await {
        Ok(Some(s)) => s.username,
        Ok(None) => {
            return login_page(
                ctx,
                client,
                request,
                &pending.csrf,
                "",
                None,
                StatusCode::OK,
            );
        }
        Err(e) => return store_down(e),
    };
    let grantable = grantable(ctx, &pending, &username);
    if grantable.is_empty() {
        let _ = ctx.store.delete_record(RecordKind::Request, request).await;
        let msg = "the signed-in user may not grant any of the requested scopes";
        return redirect_error(
            &pending.redirect_uri,
            pending.implicit,
            "access_denied",
            msg,
            pending.state.as_deref(),
        );
    }
    let descriptions = ctx.config.scope_names();
    let action = format!("{}/consent", ctx.config.oauth.path);
    pages::consent(&Consent {
        action: &action,
        request,
        csrf: &pending.csrf,
        username: &username,
        client_name: &client.name,
        client_version: &client.version,
        client_description: &client.description,
        scopes: grantable
            .iter()
            .map(|s| {
                (
                    s.as_str(),
                    descriptions.get(s.as_str()).copied().unwrap_or(""),
                )
            })
            .collect(),
    })
}

/// `POST {path}/consent`: the user's decision.
pub async fn consent_decision(
    ctx: &Ctx<'_>,
    req: Request<hyper::body::Incoming>,
) -> (Option<String>, Answer) {
    let (headers, pairs) = match params::read_pairs(req).await {
        Ok(x) => x,
        Err(e) => return (None, error_page(StatusCode::BAD_REQUEST, &e.description)),
    };
    let ticked: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.as_str())
        .collect();
    let single: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k != "scope")
        .cloned()
        .collect();
    let params = match Params::parse(
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&single)
            .finish()
            .as_bytes(),
    ) {
        Ok(p) => p,
        Err(e) => return (None, error_page(StatusCode::BAD_REQUEST, &e.description)),
    };
    let (request, pending, client) = match load_pending(ctx, &headers, &params).await {
        Ok(x) => x,
        Err(resp) => return (None, resp),
    };
    let client_id = Some(client.client_id.clone());
    let username = match session(ctx, &headers).await {
        Ok(Some(s)) => s.username,
        Ok(None) => {
            return (
                client_id,
                login_page(
                    ctx,
                    &client,
                    &request,
                    &pending.csrf,
                    "",
                    None,
                    StatusCode::OK,
                ),
            );
        }
        Err(e) => return (client_id, store_down(e)),
    };
    // One decision per request: a replayed form finds nothing.
    if let Err(e) = ctx.store.delete_record(RecordKind::Request, &request).await {
        return (client_id, store_down(e));
    }
    let state = pending.state.as_deref();
    let deny = |why: &str| {
        redirect_error(
            &pending.redirect_uri,
            pending.implicit,
            "access_denied",
            why,
            state,
        )
    };
    if params.get("decision") != Some("grant") {
        return (client_id, deny("the user denied the request"));
    }
    let scopes: Vec<String> = grantable(ctx, &pending, &username)
        .into_iter()
        .filter(|s| ticked.contains(&s.as_str()))
        .collect();
    if scopes.is_empty() {
        return (client_id, deny("no scope was granted"));
    }
    let answer = if pending.implicit {
        implicit_token(ctx, &client, &pending, &username, scopes).await
    } else {
        issue_code(ctx, &pending, &username, scopes).await
    };
    (client_id, answer.unwrap_or_else(|e| e.into_response()))
}

async fn issue_code(
    ctx: &Ctx<'_>,
    pending: &Pending,
    username: &str,
    scopes: Vec<String>,
) -> Result<Answer, OAuthError> {
    let rng =
        |e: getrandom::Error| OAuthError::server_error(format!("random generator failed: {e}"));
    let code = token::generate().map_err(rng)?;
    let ttl = ctx.config.oauth.authorization_code_ttl;
    let grant = CodeGrant {
        client_id: pending.client_id.clone(),
        redirect_uri: pending.redirect_uri.clone(),
        redirect_uri_given: pending.redirect_uri_given,
        username: username.to_owned(),
        scopes,
        code_challenge: pending.code_challenge.clone(),
        grant_id: token::new_grant_id().map_err(rng)?,
        expires_at: now_millis() + ttl.as_millis() as u64,
    };
    let record =
        serde_json::to_string(&grant).map_err(|e| OAuthError::server_error(e.to_string()))?;
    ctx.store
        .put_record(
            RecordKind::Code,
            &TokenHash::of(&code).to_hex(),
            &record,
            ttl,
        )
        .await?;
    let mut query = vec![("code", code.as_str())];
    if let Some(state) = &pending.state {
        query.push(("state", state));
    }
    Ok(see_other(&with_params(
        &pending.redirect_uri,
        false,
        &query,
    )))
}

/// Implicit grant: the token goes in the fragment, and never with a refresh token.
async fn implicit_token(
    ctx: &Ctx<'_>,
    client: &Client,
    pending: &Pending,
    username: &str,
    scopes: Vec<String>,
) -> Result<Answer, OAuthError> {
    let issued = issue::issue(
        ctx.store,
        &ctx.config.oauth,
        issue::Request {
            client,
            username: Some(username),
            scopes,
            grant_id: None,
            refreshes_used: 0,
            refreshable: false,
            grant: "implicit",
        },
    )
    .await?;
    let t = TokenResponse::from(issued);
    let expires_in = t.expires_in.map(|s| s.to_string());
    let mut fragment = vec![
        ("access_token", t.access_token.as_str()),
        ("token_type", "Bearer"),
    ];
    if let Some(e) = &expires_in {
        fragment.push(("expires_in", e));
    }
    fragment.push(("scope", &t.scope));
    if let Some(state) = &pending.state {
        fragment.push(("state", state));
    }
    Ok(see_other(&with_params(
        &pending.redirect_uri,
        true,
        &fragment,
    )))
}

/// Requested scopes the user may grant (their own list; none = all).
fn grantable(ctx: &Ctx<'_>, pending: &Pending, username: &str) -> Vec<String> {
    let Some(user) = ctx.config.user(username) else {
        return Vec::new();
    };
    pending
        .scopes
        .iter()
        .filter(|s| user.scopes.as_ref().is_none_or(|own| own.contains(s)))
        .cloned()
        .collect()
}

/// The pending request named by the form, after the CSRF double-submit check.
async fn load_pending<'c>(
    ctx: &Ctx<'c>,
    headers: &HeaderMap,
    params: &Params,
) -> Result<(String, Pending, Cow<'c, Client>), Answer> {
    let request = params.get("request").ok_or_else(expired)?;
    let pending = get_pending(ctx, request).await?.ok_or_else(expired)?;
    let form_csrf = params.get("csrf");
    let cookie_csrf = cookie(headers, CSRF_COOKIE);
    if form_csrf != Some(pending.csrf.as_str()) || cookie_csrf != Some(pending.csrf.as_str()) {
        return Err(error_page(
            StatusCode::FORBIDDEN,
            "This form has expired or did not come from this site. Start again from the application.",
        ));
    }
    let client = ctx
        .client(&pending.client_id)
        .await
        .map_err(store_down)?
        .ok_or_else(expired)?;
    Ok((request.to_owned(), pending, client))
}

async fn get_pending(ctx: &Ctx<'_>, request: &str) -> Result<Option<Pending>, Answer> {
    match ctx.store.get_record(RecordKind::Request, request).await {
        Ok(found) => Ok(found.and_then(|json| serde_json::from_str(&json).ok())),
        Err(e) => Err(store_down(e)),
    }
}

async fn session(
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

fn login_page(
    ctx: &Ctx<'_>,
    client: &Client,
    request: &str,
    csrf: &str,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Answer {
    let action = format!("{}/login", ctx.config.oauth.path);
    pages::login(
        status,
        &Login {
            action: &action,
            request,
            csrf,
            client_name: &client.name,
            username,
            error,
        },
    )
}

fn consent_url(ctx: &Ctx<'_>, request: &str) -> String {
    format!("{}/consent?request={}", ctx.config.oauth.path, request)
}

fn expired() -> Answer {
    error_page(
        StatusCode::BAD_REQUEST,
        "This sign-in request has expired or is unknown. Start again from the application.",
    )
}

fn store_down(e: crate::store::StoreError) -> Answer {
    tracing::warn!(error = %e, "token store error on the authorization endpoint");
    let mut resp = error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "The service is briefly unavailable. Please try again.",
    );
    resp.headers_mut()
        .insert("retry-after", HeaderValue::from_static("1"));
    resp
}

/// RFC 6749 §4.1.2.1 / §4.2.2.1: the error goes back to the client.
fn redirect_error(
    redirect_uri: &str,
    fragment: bool,
    code: &str,
    description: &str,
    state: Option<&str>,
) -> Answer {
    let mut params = vec![("error", code), ("error_description", description)];
    if let Some(state) = state {
        params.push(("state", state));
    }
    see_other(&with_params(redirect_uri, fragment, &params))
}

/// `uri` with `params` added to its query (or as its fragment).
fn with_params(uri: &str, fragment: bool, params: &[(&str, &str)]) -> String {
    let encoded = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let sep = if fragment {
        '#'
    } else if uri.contains('?') {
        '&'
    } else {
        '?'
    };
    format!("{uri}{sep}{encoded}")
}

fn see_other(location: &str) -> Answer {
    let mut resp = Response::new(full(""));
    *resp.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    resp
}

fn set_cookie(resp: &mut Answer, ctx: &Ctx<'_>, name: &str, value: &str, max_age: Duration) {
    let secure = if ctx.tls { "; Secure" } else { "" };
    let cookie = format!(
        "{name}={value}; Path={}; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        ctx.config.oauth.path,
        max_age.as_secs()
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(SET_COOKIE, v);
    }
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
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
fn random_id() -> String {
    // Without the OS generator no id is safe to hand out: stopping is the only sound answer.
    token::new_grant_id().expect("the OS random generator failed")
}

fn is_random_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}
