//! Bearer enforcement: take the token from the request, validate it against the store, check
//! its scopes against the path, and hand back a [`Permit`]. The proxy takes a `Permit` as an
//! argument, so no request reaches an upstream without passing through here.

use std::sync::Arc;

use hyper::header::AUTHORIZATION;
use hyper::{HeaderMap, Method};

use crate::config::{RouteAuth, Scope};
use crate::error::GatewayError;
use crate::pattern::Matcher;
use crate::registry::Rules;
use crate::store::TokenStore;
use crate::token::{AccessEntry, TokenHash, now_millis};

/// Proof that a request may be forwarded, and on whose behalf.
#[derive(Debug, Clone)]
pub struct Permit(PermitKind);

#[derive(Debug, Clone)]
enum PermitKind {
    /// A route with `auth = "none"`.
    Public,
    /// A valid, unexpired, unrevoked token whose scopes cover the request.
    Token(Arc<AccessEntry>),
}

impl Permit {
    /// The token behind this permit (`None` on a public route).
    pub fn token(&self) -> Option<&AccessEntry> {
        match &self.0 {
            PermitKind::Public => None,
            PermitKind::Token(entry) => Some(entry),
        }
    }

    pub fn client_id(&self) -> Option<&str> {
        self.token().map(|e| &*e.token.client_id)
    }
}

/// What the `Authorization` header holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// No header, or a scheme other than Bearer (RFC 6750 §3.1: no error code then).
    Missing,
    /// A Bearer header that is not `Bearer <b64token>`, or several Authorization headers.
    Malformed,
    Bearer(&'a str),
}

/// Reads the bearer token from `Authorization` (scheme case-insensitive, RFC 6750 §2.1).
pub fn credentials(headers: &HeaderMap) -> Credentials<'_> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Credentials::Missing;
    };
    if values.next().is_some() {
        return Credentials::Malformed;
    }
    let Ok(value) = value.to_str() else {
        return Credentials::Malformed;
    };
    // Byte-wise: this runs on every proxied request, and `str::split_once` with a `char`
    // pattern costs more than the rest of the check together.
    let bytes = value.as_bytes();
    let (scheme, rest) = match bytes.iter().position(|&b| b == b' ') {
        Some(i) => (&bytes[..i], &value[i + 1..]),
        None => (bytes, ""),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Credentials::Missing;
    }
    let token = rest.trim_matches(' ');
    if is_b64token(token.as_bytes()) {
        Credentials::Bearer(token)
    } else {
        Credentials::Malformed
    }
}

/// RFC 6750 `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(s: &[u8]) -> bool {
    let body_len = s.len() - s.iter().rev().take_while(|&&b| b == b'=').count();
    body_len > 0 && s[..body_len].iter().all(|&b| B64TOKEN[usize::from(b)])
}

/// The bytes of a `b64token` before its `=` padding.
static B64TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] =
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    table
};

/// Scope patterns compiled once per config: each entry's value is an index into `scopes`.
pub struct ScopeRules {
    scopes: Vec<Scope>,
    matcher: Matcher<usize>,
}

impl ScopeRules {
    pub fn new(scopes: &[Scope]) -> ScopeRules {
        let entries = scopes
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.patterns.iter().map(move |p| (p.clone(), i)));
        ScopeRules {
            scopes: scopes.to_vec(),
            matcher: Matcher::new(entries),
        }
    }

    /// Does one of `granted` cover `method` + `path`?
    pub fn allows(&self, granted: &[impl AsRef<str>], method: &Method, path: &str) -> bool {
        self.matcher.any(method, path, |&i| {
            let name = self.scopes[i].name.as_str();
            granted.iter().any(|g| g.as_ref() == name)
        })
    }

    /// Names of the scopes that would cover `method` + `path`, space-separated.
    pub fn covering(&self, method: &Method, path: &str) -> String {
        let mut names: Vec<&str> = Vec::new();
        for (_, &i) in self.matcher.matching(method, path) {
            let name = self.scopes[i].name.as_str();
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names.join(" ")
    }

    /// Every (scope name, pattern) covering the request, most specific first (for `explain`).
    pub fn explain(&self, method: &Method, path: &str) -> Vec<(&str, &str)> {
        self.matcher
            .matching(method, path)
            .into_iter()
            .map(|(p, &i)| (self.scopes[i].name.as_str(), p.as_str()))
            .collect()
    }
}

