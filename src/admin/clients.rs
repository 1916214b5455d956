//! `/admin/clients`: the client registry. Clients from `gateway.toml` are listed read-only;
//! clients created here live in the token store, are usable on every node at once, and lose
//! their tokens when deleted.

use std::borrow::Cow;

use base64::Engine;
use hyper::StatusCode;
use serde_json::{Map, Value, json};

use super::{AdminError, AdminResult, Reply};
use crate::config::values::{format_duration, parse_lifetime};
use crate::config::{
    Client, ClientType, Grant, RefreshCount, TokenFields, check_logo_uri, check_redirect_uri,
    is_builtin_scope, is_client_id,
};
use crate::gateway::Gateway;

/// The fields of a client in the API, in display order (`source` is added on output).
pub const CLIENT_FIELDS: [&str; 13] = [
    "client_id",
    "name",
    "version",
    "description",
    "type",
    "redirect_uris",
    "grants",
    "scopes",
    "access_token_ttl",
    "refresh_count",
    "enabled",
    "logo_uri",
    "token_response",
];

/// The API's view of a client (never its secret).
pub fn view(c: &Client, source: &str) -> Value {
    json!({
        "client_id": c.client_id,
        "name": c.name,
        "version": c.version,
        "description": c.description,
        "type": match c.kind { ClientType::Confidential => "confidential", ClientType::Public => "public" },
        "redirect_uris": c.redirect_uris,
        "grants": c.grants.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        "scopes": c.scopes,
        "access_token_ttl": c.access_token_ttl.map_or_else(|| "never".to_owned(), format_duration),
        "refresh_count": match c.refresh_count {
            RefreshCount::Unlimited => json!("unlimited"),
            RefreshCount::Limited(n) => json!(n),
        },
        "enabled": c.enabled,
        "logo_uri": c.logo_uri,
        "token_response": c.token_response.as_str(),
        "source": source,
    })
}

/// Every client, file first; a store client shadowed by a file client is not listed.
pub(super) async fn all(gateway: &Gateway) -> Result<Vec<(Client, &'static str)>, AdminError> {
    let rt = gateway.runtime();
    let mut out: Vec<(Client, &'static str)> = rt
        .config
        .clients
        .iter()
        .map(|c| (c.clone(), "file"))
        .collect();
    let mut stored = gateway.store().list_clients().await?;
    stored.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    for c in stored {
        if rt.config.client(&c.client_id).is_none() {
            out.push((c, "store"));
        }
    }
    Ok(out)
}

pub async fn list(gateway: &Gateway) -> AdminResult {
    let clients: Vec<Value> = all(gateway)
        .await?
        .iter()
        .map(|(c, s)| view(c, s))
        .collect();
    Ok(Reply::ok(json!({ "clients": clients })))
}

pub async fn show(gateway: &Gateway, id: &str) -> AdminResult {
    let rt = gateway.runtime();
    match gateway.store().find_client(&rt.config, id).await? {
        Some(Cow::Borrowed(c)) => Ok(Reply::ok(view(c, "file"))),
        Some(Cow::Owned(c)) => Ok(Reply::ok(view(&c, "store"))),
        None => Err(AdminError::not_found(format!("no client {id:?}"))),
    }
}

pub async fn create(gateway: &Gateway, body: Map<String, Value>) -> AdminResult {
    // The scopes a client may list are checked against the registry as the store has it
    // now, not as this node last polled it (a scope deleted on another node a moment ago).
    crate::registry::refresh(gateway).await?;
    let rt = gateway.runtime();
    let mut client = Client {
        client_id: String::new(),
        name: String::new(),
        version: String::new(),
        description: String::new(),
        kind: ClientType::Confidential,
        secret_hash: None,
        redirect_uris: Vec::new(),
        grants: Vec::new(),
        scopes: rt.rules.all().iter().map(|(s, _)| s.name.clone()).collect(),
        access_token_ttl: rt.config.oauth.access_token_ttl,
        refresh_count: RefreshCount::Unlimited,
        enabled: true,
        logo_uri: None,
        token_response: TokenFields::Standard,
    };
    let grants_given = body.contains_key("grants");
    apply(&mut client, &body, &rt.rules)?;
    if client.name.is_empty() {
        return Err(AdminError::bad_request("`name` is required"));
    }
    if !grants_given {
        client.grants = match client.kind {
            ClientType::Public => vec![Grant::AuthorizationCode, Grant::RefreshToken],
            ClientType::Confidential => vec![Grant::ClientCredentials],
        };
    }
    if client.client_id.is_empty() {
        client.client_id = format!("c-{}", random_hex(10));
    }
    check(&client)?;
    ensure_unique(gateway, &client, None).await?;
    let secret = match client.kind {
        ClientType::Confidential => {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| AdminError::bad_request(e.to_string()))?;
            let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            let plain = secret.clone();
            let hash = tokio::task::spawn_blocking(move || crate::secret::hash(&plain))
                .await
                .map_err(|e| AdminError::bad_request(e.to_string()))?
                .map_err(AdminError::bad_request)?;
            client.secret_hash = Some(hash);
            Some(secret)
        }
        ClientType::Public => None,
    };
    // A create always says `enabled`: it also clears the tombstone of a deleted client
    // that had this id.
    gateway
        .store()
        .put_client(&client, false, Some(client.enabled))
        .await?;
    if let Some(gone) = scope_gone(gateway, &client).await? {
        gateway.store().delete_client(&client.client_id).await?;
        refresh_after_change(gateway).await;
        return Err(gone);
    }
    refresh_after_change(gateway).await;
    tracing::info!(client_id = %client.client_id, name = %client.name, "client created through the admin API");
    let mut out = view(&client, "store");
    if let (Some(secret), Value::Object(map)) = (secret, &mut out) {
        map.insert("client_secret".into(), secret.into());
    }
    // The only time the secret is shown: no cache or proxy on the way may keep it.
    Ok(Reply::once(StatusCode::CREATED, out))
}

