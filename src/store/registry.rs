//! What the store holds of the registry besides clients: scopes created through the admin
//! API (SPEC §9), and a version that every change to the registry (a scope, or a store client
//! created, changed or deleted) moves on. Each node polls the version and, when it moved,
//! reads the registry again (`crate::registry`), so a change reaches every node within a
//! second without a reload.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// The memory store's registry: one node, so the version only tells this node's own poller.
#[derive(Default)]
pub(super) struct MemoryRegistry {
    version: AtomicU64,
    scopes: Mutex<BTreeMap<String, StoredScope>>,
}

impl MemoryRegistry {
    fn scopes(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, StoredScope>> {
        self.scopes.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn bump(&self) {
        self.version.fetch_add(1, Ordering::Release);
    }
}

impl TokenStore {
    /// Creates or replaces a stored scope, and moves the registry version.
    pub async fn put_scope(&self, scope: &StoredScope) -> Result<(), StoreError> {
        match &*self.backend {
            BackendImpl::Memory(m) => {
                m.registry()
                    .scopes()
                    .insert(StoredScope::key(&scope.name), scope.clone());
                m.registry().bump();
                Ok(())
            }
            BackendImpl::Redis(r) => r.put_scope(scope).await,
        }
    }

    /// Deletes a stored scope; whether it existed.
    pub async fn delete_scope(&self, name: &str) -> Result<bool, StoreError> {
        match &*self.backend {
            BackendImpl::Memory(m) => {
                let existed = m
                    .registry()
                    .scopes()
                    .remove(&StoredScope::key(name))
                    .is_some();
                m.registry().bump();
                Ok(existed)
            }
            BackendImpl::Redis(r) => r.delete_scope(name).await,
        }
    }

    /// Every stored scope, by name.
    pub async fn list_scopes(&self) -> Result<Vec<StoredScope>, StoreError> {
        match &*self.backend {
            BackendImpl::Memory(m) => Ok(m.registry().scopes().values().cloned().collect()),
            BackendImpl::Redis(r) => r.list_scopes().await,
        }
    }

    /// The registry's version: it changes whenever a stored scope or client does.
    pub async fn registry_version(&self) -> Result<u64, StoreError> {
        match &*self.backend {
            BackendImpl::Memory(m) => Ok(m.registry().version.load(Ordering::Acquire)),
            BackendImpl::Redis(r) => r.registry_version().await,
        }
    }
}
