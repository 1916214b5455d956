//! Raw file structs → [`Config`]: value checks and cross-references, every error collected.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use hyper::Uri;
use toml::Spanned;

mod credentials;

use super::cidr::{Cidr, TrustedProxies};
use super::raw::{RawClient, RawConfig, RawRoute, RawScope, RawUser, Str, StrList};
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
    let config = v.config(path, raw);
    if v.d.has_errors() {
        Err(ConfigError(v.d.into_errors()))
    } else {
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
        let tls = rs.tls.as_ref().and_then(|t| {
            let cert = base.join(self.string(&t.cert));
            let key = base.join(self.string(&t.key));
            match super::tls::server_config(&cert, &key) {
                Ok(rustls) => Some(TlsConfig { cert, key, rustls }),
                Err(e) => {
                    self.err(&t.cert, e);
                    None
                }
            }
        });
        let workers = match &rs.workers {
            Some(n) if (1..=256).contains(n.get_ref()) => *n.get_ref() as usize,
            Some(n) => {
                self.d.error(n.span(), "workers must be from 1 to 256");
                1
            }
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let trusted_proxies = self.trusted_proxies(rs.trusted_proxies.as_ref());
        let server = ServerConfig {
            listen: listen.unwrap_or_else(unspecified),
            public_url: public_url.trim_end_matches('/').to_owned(),
            shutdown_grace,
            workers,
            trusted_proxies,
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
        };

        let store_span = raw.store.as_ref().map(|s| s.backend.span());
        let store = self.store(raw.store);
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
            && matches!(store.backend, Backend::Redis { .. })
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
        }
    }

    fn store(&mut self, raw: Option<super::raw::RawStore>) -> StoreConfig {
        let Some(raw) = raw else {
            return StoreConfig {
                backend: Backend::Memory,
                prefix: "tollgate:".to_owned(),
                cache_ttl: Duration::from_secs(30),
                cache_capacity: DEFAULT_CACHE_CAPACITY,
                encryption_key: None,
            };
        };
        let backend = match self.string(&raw.backend).as_str() {
            "memory" => {
                for (key, present) in [("url", raw.url.is_some()), ("urls", raw.urls.is_some())] {
                    if present {
                        self.err(
                            &raw.backend,
                            format!("`{key}` is only used with backend = \"redis\""),
                        );
                    }
                }
                Backend::Memory
            }
            "redis" => {
                if let Some(mode) = &raw.mode {
                    match self.string(mode).as_str() {
                        "standalone" => {}
                        "cluster" => self.err(
                            mode,
                            "mode = \"cluster\" is not supported by this build yet; use one Redis server",
                        ),
                        other => self.err(
                            mode,
                            format!("unknown mode {other:?} (expected \"standalone\" or \"cluster\")"),
                        ),
                    }
                }
                let url = match (&raw.url, &raw.urls) {
                    (Some(url), None) => Some((self.string(url), url.span())),
                    (None, Some(urls)) if urls.get_ref().len() == 1 => {
                        let u = &urls.get_ref()[0];
                        Some((self.string(u), u.span()))
                    }
                    (None, Some(urls)) => {
                        self.d.error(
                            urls.span(),
                            "several `urls` need mode = \"cluster\"; use `url` for one server",
                        );
                        None
                    }
                    (Some(url), Some(_)) => {
                        self.err(url, "set either `url` or `urls`, not both");
                        None
                    }
                    (None, None) => {
                        self.err(&raw.backend, "backend = \"redis\" needs `url`");
                        None
                    }
                };
                let url = url.map(|(url, span)| {
                    if url.starts_with("rediss://") {
                        self.d.error(
                            span,
                            "rediss:// (TLS to Redis) is not supported by this build yet",
                        );
                    } else if !url.starts_with("redis://") {
                        self.d.error(span, "Redis URL must start with redis://");
                    } else if let Err(e) = redis::Client::open(url.as_str()) {
                        self.d.error(span, format!("invalid Redis URL: {e}"));
                    }
                    url
                });
                Backend::Redis {
                    url: url.unwrap_or_default(),
                }
            }
            other => {
                self.err(
                    &raw.backend,
                    format!("unknown store backend {other:?} (expected \"memory\" or \"redis\")"),
                );
                Backend::Memory
            }
        };
        let prefix = raw
            .prefix
            .as_ref()
            .map_or_else(|| "tollgate:".to_owned(), |p| self.string(p));
        let cache_ttl = self.duration_or(&raw.cache_ttl, Duration::from_secs(30));
        let cache_capacity = match &raw.cache_capacity {
            Some(n) if *n.get_ref() < 0 => {
                self.d
                    .error(n.span(), "cache_capacity must be 0 (no cache) or more");
                0
            }
            Some(n) => *n.get_ref() as usize,
            None => DEFAULT_CACHE_CAPACITY,
        };
        let encryption_key = self.encryption_key(&raw.encryption_key);
        StoreConfig {
            backend,
            prefix,
            cache_ttl,
            cache_capacity,
            encryption_key,
        }
    }

    fn oauth(&mut self, raw: Option<super::raw::RawOAuth>) -> OAuthConfig {
        let mut oauth = OAuthConfig {
            path: "/oauth".to_owned(),
            access_token_ttl: Some(Duration::from_secs(600)),
            refresh_token_ttl: Some(Duration::from_secs(30 * 86_400)),
            authorization_code_ttl: Duration::from_secs(60),
            refresh_grace: Duration::from_secs(5),
            default_client: None,
        };
        let Some(raw) = raw else { return oauth };
        if let Some(p) = &raw.path {
            let path = self.string(p);
            let well_formed = path.starts_with('/')
                && path.len() > 1
                && !path.ends_with('/')
                && Pattern::parse(&path).is_ok_and(|pat| pat.literal_prefix() == path);
            if !well_formed {
                self.err(
                    p,
                    "path must be a literal path like \"/oauth\" (no trailing slash, no wildcards)",
                );
            }
            oauth.path = path;
        }
        if let Some(t) = &raw.access_token_ttl {
            oauth.access_token_ttl = self.lifetime(t);
        }
        if let Some(t) = &raw.refresh_token_ttl {
            oauth.refresh_token_ttl = self.lifetime(t);
        }
        oauth.authorization_code_ttl =
            self.duration_or(&raw.authorization_code_ttl, oauth.authorization_code_ttl);
        oauth.refresh_grace = self.duration_or(&raw.refresh_grace, oauth.refresh_grace);
        oauth.default_client = raw.default_client.as_ref().map(|c| self.string(c));
        oauth
    }

    fn scopes(&mut self, raw: Vec<Spanned<RawScope>>) -> Vec<Scope> {
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(raw.len());
        for s in raw {
            let s = s.into_inner();
            let name = self.string(&s.name);
            if !is_scope_token(&name) {
                self.err(&s.name, "scope name must be non-empty printable ASCII without spaces, quotes or backslashes");
            } else if is_builtin_scope(&name) {
                self.err(
                    &s.name,
                    format!("`{name}` is built in (it guards Tollgate's own endpoints) and cannot be declared"),
                );
            } else if !seen.insert(name.clone()) {
                self.err(&s.name, format!("duplicate scope name {name:?}"));
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

    fn clients(
        &mut self,
        raw: Vec<Spanned<RawClient>>,
        scopes: &HashSet<String>,
        oauth: &OAuthConfig,
    ) -> Vec<Client> {
        let mut ids = HashSet::new();
        let mut name_versions = HashSet::new();
        let mut out = Vec::with_capacity(raw.len());
        for c in raw {
            let c = c.into_inner();
            let client_id = self.string(&c.client_id);
            if !is_client_id(&client_id) {
                self.err(
                    &c.client_id,
                    "client_id must be 1-128 characters of A-Z a-z 0-9 . _ ~ -",
                );
            } else if !ids.insert(client_id.clone()) {
                self.err(&c.client_id, format!("duplicate client_id {client_id:?}"));
            }
            let name = c
                .name
                .as_ref()
                .map_or_else(|| client_id.clone(), |n| self.string(n));
            let version = c
                .version
                .as_ref()
                .map(|v| self.string(v))
                .unwrap_or_default();
            if !name_versions.insert((name.to_lowercase(), version.clone())) {
                let at = c.name.as_ref().unwrap_or(&c.client_id);
                self.err(at, format!("another client is already named {name:?} version {version:?} (names compare case-insensitively)"));
            }
            let kind = match c.kind.as_ref().map(|k| (k, self.string(k))) {
                None => ClientType::Confidential,
                Some((_, k)) if k == "confidential" => ClientType::Confidential,
                Some((_, k)) if k == "public" => ClientType::Public,
                Some((span, other)) => {
                    self.err(span, format!("unknown client type {other:?} (expected \"confidential\" or \"public\")"));
                    ClientType::Confidential
                }
            };
            let secret_hash = self.client_secret(&c, kind);
            let grants = match &c.grants {
                Some(list) => self.grants(list, kind),
                None if kind == ClientType::Public => {
                    vec![Grant::AuthorizationCode, Grant::RefreshToken]
                }
                None => vec![Grant::ClientCredentials],
            };
            let redirect_uris: Vec<String> = match &c.redirect_uris {
                Some(list) => list
                    .get_ref()
                    .iter()
                    .map(|u| {
                        let s = self.string(u);
                        if let Err(e) = check_redirect_uri(&s) {
                            self.err(u, e);
                        }
                        s
                    })
                    .collect(),
                None => Vec::new(),
            };
            let redirecting = grants
                .iter()
                .any(|g| matches!(g, Grant::AuthorizationCode | Grant::Implicit));
            if redirecting && redirect_uris.is_empty() {
                self.err(
                    &c.client_id,
                    "grants authorization_code and implicit need at least one redirect_uris entry",
                );
            }
            let client_scopes = match &c.scopes {
                Some(list) => self.scope_refs(list, scopes, true),
                None => {
                    let mut all: Vec<String> = scopes.iter().cloned().collect();
                    all.sort();
                    all
                }
            };
            let access_token_ttl = match &c.access_token_ttl {
                Some(t) => self.lifetime(t),
                None => oauth.access_token_ttl,
            };
            let refresh_count = self.refresh_count(c.refresh_count.as_ref());
            let description = c
                .description
                .as_ref()
                .map(|d| self.string(d))
                .unwrap_or_default();
            out.push(Client {
                client_id,
                name,
                version,
                description,
                kind,
                secret_hash,
                redirect_uris,
                grants,
                scopes: client_scopes,
                access_token_ttl,
                refresh_count,
            });
        }
        out
    }

    fn client_secret(&mut self, c: &RawClient, kind: ClientType) -> Option<String> {
        match (kind, &c.secret, &c.secret_hash) {
            (ClientType::Public, None, None) => None,
            (ClientType::Public, Some(s), _) | (ClientType::Public, None, Some(s)) => {
                self.err(s, "a public client has no secret");
                None
            }
            (ClientType::Confidential, Some(s), Some(_)) => {
                self.err(s, "set either `secret` or `secret_hash`, not both");
                None
            }
            (ClientType::Confidential, Some(s), None) => {
                let plain = self.string(s);
                if plain.is_empty() {
                    self.err(s, "secret must not be empty");
                    return None;
                }
                // Hashed at load: the plain secret is dropped with the raw config.
                match crate::secret::hash(&plain) {
                    Ok(h) => Some(h),
                    Err(e) => {
                        self.err(s, format!("cannot hash secret: {e}"));
                        None
                    }
                }
            }
            (ClientType::Confidential, None, Some(h)) => {
                let phc = self.string(h);
                if let Err(e) = crate::secret::check_phc(&phc) {
                    self.err(h, format!("secret_hash: {e}"));
                }
                Some(phc)
            }
            (ClientType::Confidential, None, None) => {
                self.err(
                    &c.client_id,
                    "a confidential client needs `secret` or `secret_hash`",
                );
                None
            }
        }
    }

    fn grants(&mut self, list: &StrList, kind: ClientType) -> Vec<Grant> {
        let mut out = Vec::new();
        for g in list.get_ref() {
            let name = self.string(g);
            match Grant::parse(&name) {
                Some(Grant::ClientCredentials) if kind == ClientType::Public => {
                    self.err(g, "a public client cannot use client_credentials (it has no secret)");
                }
                Some(grant) if out.contains(&grant) => self.err(g, format!("grant {name:?} listed twice")),
                Some(grant) => out.push(grant),
                None => self.err(g, format!(
                    "unknown grant {name:?} (expected one of authorization_code, refresh_token, client_credentials, password, implicit)"
                )),
            }
        }
        out
    }

    fn refresh_count(&mut self, raw: Option<&Spanned<toml::Value>>) -> RefreshCount {
        let Some(v) = raw else {
            return RefreshCount::Unlimited;
        };
        match v.get_ref() {
            toml::Value::String(s) if s == "unlimited" => RefreshCount::Unlimited,
            toml::Value::Integer(n) if (0..=i64::from(u32::MAX)).contains(n) => {
                RefreshCount::Limited(*n as u32)
            }
            _ => {
                self.d.error(
                    v.span(),
                    "refresh_count must be \"unlimited\" or a whole number >= 0",
                );
                RefreshCount::Unlimited
            }
        }
    }

    fn routes(
        &mut self,
        raw: Vec<Spanned<RawRoute>>,
        scopes: &[Scope],
        base: &Path,
        credentials: &[crate::outbound::Credential],
    ) -> Vec<Route> {
        let mut names = HashSet::new();
        let mut places: HashMap<(Option<String>, String), String> = HashMap::new();
        let mut out = Vec::with_capacity(raw.len());
        for r in raw {
            let r = r.into_inner();
            let name = self.string(&r.name);
            if name.is_empty() {
                self.err(&r.name, "route name must not be empty");
            } else if !names.insert(name.clone()) {
                self.err(&r.name, format!("duplicate route name {name:?}"));
            }
            let pattern = self.pattern(&r.path);
            let host = r.host.as_ref().map(|h| {
                let host = self.string(h).to_ascii_lowercase();
                if host.is_empty() || host.contains(['/', ':', ' ']) {
                    self.err(h, "host must be a bare host name like \"api.example.com\" (no scheme, port or path)");
                }
                host
            });
            if let Some(p) = &pattern
                && let Some(other) =
                    places.insert((host.clone(), p.as_str().to_owned()), name.clone())
            {
                self.err(
                    &r.path,
                    format!("route {other:?} already has path {:?}", p.as_str()),
                );
            }
            let upstreams = self.upstreams(&r.upstreams);
            let auth = match r.auth.as_ref().map(|a| (a, self.string(a))) {
                None => RouteAuth::Bearer,
                Some((_, a)) if a == "bearer" => RouteAuth::Bearer,
                Some((_, a)) if a == "none" => RouteAuth::None,
                Some((span, other)) => {
                    self.err(
                        span,
                        format!("unknown auth {other:?} (expected \"bearer\" or \"none\")"),
                    );
                    RouteAuth::Bearer
                }
            };
            let strip_prefix = r.strip_prefix.as_ref().map(|s| {
                let prefix = self.string(s);
                let fits = pattern.as_ref().is_none_or(|p| is_segment_prefix(&prefix, p.literal_prefix()));
                if !prefix.starts_with('/') || prefix.ends_with('/') || !fits {
                    self.err(s, "strip_prefix must be leading whole segments of the route's path, like \"/abc\" for \"/abc/*\"");
                }
                prefix
            });
            let timeout = self.duration_or(&r.timeout, Duration::from_secs(30));
            if timeout.is_zero()
                && let Some(t) = &r.timeout
            {
                self.err(t, "timeout must be more than 0");
            }
            let credential = r.credential.as_ref().and_then(|c| {
                let c_name = self.string(c);
                match credentials.iter().find(|k| k.name == c_name) {
                    None if credentials.is_empty() => self.err(
                        c,
                        format!("unknown credential {c_name:?} (no [[credentials]] are declared)"),
                    ),
                    None => self.err(c, format!("unknown credential {c_name:?}")),
                    Some(k) if k.per_user && auth != RouteAuth::Bearer => self.err(
                        c,
                        format!("credential {c_name:?} is per_user: its route needs auth = \"bearer\" (the caller's user picks the upstream token)"),
                    ),
                    Some(_) if r.forward_authorization.as_ref().is_some_and(|f| *f.get_ref()) => {
                        self.err(
                            c,
                            "a route with a credential sends the credential's token upstream; forward_authorization = true cannot apply",
                        )
                    }
                    Some(_) => return Some(c_name),
                }
                None
            });
            if let (Some(p), RouteAuth::Bearer) = (&pattern, auth) {
                let covered = scopes
                    .iter()
                    .flat_map(|s| &s.patterns)
                    .any(|sp| sp.overlaps(p));
                if !covered {
                    self.err(&r.path, format!(
                        "route {name:?} is unreachable: auth = \"bearer\" but no scope covers any path of {:?}",
                        p.as_str()
                    ));
                }
            }
            let upstream_ca = r.upstream_ca.as_ref().and_then(|ca| {
                let file = base.join(self.string(ca));
                super::tls::client_config(&file)
                    .map_err(|e| self.err(ca, e))
                    .ok()
            });
            let Some(pattern) = pattern else { continue };
            out.push(Route {
                name,
                pattern,
                host,
                upstreams,
                auth,
                strip_prefix,
                timeout,
                forward_authorization: r
                    .forward_authorization
                    .as_ref()
                    .is_some_and(|f| *f.get_ref()),
                upstream_ca,
                credential,
            });
        }
        out
    }

    fn upstreams(&mut self, list: &StrList) -> Vec<Uri> {
        if list.get_ref().is_empty() {
            self.d
                .error(list.span(), "a route needs at least one upstream");
        }
        let mut out = Vec::new();
        for u in list.get_ref() {
            let s = self.string(u);
            match s.parse::<Uri>() {
                Ok(uri)
                    if matches!(uri.scheme_str(), Some("http" | "https"))
                        && uri.authority().is_some() =>
                {
                    if uri.query().is_some() {
                        self.err(u, "an upstream URL cannot have a query string");
                    } else if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
                        // It would be logged, and sent in `Host`; credentials for an upstream
                        // belong in a header the upstream checks, not in the URL.
                        self.err(u, "an upstream URL cannot carry user:password@");
                    } else {
                        out.push(uri);
                    }
                }
                _ => self.err(
                    u,
                    format!(
                        "invalid upstream URL {:?} (expected http://host:port)",
                        redact_url(&s)
                    ),
                ),
            }
        }
        out
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
fn is_scope_token(s: &str) -> bool {
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

/// Is `prefix` made of whole leading segments of `path` (`/abc` of `/abc/def`, not of `/abcd`)?
fn is_segment_prefix(prefix: &str, path: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}
