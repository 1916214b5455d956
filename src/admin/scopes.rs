//! `/admin/scopes`: the scopes in force, from the file (read-only here) and from the store
//! (created, changed and deleted here; SPEC §9). A change is applied on this node at once and
//! reaches the others through the registry version (`crate::registry`), without a reload.

use hyper::StatusCode;
use serde_json::{Map, Value, json};

use super::{AdminError, AdminResult, Reply};
use crate::config::Scope;
use crate::gateway::Gateway;
use crate::registry;
use crate::store::{ScopeWrite, StoredScope};

/// The keys a scope has in the API.
const FIELDS: &str = "name, description, paths";

fn view(s: &Scope, source: &str) -> Value {
    json!({
        "name": s.name,
        "description": s.description,
        "paths": s.patterns.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        "source": source,
    })
}

pub async fn list(gateway: &Gateway) -> AdminResult {
    let rt = gateway.runtime();
    let scopes: Vec<Value> = rt.rules.all().iter().map(|(s, src)| view(s, src)).collect();
    Ok(Reply::ok(json!({ "scopes": scopes })))
}

pub async fn show(gateway: &Gateway, name: &str) -> AdminResult {
    let rt = gateway.runtime();
    match rt.rules.scope(name) {
        Some((s, src)) => Ok(Reply::ok(view(s, src))),
        None => Err(AdminError::not_found(format!("no scope {name:?}"))),
    }
}

pub async fn create(gateway: &Gateway, body: Map<String, Value>) -> AdminResult {
    let name = match body.get("name") {
        Some(Value::String(n)) => n.clone(),
        Some(_) => return Err(AdminError::bad_request("`name` must be a string")),
        None => return Err(AdminError::bad_request("`name` is required")),
    };
    let mut scope = StoredScope {
        name,
        description: String::new(),
        paths: Vec::new(),
    };
    apply(&mut scope, &body)?;
    let compiled = registry::compile(&scope).map_err(AdminError::bad_request)?;
    let rt = gateway.runtime();
    let key = StoredScope::key(&scope.name);
    let in_file = rt
        .config
        .scopes
        .iter()
        .any(|s| StoredScope::key(&s.name) == key);
    // The store decides between two creates of one name (on any nodes) at once.
    if in_file
        || !gateway
            .store()
            .put_scope(&scope, ScopeWrite::Create)
            .await?
    {
        return Err(AdminError::conflict(format!(
            "a scope named {:?} exists already (names compare case-insensitively)",
            scope.name
        )));
    }
    refresh_after_change(gateway).await;
    tracing::info!(scope = %scope.name, "scope created through the admin API");
    Ok(Reply::new(StatusCode::CREATED, view(&compiled, "store")))
}

pub async fn update(gateway: &Gateway, name: &str, body: Map<String, Value>) -> AdminResult {
    let mut scope = stored(gateway, name).await?;
    if let Some(v) = body.get("name")
        && v.as_str() != Some(scope.name.as_str())
    {
        return Err(AdminError::bad_request(
            "`name` cannot be changed; create a new scope",
        ));
    }
    apply(&mut scope, &body)?;
    let compiled = registry::compile(&scope).map_err(AdminError::bad_request)?;
    if !gateway
        .store()
        .put_scope(&scope, ScopeWrite::Replace)
        .await?
    {
        return Err(AdminError::not_found(format!("no scope {name:?}")));
    }
    refresh_after_change(gateway).await;
    tracing::info!(scope = %scope.name, "scope changed through the admin API");
    Ok(Reply::ok(view(&compiled, "store")))
}

pub async fn delete(gateway: &Gateway, name: &str) -> AdminResult {
    let scope = stored(gateway, name).await?;
    if let Some(why) = in_use(gateway, &scope.name).await? {
        return Err(AdminError::conflict(format!(
            "scope {:?} is in use: {why}",
            scope.name
        )));
    }
    gateway.store().delete_scope(&scope.name).await?;
    // A client created or changed meanwhile (here or on another node) may have listed it
    // between the check and the delete: then the scope comes back and the delete is refused.
    if let Some(why) = listed_by(gateway, &scope.name).await? {
        gateway
            .store()
            .put_scope(&scope, ScopeWrite::Create)
            .await?;
        refresh_after_change(gateway).await;
        return Err(AdminError::conflict(format!(
            "scope {:?} is in use: {why}",
            scope.name
        )));
    }
    refresh_after_change(gateway).await;
    tracing::info!(scope = %scope.name, "scope deleted through the admin API");
    Ok(Reply::no_content())
}

