//! One upstream token (a credential's, or a credential user's): read from memory on the hot
//! path, obtained by one request at a time, shared between nodes through the store.
//!
//! - **Hot path:** [`Entry::ready`] is a lock-free load and a `HeaderValue` clone (a
//!   reference count).
//! - **Obtaining:** one caller per entry at a time (a tokio mutex: a cancelled caller drops
//!   it and the next waiter goes on, so nobody is stranded). It first looks in the store for
//!   what another node fetched; only if that will not do does it take a short lock in the
//!   store and ask the provider, so N nodes make one token request.
//! - **Failures:** at most one try per second per entry on this node; `invalid_client` and
//!   `invalid_grant` stop the tries until an operator asks or the credential changes. A
//!   failed refresh keeps the current token until it expires; an expired token is never sent.
//! - **Storage:** with Redis, the tokens (and rotated refresh tokens) are kept sealed with
//!   `[store] encryption_key`, so a restart or a new node does not fetch again.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use hyper::header::HeaderValue;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use super::credential::{Credential, OutboundGrant, Secret};
use super::fetch::{self, Ask, FetchError, Fetched, HttpClient};
use crate::metrics::Metrics;
use crate::seal::SealKey;
use crate::store::{RecordKind, TokenStore};
use crate::token::{Millis, now_millis};

/// Least time between two token requests of one entry on one node.
const RETRY_AFTER: Millis = 1000;
/// How long a node waits for another node's token request before giving up.
const LOCK_MARGIN: Duration = Duration::from_secs(2);
const WAIT_STEP: Duration = Duration::from_millis(50);

/// What a caller needs from [`Entry::obtain`].
pub enum Need {
    /// Any token that has not expired.
    Usable,
    /// One not yet due for refresh (background refresh).
    Fresh,
    /// Any token but this one, which the upstream refused.
    Replace(HeaderValue),
    /// A new token request, whatever we have (an operator asked).
    Forced,
}

/// What the hot path finds.
pub enum Ready {
    Fresh(HeaderValue),
    /// Still good, but due for refresh.
    Due(HeaderValue),
    None,
}

/// What an entry needs from its surroundings to obtain a token.
pub struct Env<'a> {
    pub cred: &'a Credential,
    pub http: &'a HttpClient,
    pub store: &'a TokenStore,
    pub key: Option<&'a SealKey>,
    pub metrics: &'a Metrics,
}

/// A token set in memory.
struct Tokens {
    header: HeaderValue,
    access: Secret,
    refresh: Option<Secret>,
    obtained_at: Millis,
    expires_at: Millis,
    refresh_at: Millis,
}

impl Tokens {
    fn new(
        cred: &Credential,
        access: Secret,
        refresh: Option<Secret>,
        obtained_at: Millis,
        expires_at: Millis,
    ) -> Option<Tokens> {
        let mut header = HeaderValue::from_str(&format!("Bearer {}", access.expose())).ok()?;
        header.set_sensitive(true);
        let lifetime = expires_at.saturating_sub(obtained_at);
        // Refresh `refresh_before` ahead of expiry, but never before half the lifetime.
        let ahead = (cred.refresh_before.as_millis() as Millis).min(lifetime / 2);
        Some(Tokens {
            header,
            access,
            refresh,
            obtained_at,
            expires_at,
            refresh_at: expires_at - ahead,
        })
    }

    /// Still safe to send: a margin before expiry, so no request reaches the upstream with a
    /// token that expired on the way.
    fn usable(&self, now: Millis) -> bool {
        let margin = (self.expires_at.saturating_sub(self.obtained_at) / 10).min(1000);
        now + margin < self.expires_at
    }
}

/// The sealed record in the store.
#[derive(Serialize, Deserialize)]
struct Stored {
    access: String,
    refresh: Option<String>,
    obtained_at: Millis,
    expires_at: Millis,
    /// The credential's fingerprint: a record of a since-changed credential is not used.
    fingerprint: String,
}

#[derive(Default)]
struct State {
    last_error: Option<String>,
    last_refresh_at: Option<Millis>,
    next_try_at: Millis,
    /// A final refusal: no tries until unblocked.
    blocked: bool,
    failing: bool,
}

/// What the admin view shows of an entry.
pub struct View {
    pub connected: bool,
    pub failing: bool,
    pub expires_at: Option<Millis>,
    pub last_refresh_at: Option<Millis>,
    pub last_error: Option<String>,
}

pub struct Entry {
    credential: String,
    store_key: String,
    /// Kept in the store (Redis): shared by the nodes, survives restarts.
    persist: bool,
    tokens: ArcSwapOption<Tokens>,
    flight: tokio::sync::Mutex<()>,
    background: AtomicBool,
    state: Mutex<State>,
}

/// The store key of a credential's (or a credential user's) tokens. Braces make it a Redis
/// Cluster hash tag, so the record and its lock share a slot while credentials spread.
pub fn store_key(credential: &str, user: Option<&str>) -> String {
    match user {
        None => format!("{{{credential}}}"),
        Some(u) => format!("{{{credential}/{u}}}"),
    }
}

