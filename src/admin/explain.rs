//! `GET /admin/explain`: why the gateway would allow or refuse a token on a method + path —
//! which route matched, which scope pattern allowed it, or what was missing.

use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::config::RouteAuth;
use crate::error::{Body, json as json_response};
use crate::gateway::Gateway;
use crate::pattern;
use crate::token::{TokenHash, now_millis};

pub async fn explain(gateway: &Gateway, req: &Request<hyper::body::Incoming>) -> Response<Body> {
    let mut method = Method::GET;
    let mut path = String::from("/");
    for (k, v) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "method" => match Method::from_bytes(v.to_ascii_uppercase().as_bytes()) {
                Ok(m) => method = m,
                Err(_) => {
                    return answer(
                        &method,
                        &path,
                        None,
                        json!(null),
                        None,
                        400,
                        "invalid method",
                        json!(null),
                    );
                }
            },
            "path" => path = v.into_owned(),
            _ => {}
        }
    }
    let normalized = match pattern::normalize(&path) {
        Ok(p) => p.into_owned(),
        Err(e) => {
            return answer(
                &method,
                &path,
                None,
                json!(null),
                None,
                400,
                &format!("path refused: {e}"),
                json!(null),
            );
        }
    };
    let rt = gateway.runtime();
    let Some(route) = rt.route(None, &method, &normalized) else {
        return answer(
            &method,
            &path,
            Some(&normalized),
            json!(null),
            None,
            404,
            "no route matches",
            json!(null),
        );
    };
    let route_json = json!({"name": route.name, "pattern": route.pattern.as_str()});
    if route.auth == RouteAuth::None {
        return answer(
            &method,
            &path,
            Some(&normalized),
            route_json,
            None,
            200,
            "public route: no token needed",
            json!(null),
        );
    }
    let Some(token) = req
        .headers()
        .get("x-explain-token")
        .and_then(|v| v.to_str().ok())
    else {
        return answer(
            &method,
            &path,
            Some(&normalized),
            route_json,
            None,
            401,
            "no token given (send it in X-Explain-Token)",
            json!(null),
        );
    };
    let entry = match gateway
        .store()
        .lookup_access(&TokenHash::of(token.trim()))
        .await
    {
        Ok(Some(e)) => e,
        Ok(None) => {
            return answer(
                &method,
                &path,
                Some(&normalized),
                route_json,
                None,
                401,
                "unknown token",
                json!(null),
            );
        }
        Err(e) => {
            return answer(
                &method,
                &path,
                Some(&normalized),
                route_json,
                None,
                503,
                &format!("token store unavailable: {e}"),
                json!(null),
            );
        }
    };
    let t = &entry.token;
    let expired = t.is_expired(now_millis());
    let token_json = json!({"client_id": t.client_id, "scopes": t.scopes, "expired": expired, "revoked": entry.revoked});
    if entry.revoked || expired {
        let why = if entry.revoked {
            "token revoked"
        } else {
            "token expired"
        };
        return answer(
            &method,
            &path,
            Some(&normalized),
            route_json,
            None,
            401,
            why,
            token_json,
        );
    }
    let covering = rt.scopes.explain(&method, &normalized);
    match covering
        .iter()
        .find(|(scope, _)| t.scopes.iter().any(|s| s == scope))
    {
        Some((scope, pat)) => answer(
            &method,
            &path,
            Some(&normalized),
            route_json,
            Some(json!({"scope": scope, "pattern": pat})),
            200,
            &format!("scope {scope:?} allows it through pattern {pat:?}"),
            token_json,
        ),
        None => {
            let would: Vec<&str> = covering.iter().map(|(s, _)| *s).collect();
            let why = if would.is_empty() {
                format!("no scope covers {method} {normalized}")
            } else {
                format!(
                    "the token's scopes {:?} do not cover it; scopes that would: {:?}",
                    t.scopes, would
                )
            };
            answer(
                &method,
                &path,
                Some(&normalized),
                route_json,
                None,
                403,
                &why,
                token_json,
            )
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn answer(
    method: &Method,
    path: &str,
    normalized: Option<&str>,
    route: Value,
    allowed_by: Option<Value>,
    status: u16,
    reason: &str,
    token: Value,
) -> Response<Body> {
    json_response(
        StatusCode::OK,
        &json!({
            "method": method.as_str(),
            "path": path,
            "normalized_path": normalized,
            "route": route,
            "allowed": status == 200,
            "status": status,
            "allowed_by": allowed_by.unwrap_or(Value::Null),
            "reason": reason,
            "token": token,
        }),
    )
}
