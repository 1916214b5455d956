//! Raw file structs → [`Config`]: value checks and cross-references, every error collected.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use hyper::Uri;
use toml::Spanned;

mod clients;
pub(crate) use clients::check_logo_uri;
mod credentials;
mod limits;
mod oauth;
mod routes;
pub use routes::{unreachable_routes, unreachable_warning};
mod store;

use super::cidr::{Cidr, TrustedProxies};
use super::raw::{RawClient, RawConfig, RawRoute, RawScope, RawTls, RawUser, Str, StrList};
use super::values::{Diagnostics, interpolate, parse_duration, parse_lifetime};
use super::*;
use crate::pattern::Pattern;

const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
const DEFAULT_CACHE_CAPACITY: usize = 1_000_000;

pub(super) fn load(
    path: &Path,
    src: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let mut d = Diagnostics::new(&file, src);
    // Unknown keys and mistyped values land in `d` beside the value errors found below.
    let Some(raw) = super::raw::parse(src, &mut d) else {
        return Err(ConfigError(d.into_errors()));
    };
    let mut v = Validator { d, env };
    let mut config = v.config(path, raw);
    if v.d.has_errors() {
        Err(ConfigError(v.d.into_errors()))
    } else {
        config.warnings = v.d.take_warnings();
        Ok(config)
    }
}

