//! `/admin/credentials`: the outbound credentials' state (SPEC §8), never a token or secret.

use hyper::StatusCode;
use serde_json::json;

use super::{AdminError, AdminResult, Reply};
use crate::gateway::Gateway;
use crate::outbound::ConnectError;

fn unknown(name: &str) -> AdminError {
    AdminError::not_found(format!("no credential {name:?}"))
}

/// `GET /admin/credentials`.
pub fn list(gateway: &Gateway) -> AdminResult {
    let credentials = gateway.outbound().list();
    Ok(Reply::ok(json!({ "credentials": credentials })))
}

/// `POST /admin/credentials/{name}/refresh`: 200 after a successful token request, 502 with
/// the same object when it failed.
pub async fn refresh(gateway: &Gateway, name: &str) -> AdminResult {
    let (ok, status) = gateway
        .outbound()
        .refresh_now(name)
        .await
        .ok_or_else(|| unknown(name))?;
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::BAD_GATEWAY
    };
    let body = serde_json::to_value(&status).map_err(|e| AdminError::bad_request(e.to_string()))?;
    Ok(Reply::new(code, body))
}

/// `POST /admin/credentials/{name}/authorize` → `{"authorize_url": ...}` for an operator's
/// browser (shared authorization-code credentials).
/// `return_to`: where the browser comes back after the provider (the console's page).
pub async fn authorize(gateway: &Gateway, name: &str, return_to: Option<&str>) -> AdminResult {
    match gateway
        .outbound()
        .authorize_url(name, None, return_to)
        .await
    {
        Ok(url) => Ok(Reply::once(StatusCode::OK, json!({ "authorize_url": url }))),
        Err(ConnectError::Unknown(_)) => Err(unknown(name)),
        Err(ConnectError::Store(e)) => Err(e.into()),
        Err(e) => Err(AdminError::conflict(e.to_string())),
    }
}

/// `DELETE /admin/credentials/{name}/tokens[?username=U]` → 204.
pub async fn forget(gateway: &Gateway, name: &str, query: Option<&str>) -> AdminResult {
    let username = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "username")
            .map(|(_, v)| v.into_owned())
    });
    gateway
        .outbound()
        .forget(name, username.as_deref())
        .await
        .ok_or_else(|| unknown(name))?;
    Ok(Reply::no_content())
}
