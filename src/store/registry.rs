//! What the store holds of the registry besides the client records: scopes created through
//! the admin API (SPEC §9), the ids of disabled store clients, and a version that every change
//! to either moves on. The three are kept together (one Redis hash, one lock in memory), so a
//! node reads them in one step as a consistent [`Snapshot`]. Each node polls the version and,
//! when it moved, reads the snapshot again (`crate::registry`): a change reaches every node
//! within a second without a reload.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use super::{BackendImpl, StoreError, TokenStore};

/// A scope as the admin API stores it: its patterns are kept as written and compiled by each
/// node (`crate::registry`), so the wire format does not depend on the matcher's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredScope {
    pub name: String,
    pub description: String,
    pub paths: Vec<String>,
}

impl StoredScope {
    /// Scope names compare case-insensitively (SPEC §9): this is the key they are stored by.
    pub fn key(name: &str) -> String {
        name.to_lowercase()
    }
}

/// The registry as read from the store in one step.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Moves on with every change; a snapshot with a lower version is older.
    pub version: u64,
    /// Random, new with every change (Redis; empty in memory): the same version with another
    /// nonce is another history (a store that lost writes and was written again).
    pub nonce: String,
    /// By key (lower-case name).
    pub scopes: Vec<StoredScope>,
    /// Store clients with `enabled = false`.
    pub disabled: Vec<String>,
}

/// Where the registry stands: its version and the nonce of the write that made it.
pub type Stamp = (u64, String);

impl Snapshot {
    pub fn stamp(&self) -> Stamp {
        (self.version, self.nonce.clone())
    }
}

/// How a scope write treats one already stored under the same (case-insensitive) name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeWrite {
    /// Only if none is stored (create): two creates of one name cannot both win.
    Create,
    /// Only if one is stored (update): a scope deleted meanwhile stays deleted.
    Replace,
}

/// The memory store's registry: one node, one lock for the three parts.
#[derive(Default)]
pub(super) struct MemoryRegistry(Mutex<State>);

#[derive(Default)]
struct State {
    version: u64,
    scopes: BTreeMap<String, StoredScope>,
    disabled: BTreeSet<String>,
}

impl MemoryRegistry {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl TokenStore {
    /// Writes a stored scope as `how` says and moves the version; false (nothing written)
    /// when `how`'s condition does not hold.
    pub async fn put_scope(
        &self,
        scope: &StoredScope,
        how: ScopeWrite,
    ) -> Result<bool, StoreError> {
        match &*self.backend {
            BackendImpl::Memory(m) => {
                let mut state = m.registry().state();
                let key = StoredScope::key(&scope.name);
                if state.scopes.contains_key(&key) != (how == ScopeWrite::Replace) {
                    return Ok(false);
                }
                state.scopes.insert(key, scope.clone());
                state.version += 1;
                Ok(true)
            }
            BackendImpl::Redis(r) => r.put_scope(scope, how).await,
        }
    }

    /// Deletes a stored scope; whether it existed.
    pub async fn delete_scope(&self, name: &str) -> Result<bool, StoreError> {
        match &*self.backend {
            BackendImpl::Memory(m) => {
                let mut state = m.registry().state();
                let existed = state.scopes.remove(&StoredScope::key(name)).is_some();
                state.version += 1;
                Ok(existed)
            }
            BackendImpl::Redis(r) => r.delete_scope(name).await,
        }
    }

    /// Marks a store client disabled or not, and moves the version.
    pub(super) async fn set_disabled(
        &self,
        client_id: &str,
        disabled: bool,
    ) -> Result<(), StoreError> {
        match &*self.backend {
            BackendImpl::Memory(m) => {
                let mut state = m.registry().state();
                if disabled {
                    state.disabled.insert(client_id.to_owned());
                } else {
                    state.disabled.remove(client_id);
                }
                state.version += 1;
                Ok(())
            }
            BackendImpl::Redis(r) => r.set_disabled(client_id, disabled).await,
        }
    }

    /// The whole registry, read in one step.
    pub async fn read_registry(&self) -> Result<Snapshot, StoreError> {
        match &*self.backend {
            BackendImpl::Memory(m) => {
                let state = m.registry().state();
                Ok(Snapshot {
                    version: state.version,
                    nonce: String::new(),
                    scopes: state.scopes.values().cloned().collect(),
                    disabled: state.disabled.iter().cloned().collect(),
                })
            }
            BackendImpl::Redis(r) => r.read_registry().await,
        }
    }

    /// The registry's stamp: it moves whenever a stored scope or a client's `enabled` does.
    pub async fn registry_stamp(&self) -> Result<Stamp, StoreError> {
        match &*self.backend {
            BackendImpl::Memory(m) => Ok((m.registry().state().version, String::new())),
            BackendImpl::Redis(r) => r.registry_stamp().await,
        }
    }

    /// Is store client `client_id` disabled (or deleted: its id stays as a tombstone)?
    pub async fn is_disabled(&self, client_id: &str) -> Result<bool, StoreError> {
        match &*self.backend {
            BackendImpl::Memory(m) => Ok(m.registry().state().disabled.contains(client_id)),
            BackendImpl::Redis(r) => r.is_disabled(client_id).await,
        }
    }
}
