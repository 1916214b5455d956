//! `{path}/consent`: shows the requested scopes to the signed-in user (GET) and turns their
//! decision (POST) into a code or, for implicit, a token, delivered by redirect with `iss`
//! (RFC 9207). The decision form's CSRF token is the session's.

use hyper::{Request, StatusCode};

use super::browser::{
    self, Answer, Pending, csrf_ok, forged, get_pending, load_pending, login_page, redirect_error,
    redirect_to_client, store_down,
};
use super::code::CodeGrant;
use super::issue;
use super::pages::{self, Consent, error_page};
use super::params::{self, Params};
use super::{Ctx, TokenResponse};
use crate::config::Client;
use crate::error::OAuthError;
use crate::store::RecordKind;
use crate::token::{self, TokenHash, now_millis};

/// `GET {path}/consent?request=…`.
pub async fn consent_page(ctx: &Ctx<'_>, req: Request<hyper::body::Incoming>) -> Answer {
    let params = match Params::parse(req.uri().query().unwrap_or("").as_bytes()) {
        Ok(p) => p,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e.description),
    };
    let Some(request) = params.get("request") else {
        return error_page(StatusCode::BAD_REQUEST, "Missing authorization request.");
    };
    let pending = match get_pending(ctx, request).await {
        Ok(Some(p)) => p,
        Ok(None) => return browser::expired(),
        Err(resp) => return resp,
    };
    let client = match ctx.client(&pending.client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return browser::expired(),
        Err(e) => return store_down(e),
    };
    let client: &Client = &client;
    let session = match browser::session(ctx, req.headers()).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return login_page(
                ctx,
                &client.name,
                request,
                &pending.csrf,
                "",
                None,
                StatusCode::OK,
            );
        }
        Err(e) => return store_down(e),
    };
    let grantable = grantable(ctx, &pending, &session.username);
    if grantable.is_empty() {
        let _ = ctx.store.delete_record(RecordKind::Request, request).await;
        let msg = "the signed-in user may not grant any of the requested scopes";
        return redirect_error(
            ctx,
            &pending.redirect_uri,
            pending.implicit,
            "access_denied",
            msg,
            pending.state.as_deref(),
        );
    }
    let descriptions = ctx.config.scope_names();
    let action = format!("{}/consent", ctx.config.oauth.path);
    pages::consent(&Consent {
        action: &action,
        request,
        csrf: &session.csrf,
        username: &session.username,
        client_name: &client.name,
        client_version: &client.version,
        client_description: &client.description,
        logo_uri: client.logo_uri.as_deref(),
        scopes: grantable
            .iter()
            .map(|s| {
                (
                    s.as_str(),
                    descriptions.get(s.as_str()).copied().unwrap_or(""),
                )
            })
            .collect(),
    })
}

/// The fields of the decision form.
#[derive(Debug)]
pub struct DecisionForm {
    /// The `scope` values, one per ticked box, in form order.
    pub ticked: Vec<String>,
    /// Every other field; these must not repeat.
    pub params: Params,
}

impl DecisionForm {
    pub fn parse(pairs: Vec<(String, String)>) -> Result<DecisionForm, OAuthError> {
        let (ticked, single): (Vec<_>, Vec<_>) = pairs.into_iter().partition(|(k, _)| k == "scope");
        Ok(DecisionForm {
            ticked: ticked.into_iter().map(|(_, v)| v).collect(),
            params: Params::from_pairs(single)?,
        })
    }
}