pub async fn update(gateway: &Gateway, id: &str, body: Map<String, Value>) -> AdminResult {
    crate::registry::refresh(gateway).await?;
    let rt = gateway.runtime();
    if rt.config.client(id).is_some() {
        return Err(AdminError::conflict(
            "this client is defined in gateway.toml; change it there",
        ));
    }
    let Some(mut client) = gateway.store().get_client(id).await? else {
        return Err(AdminError::not_found(format!("no client {id:?}")));
    };
    for key in ["client_id", "name"] {
        if let Some(v) = body.get(key)
            && v.as_str()
                != Some(if key == "name" {
                    client.name.as_str()
                } else {
                    id
                })
        {
            return Err(AdminError::bad_request(format!(
                "`{key}` cannot be changed"
            )));
        }
    }
    let before = client.clone();
    let was_public = client.kind == ClientType::Public;
    apply(&mut client, &body, &rt.rules)?;
    if was_public != (client.kind == ClientType::Public) {
        return Err(AdminError::bad_request(
            "`type` cannot be changed; create a new client",
        ));
    }
    check(&client)?;
    ensure_unique(gateway, &client, Some(id)).await?;
    let enabled = body.contains_key("enabled").then_some(client.enabled);
    if !gateway.store().put_client(&client, true, enabled).await? {
        return Err(AdminError::not_found(format!("no client {id:?}")));
    }
    if let Some(gone) = scope_gone(gateway, &client).await? {
        gateway.store().put_client(&before, true, None).await?;
        refresh_after_change(gateway).await;
        return Err(gone);
    }
    // A disabled client is refused on this node at once, on the others within a second.
    refresh_after_change(gateway).await;
    Ok(Reply::ok(view(&client, "store")))
}

pub async fn delete(gateway: &Gateway, id: &str) -> AdminResult {
    if gateway.runtime().config.client(id).is_some() {
        return Err(AdminError::conflict(
            "this client is defined in gateway.toml; remove it there",
        ));
    }
    if gateway.store().get_client(id).await?.is_none() {
        return Err(AdminError::not_found(format!("no client {id:?}")));
    }
    // Tokens first: a delete cut short leaves a client without tokens, never tokens without
    // a client. Again after the delete, for a token issued in between.
    let mut revoked = gateway.store().revoke_all_of(Some(id), None).await?;
    gateway.store().delete_client(id).await?;
    revoked += gateway.store().revoke_all_of(Some(id), None).await?;
    refresh_after_change(gateway).await;
    tracing::info!(client_id = %id, revoked, "client deleted through the admin API; its tokens are revoked");
    Ok(Reply::no_content())
}

/// A scope `client` lists that is gone from the store now (deleted on some node between the
/// check and the write): a 409 for the caller, who puts the client back as it was. A scope
/// delete checks clients after its own write, so of the two racing, one always sees the other.
async fn scope_gone(gateway: &Gateway, client: &Client) -> Result<Option<AdminError>, AdminError> {
    let stored = gateway.store().read_registry().await?.scopes;
    let rt = gateway.runtime();
    let known = |name: &str| {
        is_builtin_scope(name)
            || rt.config.scopes.iter().any(|s| s.name == name)
            || stored.iter().any(|s| s.name == name)
    };
    Ok(client.scopes.iter().find(|s| !known(s)).map(|s| {
        AdminError::conflict(format!(
            "scope {s:?} was deleted while this client was being saved; nothing was changed"
        ))
    }))
}

/// Applies a change made here on this node at once. The change itself is in the store
/// already, so a failed read is logged, not answered: the poller (or, on a node that cannot
/// read its store, the 503 of a stale registry) covers it.
async fn refresh_after_change(gateway: &Gateway) {
    if let Err(e) = crate::registry::refresh(gateway).await {
        tracing::warn!(error = %e, "client saved; this node re-reads the registry at its next poll");
    }
}

