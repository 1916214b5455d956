//! `POST {path}/introspect` (RFC 7662) and `GET {path}/tokeninfo` (the Google-style
//! verification URL): what a token is, for resource servers and clients.

use hyper::{Request, Response, StatusCode};
use serde_json::{Map, Value, json};

use super::Ctx;
use super::params::{self, Params};
use crate::config::{Client, ClientType, INTROSPECT_SCOPE};
use crate::error::{Body, OAuthError, json as json_response, no_store};
use crate::token::{Millis, TokenHash, now_millis};

fn secs(ms: Millis) -> Value {
    Value::from(ms / 1000)
}

/// The RFC 7662 answer for a token; `{"active": false}` for anything not currently valid, or
/// not `caller`'s to see: a client learns about its own tokens, and only a holder of the
/// built-in `introspect` scope (a resource server) about anyone's.
async fn describe(
    ctx: &Ctx<'_>,
    caller: &Client,
    token: &str,
    hint: Option<&str>,
) -> Result<Value, OAuthError> {
    let sees_all = caller.scopes.iter().any(|s| s == INTROSPECT_SCOPE);
    let hash = TokenHash::of(token);
    let now = now_millis();
    // The hint only orders the lookups (RFC 7662 §2.1).
    let refresh_first = hint == Some("refresh_token");
    for refresh in [refresh_first, !refresh_first] {
        let active = if refresh {
            let Some(e) = ctx.store.get_refresh(&hash).await? else {
                continue;
            };
            let t = e.token;
            let live = !e.revoked && e.retired_at.is_none() && !t.is_expired(now);
            live.then(|| Active {
                token_type: "refresh_token",
                scope: t.scopes.join(" "),
                client_id: t.client_id,
                username: t.username,
                iat: t.issued_at,
                exp: t.expires_at,
            })
        } else {
            let Some(e) = ctx.store.lookup_access(&hash).await? else {
                continue;
            };
            let t = &e.token;
            let live = !e.revoked && !t.is_expired(now);
            live.then(|| Active {
                token_type: "Bearer",
                scope: t.scope_string(),
                client_id: t.client_id.to_string(),
                username: t.username.as_deref().map(str::to_owned),
                iat: t.issued_at,
                exp: t.expires_at,
            })
        };
        // A disabled client's tokens are not active while it is disabled (SPEC §9), and a
        // node that cannot be sure it knows who is disabled does not say "active" (§11).
        if active.is_some() {
            ctx.rules.ensure_fresh(now)?;
        }
        let visible = active.filter(|a| {
            (sees_all || a.client_id == caller.client_id) && !ctx.rules.is_disabled(&a.client_id)
        });
        return Ok(visible.map_or_else(|| json!({"active": false}), |a| a.into_json(ctx)));
    }
    Ok(json!({"active": false}))
}

/// What introspection says about a current token.
struct Active {
    token_type: &'static str,
    scope: String,
    client_id: String,
    username: Option<String>,
    iat: Millis,
    exp: Option<Millis>,
}

impl Active {
    fn into_json(self, ctx: &Ctx<'_>) -> Value {
        let mut out = Map::new();
        out.insert("active".into(), true.into());
        out.insert("token_type".into(), self.token_type.into());
        out.insert("scope".into(), self.scope.into());
        out.insert("client_id".into(), self.client_id.into());
        out.insert("iat".into(), secs(self.iat));
        if let Some(exp) = self.exp {
            out.insert("exp".into(), secs(exp));
        }
        if let Some(u) = self.username {
            out.insert("username".into(), u.clone().into());
            out.insert("sub".into(), u.into());
        }
        out.insert("iss".into(), ctx.config.server.public_url.clone().into());
        Value::Object(out)
    }
}

pub async fn introspect(
    ctx: &Ctx<'_>,
    req: Request<hyper::body::Incoming>,
) -> (Option<String>, Response<Body>) {
    let mut client_id = None;
    let result = async {
        let (params, auth) = params::read_authenticated(ctx, req, false).await?;
        client_id = Some(auth.client.client_id.clone());
        if auth.client.kind == ClientType::Public {
            return Err(OAuthError {
                basic_challenge: auth.via_basic,
                ..OAuthError::invalid_client("introspection is for confidential clients only")
            });
        }
        let token = params.require("token")?;
        describe(ctx, &auth.client, token, params.get("token_type_hint")).await
    }
    .await;
    let resp = match result {
        Ok(v) => no_store(json_response(StatusCode::OK, &v)),
        Err(e) => e.into_response(),
    };
    (client_id, resp)
}

pub async fn tokeninfo(ctx: &Ctx<'_>, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let invalid =
        || OAuthError::invalid_token("token is invalid, expired or revoked").into_response();
    let params = match req.uri().query().map(|q| Params::parse(q.as_bytes())) {
        Some(Ok(p)) => p,
        Some(Err(e)) => return e.into_response(),
        None => Params::default(),
    };
    let Some(token) = params.get("access_token") else {
        return OAuthError::invalid_token("access_token is required").into_response();
    };
    let looked_up = match ctx.rules.ensure_fresh(now_millis()) {
        Ok(()) => ctx.store.lookup_access(&TokenHash::of(token)).await,
        Err(e) => Err(e),
    };
    let entry = match looked_up {
        Ok(Some(e))
            if !e.revoked
                && !e.token.is_expired(now_millis())
                && !ctx.rules.is_disabled(&e.token.client_id) =>
        {
            e
        }
        Ok(_) => return invalid(),
        Err(e) => return OAuthError::from(e).into_response(),
    };
    let t = &entry.token;
    let mut out = Map::new();
    out.insert("client_id".into(), (*t.client_id).into());
    out.insert("scope".into(), t.scope_string().into());
    if let Some(exp) = t.expires_at {
        out.insert(
            "expires_in".into(),
            (exp.saturating_sub(now_millis()) / 1000).into(),
        );
    }
    if let Some(u) = &t.username {
        out.insert("username".into(), (**u).into());
    }
    no_store(json_response(StatusCode::OK, &Value::Object(out)))
}
