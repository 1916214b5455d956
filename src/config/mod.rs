//! `gateway.toml` → validated [`Config`]. The rest of the library never sees TOML.
//!
//! Loading is two steps: serde reads the file into `raw` structs (types and unknown keys
//! checked, positions kept; every unknown or mistyped key is reported, not only the first),
//! then `validate` checks values and cross-references; every problem of both steps is
//! reported at once as `FILE:LINE:COL: message`.

pub mod cidr;
mod raw;
mod registry;
pub mod tls;
mod validate;

pub use registry::{
    ADMIN_READ_SCOPE, ADMIN_SCOPE, Client, ClientType, Grant, INTROSPECT_SCOPE, RefreshCount,
    Scope, TokenFields, User, is_builtin_scope,
};
pub(crate) use validate::{check_logo_uri, check_redirect_uri, is_client_id, is_scope_token};
pub use validate::{unreachable_routes, unreachable_warning};
pub mod values;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::Uri;

use crate::pattern::Pattern;

/// A fully validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (for messages and reloads).
    pub source: PathBuf,
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub store: StoreConfig,
    pub oauth: OAuthConfig,
    pub scopes: Vec<Scope>,
    pub users: Vec<User>,
    pub clients: Vec<Client>,
    pub routes: Vec<Route>,
    /// Outbound OAuth credentials (SPEC §8).
    pub credentials: Vec<Arc<crate::outbound::Credential>>,
    /// `FILE:LINE:COL: warning: ...` for what loads but is likely a mistake (a route no scope
    /// reaches): printed by `check`, logged at start and on reload.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Issuer URL, without a trailing slash.
    pub public_url: String,
    pub shutdown_grace: Duration,
    /// Threads serving the public listener, each with its own single-threaded runtime and
    /// upstream pool, sharing the port (SO_REUSEPORT). Default: the cores this process may use.
    pub workers: usize,
    /// Peers whose `X-Forwarded-*` headers are kept (SPEC §4); empty = none.
    pub trusted_proxies: cidr::TrustedProxies,
    /// Connection limits and timeouts (SPEC §12); they take effect on restart.
    pub limits: Limits,
    pub tls: Option<TlsConfig>,
}

/// `[server]` limits (SPEC §12), applied by the listeners to every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head (request line and headers) on HTTP/1.1, and header list on
    /// HTTP/2; larger → 431.
    pub max_header_bytes: usize,
    /// Longest a client may take to send a request head, counted from the connection's
    /// start for the first request and from its first byte for later ones.
    pub header_timeout: Duration,
    /// Longest a connection may sit with no request in flight.
    pub idle_timeout: Duration,
    /// Most client connections a node serves at once; more wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_header_bytes: 65_536,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Built from `cert` and `key` when the config was loaded.
    pub rustls: Arc<rustls::ServerConfig>,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// `[admin.tls]`: the admin listener (API and console) serves HTTPS.
    pub tls: Option<TlsConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// Embedded, one node, lost on restart.
    Memory,
    /// Redis, shared by every node pointing at it: one server or one Redis Cluster.
    Redis(RedisConfig),
}

/// Where the Redis store is and how to reach it (`[store]` `url`/`urls`, `mode`, `ca`).
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// The server's URL, or a cluster's seed nodes: all `redis://` or all `rediss://`.
    pub urls: Vec<String>,
    /// `mode = "cluster"`.
    pub cluster: bool,
    /// `[store] ca`: the PEM certificates `rediss://` is verified against instead of the
    /// system roots.
    pub ca: Option<Vec<u8>>,
}

impl RedisConfig {
    /// One standalone server, no TLS options (tests and tools).
    pub fn single(url: impl Into<String>) -> RedisConfig {
        RedisConfig {
            urls: vec![url.into()],
            cluster: false,
            ca: None,
        }
    }

    pub fn tls(&self) -> bool {
        self.urls.iter().any(|u| u.starts_with("rediss://"))
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|u| redact_url(u)).collect();
        f.debug_struct("RedisConfig")
            .field("urls", &urls)
            .field("cluster", &self.cluster)
            .field("ca", &self.ca.as_ref().map(|_| "<pem>"))
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub backend: Backend,
    /// Prepended to every Redis key and channel.
    pub prefix: String,
    /// Longest a node trusts its local copy of a token.
    pub cache_ttl: Duration,
    /// Most tokens a node keeps in its local cache.
    pub cache_capacity: usize,
    /// Seals upstream tokens kept in the store (`[store] encryption_key`, 32 bytes).
    pub encryption_key: Option<crate::seal::SealKey>,
}

