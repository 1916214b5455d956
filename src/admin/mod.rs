//! The admin listener: health, readiness, metrics, and the admin API (SPEC §7). Never served
//! on the public port. Everything under `/admin/` needs a bearer token carrying the built-in
//! `admin` scope, issued by this Tollgate. The console (`console/`) serves pages for the same
//! actions under `/console/`.

pub(crate) mod clients;
mod console;
pub(crate) mod credentials;

pub use clients::CLIENT_FIELDS;
pub(crate) mod explain;
pub(crate) mod scopes;
pub(crate) mod tokens;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::auth::{self, Credentials};
use crate::config::{ADMIN_READ_SCOPE, ADMIN_SCOPE};
use crate::error::{Body, GatewayError, full, json as json_response, json_error, no_store};
use crate::gateway::Gateway;

/// Largest JSON body the admin API reads.
const MAX_BODY: usize = 64 * 1024;

/// Why an admin request failed; rendered as `{"error", "error_description"}` by the API, and
/// next to the form by the console.
#[derive(Debug)]
pub struct AdminError {
    pub status: StatusCode,
    pub code: &'static str,
    pub description: String,
}

impl AdminError {
    pub fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        AdminError {
            status,
            code,
            description: description.into(),
        }
    }
    pub fn bad_request(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }
    pub fn not_found(d: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", d)
    }
    pub fn conflict(d: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", d)
    }
    fn into_response(self) -> Response<Body> {
        json_error(self.status, self.code, &self.description)
    }
}

impl From<crate::store::StoreError> for AdminError {
    fn from(e: crate::store::StoreError) -> Self {
        AdminError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            e.to_string(),
        )
    }
}

impl From<crate::error::OAuthError> for AdminError {
    fn from(e: crate::error::OAuthError) -> Self {
        AdminError::new(e.status, e.code, e.description)
    }
}

/// What an admin action answers: a status and a JSON body. The API sends it as is; the
/// console renders it as a page. Both call the same action functions.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    /// `Value::Null` for 204.
    pub body: Value,
    /// Holds a secret or a token shown this once: sent with `Cache-Control: no-store`.
    pub once: bool,
}

impl Reply {
    pub fn ok(body: Value) -> Reply {
        Reply::new(StatusCode::OK, body)
    }
    pub fn new(status: StatusCode, body: Value) -> Reply {
        Reply {
            status,
            body,
            once: false,
        }
    }
    pub fn no_content() -> Reply {
        Reply::new(StatusCode::NO_CONTENT, Value::Null)
    }
    /// A body holding a secret or token that is shown only this once.
    pub fn once(status: StatusCode, body: Value) -> Reply {
        Reply {
            status,
            body,
            once: true,
        }
    }
    fn into_response(self) -> Response<Body> {
        if self.status == StatusCode::NO_CONTENT {
            let mut resp = Response::new(full(""));
            *resp.status_mut() = StatusCode::NO_CONTENT;
            return resp;
        }
        let resp = json_response(self.status, &self.body);
        if self.once { no_store(resp) } else { resp }
    }
}

pub type AdminResult = Result<Reply, AdminError>;

pub async fn handle(
    gateway: &Gateway,
    req: Request<hyper::body::Incoming>,
    conn: crate::server::Conn,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    match (req.method(), path.as_str()) {
        // The console's pages (SPEC §10) sign people in with a session cookie, not a token.
        (_, p) if p == "/console" || p.starts_with("/console/") => {
            console::handle(gateway, req, conn).await
        }
        (&Method::GET | &Method::HEAD, "/healthz") => {
            json_response(StatusCode::OK, &json!({"status": "ok"}))
        }
        // Ready = the store answers and revocations reach this node (TokenStore::ready).
        (&Method::GET | &Method::HEAD, "/readyz") => match ready(gateway).await {
            Ok(()) => json_response(StatusCode::OK, &json!({"status": "ready"})),
            Err(e) => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "unavailable", "error": e}),
            ),
        },
        (&Method::GET, "/metrics") => metrics(gateway),
        (_, p) if p == "/admin" || p.starts_with("/admin/") => {
            if let Err(e) = authorize(gateway, &req).await {
                return e.into_response();
            }
            api(gateway, req, &path)
                .await
                .map_or_else(AdminError::into_response, Reply::into_response)
        }
        _ => json_error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint"),
    }
}

/// The store answers, revocations reach this node, and its registry copy is current.
async fn ready(gateway: &Gateway) -> Result<(), String> {
    gateway.store().ready().await?;
    if gateway.freshness().is_fresh(crate::token::now_millis()) {
        Ok(())
    } else {
        Err("registry (scopes, disabled clients) not read from the store yet".to_owned())
    }
}

