//! Minting tokens: records, lifetimes, refresh-token eligibility, and the token response.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use crate::config::{Client, Grant, OAuthConfig, TokenFields};
use crate::error::OAuthError;
use crate::store::TokenStore;
use crate::token::{self, AccessToken, Millis, RefreshToken, TokenHash};

/// Who a token is for and what it may do.
pub struct Request<'a> {
    pub client: &'a Client,
    pub username: Option<&'a str>,
    pub scopes: Vec<String>,
    /// Continue an existing grant (refresh) or start a new one.
    pub grant_id: Option<String>,
    /// Refreshes the grant has used, counting the one being made now.
    pub refreshes_used: u32,
    /// May this grant type carry a refresh token at all (not client_credentials, not implicit)?
    pub refreshable: bool,
    /// How the token was obtained, for metrics (`client_credentials`, `password`, …, `admin`).
    pub grant: &'static str,
}

/// A freshly minted token pair; the only place the token texts exist.
pub struct Issued {
    pub access_token: String,
    pub access: AccessToken,
    pub refresh_token: Option<String>,
    pub refresh: Option<RefreshToken>,
    pub client_version: String,
    /// The client's `token_response`: which extra fields its answer carries.
    pub fields: TokenFields,
}

fn rng_failed(e: getrandom::Error) -> OAuthError {
    OAuthError::server_error(format!("random generator failed: {e}"))
}

fn expiry(now: Millis, ttl: Option<Duration>) -> Option<Millis> {
    ttl.map(|d| now.saturating_add(d.as_millis() as u64))
}

/// Mints and stores an access token (and a refresh token where the client and its
/// `refresh_count` allow one).
pub async fn issue(
    store: &TokenStore,
    oauth: &OAuthConfig,
    req: Request<'_>,
) -> Result<Issued, OAuthError> {
    let grant = req.grant;
    let issued = mint(oauth, req)?;
    let refresh_hash = issued.refresh_token.as_deref().map(TokenHash::of);
    store
        .issue(
            &TokenHash::of(&issued.access_token),
            &issued.access,
            refresh_hash.as_ref().zip(issued.refresh.as_ref()),
        )
        .await?;
    store.metrics().issued(grant);
    Ok(issued)
}

/// Mints the tokens [`issue`] would, without storing them (a refresh stores them together
/// with retiring the old token, see `TokenStore::rotate_refresh`).
pub fn mint(oauth: &OAuthConfig, req: Request<'_>) -> Result<Issued, OAuthError> {
    let now = token::now_millis();
    let grant_id = match req.grant_id {
        Some(id) => id,
        None => token::new_grant_id().map_err(rng_failed)?,
    };
    let tag = token::SlotTag::of_grant(&grant_id);
    let access_token = token::generate_for(tag).map_err(rng_failed)?;
    let access = AccessToken {
        client_id: req.client.client_id.as_str().into(),
        username: req.username.map(Into::into),
        scopes: req.scopes.iter().map(|s| Arc::from(s.as_str())).collect(),
        issued_at: now,
        expires_at: expiry(now, req.client.access_token_ttl),
        grant_id: grant_id.clone(),
        refreshes_used: req.refreshes_used,
    };
    let with_refresh = req.refreshable
        && req.client.allows_grant(Grant::RefreshToken)
        && req.client.refresh_count.allows(req.refreshes_used);
    let (refresh_token, refresh) = if with_refresh {
        let text = token::generate_for(tag).map_err(rng_failed)?;
        let record = RefreshToken {
            client_id: req.client.client_id.clone(),
            username: req.username.map(str::to_owned),
            scopes: req.scopes,
            issued_at: now,
            expires_at: expiry(now, oauth.refresh_token_ttl),
            grant_id,
            refreshes_used: req.refreshes_used,
        };
        (Some(text), Some(record))
    } else {
        (None, None)
    };
    Ok(Issued {
        access_token,
        access,
        refresh_token,
        refresh,
        client_version: req.client.version.clone(),
        fields: req.client.token_response,
    })
}