#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// Mount point of the OAuth endpoints, e.g. `/oauth` (no trailing slash).
    pub path: String,
    /// `None` = tokens never expire.
    pub access_token_ttl: Option<Duration>,
    pub refresh_token_ttl: Option<Duration>,
    pub authorization_code_ttl: Duration,
    /// How long after a refresh the same refresh token may be presented again and get the
    /// same answer (a retry), rather than counting as reuse. Zero = no grace.
    pub refresh_grace: Duration,
    pub default_client: Option<String>,
    /// Full request path → one of [`OAUTH_ENDPOINTS`], served there as well as under `path`
    /// (SPEC §5 "Existing clients"). Empty for most configs, and then never looked at.
    pub aliases: HashMap<String, &'static str>,
}

/// The endpoint names `[oauth] aliases` may give: those the OAuth router serves under
/// `[oauth].path` (`connect/{name}` aside, which needs its name), and the metadata.
pub const OAUTH_ENDPOINTS: &[&str] = &[
    "token",
    "authorize",
    "introspect",
    "revoke",
    "tokeninfo",
    "login",
    "consent",
    "callback",
    "metadata",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteAuth {
    Bearer,
    None,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub pattern: Pattern,
    /// Lower-case host (without port) this route is limited to.
    pub host: Option<String>,
    pub upstreams: Vec<Uri>,
    pub auth: RouteAuth,
    pub strip_prefix: Option<String>,
    pub timeout: Duration,
    pub forward_authorization: bool,
    /// Trust only this CA for `https://` upstreams (default: the system's roots).
    pub upstream_ca: Option<Arc<rustls::ClientConfig>>,
    /// The outbound credential whose token is sent upstream (SPEC §8).
    pub credential: Option<String>,
}

/// Why a config could not be loaded: every message is `FILE:LINE:COL: message` (or
/// `FILE: message` when the file could not be read at all).
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ConfigError(pub Vec<String>);

impl Config {
    /// Reads and validates the file at `path`, resolving `${NAME}` from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let src = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(vec![format!("{}: {e}", path.display())]))?;
        Config::from_str_with_env(path, &src, &|name| std::env::var(name).ok())
    }

    /// Validates `src` as if read from `path`; `env` resolves `${NAME}`.
    pub fn from_str_with_env(
        path: &Path,
        src: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        validate::load(path, src, env)
    }

    pub fn client(&self, client_id: &str) -> Option<&Client> {
        self.clients.iter().find(|c| c.client_id == client_id)
    }

    pub fn user(&self, username: &str) -> Option<&User> {
        self.users.iter().find(|u| u.username == username)
    }

    /// A hash whose cost a decoy check should match: the usual one of the users' password
    /// hashes, or of the clients' secret hashes (see `secret::verify_decoy`).
    pub fn decoy_template(&self, account: crate::throttle::Account) -> Option<&str> {
        match account {
            crate::throttle::Account::User => {
                crate::secret::usual_cost(self.users.iter().map(|u| u.password_hash.as_str()))
            }
            crate::throttle::Account::Client => crate::secret::usual_cost(
                self.clients.iter().filter_map(|c| c.secret_hash.as_deref()),
            ),
        }
    }

    /// Scope name → description, for pages and metadata.
    pub fn scope_names(&self) -> HashMap<&str, &str> {
        self.scopes
            .iter()
            .map(|s| (s.name.as_str(), s.description.as_str()))
            .collect()
    }

    /// A one-screen summary for `tollgate check`.
    pub fn summary(&self) -> String {
        let store = match &self.store.backend {
            Backend::Memory => "memory".to_owned(),
            Backend::Redis(r) => {
                let urls: Vec<String> = r.urls.iter().map(|u| redact_url(u)).collect();
                let mode = if r.cluster { "redis cluster" } else { "redis" };
                format!("{mode} ({})", urls.join(", "))
            }
        };
        let mut out = format!(
            "{}: OK\n  public  {} ({})\n  admin   {}\n  store   {}\n  oauth   {}/token\n",
            self.source.display(),
            self.server.listen,
            self.server.public_url,
            self.admin.listen,
            store,
            self.oauth.path,
        );
        out.push_str(&format!(
            "  {} routes, {} scopes, {} clients, {} users\n",
            self.routes.len(),
            self.scopes.len(),
            self.clients.len(),
            self.users.len()
        ));
        for r in &self.routes {
            let auth = match r.auth {
                RouteAuth::Bearer => "bearer",
                RouteAuth::None => "public",
            };
            out.push_str(&format!(
                "  route {:<16} {:<24} {:<7} -> {}\n",
                r.name,
                r.pattern.as_str(),
                auth,
                r.upstreams
                    .iter()
                    .map(|u| u.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            if let Some(c) = &r.credential {
                out.push_str(&format!("        upstream token from credential {c}\n"));
            }
        }
        for c in &self.credentials {
            out.push_str(&format!(
                "  credential {:<11} {:<18} {}{}\n",
                c.name,
                c.grant.as_str(),
                c.token_url,
                if c.per_user { " (per user)" } else { "" }
            ));
        }
        out
    }
}

/// `redis://user:pass@host/0` → `redis://***@host/0`, for logs and summaries.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests;
