//! Reading OAuth request parameters and authenticating the client (RFC 6749 §2.3, §3.1).

use std::collections::HashMap;

use base64::Engine;
use hyper::header::AUTHORIZATION;
use hyper::{HeaderMap, Request};

mod body;
pub use body::{pairs, read, read_pairs};

use std::borrow::Cow;

use super::Ctx;
use crate::config::{Client, ClientType, User};
use crate::error::OAuthError;
use crate::throttle::{Account, Denied};

/// The parameters of one request; a parameter sent with an empty value counts as absent.
#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("missing parameter `{name}`")))
    }

    /// Parses `application/x-www-form-urlencoded` text; a repeated parameter is an error.
    pub fn parse(text: &[u8]) -> Result<Params, OAuthError> {
        Params::from_pairs(pairs(text))
    }

    pub fn from_pairs(
        pairs: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Params, OAuthError> {
        let mut map = HashMap::new();
        for (k, v) in pairs {
            if map.contains_key(&k) {
                return Err(OAuthError::invalid_request(format!(
                    "parameter `{k}` is repeated"
                )));
            }
            map.insert(k, v);
        }
        map.retain(|_, v| !v.is_empty());
        Ok(Params(map))
    }
}

/// How the client presented itself.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientCredentials {
    Basic { id: String, secret: String },
    Body { id: String, secret: Option<String> },
    None,
}

/// Finds the client credentials in the `Authorization: Basic` header or the body; using both
/// is an error (RFC 6749 §2.3).
pub fn client_credentials(
    headers: &HeaderMap,
    params: &Params,
) -> Result<ClientCredentials, OAuthError> {
    let basic = match headers.get(AUTHORIZATION) {
        Some(value) => {
            let value = value.to_str().unwrap_or("");
            let (scheme, encoded) = value.split_once(' ').unwrap_or((value, ""));
            if scheme.eq_ignore_ascii_case("basic") {
                Some(parse_basic(encoded.trim()).ok_or_else(|| OAuthError {
                    basic_challenge: true,
                    ..OAuthError::invalid_client("malformed Basic credentials")
                })?)
            } else {
                None
            }
        }
        None => None,
    };
    match (basic, params.get("client_id"), params.get("client_secret")) {
        (Some(_), _, Some(_)) => Err(OAuthError::invalid_request(
            "client authenticated twice: use either HTTP Basic or client_secret in the body",
        )),
        (Some((id, _)), Some(body_id), None) if body_id != id => Err(OAuthError::invalid_request(
            "client_id in the body differs from the one in HTTP Basic",
        )),
        (Some((id, secret)), _, None) => Ok(ClientCredentials::Basic { id, secret }),
        (None, Some(id), secret) => Ok(ClientCredentials::Body {
            id: id.to_owned(),
            secret: secret.map(str::to_owned),
        }),
        (None, None, Some(_)) => Err(OAuthError::invalid_request(
            "client_secret without client_id",
        )),
        (None, None, None) => Ok(ClientCredentials::None),
    }
}

/// RFC 6749 §2.3.1: `base64(urlencode(id) ":" urlencode(secret))`.
pub fn parse_basic(encoded: &str) -> Option<(String, String)> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let id = form_component(id)?;
    (!id.is_empty()).then_some((id, form_component(secret)?))
}

/// One form-urlencoded value on its own: `+` is a space, `%XX` a byte, every other byte
/// itself (a raw `&` or `=` included: there is nothing here for it to separate). The bytes
/// must be UTF-8; a lossy decoding would let different credentials read as one.
fn form_component(s: &str) -> Option<String> {
    let hex = |b: Option<&u8>| b.and_then(|&b| char::from(b).to_digit(16));
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match (b, hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (b'%', Some(hi), Some(lo)) => {
                // Two hex digits: at most 0xFF.
                out.push(u8::try_from(hi << 4 | lo).ok()?);
                i += 3;
                continue;
            }
            (b'+', _, _) => out.push(b' '),
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Reads the form and authenticates its client. With `allow_default`, a request naming no
/// client gets `[oauth].default_client`; without it, such a request is `invalid_client`.
pub async fn read_authenticated<'c>(
    ctx: &Ctx<'c>,
    req: Request<hyper::body::Incoming>,
    allow_default: bool,
) -> Result<(Params, Authenticated<'c>), OAuthError> {
    let (headers, params) = body::read_form_or_json(req).await?;
    let creds = client_credentials(&headers, &params)?;
    if !allow_default && creds == ClientCredentials::None {
        return Err(OAuthError::invalid_client("client authentication required"));
    }
    let auth = authenticate(ctx, creds).await?;
    Ok((params, auth))
}

/// An authenticated client, and whether it used HTTP Basic (to shape a 401).
pub struct Authenticated<'c> {
    pub client: Cow<'c, Client>,
    pub via_basic: bool,
    /// The request named no client and `[oauth].default_client` stood in.
    pub defaulted: bool,
}