/// RFC 6749 §5.1 token response, with the UTC timestamps of SPEC §5.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub issued_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token_expires_at: Option<String>,
    /// The client's registered version, for clients that expect it echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// FlowWright's names for the same instants (`token_response = "flowwright"`), as RFC
    /// 1123 GMT dates; each absent where its standard twin is.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub flowwright: Option<FlowWrightFields>,
}

/// `.issued`, `.expires` and `refreshTokenExpire` (FlowWright's REST API, seed 000).
#[derive(Debug, Serialize)]
pub struct FlowWrightFields {
    #[serde(rename = ".issued")]
    pub issued: String,
    #[serde(rename = ".expires", skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    #[serde(rename = "refreshTokenExpire", skip_serializing_if = "Option::is_none")]
    pub refresh_token_expire: Option<String>,
}

impl From<Issued> for TokenResponse {
    fn from(i: Issued) -> Self {
        let a = &i.access;
        let refresh_expires = i.refresh.as_ref().and_then(|r| r.expires_at);
        let flowwright = (i.fields == TokenFields::Flowwright).then(|| FlowWrightFields {
            issued: rfc1123(a.issued_at),
            expires: a.expires_at.map(rfc1123),
            refresh_token_expire: refresh_expires.map(rfc1123),
        });
        TokenResponse {
            expires_in: a
                .expires_at
                .map(|at| at.saturating_sub(a.issued_at).div_ceil(1000)),
            scope: a.scope_string(),
            issued_at: rfc3339(a.issued_at),
            expires_at: a.expires_at.map(rfc3339),
            refresh_token_expires_at: refresh_expires.map(rfc3339),
            refresh_token: i.refresh_token,
            access_token: i.access_token,
            token_type: "Bearer",
            version: (!i.client_version.is_empty()).then_some(i.client_version),
            flowwright,
        }
    }
}

/// `2026-11-23T10:00:00Z`.
pub fn rfc3339(ms: Millis) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// `Tue, 01 Dec 2026 10:00:00 GMT` (RFC 1123 as HTTP dates have it), whole seconds.
pub fn rfc1123(ms: Millis) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(ms))
}

/// Resolves the `scope` parameter against what may be granted (RFC 6749 §3.3): absent = all
/// of `allowed`; otherwise every requested scope must be in `allowed`.
pub fn resolve_scopes(
    requested: Option<&str>,
    allowed: &[String],
) -> Result<Vec<String>, OAuthError> {
    let scopes: Vec<String> = match requested {
        None => allowed.to_vec(),
        Some(text) => {
            let mut out: Vec<String> = Vec::new();
            for s in text.split(' ').filter(|s| !s.is_empty()) {
                if !allowed.iter().any(|a| a == s) {
                    return Err(OAuthError::invalid_scope(format!(
                        "scope {s:?} may not be granted"
                    )));
                }
                if !out.iter().any(|o| o == s) {
                    out.push(s.to_owned());
                }
            }
            out
        }
    };
    if scopes.is_empty() {
        return Err(OAuthError::invalid_scope("no scope may be granted"));
    }
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_428_000_000), "2026-11-23T10:00:00Z");
        assert_eq!(rfc1123(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(rfc1123(1_796_119_200_999), "Tue, 01 Dec 2026 10:00:00 GMT");
    }

    #[test]
    fn scope_resolution() {
        let allowed = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(resolve_scopes(None, &allowed).expect("all"), allowed);
        assert_eq!(resolve_scopes(Some("b"), &allowed).expect("b"), vec!["b"]);
        assert_eq!(
            resolve_scopes(Some("b  a b"), &allowed).expect("ba"),
            vec!["b", "a"]
        );
        assert_eq!(
            resolve_scopes(Some("c"), &allowed).expect_err("c").code,
            "invalid_scope"
        );
        assert_eq!(
            resolve_scopes(None, &[]).expect_err("none").code,
            "invalid_scope"
        );
    }
}
