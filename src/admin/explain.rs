//! `GET /admin/explain`: why the gateway would allow or refuse a token on a method + path —
//! which route matched, which scope pattern allowed it, or what was missing.

use hyper::{Method, Request};
use serde_json::{Value, json};

use super::Reply;
use crate::config::RouteAuth;
use crate::gateway::Gateway;
use crate::pattern;
use crate::token::{TokenHash, now_millis};

/// What has been worked out so far; each step fills in more, any step may give the verdict.
struct Explanation {
    method: Method,
    path: String,
    normalized: Option<String>,
    route: Value,
    token: Value,
}

impl Explanation {
    /// The answer: what the gateway would reply (`status`) and why.
    fn verdict(&self, status: u16, reason: &str, allowed_by: Option<Value>) -> Reply {
        Reply::ok(json!({
            "method": self.method.as_str(),
            "path": self.path,
            "normalized_path": self.normalized,
            "route": self.route,
            "allowed": status == 200,
            "status": status,
            "allowed_by": allowed_by.unwrap_or(Value::Null),
            "reason": reason,
            "token": self.token,
        }))
    }
}

/// `GET /admin/explain?method=&path=` with the token in `X-Explain-Token`.
pub async fn from_request(gateway: &Gateway, req: &Request<hyper::body::Incoming>) -> Reply {
    let mut method = None;
    let mut path = None;
    for (k, v) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "method" => method = Some(v.into_owned()),
            "path" => path = Some(v.into_owned()),
            _ => {}
        }
    }
    let token = req
        .headers()
        .get("x-explain-token")
        .and_then(|v| v.to_str().ok());
    explain(
        gateway,
        method.as_deref(),
        path.as_deref().unwrap_or("/"),
        token,
    )
    .await
}

/// The decision for `token` on `method` (default GET) + `path`: what the API's explain
/// answers, and what the console's Explain page shows.
pub async fn explain(
    gateway: &Gateway,
    method: Option<&str>,
    path: &str,
    token: Option<&str>,
) -> Reply {
    let mut e = Explanation {
        method: Method::GET,
        path: path.to_owned(),
        normalized: None,
        route: Value::Null,
        token: Value::Null,
    };
    if let Some(m) = method {
        match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
            Ok(m) => e.method = m,
            Err(_) => return e.verdict(400, "invalid method", None),
        }
    }
    let normalized = match pattern::normalize(&e.path) {
        Ok(p) => p.into_owned(),
        Err(err) => return e.verdict(400, &format!("path refused: {err}"), None),
    };
    e.normalized = Some(normalized.clone());
    let rt = gateway.runtime();
    let Some(route) = rt.route(None, &e.method, &normalized) else {
        return e.verdict(404, "no route matches", None);
    };
    e.route = json!({"name": route.name, "pattern": route.pattern.as_str()});
    if route.auth == RouteAuth::None {
        return e.verdict(200, "public route: no token needed", None);
    }
    let Some(token) = token else {
        return e.verdict(401, "no token given (send it in X-Explain-Token)", None);
    };
    let entry = match gateway
        .store()
        .lookup_access(&TokenHash::of(token.trim()))
        .await
    {
        Ok(Some(entry)) => entry,
        Ok(None) => return e.verdict(401, "unknown token", None),
        Err(err) => return e.verdict(503, &format!("token store unavailable: {err}"), None),
    };
    let t = &entry.token;
    let expired = t.is_expired(now_millis());
    e.token = json!({"client_id": t.client_id, "scopes": t.scopes, "expired": expired, "revoked": entry.revoked});
    if entry.revoked {
        return e.verdict(401, "token revoked", None);
    }
    if expired {
        return e.verdict(401, "token expired", None);
    }
    match rt.rules.check(&t.client_id, now_millis()) {
        Ok(()) => {}
        Err(crate::error::GatewayError::InvalidToken(why)) => return e.verdict(401, why, None),
        Err(_) => {
            return e.verdict(
                503,
                "this node cannot be sure its registry is current (store unreachable)",
                None,
            );
        }
    }
    let covering = rt.rules.scopes.explain(&e.method, &normalized);
    if let Some((scope, pat)) = covering
        .iter()
        .find(|(scope, _)| t.scopes.iter().any(|s| &**s == *scope))
    {
        let reason = format!("scope {scope:?} allows it through pattern {pat:?}");
        return e.verdict(200, &reason, Some(json!({"scope": scope, "pattern": pat})));
    }
    let would: Vec<&str> = covering.iter().map(|(s, _)| *s).collect();
    let reason = if would.is_empty() {
        format!("no scope covers {} {normalized}", e.method)
    } else {
        format!(
            "the token's scopes {:?} do not cover it; scopes that would: {would:?}",
            t.scopes
        )
    };
    e.verdict(403, &reason, None)
}
