//! `POST {path}/token`: the client_credentials, password and refresh_token grants
//! (RFC 6749 §4.3, §4.4, §6).

use hyper::{Request, Response, StatusCode};

use super::issue::{self, TokenResponse, resolve_scopes};
use super::params::{self, Authenticated, Params};
use crate::config::{Config, Grant};
use crate::error::{Body, OAuthError, json, no_store};
use crate::store::{Retire, TokenStore};
use crate::token::{TokenHash, now_millis};

/// What the access log learns about a token request.
pub struct Outcome {
    pub client_id: Option<String>,
    pub response: Response<Body>,
}

pub async fn handle(
    config: &Config,
    store: &TokenStore,
    req: Request<hyper::body::Incoming>,
) -> Outcome {
    let mut client_id = None;
    let result = async {
        let (headers, params) = params::read(req).await?;
        let creds = params::client_credentials(&headers, &params)?;
        let auth = params::authenticate(config, creds).await?;
        client_id = Some(auth.client.client_id.clone());
        grant(config, store, &auth, &params)
            .await
            .map_err(|e| OAuthError {
                basic_challenge: auth.via_basic,
                ..e
            })
    }
    .await;
    let response = match result {
        Ok(token) => no_store(json(StatusCode::OK, &token)),
        Err(e) => e.into_response(),
    };
    Outcome {
        client_id,
        response,
    }
}

async fn grant(
    config: &Config,
    store: &TokenStore,
    auth: &Authenticated<'_>,
    params: &Params,
) -> Result<TokenResponse, OAuthError> {
    let grant_type = params.require("grant_type")?;
    let grant = Grant::parse(grant_type)
        .filter(|g| !matches!(g, Grant::Implicit | Grant::AuthorizationCode))
        .ok_or_else(|| {
            OAuthError::unsupported_grant_type(format!(
                "grant_type {grant_type:?} is not supported"
            ))
        })?;
    let client = auth.client;
    if !client.allows_grant(grant) {
        return Err(OAuthError::unauthorized_client(format!(
            "client may not use the {grant_type} grant"
        )));
    }
    // A request that named no client may only act for a user; the default client stands in
    // for legacy callers that send just a username and password.
    if auth.defaulted && grant == Grant::ClientCredentials {
        return Err(OAuthError::invalid_client("client authentication required"));
    }
    let issued = match grant {
        Grant::ClientCredentials => {
            let scopes = resolve_scopes(params.get("scope"), &client.scopes)?;
            issue::issue(
                store,
                &config.oauth,
                issue::Request {
                    client,
                    username: None,
                    scopes,
                    grant_id: None,
                    refreshes_used: 0,
                    refreshable: false,
                },
            )
            .await?
        }
        Grant::Password => {
            let username = params.require("username")?;
            let password = params.require("password")?;
            let user = config.user(username);
            let hash = user.map_or(crate::secret::decoy_hash(), |u| u.password_hash.as_str());
            let matches =
                crate::secret::verify_blocking(password.to_owned(), hash.to_owned()).await;
            let Some(user) = user.filter(|_| matches) else {
                return Err(OAuthError::invalid_grant("invalid username or password"));
            };
            let allowed: Vec<String> = match &user.scopes {
                None => client.scopes.clone(),
                Some(own) => client
                    .scopes
                    .iter()
                    .filter(|s| own.contains(s))
                    .cloned()
                    .collect(),
            };
            let scopes = resolve_scopes(params.get("scope"), &allowed)?;
            issue::issue(
                store,
                &config.oauth,
                issue::Request {
                    client,
                    username: Some(&user.username),
                    scopes,
                    grant_id: None,
                    refreshes_used: 0,
                    refreshable: true,
                },
            )
            .await?
        }
        Grant::RefreshToken => refresh(config, store, auth, params).await?,
        Grant::AuthorizationCode | Grant::Implicit => {
            return Err(OAuthError::unsupported_grant_type(format!(
                "grant_type {grant_type:?} is not supported"
            )));
        }
    };
    Ok(issued.into())
}

/// Rotation: the presented refresh token is retired and a successor issued; presenting a
/// retired one again revokes the whole grant (RFC 9700 §4.14.2).
async fn refresh(
    config: &Config,
    store: &TokenStore,
    auth: &Authenticated<'_>,
    params: &Params,
) -> Result<issue::Issued, OAuthError> {
    let client = auth.client;
    let presented = params.require("refresh_token")?;
    let hash = TokenHash::of(presented);
    let invalid = || OAuthError::invalid_grant("refresh token is invalid, expired or revoked");
    let Some(entry) = store.get_refresh(&hash).await? else {
        return Err(invalid());
    };
    let old = entry.token;
    if old.client_id != client.client_id {
        return Err(invalid());
    }
    if entry.revoked || old.is_expired(now_millis()) {
        return Err(invalid());
    }
    if entry.retired {
        reuse_detected(store, &old.grant_id).await?;
        return Err(invalid());
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
        let Some(user) = config.user(name) else {
            return Err(invalid());
        };
        if let Some(own) = &user.scopes {
            allowed.retain(|s| own.contains(s));
        }
    }
    let scopes = resolve_scopes(params.get("scope"), &allowed)?;
    match store.retire_refresh(&hash).await? {
        Retire::Retired => {}
        Retire::AlreadyRetired => {
            reuse_detected(store, &old.grant_id).await?;
            return Err(invalid());
        }
        Retire::Missing => return Err(invalid()),
    }
    issue::issue(
        store,
        &config.oauth,
        issue::Request {
            client,
            username: old.username.as_deref(),
            scopes,
            grant_id: Some(old.grant_id),
            refreshes_used: old.refreshes_used + 1,
            refreshable: true,
        },
    )
    .await
}

async fn reuse_detected(store: &TokenStore, grant_id: &str) -> Result<(), OAuthError> {
    let n = store.revoke_grant(grant_id).await?;
    tracing::warn!(
        grant_id,
        revoked = n,
        "retired refresh token presented again; grant revoked"
    );
    Ok(())
}