struct Validator<'a> {
    d: Diagnostics<'a>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Validator<'_> {
    fn config(&mut self, path: &Path, raw: RawConfig) -> Config {
        let server_span = raw.server.span();
        let rs = raw.server.into_inner();
        let listen = self.addr(&rs.listen);
        let public_url = self.string(&rs.public_url);
        if !public_url.is_empty() && !is_http_url(&public_url) {
            self.err(
                &rs.public_url,
                "public_url must be an absolute http:// or https:// URL",
            );
        }
        let shutdown_grace = self.duration_or(&rs.shutdown_grace, Duration::from_secs(30));
        let base = path.parent().unwrap_or(Path::new("."));
        let tls = rs.tls.as_ref().and_then(|t| self.tls(t, base));
        let workers = match &rs.workers {
            Some(n) if (1..=256).contains(n.get_ref()) => *n.get_ref() as usize,
            Some(n) => {
                self.d.error(n.span(), "workers must be from 1 to 256");
                1
            }
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let trusted_proxies = self.trusted_proxies(rs.trusted_proxies.as_ref());
        let limits = self.limits(&rs);
        let server = ServerConfig {
            listen: listen.unwrap_or_else(unspecified),
            public_url: public_url.trim_end_matches('/').to_owned(),
            shutdown_grace,
            workers,
            trusted_proxies,
            limits,
            tls,
        };

        let admin_listen = match &raw.admin {
            Some(a) => self.addr(&a.listen).unwrap_or_else(unspecified),
            None => DEFAULT_ADMIN_LISTEN
                .parse()
                .unwrap_or_else(|_| unspecified()),
        };
        if admin_listen == server.listen && admin_listen.port() != 0 {
            let span = raw.admin.as_ref().map_or(server_span, |a| a.listen.span());
            self.d
                .error(span, "[admin].listen must differ from [server].listen");
        }
        let admin = AdminConfig {
            listen: admin_listen,
            tls: raw
                .admin
                .as_ref()
                .and_then(|a| a.tls.as_ref())
                .and_then(|t| self.tls(t, base)),
        };

        let store_span = raw.store.as_ref().map(|s| s.backend.span());
        let store = self.store(raw.store, path.parent().unwrap_or(Path::new(".")));
        let scopes = self.scopes(raw.scopes);
        let scope_names: HashSet<String> = scopes.iter().map(|s| s.name.clone()).collect();
        let default_client_span = raw
            .oauth
            .as_ref()
            .and_then(|o| o.default_client.as_ref())
            .map_or(0..0, |c| c.span());
        let oauth = self.oauth(raw.oauth);
        let users = self.users(raw.users, &scope_names);
        let clients = self.clients(raw.clients, &scope_names, &oauth);
        if let Some(default_client) = &oauth.default_client {
            match clients.iter().find(|c| &c.client_id == default_client) {
                None => self.d.error(
                    default_client_span.clone(),
                    format!("[oauth].default_client names unknown client {default_client:?}"),
                ),
                // It stands in for requests that authenticate nobody, so it must be a client
                // that has nothing to authenticate with.
                Some(c) if c.kind != ClientType::Public => self.d.error(
                    default_client_span.clone(),
                    format!(
                        "[oauth].default_client must name a public client; {default_client:?} is confidential"
                    ),
                ),
                Some(_) => {}
            }
        }
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let credentials = self.credentials(raw.credentials, &base);
        if !credentials.is_empty()
            && matches!(store.backend, Backend::Redis(_))
            && store.encryption_key.is_none()
        {
            self.d.error(
                store_span.unwrap_or(0..0),
                "[store] encryption_key is required when [[credentials]] are used with backend = \"redis\" (upstream tokens are kept in Redis sealed with it)",
            );
        }
        let routes = self.routes(raw.routes, &scopes, &base, &credentials);

        Config {
            source: path.to_path_buf(),
            server,
            admin,
            store,
            oauth,
            scopes,
            users,
            clients,
            routes,
            credentials: credentials.into_iter().map(Arc::new).collect(),
            warnings: Vec::new(),
        }
    }

    fn scopes(&mut self, raw: Vec<Spanned<RawScope>>) -> Vec<Scope> {
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(raw.len());
        for s in raw {
            let s = s.into_inner();
            let name = self.string(&s.name);
            if !is_scope_token(&name) {
                self.err(&s.name, "scope name must be non-empty printable ASCII without spaces, quotes or backslashes");
            } else if is_builtin_scope(&name.to_lowercase()) {
                self.err(
                    &s.name,
                    format!("`{name}` is built in (it guards Tollgate's own endpoints) and cannot be declared"),
                );
            } else if !seen.insert(name.to_lowercase()) {
                self.err(
                    &s.name,
                    format!("duplicate scope name {name:?} (names compare case-insensitively)"),
                );
            }
            if s.paths.get_ref().is_empty() {
                self.d
                    .error(s.paths.span(), "a scope needs at least one path");
            }
            let patterns = s
                .paths
                .get_ref()
                .iter()
                .filter_map(|p| self.pattern(p))
                .collect();
            let description = s
                .description
                .as_ref()
                .map(|d| self.string(d))
                .unwrap_or_default();
            out.push(Scope {
                name,
                description,
                patterns,
            });
        }
        out
    }

    fn users(&mut self, raw: Vec<Spanned<RawUser>>, scopes: &HashSet<String>) -> Vec<User> {
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(raw.len());
        for u in raw {
            let u = u.into_inner();
            let username = self.string(&u.username);
            if username.is_empty() || username.chars().any(char::is_control) {
                self.err(
                    &u.username,
                    "username must be non-empty, without control characters",
                );
            } else if !seen.insert(username.clone()) {
                self.err(&u.username, format!("duplicate username {username:?}"));
            }
            let password_hash = self.string(&u.password_hash);
            if let Err(e) = crate::secret::check_phc(&password_hash) {
                self.err(&u.password_hash, format!("password_hash: {e}"));
            }
            let user_scopes = u.scopes.as_ref().map(|l| self.scope_refs(l, scopes, true));
            out.push(User {
                username,
                password_hash,
                scopes: user_scopes,
            });
        }
        out
    }

    /// `[server.tls]` or `[admin.tls]`: the certificate and key (paths relative to the file)
    /// loaded now, so `check` and a reload report a bad file at its line.
    fn tls(&mut self, t: &RawTls, base: &Path) -> Option<TlsConfig> {
        let cert = base.join(self.string(&t.cert));
        let key = base.join(self.string(&t.key));
        match super::tls::server_config(&cert, &key) {
            Ok(rustls) => Some(TlsConfig { cert, key, rustls }),
            Err(e) => {
                self.err(&t.cert, e);
                None
            }
        }
    }

    fn trusted_proxies(&mut self, raw: Option<&StrList>) -> TrustedProxies {
        let mut blocks = Vec::new();
        for s in raw.map(|l| l.get_ref().as_slice()).unwrap_or_default() {
            let text = self.string(s);
            match Cidr::parse(&text) {
                Ok(c) => blocks.push(c),
                Err(e) => self.err(s, format!("trusted_proxies: {e}")),
            }
        }
        TrustedProxies::new(blocks)
    }

    fn scope_refs(
        &mut self,
        list: &StrList,
        known: &HashSet<String>,
        allow_admin: bool,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for s in list.get_ref() {
            let name = self.string(s);
            if is_builtin_scope(&name) && allow_admin || known.contains(&name) {
                if !out.contains(&name) {
                    out.push(name);
                }
            } else {
                self.err(s, format!("unknown scope {name:?}"));
            }
        }
        out
    }

    fn pattern(&mut self, raw: &Str) -> Option<Pattern> {
        let s = self.string(raw);
        match Pattern::parse(&s) {
            Ok(p) => Some(p),
            Err(e) => {
                self.err(raw, format!("invalid path pattern {s:?}: {e}"));
                None
            }
        }
    }

    fn addr(&mut self, raw: &Str) -> Option<SocketAddr> {
        let s = self.string(raw);
        match s.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    raw,
                    format!(
                        "invalid listen address {s:?} (expected IP:PORT, e.g. \"127.0.0.1:8080\")"
                    ),
                );
                None
            }
        }
    }

    fn duration_or(&mut self, raw: &Option<Str>, default: Duration) -> Duration {
        let Some(raw) = raw else { return default };
        let s = self.string(raw);
        parse_duration(&s).unwrap_or_else(|e| {
            self.err(raw, e);
            default
        })
    }

    fn lifetime(&mut self, raw: &Str) -> Option<Duration> {
        let s = self.string(raw);
        match parse_lifetime(&s) {
            Ok(Some(d)) if d.is_zero() => {
                self.err(raw, "a token lifetime must be more than 0 (or \"never\")");
                Some(Duration::from_secs(1))
            }
            Ok(l) => l,
            Err(e) => {
                self.err(raw, e);
                Some(Duration::from_secs(600))
            }
        }
    }

    /// The string value with `${NAME}` resolved; an error is recorded and "" returned on failure.
    fn string(&mut self, raw: &Str) -> String {
        match interpolate(raw.get_ref(), self.env) {
            Ok(s) => s,
            Err(e) => {
                self.err(raw, e);
                String::new()
            }
        }
    }

    fn err<T>(&mut self, at: &Spanned<T>, message: impl std::fmt::Display) {
        self.d.error(at.span(), message);
    }
}

fn unspecified() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn is_http_url(s: &str) -> bool {
    s.parse::<Uri>()
        .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some())
}

/// RFC 6749 §3.3 scope-token characters.
pub(crate) fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

pub(crate) fn is_client_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
}

/// RFC 6749 §3.1.2: absolute, no fragment.
pub(crate) fn check_redirect_uri(s: &str) -> Result<(), String> {
    if s.contains('#') {
        return Err("a redirect URI must not contain a fragment".to_owned());
    }
    match s.parse::<Uri>() {
        Ok(u) if u.scheme().is_some() && u.authority().is_some() => Ok(()),
        _ => Err(format!(
            "redirect URI {s:?} must be absolute, like \"https://app.example/callback\""
        )),
    }
}
