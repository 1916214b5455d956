//! A provider's token response as the outbound credentials read it (`src/outbound/fetch.rs`
//! `answer`, `parse`): status, content type, JSON body, and the credential's RFC 6901 pointers
//! to the access token, refresh token and lifetime.
//!
//! Properties: no panic. An accepted answer came with a 2xx status and JSON without an
//! `error` string, its access token is exactly the non-empty, visible-ASCII string the pointer
//! addresses, its refresh token is the one its pointer addresses, and its lifetime is positive
//! and at most a year. Refusals carry a classification, never the provider's text beyond a
//! short filtered error code. And every pointer the config accepts (`is_json_pointer`)
//! addresses the value placed at the path it spells (`~1` = `/`, `~0` = `~`), up to the
//! nesting serde_json parses.
//!
//! Input: byte 0 = status (200 + n, or 400 + n when bit 7 is set); then NUL-separated:
//! access pointer, refresh pointer, expires_in pointer, content type, body.

#![no_main]

use std::time::Duration;

use hyper::StatusCode;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use tollgate::fuzzing::{FetchError, credential, is_json_pointer, token_answer};

const DEFAULT_TTL: Duration = Duration::from_secs(3600);
const YEAR: Duration = Duration::from_secs(365 * 86_400);

/// The document in which `pointer` addresses the string `leaf`.
fn document_for(pointer: &str, leaf: &str) -> Value {
    let mut value = Value::String(leaf.to_owned());
    for token in pointer
        .split('/')
        .skip(1)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        let key = token.replace("~1", "/").replace("~0", "~");
        let mut object = Map::new();
        object.insert(key, value);
        value = Value::Object(object);
    }
    value
}

fuzz_target!(|data: &[u8]| {
    let [status, rest @ ..] = data else {
        return;
    };
    let mut parts = rest.splitn(5, |&b| b == 0);
    let mut text = || std::str::from_utf8(parts.next().unwrap_or_default()).ok();
    let (Some(access), Some(refresh), Some(expires), Some(content_type)) =
        (text(), text(), text(), text())
    else {
        return;
    };
    let body = parts.next().unwrap_or_default();
    let code = if status & 0x80 == 0 { 200 } else { 400 } + u16::from(status & 0x7f);
    let Ok(status) = StatusCode::from_u16(code) else {
        return;
    };
    let cred = credential(access, refresh, expires, DEFAULT_TTL);

    // serde_json refuses documents nested deeper than 128, so deeper pointers are moot.
    if is_json_pointer(access) && access.matches('/').count() < 100 {
        let doc = document_for(access, "tok-1");
        let bytes = serde_json::to_vec(&doc).expect("serialises");
        match token_answer(&cred, StatusCode::OK, "application/json", &bytes) {
            Ok(f) => assert_eq!(f.access.expose(), "tok-1"),
            // A pointer whose path holds `error` or `token_type` makes the leaf that field.
            Err(FetchError::OAuth(_) | FetchError::TokenType(_)) => {}
            Err(e) => panic!("{access:?} does not address its own path: {e}"),
        }
    }

    let json: Option<Value> = serde_json::from_slice(body).ok();
    match token_answer(&cred, status, &content_type.to_ascii_lowercase(), body) {
        Ok(fetched) => {
            assert!(status.is_success());
            let json = json.expect("accepted without JSON");
            assert!(json.get("error").and_then(Value::as_str).is_none());
            let token = fetched.access.expose();
            assert_eq!(json.pointer(access).and_then(Value::as_str), Some(token));
            assert!(!token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()));
            let refresh_at = json
                .pointer(refresh)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty());
            assert_eq!(fetched.refresh.as_ref().map(|s| s.expose()), refresh_at);
            assert!(
                !fetched.lifetime.is_zero() && fetched.lifetime <= YEAR,
                "lifetime {:?} from {:?}",
                fetched.lifetime,
                json.pointer(expires)
            );
        }
        Err(FetchError::OAuth(code)) => {
            assert!(
                code.len() <= 40 && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            );
        }
        Err(FetchError::TokenType(kind)) => {
            assert!(kind.len() <= 20 && kind.bytes().all(|b| b.is_ascii_alphanumeric()));
        }
        Err(_) => {}
    }
});