impl Entry {
    pub fn new(credential: &str, user: Option<&str>, persist: bool) -> Entry {
        Entry {
            credential: credential.to_owned(),
            store_key: store_key(credential, user),
            persist,
            tokens: ArcSwapOption::empty(),
            flight: tokio::sync::Mutex::new(()),
            background: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        }
    }

    pub fn persists(&self) -> bool {
        self.persist
    }

    /// The hot path: the current token, if it can be sent.
    pub fn ready(&self, now: Millis) -> Ready {
        match &*self.tokens.load() {
            Some(t) if t.usable(now) && now < t.refresh_at => Ready::Fresh(t.header.clone()),
            Some(t) if t.usable(now) => Ready::Due(t.header.clone()),
            _ => Ready::None,
        }
    }

    /// One background refresh at a time.
    pub fn claim_background(&self) -> bool {
        !self.background.swap(true, Ordering::AcqRel)
    }

    pub fn release_background(&self) {
        self.background.store(false, Ordering::Release);
    }

    pub fn connected(&self) -> bool {
        self.tokens.load().is_some()
    }

    pub fn unblock(&self) {
        let mut st = self.lock_state();
        st.blocked = false;
        st.next_try_at = 0;
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn view(&self) -> View {
        let tokens = self.tokens.load();
        let st = self.lock_state();
        // Failing as soon as the last token request failed, even while the current token is
        // still served: that is when an operator wants to know.
        View {
            connected: tokens.is_some(),
            failing: st.failing,
            expires_at: tokens.as_ref().map(|t| t.expires_at),
            last_refresh_at: st.last_refresh_at,
            last_error: st.last_error.clone(),
        }
    }

    fn satisfies(&self, need: &Need, now: Millis) -> Option<HeaderValue> {
        let tokens = self.tokens.load();
        let t = tokens.as_ref().filter(|t| t.usable(now))?;
        let ok = match need {
            Need::Usable => true,
            Need::Fresh => now < t.refresh_at,
            Need::Replace(stale) => t.header != stale,
            Need::Forced => false,
        };
        ok.then(|| t.header.clone())
    }

    /// A token for `need`, from memory, the store, or the provider. The error is the short
    /// classification of why none is usable.
    pub async fn obtain(&self, env: &Env<'_>, need: Need) -> Result<HeaderValue, String> {
        let _flight = self.flight.lock().await;
        if let Some(h) = self.satisfies(&need, now_millis()) {
            return Ok(h);
        }
        if self.persist {
            self.adopt_stored(env).await;
            if let Some(h) = self.satisfies(&need, now_millis()) {
                return Ok(h);
            }
        }
        {
            let st = self.lock_state();
            let gated = st.blocked || now_millis() < st.next_try_at;
            if gated && !matches!(need, Need::Forced) {
                return Err(st
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "waiting before the next try".to_owned()));
            }
        }
        if self.persist {
            let lock_ttl = env.cred.timeout + LOCK_MARGIN;
            let deadline = tokio::time::Instant::now() + lock_ttl;
            loop {
                match env
                    .store
                    .create_record(RecordKind::CredentialLock, &self.store_key, "1", lock_ttl)
                    .await
                {
                    Ok(true) => break,
                    // The store is down: nothing to coordinate with, so ask alone.
                    Err(_) => break,
                    Ok(false) => {}
                }
                // Another node is asking: wait for its answer in the store.
                if tokio::time::Instant::now() >= deadline {
                    return Err("another node's token request did not finish".to_owned());
                }
                tokio::time::sleep(WAIT_STEP).await;
                self.adopt_stored(env).await;
                if let Some(h) = self.satisfies(&need, now_millis()) {
                    return Ok(h);
                }
            }
            let result = self.request(env).await;
            let _ = env
                .store
                .delete_record(RecordKind::CredentialLock, &self.store_key)
                .await;
            result
        } else {
            self.request(env).await
        }
    }

