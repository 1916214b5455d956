//! `/admin/tokens`: list access tokens (by handle, never by text), issue one for a client,
//! and revoke one with its refresh token.

use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use serde_json::{Map, Value, json};

use super::{AdminError, AdminResult, Reply};
use crate::config::RefreshCount;
use crate::gateway::Gateway;
use crate::oauth::issue::{self, TokenResponse, resolve_scopes};
use crate::oauth::rfc3339;
use crate::token::{AccessEntry, TokenHash, now_millis};

const DEFAULT_DAYS: u64 = 30;
const MAX_DAYS: u64 = 36_500;

/// A token as the admin listing shows it.
pub struct Listed {
    pub hash: TokenHash,
    pub entry: Arc<AccessEntry>,
    pub expired: bool,
    /// `None` = unlimited.
    pub refreshes_left: Option<u32>,
}

/// The tokens the listing shows (SPEC §9): unrevoked access tokens of the client and/or user
/// (both `None` = all), oldest first; an expired one only while the refresh token issued
/// with it can still be used.
pub async fn listed(
    gateway: &Gateway,
    client_id: Option<&str>,
    username: Option<&str>,
) -> Result<Vec<Listed>, AdminError> {
    let store = gateway.store();
    let mut found = store.access_tokens(client_id, username).await?;
    found.retain(|(_, e)| !e.revoked);
    found.sort_by_key(|(_, e)| e.token.issued_at);
    let now = now_millis();
    let rt = gateway.runtime();
    let mut out = Vec::with_capacity(found.len());
    for (hash, entry) in found {
        let t = &entry.token;
        let expired = t.is_expired(now);
        let refreshable = store.refreshable(t).await?;
        if expired && !refreshable {
            continue;
        }
        let client = store.find_client(&rt.config, &t.client_id).await?;
        // A token without a live refresh token (client credentials, an admin-made token,
        // one whose refresh token was used) has no refreshes left, whatever its client's cap.
        let refreshes_left = match client.map(|c| c.refresh_count) {
            _ if !refreshable => Some(0),
            Some(RefreshCount::Limited(n)) => Some(n.saturating_sub(t.refreshes_used)),
            _ => None,
        };
        out.push(Listed {
            hash,
            entry,
            expired,
            refreshes_left,
        });
    }
    Ok(out)
}

pub async fn list(gateway: &Gateway, query: Option<&str>) -> AdminResult {
    let mut client_id = None;
    let mut username = None;
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "client_id" if !v.is_empty() => client_id = Some(v.into_owned()),
            "username" if !v.is_empty() => username = Some(v.into_owned()),
            "client_id" | "username" => {}
            other => {
                return Err(AdminError::bad_request(format!(
                    "unknown parameter `{other}`"
                )));
            }
        }
    }
    let tokens: Vec<Value> = listed(gateway, client_id.as_deref(), username.as_deref())
        .await?
        .into_iter()
        .map(|l| {
            let t = &l.entry.token;
            json!({
                "id": l.hash.to_hex(),
                "client_id": t.client_id,
                "username": t.username,
                "scope": t.scope_string(),
                "issued_at": rfc3339(t.issued_at),
                "expires_at": t.expires_at.map(rfc3339),
                "expired": l.expired,
                "refreshes_left": l.refreshes_left,
            })
        })
        .collect();
    Ok(Reply::ok(json!({ "tokens": tokens })))
}

pub async fn issue(gateway: &Gateway, body: Map<String, Value>) -> AdminResult {
    for key in body.keys() {
        if !matches!(key.as_str(), "client_id" | "scope" | "days") {
            return Err(AdminError::bad_request(format!(
                "unknown key `{key}` (accepted: client_id, scope, days)"
            )));
        }
    }
    let client_id = body
        .get("client_id")
        .and_then(Value::as_str)
        .ok_or_else(|| AdminError::bad_request("`client_id` (a string) is required"))?;
    let days = match body.get("days") {
        None => DEFAULT_DAYS,
        Some(v) => v
            .as_u64()
            .filter(|d| (1..=MAX_DAYS).contains(d))
            .ok_or_else(|| {
                AdminError::bad_request(format!(
                    "`days` must be a whole number from 1 to {MAX_DAYS}"
                ))
            })?,
    };
    let scope = match body.get("scope") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => {
            return Err(AdminError::bad_request(
                "`scope` must be a space-separated string",
            ));
        }
    };
    let rt = gateway.runtime();
    let mut client = gateway
        .store()
        .find_client(&rt.config, client_id)
        .await?
        .ok_or_else(|| AdminError::bad_request(format!("no client {client_id:?}")))?
        .into_owned();
    if !client.enabled {
        return Err(AdminError::bad_request(format!(
            "client {client_id:?} is disabled; enable it first"
        )));
    }
    let scopes = resolve_scopes(scope, &client.scopes)?;
    // The lifetime asked for here, not the client's usual one.
    client.access_token_ttl = Some(Duration::from_secs(days * 86_400));
    let issued = issue::issue(
        gateway.store(),
        &rt.config.oauth,
        issue::Request {
            client: &client,
            username: None,
            scopes,
            grant_id: None,
            refreshes_used: 0,
            refreshable: false,
            grant: "admin",
        },
    )
    .await?;
    tracing::info!(client_id, days, "token issued through the admin API");
    // A token response, like the token endpoint's: never cached (RFC 6749 §5.1).
    let body = serde_json::to_value(TokenResponse::from(issued))
        .map_err(|e| AdminError::bad_request(e.to_string()))?;
    Ok(Reply::once(StatusCode::CREATED, body))
}

pub async fn delete(gateway: &Gateway, id: &str) -> AdminResult {
    let hash =
        TokenHash::from_hex(id).ok_or_else(|| AdminError::not_found(format!("no token {id:?}")))?;
    let store = gateway.store();
    let Some(entry) = store.lookup_access(&hash).await? else {
        return Err(AdminError::not_found(format!("no token {id:?}")));
    };
    // The grant holds this access token and the refresh token issued with it: revoking the
    // grant takes both (on every node).
    store.revoke_grant(&entry.token.grant_id).await?;
    tracing::info!(client_id = %entry.token.client_id, "token revoked through the admin API");
    Ok(Reply::no_content())
}