/// Authenticates the client of a token, revocation or introspection request. Every secret
/// check is reserved with the throttle before it runs (SPEC §5 "Guessing"); past the limit
/// the answer is 429.
pub async fn authenticate<'c>(
    ctx: &Ctx<'c>,
    creds: ClientCredentials,
) -> Result<Authenticated<'c>, OAuthError> {
    let config = ctx.config;
    let (id, secret, via_basic) = match creds {
        ClientCredentials::Basic { id, secret } => (id, Some(secret), true),
        ClientCredentials::Body { id, secret } => (id, secret, false),
        ClientCredentials::None => {
            let missing = || OAuthError::invalid_client("client authentication required");
            let id = config.oauth.default_client.as_deref().ok_or_else(missing)?;
            let client = ctx.client(id).await?.ok_or_else(missing)?;
            // Only a public client may stand in for a request that authenticated nobody; a
            // confidential one (a store client, which `check` cannot see) would hand out its
            // grants unauthenticated.
            if client.kind != ClientType::Public {
                tracing::warn!(client_id = %id, "[oauth].default_client is not a public client; refused");
                return Err(missing());
            }
            return Ok(Authenticated {
                client,
                via_basic: false,
                defaulted: true,
            });
        }
    };
    let failed = || OAuthError {
        basic_challenge: via_basic,
        ..OAuthError::invalid_client("client authentication failed")
    };
    let Some(secret) = secret else {
        // No secret: a public client identifying itself, which is no guess at anything.
        return match ctx.client(&id).await? {
            Some(client) if client.kind == ClientType::Public => Ok(Authenticated {
                client,
                via_basic,
                defaulted: false,
            }),
            _ => Err(failed()),
        };
    };
    // A disabled client's secret is checked like any other (a right one is no guess, and
    // is not throttled as one), and only then refused.
    let client = ctx.client_even_disabled(&id).await?;
    let authenticated = |client: Cow<'c, Client>| {
        if client.enabled {
            Ok(Authenticated {
                client,
                via_basic,
                defaulted: false,
            })
        } else {
            Err(OAuthError {
                basic_challenge: via_basic,
                ..OAuthError::invalid_client(crate::registry::CLIENT_DISABLED)
            })
        }
    };
    // A secret verified moments ago is no guess: it needs no throttled check, only a look
    // at whether the client is locked (which stays locked for it too). Every other path
    // reserves a check, which refuses a locked client by itself.
    let vouched = client.as_ref().is_some_and(|c| {
        c.kind == ClientType::Confidential
            && c.secret_hash
                .as_deref()
                .is_some_and(|h| crate::secret::remembered(&secret, h))
    });
    if vouched && let Some(client) = client {
        ctx.throttle
            .refused(Account::Client, &id, ctx.remote)
            .await
            .map_err(denied)?;
        return authenticated(client);
    }
    let attempt = ctx
        .throttle
        .begin(Account::Client, &id, ctx.remote)
        .await
        .map_err(denied)?;
    let Some(client) = client else {
        crate::secret::verify_decoy(secret, config.decoy_template(Account::Client)).await;
        attempt.fail().await;
        return Err(failed());
    };
    match (client.kind, &client.secret_hash) {
        (ClientType::Public, _) => {
            attempt.refund();
            Err(OAuthError {
                basic_challenge: via_basic,
                ..OAuthError::invalid_client("a public client has no secret")
            })
        }
        (ClientType::Confidential, Some(hash)) => {
            if crate::secret::verify_blocking(secret, hash.clone()).await {
                attempt.refund();
                authenticated(client)
            } else {
                attempt.fail().await;
                Err(failed())
            }
        }
        (ClientType::Confidential, None) => {
            attempt.fail().await;
            Err(failed())
        }
    }
}

/// A check the throttle did not allow: 429 `slow_down` with the wait, or, when the shared
/// counters cannot be reached, 503 `temporarily_unavailable` like any other store outage
/// (SPEC §11). Either way the secret is not checked.
fn denied(d: Denied) -> OAuthError {
    match d {
        Denied::SlowDown(wait) => OAuthError::slow_down(wait),
        Denied::Unavailable(e) => e.into(),
    }
}

