//! The registry in force on this node: the file's scopes and clients merged with what the
//! admin API keeps in the store (scopes, disabled clients), compiled for the request path.
//!
//! Every node follows the store's registry version (`store::registry`): [`follow`] reads it
//! every [`POLL`] and, when it moved, reads the stored scopes and clients again and swaps in
//! new [`Rules`]. A change made through the admin API so reaches every node within a second,
//! without a reload, and the node that made it applies it at once. A node whose last good read
//! is older than [`STALE_AFTER`] cannot be sure its copy is current (SPEC §11): its bearer
//! checks answer 503 until it reads the store again.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::auth::ScopeRules;
use crate::config::{Config, Scope, is_builtin_scope, is_scope_token};
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::pattern::Pattern;
pub use crate::store::Snapshot;
use crate::store::{StoreError, StoredScope};
use crate::token::{Millis, now_millis};

/// How often a node reads the store's registry version.
pub const POLL: Duration = Duration::from_millis(200);

/// How long a node trusts its copy of the registry without reading the store.
pub const STALE_AFTER: Duration = Duration::from_secs(1);

/// `error_description` of a disabled client's token.
pub const CLIENT_DISABLED: &str = "client disabled";

/// When this node last read the registry (ms since the epoch); `u64::MAX` for a store that
/// is this process's own (the memory store), which is never stale.
#[derive(Debug)]
pub struct Freshness(AtomicU64);

impl Freshness {
    pub fn new(shared: bool) -> Freshness {
        Freshness(AtomicU64::new(if shared { 0 } else { u64::MAX }))
    }

    /// The registry as read from a version read at `at` is current.
    fn synced(&self, at: Millis) {
        if self.0.load(Ordering::Relaxed) != u64::MAX {
            self.0.fetch_max(at, Ordering::AcqRel);
        }
    }

    pub fn is_fresh(&self, now: Millis) -> bool {
        let at = self.0.load(Ordering::Acquire);
        at == u64::MAX || now.saturating_sub(at) <= STALE_AFTER.as_millis() as u64
    }
}

