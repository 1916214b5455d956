//! The file as written: serde structs mirroring `gateway.toml` key for key.
//!
//! Nothing here is validated beyond TOML types; `config::load` turns these into the library's
//! `Config`. Every struct denies unknown keys, and every value an error message may need to
//! point at is `Spanned` so the message can carry `FILE:LINE:COL`.

use serde::Deserialize;
use toml::Spanned;

pub type Str = Spanned<String>;
pub type StrList = Spanned<Vec<Str>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub server: Spanned<RawServer>,
    pub admin: Option<RawAdmin>,
    pub store: Option<RawStore>,
    pub oauth: Option<RawOAuth>,
    #[serde(default)]
    pub scopes: Vec<Spanned<RawScope>>,
    #[serde(default)]
    pub users: Vec<Spanned<RawUser>>,
    #[serde(default)]
    pub clients: Vec<Spanned<RawClient>>,
    #[serde(default)]
    pub routes: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    pub credentials: Vec<Spanned<RawCredential>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Str,
    pub public_url: Str,
    pub shutdown_grace: Option<Str>,
    pub workers: Option<Spanned<i64>>,
    pub trusted_proxies: Option<StrList>,
    pub tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: Str,
    pub key: Str,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Str,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub backend: Str,
    pub url: Option<Str>,
    pub urls: Option<StrList>,
    pub mode: Option<Str>,
    pub prefix: Option<Str>,
    pub cache_ttl: Option<Str>,
    pub cache_capacity: Option<Spanned<i64>>,
    pub encryption_key: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth {
    pub path: Option<Str>,
    pub access_token_ttl: Option<Str>,
    pub refresh_token_ttl: Option<Str>,
    pub authorization_code_ttl: Option<Str>,
    pub refresh_grace: Option<Str>,
    pub default_client: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScope {
    pub name: Str,
    pub description: Option<Str>,
    pub paths: StrList,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub username: Str,
    pub password_hash: Str,
    pub scopes: Option<StrList>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub client_id: Str,
    pub name: Option<Str>,
    pub version: Option<Str>,
    pub description: Option<Str>,
    #[serde(rename = "type")]
    pub kind: Option<Str>,
    pub secret: Option<Str>,
    pub secret_hash: Option<Str>,
    pub redirect_uris: Option<StrList>,
    pub grants: Option<StrList>,
    pub scopes: Option<StrList>,
    pub access_token_ttl: Option<Str>,
    /// `"unlimited"` or a non-negative integer.
    pub refresh_count: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Str,
    pub path: Str,
    pub host: Option<Str>,
    pub upstreams: StrList,
    pub auth: Option<Str>,
    pub strip_prefix: Option<Str>,
    pub timeout: Option<Str>,
    pub forward_authorization: Option<Spanned<bool>>,
    pub upstream_ca: Option<Str>,
    pub credential: Option<Str>,
}

/// `[[credentials]]`: how Tollgate gets its own token for an upstream (SPEC §8).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredential {
    pub name: Str,
    pub token_url: Str,
    pub grant: Str,
    pub client_id: Str,
    pub client_secret: Option<Str>,
    pub auth_method: Option<Str>,
    pub scope: Option<Str>,
    pub params: Option<Spanned<std::collections::BTreeMap<String, Str>>>,
    pub request_format: Option<Str>,
    pub refresh_url: Option<Str>,
    pub refresh_token: Option<Str>,
    pub username: Option<Str>,
    pub password: Option<Str>,
    pub authorize_url: Option<Str>,
    pub per_user: Option<Spanned<bool>>,
    pub access_token_path: Option<Str>,
    pub refresh_token_path: Option<Str>,
    pub expires_in_path: Option<Str>,
    pub default_ttl: Option<Str>,
    pub refresh_before: Option<Str>,
    pub timeout: Option<Str>,
    pub ca: Option<Str>,
}