/// `POST {path}/consent`: the user's decision.
pub async fn consent_decision(
    ctx: &Ctx<'_>,
    req: Request<hyper::body::Incoming>,
) -> (Option<String>, Answer) {
    let (headers, pairs) = match params::read_pairs(req).await {
        Ok(x) => x,
        Err(e) => return (None, error_page(StatusCode::BAD_REQUEST, &e.description)),
    };
    let DecisionForm { ticked, params } = match DecisionForm::parse(pairs) {
        Ok(f) => f,
        Err(e) => return (None, error_page(StatusCode::BAD_REQUEST, &e.description)),
    };
    let (request, pending, client) = match load_pending(ctx, params.get("request")).await {
        Ok(x) => x,
        Err(resp) => return (None, resp),
    };
    let client_id = Some(client.client_id.clone());
    let session = match browser::session(ctx, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            let page = login_page(
                ctx,
                &client.name,
                &request,
                &pending.csrf,
                "",
                None,
                StatusCode::OK,
            );
            return (client_id, page);
        }
        Err(e) => return (client_id, store_down(e)),
    };
    if !csrf_ok(params.get("csrf"), &session.csrf) {
        return (client_id, forged());
    }
    // One decision per request: a replayed form finds nothing.
    if let Err(e) = ctx.store.delete_record(RecordKind::Request, &request).await {
        return (client_id, store_down(e));
    }
    let state = pending.state.as_deref();
    let deny = |why: &'static str| {
        redirect_error(
            ctx,
            &pending.redirect_uri,
            pending.implicit,
            "access_denied",
            why,
            state,
        )
    };
    if params.get("decision") != Some("grant") {
        return (client_id, deny("the user denied the request"));
    }
    let scopes: Vec<String> = grantable(ctx, &pending, &session.username)
        .into_iter()
        .filter(|s| ticked.contains(s))
        .collect();
    if scopes.is_empty() {
        return (client_id, deny("no scope was granted"));
    }
    let answer = if pending.implicit {
        implicit_token(ctx, &client, &pending, &session.username, scopes).await
    } else {
        issue_code(ctx, &pending, &session.username, scopes).await
    };
    (client_id, answer.unwrap_or_else(|e| e.into_response()))
}

async fn issue_code(
    ctx: &Ctx<'_>,
    pending: &Pending,
    username: &str,
    scopes: Vec<String>,
) -> Result<Answer, OAuthError> {
    let rng =
        |e: getrandom::Error| OAuthError::server_error(format!("random generator failed: {e}"));
    // The code lives in the slot of the grant it will start (see `token::SlotTag`).
    let grant_id = token::new_grant_id().map_err(rng)?;
    let code = token::generate_for(token::SlotTag::of_grant(&grant_id)).map_err(rng)?;
    let ttl = ctx.config.oauth.authorization_code_ttl;
    let grant = CodeGrant {
        client_id: pending.client_id.clone(),
        redirect_uri: pending.redirect_uri.clone(),
        redirect_uri_given: pending.redirect_uri_given,
        username: username.to_owned(),
        scopes,
        code_challenge: pending.code_challenge.clone(),
        grant_id,
        expires_at: now_millis() + ttl.as_millis() as u64,
    };
    let record =
        serde_json::to_string(&grant).map_err(|e| OAuthError::server_error(e.to_string()))?;
    ctx.store
        .put_record(
            RecordKind::Code,
            &TokenHash::of(&code).to_hex(),
            &record,
            ttl,
        )
        .await?;
    let mut query = vec![("code", code.as_str())];
    if let Some(state) = &pending.state {
        query.push(("state", state));
    }
    Ok(redirect_to_client(ctx, &pending.redirect_uri, false, query))
}

/// Implicit grant: the token goes in the fragment, and never with a refresh token.
async fn implicit_token(
    ctx: &Ctx<'_>,
    client: &Client,
    pending: &Pending,
    username: &str,
    scopes: Vec<String>,
) -> Result<Answer, OAuthError> {
    let issued = issue::issue(
        ctx.store,
        &ctx.config.oauth,
        issue::Request {
            client,
            username: Some(username),
            scopes,
            grant_id: None,
            refreshes_used: 0,
            refreshable: false,
            grant: "implicit",
        },
    )
    .await?;
    let t = TokenResponse::from(issued);
    let expires_in = t.expires_in.map(|s| s.to_string());
    let mut fragment = vec![
        ("access_token", t.access_token.as_str()),
        ("token_type", "Bearer"),
    ];
    if let Some(e) = &expires_in {
        fragment.push(("expires_in", e));
    }
    fragment.push(("scope", &t.scope));
    if let Some(state) = &pending.state {
        fragment.push(("state", state));
    }
    Ok(redirect_to_client(
        ctx,
        &pending.redirect_uri,
        true,
        fragment,
    ))
}

/// Requested scopes the user may grant (their own list; none = all).
fn grantable(ctx: &Ctx<'_>, pending: &Pending, username: &str) -> Vec<String> {
    let Some(user) = ctx.config.user(username) else {
        return Vec::new();
    };
    pending
        .scopes
        .iter()
        .filter(|s| user.may_grant(s))
        .cloned()
        .collect()
}
