//! `POST {path}/token`: every grant (RFC 6749 §4.1.3, §4.3, §4.4, §6).

use hyper::{Request, Response};

use super::issue::{self, Issued, TokenResponse, resolve_scopes};
use super::params::{self, Authenticated, Params, PasswordRefused};
use super::{Ctx, code, grace};
use crate::config::{Client, Grant};
use crate::error::{Body, OAuthError, no_store};
use crate::store::{Rotate, Rotation};
use crate::token::{RefreshEntry, TokenHash, now_millis};

pub async fn handle(
    ctx: &Ctx<'_>,
    req: Request<hyper::body::Incoming>,
) -> (Option<String>, Response<Body>) {
    let mut client_id = None;
    let result = async {
        let (params, auth) = params::read_authenticated(ctx, req, true).await?;
        client_id = Some(auth.client.client_id.clone());
        grant(ctx, &auth, &params).await.map_err(|e| OAuthError {
            basic_challenge: auth.via_basic,
            ..e
        })
    }
    .await;
    let response = match result {
        Ok(body) => {
            let mut resp = Response::new(crate::error::full(body));
            resp.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            no_store(resp)
        }
        Err(e) => e.into_response(),
    };
    (client_id, response)
}

fn unsupported(grant_type: &str) -> OAuthError {
    OAuthError::unsupported_grant_type(format!("grant_type {grant_type:?} is not supported"))
}

fn to_json(issued: Issued) -> Result<Vec<u8>, OAuthError> {
    serde_json::to_vec(&TokenResponse::from(issued))
        .map_err(|e| OAuthError::server_error(e.to_string()))
}

/// Runs the requested grant; the answer is the JSON token response.
async fn grant(
    ctx: &Ctx<'_>,
    auth: &Authenticated<'_>,
    params: &Params,
) -> Result<Vec<u8>, OAuthError> {
    // FlowWright's clients send only `username` and `password` (SPEC §5): a password grant.
    let grant_type = match params.get("grant_type") {
        None if params.get("username").is_some() && params.get("password").is_some() => "password",
        _ => params.require("grant_type")?,
    };
    let grant = Grant::parse(grant_type)
        .filter(|g| *g != Grant::Implicit)
        .ok_or_else(|| unsupported(grant_type))?;
    let client: &Client = &auth.client;
    // A request that named no client may only act for a user; the default client stands in
    // for legacy callers that send just a username and password.
    if auth.defaulted && !matches!(grant, Grant::Password | Grant::RefreshToken) {
        return Err(OAuthError::invalid_client("client authentication required"));
    }
    if !client.allows_grant(grant) {
        return Err(OAuthError::unauthorized_client(format!(
            "client may not use the {grant_type} grant"
        )));
    }
    let oauth = &ctx.config.oauth;
    let issued = match grant {
        Grant::ClientCredentials => {
            let scopes = resolve_scopes(params.get("scope"), &client.scopes)?;
            let req = issue::Request {
                client,
                username: None,
                scopes,
                grant_id: None,
                refreshes_used: 0,
                refreshable: false,
                grant: "client_credentials",
            };
            issue::issue(ctx.store, oauth, req).await?
        }
        Grant::Password => {
            let username = params.require("username")?;
            let password = params.require("password")?;
            let user = params::check_user(ctx, username, password)
                .await
                .map_err(|refused| match refused {
                    PasswordRefused::SlowDown(wait) => OAuthError::slow_down(wait),
                    PasswordRefused::Unavailable(e) => e.into(),
                    PasswordRefused::Wrong => {
                        OAuthError::invalid_grant("invalid username or password")
                    }
                })?;
            let allowed: Vec<String> = client
                .scopes
                .iter()
                .filter(|s| user.may_grant(s))
                .cloned()
                .collect();
            let scopes = resolve_scopes(params.get("scope"), &allowed)?;
            let req = issue::Request {
                client,
                username: Some(&user.username),
                scopes,
                grant_id: None,
                refreshes_used: 0,
                refreshable: true,
                grant: "password",
            };
            issue::issue(ctx.store, oauth, req).await?
        }
        Grant::AuthorizationCode => code::exchange(ctx, client, params).await?,
        Grant::RefreshToken => return refresh(ctx, auth, params).await,
        Grant::Implicit => return Err(unsupported(grant_type)),
    };
    to_json(issued)
}

