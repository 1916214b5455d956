//! `POST {path}/revoke`: RFC 7009 token revocation. A refresh token takes its whole grant
//! with it (the access tokens issued from it, SPEC §5); a client may revoke only its own.

use hyper::{Request, Response, StatusCode};

use super::Ctx;
use super::params;
use crate::error::{Body, OAuthError, no_store};
use crate::store::TokenStore;
use crate::token::TokenHash;

pub async fn handle(
    ctx: &Ctx<'_>,
    req: Request<hyper::body::Incoming>,
) -> (Option<String>, Response<Body>) {
    let mut client_id = None;
    let result = async {
        let (params, auth) = params::read_authenticated(ctx, req, false).await?;
        client_id = Some(auth.client.client_id.clone());
        let token = params.require("token")?;
        revoke(
            ctx.store,
            &auth.client.client_id,
            token,
            params.get("token_type_hint"),
        )
        .await
    }
    .await;
    let response = match result {
        Ok(()) => {
            let mut resp = Response::new(crate::error::full(""));
            *resp.status_mut() = StatusCode::OK;
            no_store(resp)
        }
        Err(e) => e.into_response(),
    };
    (client_id, response)
}

async fn revoke(
    store: &TokenStore,
    client_id: &str,
    token: &str,
    hint: Option<&str>,
) -> Result<(), OAuthError> {
    let hash = TokenHash::of(token);
    let not_yours = || OAuthError::unauthorized_client("the token was issued to another client");
    // The hint only orders the lookups (RFC 7009 §2.1); an unknown hint is ignored.
    let refresh_first = hint == Some("refresh_token");
    for refresh in [refresh_first, !refresh_first] {
        if refresh {
            if let Some(entry) = store.get_refresh(&hash).await? {
                if &*entry.token.client_id != client_id {
                    return Err(not_yours());
                }
                store.revoke_grant(&entry.token.grant_id).await?;
                return Ok(());
            }
        } else if let Some(entry) = store.lookup_access(&hash).await? {
            if &*entry.token.client_id != client_id {
                return Err(not_yours());
            }
            store.revoke_access(&hash).await?;
            return Ok(());
        }
    }
    // Unknown tokens are not an error (RFC 7009 §2.2).
    Ok(())
}