/// Applies a change made here on this node at once; the change is in the store already, so a
/// failed read is logged (the poller covers it), not answered 503 for a retry to meet a 409.
async fn refresh_after_change(gateway: &Gateway) {
    if let Err(e) = registry::refresh(gateway).await {
        tracing::warn!(error = %e, "scope saved; this node re-reads the registry at its next poll");
    }
}

/// The stored scope `name`: 409 for a file scope, 404 for none.
async fn stored(gateway: &Gateway, name: &str) -> Result<StoredScope, AdminError> {
    let rt = gateway.runtime();
    let key = StoredScope::key(name);
    if rt
        .config
        .scopes
        .iter()
        .any(|s| StoredScope::key(&s.name) == key)
    {
        return Err(AdminError::conflict(
            "this scope is defined in gateway.toml; change it there",
        ));
    }
    gateway
        .store()
        .read_registry()
        .await?
        .scopes
        .into_iter()
        .find(|s| StoredScope::key(&s.name) == key)
        .ok_or_else(|| AdminError::not_found(format!("no scope {name:?}")))
}

/// Why a scope may not be deleted: a client lists it, or a listed token carries it.
async fn in_use(gateway: &Gateway, name: &str) -> Result<Option<String>, AdminError> {
    if let Some(why) = listed_by(gateway, name).await? {
        return Ok(Some(why));
    }
    let key = StoredScope::key(name);
    let same = |s: &str| StoredScope::key(s) == key;
    let tokens = super::tokens::listed(gateway, None, None).await?;
    let carrying = tokens
        .iter()
        .filter(|t| t.entry.token.scopes.iter().any(|s| same(s)))
        .count();
    if carrying > 0 {
        return Ok(Some(format!(
            "{carrying} live token{} carr{} it (revoke {} or wait for {} to expire)",
            if carrying == 1 { "" } else { "s" },
            if carrying == 1 { "ies" } else { "y" },
            if carrying == 1 { "it" } else { "them" },
            if carrying == 1 { "it" } else { "them" },
        )));
    }
    Ok(None)
}

/// The clients (file and store) that list scope `name`, said in a sentence.
async fn listed_by(gateway: &Gateway, name: &str) -> Result<Option<String>, AdminError> {
    let key = StoredScope::key(name);
    let clients: Vec<String> = super::clients::all(gateway)
        .await?
        .into_iter()
        .filter(|(c, _)| c.scopes.iter().any(|s| StoredScope::key(s) == key))
        .map(|(c, _)| c.client_id)
        .collect();
    Ok((!clients.is_empty()).then(|| {
        format!(
            "client{} {} list{} it",
            if clients.len() == 1 { "" } else { "s" },
            clients.join(", "),
            if clients.len() == 1 { "s" } else { "" },
        )
    }))
}

/// Copies the JSON fields onto `scope`, checking each value's type.
fn apply(scope: &mut StoredScope, body: &Map<String, Value>) -> Result<(), AdminError> {
    for (key, value) in body {
        match key.as_str() {
            "name" => {}
            "description" => {
                scope.description = value
                    .as_str()
                    .ok_or_else(|| AdminError::bad_request("`description` must be a string"))?
                    .to_owned();
            }
            "paths" => {
                scope.paths = value
                    .as_array()
                    .and_then(|list| {
                        list.iter()
                            .map(|p| p.as_str().map(str::to_owned))
                            .collect::<Option<Vec<_>>>()
                    })
                    .ok_or_else(|| AdminError::bad_request("`paths` must be a list of strings"))?;
            }
            other => {
                return Err(AdminError::bad_request(format!(
                    "unknown key `{other}` (accepted: {FIELDS})"
                )));
            }
        }
    }
    Ok(())
}
