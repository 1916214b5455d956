//! The token endpoints (`POST /token`, `POST /refresh`): read the form or JSON body, record
//! it, and answer as the current [`Mode`] says; in `Normal` mode the grant rules of
//! `state.rs` decide.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use serde_json::{Map, Value, json};

use super::{Answer, Mode, Shape, Shared, TokenRequest, lock, pages, respond};
use crate::common::random_token;

/// The service error that makes hyper drop the connection without writing a response.
#[derive(Debug)]
pub(super) struct Hangup;

impl fmt::Display for Hangup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("provider hangs up (Mode::Hangup)")
    }
}

impl std::error::Error for Hangup {}

/// Counts a token request as being answered until dropped (also when the client goes away).
struct InFlight(Shared);

impl InFlight {
    fn enter(state: &Shared) -> InFlight {
        let mut s = lock(state);
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        InFlight(Arc::clone(state))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.0).in_flight -= 1;
    }
}

pub(super) async fn token_endpoint(
    state: &Shared,
    parts: &hyper::http::request::Parts,
    body: &Bytes,
) -> Result<Answer, Hangup> {
    let (request, well_formed) = parse_token_request(parts, body);
    let _in_flight = InFlight::enter(state);
    let (mode, shape, expires_in) = {
        let mut s = lock(state);
        s.token_requests.push(request.clone());
        let mode = s.next_modes.pop_front().unwrap_or(s.mode);
        (mode, s.shape, s.expires_in.clone())
    };
    let normal = |token_type: &str| {
        if !well_formed {
            return oauth_error("invalid_request");
        }
        let mut s = lock(state);
        match s.grant(&request) {
            Ok(issued) => {
                let body = token_body(
                    s.shape,
                    Some(&issued.access),
                    issued.refresh.as_deref(),
                    s.expires_in.clone(),
                    token_type,
                    issued.scope.as_deref(),
                );
                respond(StatusCode::OK, "application/json", body.to_string())
            }
            Err(code) => oauth_error(code),
        }
    };
    Ok(match mode {
        Mode::Normal => normal("Bearer"),
        Mode::TokenType(token_type) => normal(token_type),
        Mode::Slow(delay) => {
            tokio::time::sleep(delay).await;
            normal("Bearer")
        }
        Mode::Status(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            respond(status, "text/plain", format!("provider says {status}"))
        }
        Mode::OAuthError(code) => oauth_error(code),
        Mode::Html => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            pages::LOGIN_WALL,
        ),
        Mode::FormEncoded => respond(
            StatusCode::OK,
            "application/x-www-form-urlencoded",
            format!("access_token={}&token_type=bearer", random_token()),
        ),
        Mode::NoAccessToken => {
            let scope = request.param("scope");
            let body = token_body(shape, None, None, expires_in, "Bearer", scope);
            respond(StatusCode::OK, "application/json", body.to_string())
        }
        Mode::Empty => respond(StatusCode::OK, "application/json", ""),
        Mode::Hangup => return Err(Hangup),
    })
}

/// The recorded request, and whether its body could be read as the content type says.
fn parse_token_request(parts: &hyper::http::request::Parts, body: &Bytes) -> (TokenRequest, bool) {
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let media_type = content_type
        .as_deref()
        .and_then(|ct| ct.split(';').next())
        .map(|ct| ct.trim().to_ascii_lowercase());
    let json = media_type.as_deref() == Some("application/json");
    let mut params = BTreeMap::new();
    let well_formed = if json {
        match serde_json::from_slice::<Map<String, Value>>(body) {
            Ok(object) => {
                for (name, value) in object {
                    let value = match value {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    params.insert(name, value);
                }
                true
            }
            Err(_) => false,
        }
    } else if media_type.as_deref() == Some("application/x-www-form-urlencoded") {
        for (name, value) in form_urlencoded::parse(body) {
            params.insert(name.into_owned(), value.into_owned());
        }
        true
    } else {
        false
    };
    let request = TokenRequest {
        path: parts.uri.path().to_owned(),
        content_type,
        headers: parts.headers.clone(),
        basic: parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(decode_basic),
        params,
        json,
        at: Instant::now(),
    };
    (request, well_formed)
}

/// `Basic base64(urlencode(id):urlencode(secret))` → (id, secret).
fn decode_basic(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let pair = String::from_utf8(decoded).ok()?;
    let (id, secret) = pair.split_once(':')?;
    let unescape = |s: &str| -> String {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((unescape(id), unescape(secret)))
}

fn token_body(
    shape: Shape,
    access: Option<&str>,
    refresh: Option<&str>,
    expires_in: Option<Value>,
    token_type: &str,
    scope: Option<&str>,
) -> Value {
    let mut fields = Map::new();
    let put = |map: &mut Map<String, Value>, name: &str, value: Option<Value>| {
        if let Some(value) = value {
            map.insert(name.to_owned(), value);
        }
    };
    let (access, refresh) = (access.map(Value::from), refresh.map(Value::from));
    match shape {
        Shape::Flat => {
            put(&mut fields, "access_token", access);
            put(&mut fields, "refresh_token", refresh);
            put(&mut fields, "expires_in", expires_in);
        }
        Shape::Nested => {
            let mut auth = Map::new();
            put(&mut auth, "token", access);
            put(&mut auth, "refresh", refresh);
            put(&mut auth, "ttl", expires_in);
            fields.insert("data".to_owned(), json!({ "auth": auth }));
        }
    }
    put(&mut fields, "token_type", Some(Value::from(token_type)));
    put(&mut fields, "scope", scope.map(Value::from));
    Value::Object(fields)
}

/// RFC 6749 §5.2: 401 with a Basic challenge for `invalid_client`, 400 otherwise.
pub(super) fn oauth_error(code: &str) -> Answer {
    let body = json!({ "error": code }).to_string();
    if code == "invalid_client" {
        let mut answer = respond(StatusCode::UNAUTHORIZED, "application/json", body);
        answer.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"provider\""),
        );
        answer
    } else {
        respond(StatusCode::BAD_REQUEST, "application/json", body)
    }
}
