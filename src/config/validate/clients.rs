//! `[[clients]]` → [`Client`]s: types, secrets, grants, redirect URIs, lifetimes.

use super::*;

impl Validator<'_> {
    pub(super) fn clients(
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
            let logo_uri = c.logo_uri.as_ref().map(|u| {
                let s = self.string(u);
                if let Err(e) = check_logo_uri(&s) {
                    self.err(u, e);
                }
                s
            });
            let token_response = match c.token_response.as_ref().map(|t| (t, self.string(t))) {
                None => TokenFields::Standard,
                Some((span, t)) => TokenFields::parse(&t).unwrap_or_else(|| {
                    self.err(
                        span,
                        format!(
                            "unknown token_response {t:?} (expected \"standard\" or \"flowwright\")"
                        ),
                    );
                    TokenFields::Standard
                }),
            };
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
                enabled: c.enabled.as_ref().is_none_or(|e| *e.get_ref()),
                logo_uri,
                token_response,
            });
        }
        out
    }

    pub(super) fn client_secret(&mut self, c: &RawClient, kind: ClientType) -> Option<String> {
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

    pub(super) fn grants(&mut self, list: &StrList, kind: ClientType) -> Vec<Grant> {
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

    pub(super) fn refresh_count(&mut self, raw: Option<&Spanned<toml::Value>>) -> RefreshCount {
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
}

/// A `logo_uri` must be an absolute `https://` or `http://` URL (it goes into an `<img src>`).
pub(crate) fn check_logo_uri(uri: &str) -> Result<(), String> {
    let ok = match uri.parse::<hyper::Uri>() {
        Ok(u) => matches!(u.scheme_str(), Some("https" | "http")) && u.host().is_some(),
        Err(_) => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "logo_uri {uri:?} must be an absolute https:// or http:// URL"
        ))
    }
}
