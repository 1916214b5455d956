//! Authorization codes: what one is bound to, and its exchange at the token endpoint
//! (RFC 6749 §4.1.3, PKCE per RFC 7636). A code is single use; a replay revokes what the first
//! use issued, because the grant id is fixed when the code is made.

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Ctx;
use super::issue::{self, Issued};
use super::params::Params;
use crate::config::Client;
use crate::error::OAuthError;
use crate::store::{CodeUse, RecordKind};
use crate::token::{Millis, TokenHash, now_millis};

/// What a code stands for. Stored under the code's SHA-256, never the code itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeGrant {
    pub client_id: String,
    pub redirect_uri: String,
    /// The authorization request named `redirect_uri` (then the exchange must repeat it).
    pub redirect_uri_given: bool,
    pub username: String,
    pub scopes: Vec<String>,
    /// S256 challenge, when the client used PKCE.
    pub code_challenge: Option<String>,
    pub grant_id: String,
    pub expires_at: Millis,
}

/// Is `verifier` the S256 pre-image of `challenge`?
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    let digest = Sha256::digest(verifier.as_bytes());
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
    well_formed && crate::token::constant_time_eq(encoded.as_bytes(), challenge.as_bytes())
}

/// Is `challenge` a well-formed S256 challenge (43 base64url characters)?
pub fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `grant_type=authorization_code`.
pub async fn exchange(
    ctx: &Ctx<'_>,
    client: &Client,
    params: &Params,
) -> Result<Issued, OAuthError> {
    let code = params.require("code")?;
    let key = TokenHash::of(code).to_hex();
    let invalid = || OAuthError::invalid_grant("authorization code is invalid, expired or used");
    let Some(record) = ctx.store.get_record(RecordKind::Code, &key).await? else {
        return Err(invalid());
    };
    let grant: CodeGrant =
        serde_json::from_str(&record).map_err(|_| OAuthError::server_error("unreadable code"))?;
    // Every binding is checked before the code is spent, so a stolen code presented without
    // the verifier cannot burn the legitimate client's exchange.
    if grant.client_id != client.client_id || grant.expires_at <= now_millis() {
        return Err(invalid());
    }
    match params.get("redirect_uri") {
        Some(uri) if uri != grant.redirect_uri => {
            return Err(OAuthError::invalid_grant(
                "redirect_uri differs from the authorization request",
            ));
        }
        None if grant.redirect_uri_given => {
            return Err(OAuthError::invalid_grant(
                "redirect_uri is required (it was in the authorization request)",
            ));
        }
        _ => {}
    }
    match (&grant.code_challenge, params.get("code_verifier")) {
        (Some(challenge), Some(verifier)) if pkce_matches(verifier, challenge) => {}
        (Some(_), _) => {
            return Err(OAuthError::invalid_grant(
                "code_verifier does not match the code_challenge",
            ));
        }
        // RFC 9700 §2.1.1: a verifier for a code issued without a challenge is an attack sign.
        (None, Some(_)) => {
            return Err(OAuthError::invalid_grant(
                "code_verifier given, but the authorization request had no code_challenge",
            ));
        }
        (None, None) => {}
    }
    match ctx.store.use_code(&key).await? {
        CodeUse::First => {}
        CodeUse::AlreadyUsed => {
            let n = ctx.store.revoke_grant(&grant.grant_id).await?;
            tracing::warn!(client_id = %client.client_id, revoked = n, "authorization code used twice; its tokens are revoked");
            return Err(invalid());
        }
        CodeUse::Missing => return Err(invalid()),
    }
    // The user may have lost scopes since consent; grant no more than they may now.
    let allowed = match ctx.config.user(&grant.username) {
        Some(user) => grant
            .scopes
            .iter()
            .filter(|s| client.scopes.contains(s) && user.may_grant(s))
            .cloned()
            .collect::<Vec<_>>(),
        None => return Err(invalid()),
    };
    if allowed.is_empty() {
        return Err(OAuthError::invalid_scope(
            "none of the consented scopes may be granted any more",
        ));
    }
    issue::issue(
        ctx.store,
        &ctx.config.oauth,
        issue::Request {
            client,
            username: Some(&grant.username),
            scopes: allowed,
            grant_id: Some(grant.grant_id),
            refreshes_used: 0,
            refreshable: true,
            grant: "authorization_code",
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(is_s256_challenge(challenge));
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXx",
            challenge
        ));
        assert!(!pkce_matches("short", challenge));
        assert!(!is_s256_challenge("plain-challenge"));
    }
}
