//! `[oauth]` → [`OAuthConfig`]: the mount point, lifetimes, and the aliases that serve an
//! endpoint at a path of an older platform as well (SPEC §5).

use std::collections::BTreeMap;

use super::super::raw::RawOAuth;
use super::*;

impl Validator<'_> {
    pub(super) fn oauth(&mut self, raw: Option<RawOAuth>) -> OAuthConfig {
        let mut oauth = OAuthConfig {
            path: "/oauth".to_owned(),
            access_token_ttl: Some(Duration::from_secs(600)),
            refresh_token_ttl: Some(Duration::from_secs(30 * 86_400)),
            authorization_code_ttl: Duration::from_secs(60),
            refresh_grace: Duration::from_secs(5),
            default_client: None,
            aliases: HashMap::new(),
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
        if let Some(aliases) = &raw.aliases {
            oauth.aliases = self.aliases(aliases.get_ref(), &oauth.path);
        }
        oauth
    }

    /// `aliases = { "/full/path" = "endpoint" }` → path → endpoint name. Each path is served
    /// exactly as written (the request's normalised path must equal it), so it must already
    /// be a normalised literal path; and it may not take a path the endpoints under
    /// `[oauth].path`, or the metadata, already have.
    fn aliases(&mut self, raw: &BTreeMap<Str, Str>, base: &str) -> HashMap<String, &'static str> {
        let mut out = HashMap::new();
        for (key, value) in raw {
            let path = self.string(key);
            let name = self.string(value);
            let literal = !path.contains(['?', '#'])
                && Pattern::parse(&path).is_ok_and(|p| p.literal_prefix() == path)
                && crate::pattern::normalize(&path).is_ok_and(|n| n == path);
            let under_base = path == base
                || path
                    .strip_prefix(base)
                    .is_some_and(|rest| rest.starts_with('/'));
            if !path.starts_with('/') || !literal {
                self.err(
                    key,
                    format!("alias {path:?} must be a normalised absolute path like \"/integration/rest/oAuth/getToken\" (no wildcards, dot segments or encoded unreserved characters)"),
                );
            } else if under_base || path == crate::oauth::METADATA_PATH {
                self.err(
                    key,
                    format!(
                        "alias {path:?} clashes with Tollgate's own OAuth paths ({base}/..., {})",
                        crate::oauth::METADATA_PATH
                    ),
                );
            }
            match OAUTH_ENDPOINTS.iter().find(|e| **e == name) {
                Some(endpoint) => {
                    out.insert(path, *endpoint);
                }
                None => self.err(
                    value,
                    format!(
                        "unknown OAuth endpoint {name:?} (expected one of {})",
                        OAUTH_ENDPOINTS.join(", ")
                    ),
                ),
            }
        }
        out
    }
}
