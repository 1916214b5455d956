//! The parameters of an OAuth request as sent: a form body, the query string when the body
//! is empty, and for the machine endpoints (token, revocation, introspection) a JSON object
//! of strings, read by the same rules as the form.

use http_body_util::{BodyExt, Limited};
use hyper::body::Bytes;
use hyper::header::CONTENT_TYPE;
use hyper::{HeaderMap, Request};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

use super::Params;
use crate::error::OAuthError;

/// Largest body accepted by the OAuth endpoints (SPEC §12); larger → 413.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The form body, or the query string when the body is empty (SPEC §5: existing clients send
/// token requests as query parameters).
pub async fn read(req: Request<hyper::body::Incoming>) -> Result<(HeaderMap, Params), OAuthError> {
    let (headers, pairs) = read_pairs(req).await?;
    Ok((headers, Params::from_pairs(pairs)?))
}

/// Like [`read`], keeping every pair, repeated names included (check-box lists).
pub async fn read_pairs(
    req: Request<hyper::body::Incoming>,
) -> Result<(HeaderMap, Vec<(String, String)>), OAuthError> {
    let (headers, query, body) = collect(req).await?;
    match (body.is_empty(), media_type(&headers)) {
        (true, _) => Ok((headers, pairs(query.as_bytes()))),
        (false, Media::Form) => Ok((headers, pairs(&body))),
        (false, _) => Err(OAuthError::invalid_request(
            "body must be application/x-www-form-urlencoded",
        )),
    }
}

/// Like [`read`], and a body that is a JSON object of string values is read as the form
/// would be (SPEC §5: seed 004's clients send JSON). Only for the endpoints clients call
/// themselves; the browser's forms stay forms.
pub async fn read_form_or_json(
    req: Request<hyper::body::Incoming>,
) -> Result<(HeaderMap, Params), OAuthError> {
    let (headers, query, body) = collect(req).await?;
    let pairs = match (body.is_empty(), media_type(&headers)) {
        (true, _) => pairs(query.as_bytes()),
        (false, Media::Form) => pairs(&body),
        (false, Media::Json) => json_pairs(&body)?,
        (false, Media::Other) => {
            return Err(OAuthError::invalid_request(
                "body must be application/x-www-form-urlencoded or application/json",
            ));
        }
    };
    Ok((headers, Params::from_pairs(pairs)?))
}

/// Every pair of `application/x-www-form-urlencoded` text, decoded, in order.
pub fn pairs(text: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(text).into_owned().collect()
}

/// The head, the query string and the whole body (at most [`MAX_FORM_BYTES`]).
async fn collect(
    req: Request<hyper::body::Incoming>,
) -> Result<(HeaderMap, String, Bytes), OAuthError> {
    let (parts, body) = req.into_parts();
    let body = Limited::new(body, MAX_FORM_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                OAuthError::too_large(format!(
                    "request body larger than {} KiB",
                    MAX_FORM_BYTES / 1024
                ))
            } else {
                OAuthError::invalid_request("request body unreadable")
            }
        })?
        .to_bytes();
    let query = parts.uri.query().unwrap_or("").to_owned();
    Ok((parts.headers, query, body))
}

enum Media {
    Form,
    Json,
    Other,
}

/// What `Content-Type` says the body is; none (or one that is not text) is read as a form,
/// as it always was.
fn media_type(headers: &HeaderMap) -> Media {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return Media::Form;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Media::Form
    } else if essence.eq_ignore_ascii_case("application/json") {
        Media::Json
    } else {
        Media::Other
    }
}

/// A JSON object's members in order, every value a string. The pairs keep a repeated key
/// (serde_json's maps would keep only the last one), so [`Params::from_pairs`] refuses it as
/// it refuses a repeated form parameter.
pub fn json_pairs(body: &[u8]) -> Result<Vec<(String, String)>, OAuthError> {
    serde_json::from_slice::<JsonPairs>(body)
        .map(|p| p.0)
        .map_err(|_| {
            OAuthError::invalid_request("a JSON body must be one object whose values are strings")
        })
}

struct JsonPairs(Vec<(String, String)>);

impl<'de> Deserialize<'de> for JsonPairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = JsonPairs;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonPairs, A::Error> {
                let mut out = Vec::new();
                while let Some(pair) = map.next_entry::<String, String>()? {
                    out.push(pair);
                }
                Ok(JsonPairs(out))
            }
        }
        d.deserialize_map(Members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_are_objects_of_strings() {
        let got = json_pairs(br#"{"username":"alice","password":"p w","scope":""}"#)
            .expect("an object of strings");
        let want = [("username", "alice"), ("password", "p w"), ("scope", "")];
        assert_eq!(
            got,
            want.map(|(k, v)| (k.to_owned(), v.to_owned())),
            "in order, empty values kept (Params drops them as for forms)"
        );
        for bad in [
            &br#"{"username":"alice","expires":5}"#[..],
            br#"{"a":null}"#,
            br#"{"a":["x"]}"#,
            br#"{"a":{"b":"c"}}"#,
            br#"["username","alice"]"#,
            br#""username""#,
            br#"{"a":"b"} {"c":"d"}"#,
            br#"{"a":"b""#,
            b"username=alice",
        ] {
            let err = json_pairs(bad).expect_err(&String::from_utf8_lossy(bad));
            assert_eq!(err.code, "invalid_request");
        }
        let repeated = json_pairs(br#"{"a":"1","a":"2"}"#).expect("pairs");
        assert_eq!(
            Params::from_pairs(repeated).expect_err("repeated").code,
            "invalid_request"
        );
    }
}
