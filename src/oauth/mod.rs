//! The authorization server: endpoints under `[oauth].path` on the public listener, plus the
//! RFC 8414 metadata document.
//!
//! | file | endpoint |
//! | --- | --- |
//! | `token.rs` | `POST {path}/token`: every grant |
//! | `authorize.rs` | `GET {path}/authorize`: validates and parks the request |
//! | `login.rs`, `consent.rs` | `POST {path}/login`, `{path}/consent` |
//! | `connect.rs` | `GET {path}/connect/{name}`, `GET {path}/callback`: connecting an upstream account (SPEC §8) |
//! | `browser.rs`, `pages.rs` | what those pages share: records, cookies, CSRF, redirects; the HTML |
//! | `introspect.rs` | `POST {path}/introspect`, `GET {path}/tokeninfo` |
//! | `revoke.rs` | `POST {path}/revoke` |
//! | `metadata.rs` | `GET /.well-known/oauth-authorization-server` |

pub(crate) mod authorize;
pub(crate) mod browser;
pub(crate) mod code;
mod connect;
pub(crate) mod consent;
mod grace;
mod introspect;
pub(crate) mod issue;
mod login;
mod metadata;
pub(crate) mod pages;
pub(crate) mod params;
mod revoke;
mod token;

use std::net::IpAddr;

pub use issue::{TokenResponse, rfc3339};

use hyper::{Method, Request, Response};

use std::borrow::Cow;

use crate::config::{Client, Config};
use crate::error::{Body, OAuthError};
use crate::store::{StoreError, TokenStore};
use crate::throttle::Throttle;

/// Everything an OAuth endpoint needs about the node and the request.
pub struct Ctx<'a> {
    pub config: &'a Config,
    pub store: &'a TokenStore,
    pub throttle: &'a Throttle,
    pub remote: IpAddr,
    /// Served over TLS (cookies get `Secure`).
    pub tls: bool,
    /// Outbound credentials, for the connect flow's pages.
    pub outbound: &'a crate::outbound::Outbound,
    /// The scopes in force and the disabled clients.
    pub rules: &'a crate::registry::Rules,
}

impl<'a> Ctx<'a> {
    /// A registered, enabled client: one from `gateway.toml` (which wins on a clash), or one
    /// created through the admin API and kept in the store. A disabled client is not found:
    /// it gets no tokens, codes or introspection (SPEC §9).
    pub async fn client(&self, client_id: &str) -> Result<Option<Cow<'a, Client>>, StoreError> {
        Ok(self
            .client_even_disabled(client_id)
            .await?
            .filter(|c| c.enabled))
    }

    /// The file's client `client_id`, or else the store's, whether enabled or not. Its
    /// `enabled` is this node's registry's, the one its bearer checks enforce (current within
    /// a second): no second store read per token request.
    pub async fn client_even_disabled(
        &self,
        client_id: &str,
    ) -> Result<Option<Cow<'a, Client>>, StoreError> {
        let found = match self.config.client(client_id) {
            Some(c) => Some(Cow::Borrowed(c)),
            None => self
                .store
                .get_client_record(client_id)
                .await?
                .map(Cow::Owned),
        };
        Ok(found.map(|mut c| {
            let enabled = !self.rules.is_disabled(client_id);
            if c.enabled != enabled {
                c.to_mut().enabled = enabled;
            }
            c
        }))
    }
}

/// An OAuth endpoint's answer, and the client it identified (for the access log).
pub struct Handled {
    pub endpoint: &'static str,
    pub client_id: Option<String>,
    pub response: Response<Body>,
}

pub const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";

/// Serves `req` if `path` is one of the OAuth endpoints; otherwise gives the request back.
pub async fn route(
    ctx: &Ctx<'_>,
    path: &str,
    req: Request<hyper::body::Incoming>,
) -> Result<Handled, Request<hyper::body::Incoming>> {
    // An alias is a whole path naming an endpoint; with none configured (the usual case) the
    // proxy path pays one length check for them.
    let aliases = &ctx.config.oauth.aliases;
    let alias = if aliases.is_empty() {
        None
    } else {
        aliases.get(path).copied()
    };
    if path == METADATA_PATH || alias == Some("metadata") {
        return Ok(Handled {
            endpoint: "metadata",
            client_id: None,
            response: metadata::handle(ctx.config, req.method()),
        });
    }
    let Some(endpoint) = alias.or_else(|| {
        path.strip_prefix(ctx.config.oauth.path.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
    }) else {
        return Err(req);
    };
    let (endpoint, methods): (&'static str, &[Method]) = match endpoint {
        "token" => ("token", &[Method::POST]),
        "revoke" => ("revoke", &[Method::POST]),
        "introspect" => ("introspect", &[Method::POST]),
        "tokeninfo" => ("tokeninfo", &[Method::GET, Method::POST]),
        "authorize" => ("authorize", &[Method::GET]),
        "login" => ("login", &[Method::POST]),
        "consent" => ("consent", &[Method::GET, Method::POST]),
        "callback" => ("callback", &[Method::GET]),
        e if e.starts_with("connect/") && e.len() > "connect/".len() && !e[8..].contains('/') => {
            ("connect", &[Method::GET])
        }
        _ => return Err(req),
    };
    if !methods.contains(req.method()) {
        return Ok(Handled {
            endpoint,
            client_id: None,
            response: OAuthError::method_not_allowed().into_response(),
        });
    }
    // Boxed: the endpoints' futures are large, and unboxed they would make every proxied
    // request's future (moved several times per request) as large as the largest of them.
    let (client_id, response) = if endpoint == "connect" {
        let name = path.rsplit('/').next().unwrap_or_default();
        (None, Box::pin(connect::connect(ctx, req, name)).await)
    } else {
        Box::pin(serve(ctx, endpoint, req)).await
    };
    Ok(Handled {
        endpoint,
        client_id,
        response,
    })
}

async fn serve(
    ctx: &Ctx<'_>,
    endpoint: &str,
    req: Request<hyper::body::Incoming>,
) -> (Option<String>, Response<Body>) {
    match endpoint {
        "token" => token::handle(ctx, req).await,
        "revoke" => revoke::handle(ctx, req).await,
        "introspect" => introspect::introspect(ctx, req).await,
        "tokeninfo" => (None, introspect::tokeninfo(ctx, req).await),
        "authorize" => authorize::start(ctx, req).await,
        "login" => (None, login::login(ctx, req).await),
        "callback" => (None, connect::callback(ctx, req).await),
        _ if req.method() == Method::GET => (None, consent::consent_page(ctx, req).await),
        _ => consent::consent_decision(ctx, req).await,
    }
}
