//! Outbound credentials (SPEC §8): Tollgate as the OAuth client of upstreams that demand
//! their own token. The proxy makes one narrow call, [`Outbound::header`], and gets a ready
//! `Authorization` value from memory; everything else (fetching, refreshing ahead of expiry,
//! sharing one token between nodes through the store, backing off) lives here.
//!
//! # Layout
//! - `credential.rs`: the validated `[[credentials]]` entry, secrets that never print.
//! - `fetch.rs`: one token request and the reading of its answer.
//! - `entry.rs`: one token (per credential, or per credential and user): the hot-path read,
//!   the single-flight obtain, backoff, and the sealed copy in the store.
//! - `connect.rs`: the authorization-code connect flow (`state`, PKCE, callback).
//! - this file: the registry of credentials, swapped whole on reload, and the admin view.

mod connect;
mod credential;
mod entry;
pub(crate) mod fetch;

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use hyper::header::HeaderValue;
use serde::Serialize;

pub use connect::{ConnectError, Connected};
pub use credential::{
    AuthMethod, Credential, OutboundGrant, RequestFormat, Secret, is_json_pointer,
};
pub use fetch::FetchError;

use self::entry::{Entry, Need};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::seal::SealKey;
use crate::store::TokenStore;
use crate::token::Millis;

/// Why no upstream token can be attached.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OutboundError {
    /// No usable token (provider down, refusing, answering nonsense): 502 naming the credential.
    #[error("no usable token for credential {credential:?}: {why}")]
    Unavailable { credential: String, why: String },
    /// `per_user`: this caller's user has not connected an account: 403 with `connect_uri`.
    #[error("credential {credential:?} is not connected for this user")]
    NotConnected {
        credential: String,
        connect_uri: String,
    },
}

/// A credential's token attached to one request. The proxy sends [`Attached::header`] and,
/// when the upstream answers 401 to a request it may send again, asks [`Attached::renew`] once.
pub struct Attached<'a> {
    outbound: &'a Outbound,
    credential: &'a str,
    user: Option<&'a str>,
    pub header: HeaderValue,
}

impl Attached<'_> {
    /// Replaces the refused token with another one.
    pub async fn renew(&mut self) -> Result<(), OutboundError> {
        self.header = self
            .outbound
            .renew(self.credential, self.user, &self.header)
            .await?;
        Ok(())
    }
}

/// One credential of the running config, with its tokens.
struct Slot {
    cred: Arc<Credential>,
    http: fetch::HttpClient,
    shared: Arc<Entry>,
    /// `per_user`: one entry per end user.
    users: DashMap<String, Arc<Entry>>,
}

struct Registry {
    slots: HashMap<String, Arc<Slot>>,
    /// `{public_url}{oauth.path}/callback`: where providers send the browser back.
    redirect_uri: String,
    /// `{public_url}{oauth.path}/connect/`.
    connect_base: String,
}

/// The node's outbound credentials.
#[derive(Clone)]
pub struct Outbound {
    inner: Arc<Inner>,
}

struct Inner {
    registry: ArcSwap<Registry>,
    store: TokenStore,
    key: Option<SealKey>,
    metrics: Arc<Metrics>,
}

impl Outbound {
    pub fn new(config: &Config, store: TokenStore) -> Outbound {
        let metrics = Arc::clone(store.metrics());
        let inner = Inner {
            registry: ArcSwap::from_pointee(Registry::build(config, None, &store)),
            key: config.store.encryption_key.clone(),
            store,
            metrics,
        };
        Outbound {
            inner: Arc::new(inner),
        }
    }

    /// Takes a reloaded config: an unchanged credential keeps its token, a changed one starts
    /// over (and its failures are forgotten), a removed one is dropped.
    pub fn reload(&self, config: &Config) {
        let old = self.inner.registry.load_full();
        let next = Registry::build(config, Some(&old), &self.inner.store);
        self.inner.registry.store(Arc::new(next));
    }

    /// The `Authorization` value to send upstream for `credential` (and the caller's `user`,
    /// for `per_user`). From memory while the current token is good; a token due for refresh
    /// is still served while one background refresh runs.
    pub async fn header(
        &self,
        credential: &str,
        user: Option<&str>,
    ) -> Result<HeaderValue, OutboundError> {
        let registry = self.inner.registry.load();
        let slot = registry.slot(credential)?;
        let entry = registry.entry(slot, user)?;
        match entry.ready(crate::token::now_millis()) {
            entry::Ready::Fresh(h) => Ok(h),
            entry::Ready::Due(h) => {
                self.refresh_in_background(Arc::clone(slot), entry);
                Ok(h)
            }
            entry::Ready::None => {
                let slot = Arc::clone(slot);
                Box::pin(self.obtain(slot, entry, Need::Usable)).await
            }
        }
    }