/// The compiled registry: what a bearer check consults besides the token.
pub struct Rules {
    pub scopes: ScopeRules,
    /// Every scope in force, file scopes first: (name, description, source).
    all: Vec<(Scope, &'static str)>,
    /// Clients whose tokens are refused (file `enabled = false` and disabled store clients).
    disabled: HashSet<Box<str>>,
    freshness: Arc<Freshness>,
}

impl Rules {
    pub fn new(config: &Config, snapshot: &Snapshot, freshness: Arc<Freshness>) -> Rules {
        let mut all: Vec<(Scope, &'static str)> =
            config.scopes.iter().map(|s| (s.clone(), "file")).collect();
        for stored in &snapshot.scopes {
            let key = StoredScope::key(&stored.name);
            if all.iter().any(|(s, _)| StoredScope::key(&s.name) == key) {
                continue; // the file wins on a clash (a file scope added after the stored one)
            }
            match compile(stored) {
                Ok(scope) => all.push((scope, "store")),
                Err(e) => {
                    tracing::warn!(scope = %stored.name, error = %e, "stored scope skipped")
                }
            }
        }
        let disabled = config
            .clients
            .iter()
            .filter(|c| !c.enabled)
            .map(|c| c.client_id.as_str())
            .chain(
                snapshot
                    .disabled
                    .iter()
                    .map(String::as_str)
                    .filter(|id| config.client(id).is_none()),
            );
        Rules::of(all, disabled, freshness)
    }

    /// Rules from their parts: scopes with their sources, and the disabled client ids.
    pub fn of<'a>(
        all: Vec<(Scope, &'static str)>,
        disabled: impl IntoIterator<Item = &'a str>,
        freshness: Arc<Freshness>,
    ) -> Rules {
        let plain: Vec<Scope> = all.iter().map(|(s, _)| s.clone()).collect();
        Rules {
            scopes: ScopeRules::new(&plain),
            all,
            disabled: disabled.into_iter().map(Box::from).collect(),
            freshness,
        }
    }

    /// What the registry says of a valid token of `client_id`: refused if this node's copy
    /// may be out of date (503) or the client is disabled (401). The request path's cost is
    /// an atomic load and, when some client is disabled, one hash lookup.
    pub fn check(&self, client_id: &str, now: Millis) -> Result<(), GatewayError> {
        if !self.freshness.is_fresh(now) {
            return Err(GatewayError::StoreUnavailable);
        }
        if !self.disabled.is_empty() && self.disabled.contains(client_id) {
            return Err(GatewayError::InvalidToken(CLIENT_DISABLED));
        }
        Ok(())
    }

    /// May this node answer from its copy of the registry (introspection, tokeninfo)? A
    /// copy that may be out of date is a store error for the caller to report as 503.
    pub fn ensure_fresh(&self, now: Millis) -> Result<(), StoreError> {
        if self.freshness.is_fresh(now) {
            Ok(())
        } else {
            Err(StoreError::Unavailable(
                "the registry has not been read for over a second".to_owned(),
            ))
        }
    }

    pub fn is_disabled(&self, client_id: &str) -> bool {
        self.disabled.contains(client_id)
    }

    /// Every scope in force with its source (`"file"` or `"store"`), file scopes first.
    pub fn all(&self) -> &[(Scope, &'static str)] {
        &self.all
    }

    /// The scope named `name` (case-insensitively), with its source.
    pub fn scope(&self, name: &str) -> Option<&(Scope, &'static str)> {
        let key = StoredScope::key(name);
        self.all
            .iter()
            .find(|(s, _)| StoredScope::key(&s.name) == key)
    }

    /// Is `name` a scope a client may list: built in, or in force (exact name)?
    pub fn knows(&self, name: &str) -> bool {
        is_builtin_scope(name) || self.all.iter().any(|(s, _)| s.name == name)
    }
}

/// A stored scope compiled: its name checked and every pattern parsed; the error names the
/// first pattern that does not parse.
pub fn compile(stored: &StoredScope) -> Result<Scope, String> {
    if !is_scope_token(&stored.name) {
        return Err(format!(
            "scope name {:?} must be non-empty printable ASCII without spaces, quotes or backslashes",
            stored.name
        ));
    }
    if is_builtin_scope(&StoredScope::key(&stored.name)) {
        return Err(format!(
            "`{}` is built in (it guards Tollgate's own endpoints)",
            stored.name
        ));
    }
    if stored.paths.is_empty() {
        return Err("a scope needs at least one path in `paths`".to_owned());
    }
    let patterns = stored
        .paths
        .iter()
        .map(|p| Pattern::parse(p).map_err(|e| format!("bad pattern {p:?} in `paths`: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Scope {
        name: stored.name.clone(),
        description: stored.description.clone(),
        patterns,
    })
}

/// Keeps this node's registry current for as long as the gateway lives (shared stores only).
pub async fn follow(gateway: Arc<Gateway>) {
    let mut failing = false;
    loop {
        match sync(&gateway).await {
            Ok(()) => {
                if failing {
                    tracing::info!("registry read again; scopes and disabled clients are current");
                }
                failing = false;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot read the registry; bearer checks answer 503 after {STALE_AFTER:?}");
                }
                failing = true;
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One poll: reads the store's stamp (version and nonce) and, if it is not the one in force
/// here, the whole registry. The node's copy counts as current from the moment before the
/// stamp was read, not after the reads.
async fn sync(gateway: &Gateway) -> Result<(), StoreError> {
    let at = now_millis();
    // Read before the store's: the store's version only moves on, so one at or below what
    // this node held *before* asking, with another nonce, is another history (a Redis that
    // restarted empty, or a failover that lost writes), not a change racing this poll.
    let held = gateway.registry_stamp();
    let stamp = gateway.store().registry_stamp().await?;
    if stamp != held {
        let reset = stamp.0 <= held.0;
        if reset {
            tracing::warn!(
                version = stamp.0,
                held = held.0,
                "the store's registry went back (restart or failover); reading it whole again"
            );
        }
        let snapshot = gateway.store().read_registry().await?;
        gateway.apply_registry(snapshot, reset.then_some(&held));
    }
    gateway.freshness().synced(at);
    Ok(())
}

/// Reads the registry now and applies it on this node (after a change made here, so this
/// node does not wait for its next poll).
pub async fn refresh(gateway: &Gateway) -> Result<(), StoreError> {
    let at = now_millis();
    let snapshot = gateway.store().read_registry().await?;
    gateway.apply_registry(snapshot, None);
    gateway.freshness().synced(at);
    Ok(())
}
