//! The authorization server: endpoints under `[oauth].path` on the public listener.

mod issue;
mod params;
mod revoke;
mod token;

pub use issue::{TokenResponse, rfc3339};

use hyper::{Method, Request, Response};

use crate::config::Config;
use crate::error::{Body, OAuthError};
use crate::store::TokenStore;

/// An OAuth endpoint's answer, and the client it identified (for the access log).
pub struct Handled {
    pub endpoint: &'static str,
    pub client_id: Option<String>,
    pub response: Response<Body>,
}

/// Serves `req` if `path` is one of the OAuth endpoints; otherwise gives the request back.
pub async fn route(
    config: &Config,
    store: &TokenStore,
    path: &str,
    req: Request<hyper::body::Incoming>,
) -> Result<Handled, Request<hyper::body::Incoming>> {
    let Some(endpoint) = path
        .strip_prefix(config.oauth.path.as_str())
        .and_then(|rest| rest.strip_prefix('/'))
    else {
        return Err(req);
    };
    let endpoint: &'static str = match endpoint {
        "token" => "token",
        "revoke" => "revoke",
        _ => return Err(req),
    };
    if req.method() != Method::POST {
        return Ok(Handled {
            endpoint,
            client_id: None,
            response: OAuthError::method_not_allowed().into_response(),
        });
    }
    let (client_id, response) = match endpoint {
        "token" => {
            let out = token::handle(config, store, req).await;
            (out.client_id, out.response)
        }
        _ => revoke::handle(config, store, req).await,
    };
    Ok(Handled {
        endpoint,
        client_id,
        response,
    })
}
