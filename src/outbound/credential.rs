//! A `[[credentials]]` entry as the rest of the code sees it: validated, with its secrets in
//! redacting wrappers and a fingerprint that tells a changed credential from the same one.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use hyper::Uri;
use sha2::{Digest, Sha256};

/// A secret value (client secret, password, refresh token, upstream token): `Debug` never
/// shows it, so it cannot reach a log line or an error by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The secret itself: only for the request that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// How the credential obtains its first token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundGrant {
    ClientCredentials,
    RefreshToken,
    Password,
    AuthorizationCode,
}

impl OutboundGrant {
    pub fn parse(s: &str) -> Option<OutboundGrant> {
        Some(match s {
            "client_credentials" => OutboundGrant::ClientCredentials,
            "refresh_token" => OutboundGrant::RefreshToken,
            "password" => OutboundGrant::Password,
            "authorization_code" => OutboundGrant::AuthorizationCode,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            OutboundGrant::ClientCredentials => "client_credentials",
            OutboundGrant::RefreshToken => "refresh_token",
            OutboundGrant::Password => "password",
            OutboundGrant::AuthorizationCode => "authorization_code",
        }
    }
}

/// RFC 6749 §2.3.1 client authentication towards the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// HTTP Basic, id and secret form-encoded first.
    Basic,
    /// `client_id` and `client_secret` in the body.
    Post,
}

/// How token requests are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFormat {
    Form,
    /// A JSON object of string values (seed 004's providers).
    Json,
}

/// A validated `[[credentials]]` entry.
#[derive(Debug)]
pub struct Credential {
    pub name: String,
    pub grant: OutboundGrant,
    pub token_url: Uri,
    /// Where refreshes go, if not `token_url`.
    pub refresh_url: Option<Uri>,
    pub authorize_url: Option<Uri>,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub auth_method: AuthMethod,
    pub scope: Option<String>,
    pub params: Vec<(String, String)>,
    pub request_format: RequestFormat,
    /// `grant = "refresh_token"`: the refresh token to start from.
    pub refresh_token: Option<Secret>,
    /// `grant = "password"`.
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// `authorization_code` only: every end user connects their own account.
    pub per_user: bool,
    /// RFC 6901 pointers into the provider's token response.
    pub access_token_path: String,
    pub refresh_token_path: String,
    pub expires_in_path: String,
    /// Lifetime assumed when the response gives none.
    pub default_ttl: Duration,
    pub refresh_before: Duration,
    /// Per token request.
    pub timeout: Duration,
    /// TLS towards the provider (its `ca`, or the system roots).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// SHA-256 over every setting: a reload that changes any of them starts the credential
    /// over with a new token; one that changes nothing keeps the token it has.
    pub fingerprint: [u8; 32],
}

impl Credential {
    /// Computes [`Credential::fingerprint`] from the other fields.
    pub fn with_fingerprint(mut self, ca_file: Option<&str>) -> Credential {
        let mut h = Sha256::new();
        let mut put = |part: &str| {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        };
        put(&self.name);
        put(self.grant.as_str());
        put(&self.token_url.to_string());
        put(&self
            .refresh_url
            .as_ref()
            .map(Uri::to_string)
            .unwrap_or_default());
        put(&self
            .authorize_url
            .as_ref()
            .map(Uri::to_string)
            .unwrap_or_default());
        put(&self.client_id);
        put(self.client_secret.as_ref().map_or("", Secret::expose));
        put(if self.auth_method == AuthMethod::Basic {
            "basic"
        } else {
            "post"
        });
        put(self.scope.as_deref().unwrap_or(""));
        for (k, v) in &self.params {
            put(k);
            put(v);
        }
        put(if self.request_format == RequestFormat::Json {
            "json"
        } else {
            "form"
        });
        put(self.refresh_token.as_ref().map_or("", Secret::expose));
        put(self.username.as_deref().unwrap_or(""));
        put(self.password.as_ref().map_or("", Secret::expose));
        put(if self.per_user { "per_user" } else { "" });
        put(&self.access_token_path);
        put(&self.refresh_token_path);
        put(&self.expires_in_path);
        for d in [self.default_ttl, self.refresh_before, self.timeout] {
            put(&d.as_millis().to_string());
        }
        put(ca_file.unwrap_or(""));
        self.fingerprint = h.finalize().into();
        self
    }

    /// Where a refresh-token request goes.
    pub fn refresh_endpoint(&self) -> &Uri {
        self.refresh_url.as_ref().unwrap_or(&self.token_url)
    }
}

/// Is `s` an RFC 6901 JSON pointer (`""` or `/a/b`, with `~` only in `~0` and `~1`)?
pub fn is_json_pointer(s: &str) -> bool {
    if s.is_empty() {
        return true;
    }
    if !s.starts_with('/') {
        return false;
    }
    let b = s.as_bytes();
    b.iter()
        .enumerate()
        .all(|(i, c)| *c != b'~' || matches!(b.get(i + 1), Some(b'0' | b'1')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_pointers() {
        for ok in ["", "/access_token", "/data/auth/token", "/a~0b/c~1d", "/0"] {
            assert!(is_json_pointer(ok), "{ok}");
        }
        for bad in ["access_token", "/a~", "/a~2", "data.token", "$.token"] {
            assert!(!is_json_pointer(bad), "{bad}");
        }
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }
}