/// Decides whether a request on a route may go through. `path` is the normalised path.
pub async fn authorize(
    auth: RouteAuth,
    headers: &HeaderMap,
    method: &Method,
    path: &str,
    rules: &Rules,
    store: &TokenStore,
) -> Result<Permit, GatewayError> {
    if auth == RouteAuth::None {
        return Ok(Permit(PermitKind::Public));
    }
    let token = match credentials(headers) {
        Credentials::Missing => return Err(GatewayError::NoCredentials),
        Credentials::Malformed => return Err(GatewayError::MalformedAuthorization),
        Credentials::Bearer(token) => token,
    };
    let entry = validate(store, rules, token).await?;
    if rules.scopes.allows(&entry.token.scopes, method, path) {
        Ok(Permit(PermitKind::Token(entry)))
    } else {
        Err(GatewayError::InsufficientScope {
            scopes: rules.scopes.covering(method, path),
        })
    }
}

/// `error_description` of a revoked token.
pub const REVOKED: &str = "token revoked";

/// Looks a token up and checks it is current: known, not revoked, not expired, and its
/// client not disabled (with this node's registry current, see [`Rules::check`]).
pub async fn validate(
    store: &TokenStore,
    rules: &Rules,
    token: &str,
) -> Result<Arc<AccessEntry>, GatewayError> {
    let hash = TokenHash::of(token);
    let entry = match store.lookup_access(&hash).await {
        Ok(Some(entry)) => entry,
        Ok(None) => return Err(GatewayError::InvalidToken("unknown token")),
        Err(e) => {
            tracing::warn!(error = %e, "token lookup failed");
            return Err(GatewayError::StoreUnavailable);
        }
    };
    let now = now_millis();
    if entry.revoked {
        Err(GatewayError::InvalidToken(REVOKED))
    } else if entry.token.is_expired(now) {
        Err(GatewayError::TokenExpired)
    } else {
        rules.check(&entry.token.client_id, now)?;
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn creds(values: &[&str]) -> String {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                AUTHORIZATION,
                HeaderValue::from_bytes(v.as_bytes()).expect("header"),
            );
        }
        format!("{:?}", credentials(&h))
    }

    #[test]
    fn bearer_extraction() {
        let table: &[(&[&str], &str)] = &[
            (&[], "Missing"),
            (&["Bearer abc"], r#"Bearer("abc")"#),
            (&["bearer abc"], r#"Bearer("abc")"#),
            (&["BEARER a-b.c_d~e+f/g=="], r#"Bearer("a-b.c_d~e+f/g==")"#),
            (&["Bearer  abc"], r#"Bearer("abc")"#),
            (&["Basic dXNlcjpwYXNz"], "Missing"),
            (&["Bearer"], "Malformed"),
            (&["Bearer "], "Malformed"),
            (&["Bearer a b"], "Malformed"),
            (&["Bearer a=b"], "Malformed"),
            (&["Bearer ==="], "Malformed"),
            (&["Bearer abc  "], r#"Bearer("abc")"#),
            (&["Bearer\tabc"], "Missing"),
            (&["Bearer a\u{e9}"], "Malformed"),
            (&["Bearerx abc"], "Missing"),
            (&["Bear abc"], "Missing"),
            (&[" Bearer abc"], "Missing"),
            (&["Bearer abc", "Bearer def"], "Malformed"),
        ];
        for (values, want) in table {
            assert_eq!(creds(values), *want, "Authorization: {values:?}");
        }
    }
}