fn metrics(gateway: &Gateway) -> Response<Body> {
    let cache = gateway.store().cache_stats();
    let messages = cache.map_or(0, |c| c.messages);
    let mut resp = Response::new(full(gateway.metrics().render(cache, messages)));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// A valid token of this Tollgate that carries the `admin` scope, or `admin:read` for a
/// request that only reads (SPEC §9).
async fn authorize(
    gateway: &Gateway,
    req: &Request<hyper::body::Incoming>,
) -> Result<(), GatewayError> {
    let token = match auth::credentials(req.headers()) {
        Credentials::Missing => return Err(GatewayError::NoCredentials),
        Credentials::Malformed => return Err(GatewayError::MalformedAuthorization),
        Credentials::Bearer(token) => token,
    };
    let rt = gateway.runtime();
    let entry = auth::validate(gateway.store(), &rt.rules, token).await?;
    let holds = |scope: &str| entry.token.scopes.iter().any(|s| &**s == scope);
    let reads = matches!(*req.method(), Method::GET | Method::HEAD);
    if holds(ADMIN_SCOPE) || (reads && holds(ADMIN_READ_SCOPE)) {
        Ok(())
    } else {
        Err(GatewayError::InsufficientScope {
            scopes: ADMIN_SCOPE.to_owned(),
        })
    }
}

async fn api(gateway: &Gateway, req: Request<hyper::body::Incoming>, path: &str) -> AdminResult {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(2).collect();
    let method = req.method().clone();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["clients"]) => clients::list(gateway).await,
        (&Method::POST, ["clients"]) => clients::create(gateway, read_json(req).await?).await,
        (&Method::GET, ["clients", id]) => clients::show(gateway, id).await,
        (&Method::PATCH, ["clients", id]) => {
            let id = (*id).to_owned();
            clients::update(gateway, &id, read_json(req).await?).await
        }
        (&Method::DELETE, ["clients", id]) => clients::delete(gateway, id).await,
        (&Method::GET, ["scopes"]) => scopes::list(gateway).await,
        (&Method::POST, ["scopes"]) => scopes::create(gateway, read_json(req).await?).await,
        (&Method::GET, ["scopes", name]) => scopes::show(gateway, name).await,
        (&Method::PATCH, ["scopes", name]) => {
            let name = (*name).to_owned();
            scopes::update(gateway, &name, read_json(req).await?).await
        }
        (&Method::DELETE, ["scopes", name]) => scopes::delete(gateway, name).await,
        (&Method::GET, ["tokens"]) => tokens::list(gateway, req.uri().query()).await,
        (&Method::POST, ["tokens"]) => tokens::issue(gateway, read_json(req).await?).await,
        (&Method::DELETE, ["tokens", id]) => tokens::delete(gateway, id).await,
        (&Method::GET, ["explain"]) => Ok(explain::from_request(gateway, &req).await),
        (&Method::POST, ["reload"]) => reload(gateway).await,
        (&Method::GET, ["credentials"]) => credentials::list(gateway),
        (&Method::POST, ["credentials", name, "refresh"]) => {
            credentials::refresh(gateway, name).await
        }
        (&Method::POST, ["credentials", name, "authorize"]) => {
            credentials::authorize(gateway, name, None).await
        }
        (&Method::DELETE, ["credentials", name, "tokens"]) => {
            credentials::forget(gateway, name, req.uri().query()).await
        }
        (
            _,
            [
                "clients" | "scopes" | "tokens" | "explain" | "reload" | "credentials",
                ..,
            ],
        ) => Err(AdminError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            format!("{method} is not allowed here"),
        )),
        _ => Err(AdminError::not_found("no such admin endpoint")),
    }
}

async fn reload(gateway: &Gateway) -> AdminResult {
    match gateway.reload_from_disk().await {
        Ok(()) => Ok(Reply::ok(json!({"reloaded": true}))),
        Err(e) => Ok(Reply::new(
            StatusCode::BAD_REQUEST,
            json!({
                "error": "invalid_config",
                "error_description": e.0.join("\n"),
                "errors": e.0,
            }),
        )),
    }
}

/// The request body as a JSON object.
async fn read_json(
    req: Request<hyper::body::Incoming>,
) -> Result<serde_json::Map<String, Value>, AdminError> {
    let body: Bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| AdminError::bad_request("body too large or unreadable"))?
        .to_bytes();
    match serde_json::from_slice(&body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(AdminError::bad_request("body must be a JSON object")),
        Err(e) => Err(AdminError::bad_request(format!("invalid JSON: {e}"))),
    }
}