/// Why a user's password was not accepted.
pub enum PasswordRefused {
    /// Too many recent failures: wait this long.
    SlowDown(std::time::Duration),
    /// The throttle's counters cannot be reached, so no password is checked.
    Unavailable(crate::store::StoreError),
    /// Unknown user or wrong password (indistinguishable by design).
    Wrong,
}

impl From<Denied> for PasswordRefused {
    fn from(d: Denied) -> Self {
        match d {
            Denied::SlowDown(wait) => PasswordRefused::SlowDown(wait),
            Denied::Unavailable(e) => PasswordRefused::Unavailable(e),
        }
    }
}

/// Checks a resource owner's password (password grant and login page), reserved with the
/// throttle first; an unknown username costs the same argon2 run as a wrong password.
pub async fn check_user<'c>(
    ctx: &Ctx<'c>,
    username: &str,
    password: &str,
) -> Result<&'c User, PasswordRefused> {
    let user = ctx.config.user(username);
    // As for client secrets: a password verified moments ago needs only a look at the lock.
    if let Some(user) = user
        && crate::secret::remembered(password, &user.password_hash)
    {
        ctx.throttle
            .refused(Account::User, username, ctx.remote)
            .await?;
        return Ok(user);
    }
    let attempt = ctx
        .throttle
        .begin(Account::User, username, ctx.remote)
        .await?;
    let Some(user) = user else {
        let template = ctx.config.decoy_template(Account::User);
        crate::secret::verify_decoy(password.to_owned(), template).await;
        attempt.fail().await;
        return Err(PasswordRefused::Wrong);
    };
    if crate::secret::verify_blocking(password.to_owned(), user.password_hash.clone()).await {
        attempt.refund();
        Ok(user)
    } else {
        attempt.fail().await;
        Err(PasswordRefused::Wrong)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn parameters() {
        let p = Params::parse(b"a=1&b=&c=x%20y+z").expect("parse");
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), None, "empty value counts as absent");
        assert_eq!(p.get("c"), Some("x y z"));
        let err = Params::parse(b"a=1&a=2").expect_err("repeated");
        assert_eq!(err.code, "invalid_request");
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let enc = base64::engine::general_purpose::STANDARD.encode("my%20app:s%3Acret");
        assert_eq!(
            parse_basic(&enc),
            Some(("my app".to_owned(), "s:cret".to_owned()))
        );
        assert_eq!(parse_basic("!!!"), None);
        let no_colon = base64::engine::general_purpose::STANDARD.encode("abc");
        assert_eq!(parse_basic(&no_colon), None);
    }

    /// Fuzz findings (fuzz/README.md, `basic_auth`): each half is decoded as one value, so a
    /// raw `&` is part of it, not the end of it; and a half that is not UTF-8 once decoded is
    /// refused rather than read with replacement characters (which would make `%FE` and `%FF`
    /// the same secret).
    #[test]
    fn basic_credentials_keep_every_byte_and_refuse_invalid_utf8() {
        let basic =
            |text: &str| parse_basic(&base64::engine::general_purpose::STANDARD.encode(text));
        let pair = |id: &str, secret: &str| Some((id.to_owned(), secret.to_owned()));
        assert_eq!(
            basic("ca\u{1}my ap&p)\0s:0ss+word"),
            pair("ca\u{1}my ap&p)\0s", "0ss word")
        );
        assert_eq!(basic("app:pa&ss=1"), pair("app", "pa&ss=1"));
        assert_eq!(basic("a&b:s"), pair("a&b", "s"));
        assert_eq!(basic("app:100%+sure%"), pair("app", "100% sure%"));
        assert_eq!(basic("caf%C3%A9:x"), pair("café", "x"));
        assert_eq!(basic("caf%+3%A9:p%40ss+wor4"), None);
        assert_eq!(basic("app:%FF"), None);
        assert_eq!(basic("app:%FE"), None);
        assert_eq!(basic("%41pp:"), pair("App", ""));
        assert_eq!(basic(":secret"), None);
    }

    #[test]
    fn two_authentication_methods_are_refused() {
        let mut h = HeaderMap::new();
        let enc = base64::engine::general_purpose::STANDARD.encode("app:secret");
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {enc}")).expect("hv"),
        );
        let p = Params::parse(b"client_secret=secret").expect("parse");
        assert!(client_credentials(&h, &p).is_err());
        let p = Params::parse(b"client_id=app").expect("parse");
        assert_eq!(
            client_credentials(&h, &p).expect("creds"),
            ClientCredentials::Basic {
                id: "app".into(),
                secret: "secret".into()
            }
        );
        let p = Params::parse(b"client_id=other").expect("parse");
        assert!(client_credentials(&h, &p).is_err());
    }
}