    /// [`Outbound::header`], kept with what it takes to replace it if the upstream refuses it.
    pub async fn attach<'a>(
        &'a self,
        credential: &'a str,
        user: Option<&'a str>,
    ) -> Result<Attached<'a>, OutboundError> {
        let header = self.header(credential, user).await?;
        Ok(Attached {
            outbound: self,
            credential,
            user,
            header,
        })
    }

    /// The upstream refused `stale` (401): a token other than it, fetched now unless another
    /// request already did.
    pub async fn renew(
        &self,
        credential: &str,
        user: Option<&str>,
        stale: &HeaderValue,
    ) -> Result<HeaderValue, OutboundError> {
        let registry = self.inner.registry.load();
        let slot = Arc::clone(registry.slot(credential)?);
        let entry = registry.entry(&slot, user)?;
        Box::pin(self.obtain(slot, entry, Need::Replace(stale.clone()))).await
    }

    fn refresh_in_background(&self, slot: Arc<Slot>, entry: Arc<Entry>) {
        if !entry.claim_background() {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let _ = this.obtain(slot, Arc::clone(&entry), Need::Fresh).await;
            entry.release_background();
        });
    }

    async fn obtain(
        &self,
        slot: Arc<Slot>,
        entry: Arc<Entry>,
        need: Need,
    ) -> Result<HeaderValue, OutboundError> {
        let env = entry::Env {
            cred: &slot.cred,
            http: &slot.http,
            store: &self.inner.store,
            key: self.inner.key.as_ref(),
            metrics: &self.inner.metrics,
        };
        entry.obtain(&env, need).await.map_err(|why| {
            if slot.cred.per_user && !entry.connected() {
                let registry = self.inner.registry.load();
                OutboundError::NotConnected {
                    credential: slot.cred.name.clone(),
                    connect_uri: format!("{}{}", registry.connect_base, slot.cred.name),
                }
            } else {
                OutboundError::Unavailable {
                    credential: slot.cred.name.clone(),
                    why,
                }
            }
        })
    }

    /// `GET /admin/credentials`.
    pub fn list(&self) -> Vec<Status> {
        let registry = self.inner.registry.load();
        let mut out: Vec<Status> = registry.slots.values().map(|s| status(s)).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// `POST /admin/credentials/{name}/refresh`: a new token request now, whatever the
    /// backoff or an earlier refusal said. `None` for an unknown credential; the bool says
    /// whether every token request succeeded.
    pub async fn refresh_now(&self, name: &str) -> Option<(bool, Status)> {
        let slot = Arc::clone(self.inner.registry.load().slots.get(name)?);
        let entries: Vec<Arc<Entry>> = if slot.cred.per_user {
            slot.users.iter().map(|e| Arc::clone(e.value())).collect()
        } else {
            vec![Arc::clone(&slot.shared)]
        };
        let mut ok = !entries.is_empty() || !slot.cred.per_user;
        for entry in entries {
            entry.unblock();
            let result = self.obtain(Arc::clone(&slot), entry, Need::Forced).await;
            ok &= result.is_ok();
        }
        Some((ok, status(&slot)))
    }

    /// `DELETE /admin/credentials/{name}/tokens[?username=U]`: the stored tokens forgotten,
    /// here and in the store. `None` for an unknown credential.
    pub async fn forget(&self, name: &str, username: Option<&str>) -> Option<()> {
        let slot = Arc::clone(self.inner.registry.load().slots.get(name)?);
        let entries: Vec<Arc<Entry>> = match (slot.cred.per_user, username) {
            (true, Some(u)) => slot
                .users
                .get(u)
                .map(|e| Arc::clone(&e))
                .into_iter()
                .collect(),
            (true, None) => slot.users.iter().map(|e| Arc::clone(e.value())).collect(),
            (false, _) => vec![Arc::clone(&slot.shared)],
        };
        for entry in entries {
            entry.forget(&self.inner.store).await;
        }
        if let (true, Some(u)) = (slot.cred.per_user, username) {
            // Not known on this node: its record may still be in the store.
            let key = entry::store_key(&slot.cred.name, Some(u));
            let _ = self
                .inner
                .store
                .delete_record(crate::store::RecordKind::Credential, &key)
                .await;
        }
        Some(())
    }

    /// Forgets every per-user token of `username` (the user left the config).
    pub async fn forget_user(&self, username: &str) {
        let registry = self.inner.registry.load_full();
        for slot in registry.slots.values().filter(|s| s.cred.per_user) {
            let _ = self.forget(&slot.cred.name, Some(username)).await;
        }
    }
}

