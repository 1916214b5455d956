//! The admin listener: health and readiness probes (the admin API grows here).

use hyper::{Method, Request, Response, StatusCode};

use crate::error::{Body, json, json_error};
use crate::gateway::Gateway;

pub async fn handle(gateway: &Gateway, req: Request<hyper::body::Incoming>) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/healthz") => {
            json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
        }
        (&Method::GET | &Method::HEAD, "/readyz") => match gateway.store().ping().await {
            Ok(()) => json(StatusCode::OK, &serde_json::json!({"status": "ready"})),
            Err(e) => json(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({"status": "unavailable", "error": e.to_string()}),
            ),
        },
        _ => json_error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint"),
    }
}
