//! `GET /.well-known/oauth-authorization-server`: RFC 8414 metadata.

use hyper::{Method, Response, StatusCode};
use serde_json::json;

use crate::config::Config;
use crate::error::{Body, OAuthError, json as json_response};

pub fn handle(config: &Config, method: &Method) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return OAuthError::method_not_allowed().into_response();
    }
    let base = format!("{}{}", config.server.public_url, config.oauth.path);
    // The built-in scopes guard Tollgate's own endpoints; they are not for clients to discover.
    let scopes: Vec<&str> = config.scopes.iter().map(|s| s.name.as_str()).collect();
    json_response(
        StatusCode::OK,
        &json!({
            "issuer": config.server.public_url,
            "authorization_endpoint": format!("{base}/authorize"),
            "token_endpoint": format!("{base}/token"),
            "revocation_endpoint": format!("{base}/revoke"),
            "introspection_endpoint": format!("{base}/introspect"),
            "response_types_supported": ["code", "token"],
            "grant_types_supported": ["authorization_code", "implicit", "refresh_token", "client_credentials", "password"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": scopes,
            "authorization_response_iss_parameter_supported": true,
        }),
    )
}