impl Registry {
    fn build(config: &Config, old: Option<&Registry>, store: &TokenStore) -> Registry {
        let public = format!("{}{}", config.server.public_url, config.oauth.path);
        let slots = config
            .credentials
            .iter()
            .map(|cred| {
                let kept = old
                    .and_then(|o| o.slots.get(&cred.name))
                    .filter(|s| s.cred.fingerprint == cred.fingerprint);
                let slot = match kept {
                    Some(s) => Arc::clone(s),
                    None => Arc::new(Slot {
                        http: fetch::client(cred),
                        shared: Arc::new(Entry::new(&cred.name, None, store.is_shared())),
                        users: DashMap::new(),
                        cred: Arc::clone(cred),
                    }),
                };
                (cred.name.clone(), slot)
            })
            .collect();
        Registry {
            slots,
            redirect_uri: format!("{public}/callback"),
            connect_base: format!("{public}/connect/"),
        }
    }

    fn slot(&self, name: &str) -> Result<&Arc<Slot>, OutboundError> {
        self.slots
            .get(name)
            .ok_or_else(|| OutboundError::Unavailable {
                credential: name.to_owned(),
                why: "no such credential".to_owned(),
            })
    }

    fn entry(&self, slot: &Slot, user: Option<&str>) -> Result<Arc<Entry>, OutboundError> {
        if !slot.cred.per_user {
            return Ok(Arc::clone(&slot.shared));
        }
        let not_connected = || OutboundError::NotConnected {
            credential: slot.cred.name.clone(),
            connect_uri: format!("{}{}", self.connect_base, slot.cred.name),
        };
        let user = user.ok_or_else(not_connected)?;
        if let Some(e) = slot.users.get(user) {
            return Ok(Arc::clone(&e));
        }
        let entry = slot.users.entry(user.to_owned()).or_insert_with(|| {
            let persist = slot.shared.persists();
            Arc::new(Entry::new(&slot.cred.name, Some(user), persist))
        });
        Ok(Arc::clone(&entry))
    }
}

/// One credential as `GET /admin/credentials` shows it; never a token or a secret.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub name: String,
    pub grant: &'static str,
    pub token_url: String,
    pub per_user: bool,
    /// `ok` | `not_connected` | `failing`.
    pub status: &'static str,
    pub expires_at: Option<String>,
    pub last_refresh_at: Option<String>,
    pub last_error: Option<String>,
    pub connected_users: usize,
}

fn status(slot: &Slot) -> Status {
    let cred = &slot.cred;
    let rfc = |ms: Option<Millis>| ms.map(crate::oauth::rfc3339);
    let entries: Vec<Arc<Entry>> = if cred.per_user {
        slot.users.iter().map(|e| Arc::clone(e.value())).collect()
    } else {
        vec![Arc::clone(&slot.shared)]
    };
    let views: Vec<entry::View> = entries.iter().map(|e| e.view()).collect();
    let connected = views.iter().filter(|v| v.connected).count();
    let failing = views.iter().any(|v| v.failing);
    let state = if failing {
        "failing"
    } else if connected == 0 && (cred.per_user || cred.grant == OutboundGrant::AuthorizationCode) {
        "not_connected"
    } else {
        "ok"
    };
    Status {
        name: cred.name.clone(),
        grant: cred.grant.as_str(),
        token_url: cred.token_url.to_string(),
        per_user: cred.per_user,
        status: state,
        expires_at: rfc(views.iter().filter_map(|v| v.expires_at).min()),
        last_refresh_at: rfc(views.iter().filter_map(|v| v.last_refresh_at).max()),
        last_error: views.iter().find_map(|v| v.last_error.clone()),
        connected_users: if cred.per_user { connected } else { 0 },
    }
}
