//! The registry's types as the file declares them: scopes, users, clients (with their grants,
//! refresh cap and token-response shape), and the built-in scopes that guard Tollgate's own
//! endpoints.

use std::time::Duration;

use crate::pattern::Pattern;

/// Built-in scope that guards the admin API; never declared in `[[scopes]]`.
pub const ADMIN_SCOPE: &str = "admin";
/// Built-in scope of a resource server: its holder may introspect any token (SPEC §5), not
/// only its own. Never declared in `[[scopes]]` either.
pub const INTROSPECT_SCOPE: &str = "introspect";
/// Built-in scope that may read the admin API (GET only) and sign in to the console to look,
/// never to change anything (SPEC §9).
pub const ADMIN_READ_SCOPE: &str = "admin:read";

/// Is `name` one of the built-in scopes (which guard Tollgate's own endpoints, never a path)?
pub fn is_builtin_scope(name: &str) -> bool {
    name == ADMIN_SCOPE || name == ADMIN_READ_SCOPE || name == INTROSPECT_SCOPE
}

#[derive(Debug, Clone)]
pub struct Scope {
    pub name: String,
    pub description: String,
    pub patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
pub struct User {
    pub username: String,
    /// argon2 PHC string.
    pub password_hash: String,
    /// Scopes this user may grant; `None` = every declared scope (not the built-in ones).
    pub scopes: Option<Vec<String>>,
}

impl User {
    /// May this user grant `scope`? A built-in scope (`admin`, `admin:read`, `introspect`)
    /// only when listed: a user whose `scopes` is omitted must not mint an admin token through
    /// an ops client's password grant (the console asks for a listed one too).
    pub fn may_grant(&self, scope: &str) -> bool {
        match &self.scopes {
            None => !is_builtin_scope(scope),
            Some(own) => own.iter().any(|s| s == scope),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientType {
    Confidential,
    Public,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
    Password,
    Implicit,
}

impl Grant {
    pub const ALL: [Grant; 5] = [
        Grant::AuthorizationCode,
        Grant::RefreshToken,
        Grant::ClientCredentials,
        Grant::Password,
        Grant::Implicit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Grant::AuthorizationCode => "authorization_code",
            Grant::RefreshToken => "refresh_token",
            Grant::ClientCredentials => "client_credentials",
            Grant::Password => "password",
            Grant::Implicit => "implicit",
        }
    }

    pub fn parse(s: &str) -> Option<Grant> {
        Grant::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

/// How many times one grant may be refreshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshCount {
    Unlimited,
    Limited(u32),
}

impl RefreshCount {
    /// May a grant that has been refreshed `used` times be refreshed again?
    pub fn allows(self, used: u32) -> bool {
        match self {
            RefreshCount::Unlimited => true,
            RefreshCount::Limited(n) => used < n,
        }
    }
}

/// A registered client: from `gateway.toml`, or created through the admin API (then it is
/// stored, as this struct's JSON, in the token store).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    pub version: String,
    pub description: String,
    pub kind: ClientType,
    /// argon2 PHC string; `None` for public clients.
    pub secret_hash: Option<String>,
    pub redirect_uris: Vec<String>,
    pub grants: Vec<Grant>,
    pub scopes: Vec<String>,
    /// `None` = never expires.
    pub access_token_ttl: Option<Duration>,
    pub refresh_count: RefreshCount,
    /// `false`: its tokens are refused and it gets no new ones, until enabled again (§9).
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Shown on the consent page (§9).
    #[serde(default)]
    pub logo_uri: Option<String>,
    /// Extra fields in token responses for clients written against another platform (§5).
    #[serde(default)]
    pub token_response: TokenFields,
}

fn enabled_by_default() -> bool {
    true
}

/// The shape of a client's token responses (`token_response`, SPEC §5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenFields {
    /// RFC 6749's fields plus Tollgate's dates.
    #[default]
    Standard,
    /// Also FlowWright's `.issued`, `.expires` and `refreshTokenExpire`.
    Flowwright,
}

impl TokenFields {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenFields::Standard => "standard",
            TokenFields::Flowwright => "flowwright",
        }
    }

    pub fn parse(s: &str) -> Option<TokenFields> {
        match s {
            "standard" => Some(TokenFields::Standard),
            "flowwright" => Some(TokenFields::Flowwright),
            _ => None,
        }
    }
}

impl Client {
    pub fn allows_grant(&self, grant: Grant) -> bool {
        self.grants.contains(&grant)
    }
}