    /// Asks the provider: a refresh when there is a refresh token, else the credential's own
    /// grant.
    async fn request(&self, env: &Env<'_>) -> Result<HeaderValue, String> {
        let cred = env.cred;
        let current = self.tokens.load_full();
        let refresh = current
            .as_ref()
            .and_then(|t| t.refresh.clone())
            .or_else(|| cred.refresh_token.clone().filter(|_| !cred.per_user));
        let result = match (&refresh, cred.grant) {
            (Some(rt), grant) => {
                let r = self.ask(env, Ask::Refresh(rt)).await;
                match r {
                    // A client that can ask afresh does so when its refresh token is refused.
                    Err(ref e)
                        if e.is_final()
                            && matches!(
                                grant,
                                OutboundGrant::ClientCredentials | OutboundGrant::Password
                            ) =>
                    {
                        self.ask(env, Ask::Initial).await
                    }
                    r => r,
                }
            }
            (None, OutboundGrant::ClientCredentials | OutboundGrant::Password) => {
                self.ask(env, Ask::Initial).await
            }
            (None, _) => {
                // Not connected (yet): look again in a second, not on every request.
                self.lock_state().next_try_at = now_millis() + RETRY_AFTER;
                return Err("not connected".to_owned());
            }
        };
        match result {
            Ok(fetched) => self.install(env, fetched, refresh).await,
            Err(e) => {
                {
                    let mut st = self.lock_state();
                    st.last_error = Some(e.to_string());
                    st.failing = true;
                    st.next_try_at = now_millis() + RETRY_AFTER;
                    st.blocked = e.is_final();
                }
                tracing::warn!(credential = %cred.name, error = %e, "upstream token request failed");
                if e.is_final() && cred.grant == OutboundGrant::AuthorizationCode {
                    // The grant is gone at the provider: the account must be connected again.
                    self.tokens.store(None);
                    self.delete_stored(env.store).await;
                }
                Err(e.to_string())
            }
        }
    }

    async fn ask(&self, env: &Env<'_>, ask: Ask<'_>) -> Result<Fetched, FetchError> {
        let result = fetch::fetch(env.http, env.cred, ask).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        env.metrics.credential_request(&env.cred.name, outcome);
        result
    }

    /// Takes new tokens: in memory at once, and sealed in the store. A provider that sent no
    /// new refresh token leaves the old one in use.
    pub async fn install(
        &self,
        env: &Env<'_>,
        fetched: Fetched,
        previous_refresh: Option<Secret>,
    ) -> Result<HeaderValue, String> {
        let now = now_millis();
        let expires_at = now + fetched.lifetime.as_millis() as Millis;
        let refresh = fetched.refresh.or(previous_refresh);
        let Some(tokens) = Tokens::new(env.cred, fetched.access, refresh, now, expires_at) else {
            return Err("provider's access token cannot be sent in a header".to_owned());
        };
        let header = tokens.header.clone();
        if self.persist {
            self.save(env, &tokens).await;
        }
        self.tokens.store(Some(Arc::new(tokens)));
        *self.lock_state() = State {
            last_refresh_at: Some(now),
            ..State::default()
        };
        env.metrics.credential_expiry(&env.cred.name, expires_at);
        Ok(header)
    }

    /// Adopts the store's record if it is newer than what this node holds.
    async fn adopt_stored(&self, env: &Env<'_>) {
        let Some(key) = env.key else { return };
        let Ok(Some(sealed)) = env
            .store
            .get_record(RecordKind::Credential, &self.store_key)
            .await
        else {
            return;
        };
        let Some(stored) = key
            .open(&sealed)
            .and_then(|plain| serde_json::from_slice::<Stored>(&plain).ok())
        else {
            tracing::warn!(credential = %self.credential, "stored upstream token cannot be opened (another encryption_key?); ignored");
            return;
        };
        if stored.fingerprint != hex(&env.cred.fingerprint) {
            return;
        }
        let ours = self.tokens.load().as_ref().map_or(0, |t| t.obtained_at);
        if stored.obtained_at <= ours {
            return;
        }
        if let Some(t) = Tokens::new(
            env.cred,
            Secret::new(stored.access),
            stored.refresh.map(Secret::new),
            stored.obtained_at,
            stored.expires_at,
        ) {
            env.metrics.credential_expiry(&env.cred.name, t.expires_at);
            self.tokens.store(Some(Arc::new(t)));
        }
    }

    async fn save(&self, env: &Env<'_>, t: &Tokens) {
        let Some(key) = env.key else { return };
        let stored = Stored {
            access: t.access.expose().to_owned(),
            refresh: t.refresh.as_ref().map(|r| r.expose().to_owned()),
            obtained_at: t.obtained_at,
            expires_at: t.expires_at,
            fingerprint: hex(&env.cred.fingerprint),
        };
        let Some(sealed) = serde_json::to_vec(&stored).ok().and_then(|p| key.seal(&p)) else {
            return;
        };
        // A refresh token outlives its access token: keep the record while it may be useful.
        let ttl = if t.refresh.is_some() {
            Duration::from_secs(400 * 86_400)
        } else {
            Duration::from_millis(t.expires_at.saturating_sub(t.obtained_at))
                + Duration::from_secs(60)
        };
        if let Err(e) = env
            .store
            .put_record(RecordKind::Credential, &self.store_key, &sealed, ttl)
            .await
        {
            tracing::warn!(credential = %self.credential, error = %e, "could not keep the upstream token in the store");
        }
    }

    async fn delete_stored(&self, store: &TokenStore) {
        if self.persist {
            let _ = store
                .delete_record(RecordKind::Credential, &self.store_key)
                .await;
        }
    }

    /// Forgets the tokens here and in the store.
    pub async fn forget(&self, store: &TokenStore) {
        let _flight = self.flight.lock().await;
        self.tokens.store(None);
        *self.lock_state() = State::default();
        self.delete_stored(store).await;
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