/// Rotation: the presented refresh token is retired and a successor issued. Presenting a
/// retired one again is reuse and revokes the whole grant (RFC 9700 §4.14.2), except within
/// `refresh_grace` of its exchange, where the client gets that exchange's answer again.
async fn refresh(
    ctx: &Ctx<'_>,
    auth: &Authenticated<'_>,
    params: &Params,
) -> Result<Vec<u8>, OAuthError> {
    let client: &Client = &auth.client;
    let presented = params.require("refresh_token")?;
    let hash = TokenHash::of(presented);
    let invalid = || OAuthError::invalid_grant("refresh token is invalid, expired or revoked");
    let Some(entry) = ctx.store.get_refresh(&hash).await? else {
        return Err(invalid());
    };
    let old = &entry.token;
    if old.client_id != client.client_id || entry.revoked || old.is_expired(now_millis()) {
        return Err(invalid());
    }
    if entry.retired_at.is_some() {
        return retry_or_reuse(ctx, presented, entry).await;
    }
    if !client.refresh_count.allows(old.refreshes_used) {
        return Err(OAuthError::invalid_grant(
            "this grant may not be refreshed any more",
        ));
    }
    // The user may have lost scopes since; never hand out more than they may grant now.
    let mut allowed: Vec<String> = old
        .scopes
        .iter()
        .filter(|s| client.scopes.contains(s))
        .cloned()
        .collect();
    if let Some(name) = &old.username {
        let Some(user) = ctx.config.user(name) else {
            return Err(invalid());
        };
        allowed.retain(|s| user.may_grant(s));
    }
    let scopes = resolve_scopes(params.get("scope"), &allowed)?;
    let req = issue::Request {
        client,
        username: old.username.as_deref(),
        scopes,
        grant_id: Some(old.grant_id.clone()),
        refreshes_used: old.refreshes_used + 1,
        refreshable: true,
        grant: "refresh_token",
    };
    // Mint first, store later: the new tokens, the retirement of the old one and the sealed
    // answer for retries are written in one atomic step, so no failure can leave the old
    // token retired without a successor (a retry would then look like reuse).
    let issued = issue::mint(&ctx.config.oauth, req)?;
    let access_hash = TokenHash::of(&issued.access_token);
    let refresh_hash = issued.refresh_token.as_deref().map(TokenHash::of);
    let (access, new_refresh) = (issued.access.clone(), issued.refresh.clone());
    let body = to_json(issued)?;
    let grace = ctx.config.oauth.refresh_grace;
    let sealed = (!grace.is_zero())
        .then(|| grace::seal(presented, &body))
        .flatten();
    let rotation = Rotation {
        old: &hash,
        access_hash: &access_hash,
        access: &access,
        refresh: refresh_hash.as_ref().zip(new_refresh.as_ref()),
        successor: sealed.as_deref(),
        grace,
    };
    match ctx.store.rotate_refresh(&rotation).await? {
        Rotate::Rotated => {
            ctx.store.metrics().issued("refresh_token");
            Ok(body)
        }
        Rotate::AlreadyRetired => {
            // Lost a race with a concurrent refresh of the same token: treat as its retry.
            let Some(entry) = ctx.store.get_refresh(&hash).await? else {
                return Err(invalid());
            };
            retry_or_reuse(ctx, presented, entry).await
        }
        Rotate::Missing | Rotate::Revoked => Err(invalid()),
    }
}

/// A retired refresh token came back: within the grace window it is a retry and gets the
/// same answer (stored with the retirement, so it is there whenever the token is retired);
/// after it, reuse, and the grant is revoked.
async fn retry_or_reuse(
    ctx: &Ctx<'_>,
    presented: &str,
    entry: RefreshEntry,
) -> Result<Vec<u8>, OAuthError> {
    let grace = ctx.config.oauth.refresh_grace;
    let retired_at = entry.retired_at.unwrap_or(0);
    let within = now_millis() < retired_at.saturating_add(grace.as_millis() as u64);
    if within
        && !entry.revoked
        && let Some(body) = entry
            .successor
            .as_deref()
            .and_then(|s| grace::open(presented, s))
    {
        return Ok(body);
    }
    let n = ctx.store.revoke_grant(&entry.token.grant_id).await?;
    tracing::warn!(grant_id = %entry.token.grant_id, revoked = n, "retired refresh token presented again; grant revoked");
    Err(OAuthError::invalid_grant(
        "refresh token is invalid, expired or revoked",
    ))
}