/// Copies the JSON fields onto `client`, checking each value's type and grammar.
fn apply(
    client: &mut Client,
    body: &Map<String, Value>,
    rules: &crate::registry::Rules,
) -> Result<(), AdminError> {
    let bad = |key: &str, want: &str| AdminError::bad_request(format!("`{key}` must be {want}"));
    for (key, value) in body {
        match key.as_str() {
            "client_id" | "name" | "version" | "description" => {
                let s = value
                    .as_str()
                    .ok_or_else(|| bad(key, "a string"))?
                    .to_owned();
                match key.as_str() {
                    "client_id" => client.client_id = s,
                    "name" => client.name = s,
                    "version" => client.version = s,
                    _ => client.description = s,
                }
            }
            "type" => {
                client.kind = match value.as_str() {
                    Some("confidential") => ClientType::Confidential,
                    Some("public") => ClientType::Public,
                    _ => return Err(bad(key, "\"confidential\" or \"public\"")),
                }
            }
            "redirect_uris" | "grants" | "scopes" => {
                let list = string_list(value).ok_or_else(|| bad(key, "a list of strings"))?;
                match key.as_str() {
                    "redirect_uris" => client.redirect_uris = list,
                    "grants" => {
                        client.grants = list
                            .iter()
                            .map(|g| {
                                Grant::parse(g).ok_or_else(|| {
                                    AdminError::bad_request(format!("unknown grant {g:?}"))
                                })
                            })
                            .collect::<Result<_, _>>()?;
                    }
                    _ => {
                        if let Some(s) = list.iter().find(|s| !rules.knows(s)) {
                            return Err(AdminError::new(
                                StatusCode::BAD_REQUEST,
                                "invalid_scope",
                                format!("unknown scope {s:?}"),
                            ));
                        }
                        client.scopes = list;
                    }
                }
            }
            "access_token_ttl" => {
                let s = value
                    .as_str()
                    .ok_or_else(|| bad(key, "a duration like \"10m\" or \"never\""))?;
                client.access_token_ttl = match parse_lifetime(s) {
                    Ok(Some(d)) if d.is_zero() => return Err(bad(key, "more than 0")),
                    Ok(l) => l,
                    Err(e) => return Err(AdminError::bad_request(e)),
                };
            }
            "refresh_count" => {
                client.refresh_count = match value {
                    Value::String(s) if s == "unlimited" => RefreshCount::Unlimited,
                    Value::Number(n) => match n.as_u64().and_then(|n| u32::try_from(n).ok()) {
                        Some(n) => RefreshCount::Limited(n),
                        None => return Err(bad(key, "\"unlimited\" or a whole number >= 0")),
                    },
                    _ => return Err(bad(key, "\"unlimited\" or a whole number >= 0")),
                };
            }
            "enabled" => {
                client.enabled = value.as_bool().ok_or_else(|| bad(key, "true or false"))?
            }
            "logo_uri" => {
                client.logo_uri = match value {
                    Value::Null => None,
                    Value::String(s) if s.is_empty() => None,
                    Value::String(s) => {
                        check_logo_uri(s).map_err(AdminError::bad_request)?;
                        Some(s.clone())
                    }
                    _ => return Err(bad(key, "an https:// or http:// URL")),
                }
            }
            "token_response" => {
                client.token_response = value
                    .as_str()
                    .and_then(TokenFields::parse)
                    .ok_or_else(|| bad(key, "\"standard\" or \"flowwright\""))?;
            }
            other => {
                return Err(AdminError::bad_request(format!(
                    "unknown key `{other}` (accepted: {})",
                    CLIENT_FIELDS.join(", ")
                )));
            }
        }
    }
    Ok(())
}

/// The same rules `gateway.toml` clients follow.
fn check(c: &Client) -> Result<(), AdminError> {
    if !is_client_id(&c.client_id) {
        return Err(AdminError::bad_request(
            "client_id must be 1-128 characters of A-Z a-z 0-9 . _ ~ -",
        ));
    }
    if c.kind == ClientType::Public && c.allows_grant(Grant::ClientCredentials) {
        return Err(AdminError::bad_request(
            "a public client cannot use client_credentials",
        ));
    }
    for uri in &c.redirect_uris {
        check_redirect_uri(uri).map_err(AdminError::bad_request)?;
    }
    let redirecting = c.allows_grant(Grant::AuthorizationCode) || c.allows_grant(Grant::Implicit);
    if redirecting && c.redirect_uris.is_empty() {
        return Err(AdminError::bad_request(
            "grants authorization_code and implicit need redirect_uris",
        ));
    }
    Ok(())
}

/// client_id unique, and name (case-insensitive) + version unique, across file and store.
async fn ensure_unique(
    gateway: &Gateway,
    c: &Client,
    updating: Option<&str>,
) -> Result<(), AdminError> {
    for (other, _) in all(gateway).await? {
        if Some(other.client_id.as_str()) == updating {
            continue;
        }
        if other.client_id == c.client_id {
            return Err(AdminError::conflict(format!(
                "client_id {:?} is taken",
                c.client_id
            )));
        }
        if other.name.to_lowercase() == c.name.to_lowercase() && other.version == c.version {
            return Err(AdminError::conflict(format!(
                "a client named {:?} version {:?} exists already",
                c.name, c.version
            )));
        }
    }
    Ok(())
}

fn string_list(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|x| x.as_str().map(str::to_owned))
        .collect()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random generator failed");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
