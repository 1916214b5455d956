//! Connecting an account through the provider's own consent page (`grant =
//! "authorization_code"`): the browser is sent to `authorize_url` with a single-use `state`
//! (10 minutes) and a PKCE S256 challenge, and comes back to `{oauth.path}/callback`, where
//! the code is exchanged and the tokens kept: the credential's own (shared), or the signed-in
//! user's (`per_user`).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::entry::Env;
use super::fetch::{self, Ask};
use super::{Outbound, OutboundGrant};
use crate::store::{RecordKind, StoreError};

/// How long a connect may take at the provider.
const STATE_TTL: Duration = Duration::from_secs(600);

/// A connect that came back and was stored.
#[derive(Debug)]
pub struct Connected {
    pub credential: String,
    pub username: Option<String>,
    /// Where the browser goes next: the console page the connect started from, if any.
    pub return_to: Option<String>,
}

/// Why a connect cannot start or finish. Texts are for the result page and the admin API.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("no credential {0:?}")]
    Unknown(String),
    #[error("credential {0:?} does not use grant = \"authorization_code\"")]
    NotAuthorizationCode(String),
    #[error("credential {0:?} is per_user: each user connects at {1}")]
    PerUser(String, String),
    #[error("credential {0:?} is shared: an operator connects it from the admin API")]
    Shared(String),
    #[error("this connect link has expired or was already used; start again")]
    BadState,
    #[error("the provider did not grant access ({0})")]
    Denied(String),
    #[error("the provider's code could not be exchanged: {0}")]
    Exchange(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Serialize, Deserialize)]
struct State {
    credential: String,
    username: Option<String>,
    verifier: String,
    fingerprint: [u8; 32],
    /// Set by the console only (an operator's signed-in, CSRF-checked request), kept here
    /// server-side: nothing a provider or a link sends decides where the browser goes.
    #[serde(default)]
    return_to: Option<String>,
}

impl Outbound {
    /// The provider URL to send a browser to. `username` is the signed-in user for a
    /// `per_user` credential, `None` for a shared one (an operator's connect).
    pub async fn authorize_url(
        &self,
        name: &str,
        username: Option<&str>,
        return_to: Option<&str>,
    ) -> Result<String, ConnectError> {
        let registry = self.inner.registry.load_full();
        let slot = registry
            .slots
            .get(name)
            .ok_or_else(|| ConnectError::Unknown(name.to_owned()))?;
        let cred = &slot.cred;
        let Some(authorize) = cred
            .authorize_url
            .as_ref()
            .filter(|_| cred.grant == OutboundGrant::AuthorizationCode)
        else {
            return Err(ConnectError::NotAuthorizationCode(name.to_owned()));
        };
        match (cred.per_user, username) {
            (true, None) => {
                let uri = format!("{}{}", registry.connect_base, name);
                return Err(ConnectError::PerUser(name.to_owned(), uri));
            }
            (false, Some(_)) => return Err(ConnectError::Shared(name.to_owned())),
            _ => {}
        }
        let random = |what| {
            crate::token::generate().map_err(|e| ConnectError::Exchange(format!("{what}: {e}")))
        };
        let verifier = random("random generator")?;
        let state = random("random generator")?;
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes()));
        let record = State {
            credential: name.to_owned(),
            username: username.map(str::to_owned),
            verifier,
            fingerprint: cred.fingerprint,
            return_to: return_to.map(str::to_owned),
        };
        let record = serde_json::to_string(&record).unwrap_or_default();
        let key = crate::token::TokenHash::of(&state).to_hex();
        self.inner
            .store
            .put_record(RecordKind::ConnectState, &key, &record, STATE_TTL)
            .await?;
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &cred.client_id)
            .append_pair("redirect_uri", &registry.redirect_uri)
            .append_pair("state", &state)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        if let Some(scope) = &cred.scope {
            query.append_pair("scope", scope);
        }
        let base = authorize.to_string();
        let sep = if base.contains('?') { '&' } else { '?' };
        Ok(format!("{base}{sep}{}", query.finish()))
    }

    /// `GET {oauth.path}/callback`: spends the `state`, exchanges the code, keeps the tokens.
    /// `signed_in` is the browser's user: a per-user connect finishes only for the user who
    /// started it.
    pub async fn complete(
        &self,
        state: &str,
        code: Option<&str>,
        error: Option<&str>,
        signed_in: Option<&str>,
    ) -> Result<Connected, ConnectError> {
        let key = crate::token::TokenHash::of(state).to_hex();
        let record = self
            .inner
            .store
            .take_record(RecordKind::ConnectState, &key)
            .await?
            .ok_or(ConnectError::BadState)?;
        let record: State = serde_json::from_str(&record).map_err(|_| ConnectError::BadState)?;
        if let Some(error) = error {
            let error: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(40)
                .collect();
            return Err(ConnectError::Denied(error));
        }
        let code = code.ok_or_else(|| ConnectError::Denied("no code".to_owned()))?;
        if record.username.is_some() && record.username.as_deref() != signed_in {
            return Err(ConnectError::BadState);
        }
        let registry = self.inner.registry.load_full();
        let slot = registry
            .slots
            .get(&record.credential)
            .filter(|s| s.cred.fingerprint == record.fingerprint)
            .ok_or(ConnectError::BadState)?;
        let entry = match &record.username {
            Some(u) => registry
                .entry(slot, Some(u))
                .map_err(|_| ConnectError::BadState)?,
            None => Arc::clone(&slot.shared),
        };
        let env = Env {
            cred: &slot.cred,
            http: &slot.http,
            store: &self.inner.store,
            key: self.inner.key.as_ref(),
            metrics: &self.inner.metrics,
        };
        let ask = Ask::Code {
            code,
            verifier: &record.verifier,
            redirect_uri: &registry.redirect_uri,
        };
        let fetched = fetch::fetch(&slot.http, &slot.cred, ask).await;
        let outcome = fetched.as_ref().map_or_else(|e| e.outcome(), |_| "ok");
        self.inner
            .metrics
            .credential_request(&slot.cred.name, outcome);
        let fetched = fetched.map_err(|e| ConnectError::Exchange(e.to_string()))?;
        entry.unblock();
        entry
            .install(&env, fetched, None)
            .await
            .map_err(ConnectError::Exchange)?;
        tracing::info!(credential = %record.credential, username = record.username.as_deref().unwrap_or("-"), "upstream account connected");
        Ok(Connected {
            credential: record.credential,
            username: record.username,
            return_to: record.return_to,
        })
    }
}
