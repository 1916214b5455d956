//! Every gateway-made response: one body type, and the one place where errors become status
//! codes, `WWW-Authenticate` challenges and JSON bodies (SPEC §4 and §5).

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::header::{
    CACHE_CONTROL, CONNECTION, CONTENT_TYPE, HeaderValue, PRAGMA, RETRY_AFTER, WWW_AUTHENTICATE,
};
use hyper::{Response, StatusCode};

use crate::pattern::PathError;

/// Body of every response Tollgate sends: streamed from an upstream, or made here.
pub type Body = Either<crate::proxy::PooledBody, Full<Bytes>>;

/// A complete body made by the gateway.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Either::Right(Full::new(bytes.into()))
}

/// Seconds a client should wait before retrying while the store is unreachable.
const RETRY_AFTER_SECS: &str = "1";

/// Why the gateway refused or could not complete a proxied request.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("bearer token required")]
    NoCredentials,
    #[error("malformed Authorization header")]
    MalformedAuthorization,
    #[error("{0}")]
    InvalidToken(&'static str),
    #[error("token expired")]
    TokenExpired,
    /// `scopes`: space-separated scopes that would have allowed the request.
    #[error("token does not grant access to this path")]
    InsufficientScope { scopes: String },
    #[error("no route for this path")]
    NoRoute,
    #[error("invalid request path: {0}")]
    BadPath(#[from] PathError),
    /// The client's request body could not be read (a bad chunk line, a body cut short):
    /// the client's fault, not the upstream's (SPEC §12). The connection is closed after it.
    #[error("malformed request body")]
    BadRequestBody,
    #[error("upstream unreachable")]
    BadGateway,
    #[error("upstream did not answer in time")]
    GatewayTimeout,
    #[error("token store unavailable, retry shortly")]
    StoreUnavailable,
    /// No usable upstream token for the route's credential (SPEC §8): named, never explained
    /// with the provider's words.
    #[error("no usable upstream token for credential {0:?}")]
    CredentialUnavailable(String),
    /// `per_user`: the caller's user has not connected an account at the provider.
    #[error("connect your account for credential {credential:?} first")]
    CredentialNotConnected {
        credential: String,
        connect_uri: String,
    },
}

impl From<crate::outbound::OutboundError> for GatewayError {
    fn from(e: crate::outbound::OutboundError) -> Self {
        match e {
            crate::outbound::OutboundError::Unavailable { credential, .. } => {
                GatewayError::CredentialUnavailable(credential)
            }
            crate::outbound::OutboundError::NotConnected {
                credential,
                connect_uri,
            } => GatewayError::CredentialNotConnected {
                credential,
                connect_uri,
            },
        }
    }
}

impl GatewayError {
    /// The SPEC §4 `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::NoCredentials => "unauthorized",
            GatewayError::MalformedAuthorization
            | GatewayError::BadPath(_)
            | GatewayError::BadRequestBody => "invalid_request",
            GatewayError::InvalidToken(_) | GatewayError::TokenExpired => "invalid_token",
            GatewayError::InsufficientScope { .. } => "insufficient_scope",
            GatewayError::NoRoute => "not_found",
            GatewayError::BadGateway | GatewayError::CredentialUnavailable(_) => "bad_gateway",
            GatewayError::GatewayTimeout => "gateway_timeout",
            GatewayError::StoreUnavailable => "temporarily_unavailable",
            GatewayError::CredentialNotConnected { .. } => "credential_not_connected",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::NoCredentials
            | GatewayError::InvalidToken(_)
            | GatewayError::TokenExpired => StatusCode::UNAUTHORIZED,
            GatewayError::MalformedAuthorization
            | GatewayError::BadPath(_)
            | GatewayError::BadRequestBody => StatusCode::BAD_REQUEST,
            GatewayError::InsufficientScope { .. }
            | GatewayError::CredentialNotConnected { .. } => StatusCode::FORBIDDEN,
            GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::BadGateway | GatewayError::CredentialUnavailable(_) => {
                StatusCode::BAD_GATEWAY
            }
            GatewayError::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// RFC 6750 §3 challenge, where the table in SPEC §4 gives one.
    fn challenge(&self) -> Option<String> {
        let description = self.to_string();
        match self {
            GatewayError::NoCredentials => Some(r#"Bearer realm="tollgate""#.to_owned()),
            GatewayError::MalformedAuthorization => {
                Some(r#"Bearer realm="tollgate", error="invalid_request""#.to_owned())
            }
            GatewayError::InvalidToken(_) | GatewayError::TokenExpired => Some(format!(
                r#"Bearer realm="tollgate", error="invalid_token", error_description="{description}""#
            )),
            GatewayError::InsufficientScope { scopes } => Some(format!(
                r#"Bearer realm="tollgate", error="insufficient_scope", scope="{scopes}""#
            )),
            _ => None,
        }
    }

    pub fn into_response(self) -> Response<Body> {
        if let GatewayError::CredentialNotConnected { connect_uri, .. } = &self {
            let body = serde_json::json!({
                "error": self.code(),
                "error_description": self.to_string(),
                "connect_uri": connect_uri,
            });
            return json(self.status(), &body);
        }
        let mut resp = json_error(self.status(), self.code(), &self.to_string());
        if let Some(challenge) = self.challenge()
            && let Ok(v) = HeaderValue::from_str(&challenge)
        {
            resp.headers_mut().insert(WWW_AUTHENTICATE, v);
        }
        if matches!(self, GatewayError::StoreUnavailable) {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
        }
        if matches!(self, GatewayError::BadRequestBody) {
            // Where the body ended is unknown, so nothing more can be read on this connection.
            resp.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// An RFC 6749 §5.2 error from an OAuth endpoint.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    pub code: &'static str,
    pub description: String,
    pub status: StatusCode,
    /// The client authenticated with HTTP Basic: a 401 must then challenge with Basic.
    pub basic_challenge: bool,
    /// Seconds to send as `Retry-After`.
    pub retry_after: Option<u64>,
}

impl OAuthError {
    fn new(code: &'static str, status: StatusCode, description: impl Into<String>) -> Self {
        OAuthError {
            code,
            description: description.into(),
            status,
            basic_challenge: false,
            retry_after: None,
        }
    }

    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new("invalid_request", StatusCode::BAD_REQUEST, d)
    }
    /// A body over the endpoint's limit: 413, with the `invalid_request` code.
    pub fn too_large(d: impl Into<String>) -> Self {
        Self::new("invalid_request", StatusCode::PAYLOAD_TOO_LARGE, d)
    }
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new("invalid_client", StatusCode::UNAUTHORIZED, d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new("invalid_grant", StatusCode::BAD_REQUEST, d)
    }
    pub fn unauthorized_client(d: impl Into<String>) -> Self {
        Self::new("unauthorized_client", StatusCode::BAD_REQUEST, d)
    }
    pub fn unsupported_grant_type(d: impl Into<String>) -> Self {
        Self::new("unsupported_grant_type", StatusCode::BAD_REQUEST, d)
    }
    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new("invalid_scope", StatusCode::BAD_REQUEST, d)
    }
    /// The tokeninfo endpoint's answer for a token that is not currently valid (400).
    pub fn invalid_token(d: impl Into<String>) -> Self {
        Self::new("invalid_token", StatusCode::BAD_REQUEST, d)
    }
    pub fn method_not_allowed() -> Self {
        Self::new(
            "invalid_request",
            StatusCode::METHOD_NOT_ALLOWED,
            "this endpoint takes POST",
        )
    }
    /// Too many failed attempts for this account or address (429).
    pub fn slow_down(wait: std::time::Duration) -> Self {
        let secs = wait.as_secs().max(1);
        OAuthError {
            retry_after: Some(secs),
            ..Self::new(
                "slow_down",
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many failed attempts; retry in {secs} s"),
            )
        }
    }
    pub fn unavailable() -> Self {
        OAuthError {
            retry_after: Some(1),
            ..Self::new(
                "temporarily_unavailable",
                StatusCode::SERVICE_UNAVAILABLE,
                "token store unavailable, retry shortly",
            )
        }
    }
    pub fn server_error(d: impl Into<String>) -> Self {
        Self::new("server_error", StatusCode::INTERNAL_SERVER_ERROR, d)
    }

    pub fn into_response(self) -> Response<Body> {
        let mut resp = no_store(json_error(self.status, self.code, &self.description));
        if self.status == StatusCode::UNAUTHORIZED && self.basic_challenge {
            resp.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="tollgate""#),
            );
        }
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl From<crate::store::StoreError> for OAuthError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::warn!(error = %e, "token store error on an OAuth endpoint");
        OAuthError::unavailable()
    }
}

/// `{"error": code, "error_description": description}` with the given status.
pub fn json_error(status: StatusCode, code: &str, description: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": code, "error_description": description });
    json(status, &body)
}

/// A JSON response.
pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// Marks a response as never to be cached (every OAuth response, RFC 6749 §5.1).
pub fn no_store(mut resp: Response<Body>) -> Response<Body> {
    let h = resp.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}
