//! The embedded store: everything in this process's memory, lost on restart.
//!
//! Lookups are a `DashMap` read and an `Arc` clone, so this backend needs no cache in front.
//! A sweeper thread drops records [`super::EXPIRED_RETENTION`] after they expire.
//!
//! Lock order, everywhere: a grant's entry in `grants` first, then the token maps. A
//! rotation holds its grant's entry for the whole exchange, which makes it one critical
//! section against other rotations and against revoking that grant.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use super::records::{CodeUse, RecordKind};
use super::{Rotate, Rotation, keep_until};
use crate::config::Client;
use crate::token::{
    AccessEntry, AccessToken, DigestHasher, Millis, RefreshEntry, RefreshToken, TokenHash,
    now_millis,
};

const SWEEP_EVERY: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Member {
    Access(TokenHash),
    Refresh(TokenHash),
}

/// A grant: its tokens, and whether it was revoked (then no rotation may add to it).
#[derive(Default)]
struct GrantState {
    members: Vec<Member>,
    revoked: bool,
}

struct Record {
    value: String,
    expires: Instant,
    used: bool,
}

#[derive(Default)]
struct Maps {
    access: DashMap<TokenHash, Arc<AccessEntry>, DigestHasher>,
    refresh: DashMap<TokenHash, RefreshEntry, DigestHasher>,
    grants: DashMap<String, GrantState>,
    records: DashMap<(RecordKind, String), Record>,
    clients: DashMap<String, Client>,
}

pub struct MemoryStore {
    maps: Arc<Maps>,
    registry: super::registry::MemoryRegistry,
    /// Dropping it (with the store) tells the sweeper thread to end.
    _stop_sweeper: mpsc::Sender<()>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::with_sweep_interval(SWEEP_EVERY)
    }

    /// A store whose sweeper runs every `every` (tests use a short one).
    pub fn with_sweep_interval(every: Duration) -> MemoryStore {
        let maps = Arc::new(Maps::default());
        let (stop, stopped) = mpsc::channel();
        // A sweep walks every map whole (a million tokens take tens of milliseconds), so it
        // runs on a thread of its own: on a runtime worker it would stall every request
        // scheduled there for that long. It holds a weak reference, and ends when the store
        // is dropped (its channel disconnects).
        let weak = Arc::downgrade(&maps);
        let spawned = std::thread::Builder::new()
            .name("tollgate-sweeper".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    if !sweep(&weak) {
                        return;
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start the memory store's sweeper thread");
        }
        MemoryStore {
            maps,
            registry: Default::default(),
            _stop_sweeper: stop,
        }
    }

    pub fn get_access(&self, hash: &TokenHash) -> Option<Arc<AccessEntry>> {
        self.maps.access.get(hash).map(|e| Arc::clone(&e))
    }

    pub fn issue(
        &self,
        access_hash: &TokenHash,
        access: &AccessToken,
        refresh: Option<(&TokenHash, &RefreshToken)>,
    ) {
        let m = &self.maps;
        m.access.insert(
            *access_hash,
            Arc::new(AccessEntry {
                token: access.clone().interned(),
                revoked: false,
            }),
        );
        let mut members = vec![Member::Access(*access_hash)];
        if let Some((hash, token)) = refresh {
            m.refresh.insert(*hash, RefreshEntry::new(token.clone()));
            members.push(Member::Refresh(*hash));
        }
        m.grants
            .entry(access.grant_id.clone())
            .or_default()
            .members
            .extend(members);
    }

    /// The refresh tokens of a grant (grant first, then the token map: the lock order).
    pub fn grant_refresh(&self, grant_id: &str) -> Vec<RefreshEntry> {
        let Some(grant) = self.maps.grants.get(grant_id) else {
            return Vec::new();
        };
        grant
            .members
            .iter()
            .filter_map(|m| match m {
                Member::Refresh(h) => self.maps.refresh.get(h).map(|e| e.clone()),
                Member::Access(_) => None,
            })
            .collect()
    }

    pub fn get_refresh(&self, hash: &TokenHash) -> Option<RefreshEntry> {
        self.maps.refresh.get(hash).map(|e| e.clone())
    }

    /// See [`super::TokenStore::rotate_refresh`]. The grant's entry is held throughout.
    pub fn rotate_refresh(&self, r: &Rotation<'_>, now: Millis) -> Rotate {
        let m = &self.maps;
        let Some(grant_id) = m.refresh.get(r.old).map(|e| e.token.grant_id.clone()) else {
            return Rotate::Missing;
        };
        let mut grant = m.grants.entry(grant_id).or_default();
        {
            // Checked and retired under the grant's lock; released before the refresh map is
            // written again (the new token may live in the same shard).
            let Some(mut old) = m.refresh.get_mut(r.old) else {
                return Rotate::Missing;
            };
            if old.revoked || grant.revoked {
                return Rotate::Revoked;
            }
            if old.retired_at.is_some() {
                return Rotate::AlreadyRetired;
            }
            if old.token.is_expired(now) {
                return Rotate::Missing;
            }
            old.retired_at = Some(now);
            old.successor = r.successor.map(str::to_owned);
        }
        m.access.insert(
            *r.access_hash,
            Arc::new(AccessEntry {
                token: r.access.clone().interned(),
                revoked: false,
            }),
        );
        grant.members.push(Member::Access(*r.access_hash));
        if let Some((hash, token)) = r.refresh {
            m.refresh.insert(*hash, RefreshEntry::new(token.clone()));
            grant.members.push(Member::Refresh(*hash));
        }
        let retired_before = now.saturating_sub(r.grace.as_millis() as u64);
        grant
            .members
            .retain(|member| self.still_member(member, now, retired_before));
        Rotate::Rotated
    }

    /// Whether a grant must still list `member` so revoking the grant reaches it: not for
    /// tokens that are gone or expired, nor for refresh tokens retired before
    /// `retired_before` (their grace window is over; presenting one again is reuse anyway).
    fn still_member(&self, member: &Member, now: Millis, retired_before: Millis) -> bool {
        match member {
            Member::Access(h) => self
                .maps
                .access
                .get(h)
                .is_some_and(|e| !e.token.is_expired(now)),
            Member::Refresh(h) => self.maps.refresh.get(h).is_some_and(|e| {
                !e.token.is_expired(now) && e.retired_at.is_none_or(|at| at > retired_before)
            }),
        }
    }

    /// How many tokens a grant lists (for the pruning tests).
    #[cfg(test)]
    fn member_count(&self, grant_id: &str) -> usize {
        self.maps
            .grants
            .get(grant_id)
            .map_or(0, |g| g.members.len())
    }

    /// Writes `client`; with `must_exist`, only over one that is there (false otherwise).
    pub fn put_client(&self, client: &Client, must_exist: bool) -> bool {
        match self.maps.clients.entry(client.client_id.clone()) {
            dashmap::mapref::entry::Entry::Occupied(mut e) => {
                e.insert(client.clone());
                true
            }
            dashmap::mapref::entry::Entry::Vacant(_) if must_exist => false,
            dashmap::mapref::entry::Entry::Vacant(e) => {
                e.insert(client.clone());
                true
            }
        }
    }

    pub(super) fn registry(&self) -> &super::registry::MemoryRegistry {
        &self.registry
    }

    pub fn get_client(&self, client_id: &str) -> Option<Client> {
        self.maps.clients.get(client_id).map(|c| c.clone())
    }

    pub fn delete_client(&self, client_id: &str) -> bool {
        self.maps.clients.remove(client_id).is_some()
    }

    pub fn list_clients(&self) -> Vec<Client> {
        self.maps.clients.iter().map(|c| c.clone()).collect()
    }

    /// Access tokens of a client and/or user (both `None` = all).
    pub fn access_tokens(
        &self,
        client_id: Option<&str>,
        username: Option<&str>,
    ) -> Vec<(TokenHash, Arc<AccessEntry>)> {
        self.maps
            .access
            .iter()
            .filter(|e| client_id.is_none_or(|c| &*e.token.client_id == c))
            .filter(|e| username.is_none_or(|u| e.token.username.as_deref() == Some(u)))
            .map(|e| (*e.key(), Arc::clone(e.value())))
            .collect()
    }

    pub fn put_record(&self, kind: RecordKind, key: &str, value: &str, ttl: Duration) {
        self.maps.records.insert(
            (kind, key.to_owned()),
            Record {
                value: value.to_owned(),
                expires: Instant::now() + ttl,
                used: false,
            },
        );
    }

    pub fn get_record(&self, kind: RecordKind, key: &str) -> Option<String> {
        let r = self.maps.records.get(&(kind, key.to_owned()))?;
        (r.expires > Instant::now()).then(|| r.value.clone())
    }

    pub fn delete_record(&self, kind: RecordKind, key: &str) {
        self.maps.records.remove(&(kind, key.to_owned()));
    }

    /// Removes and returns a live record: whoever takes it has it alone.
    pub fn take_record(&self, kind: RecordKind, key: &str) -> Option<String> {
        let (_, r) = self.maps.records.remove(&(kind, key.to_owned()))?;
        (r.expires > Instant::now()).then_some(r.value)
    }

    /// Creates the record only if no live one exists; true if this call created it.
    pub fn create_record(&self, kind: RecordKind, key: &str, value: &str, ttl: Duration) -> bool {
        let now = Instant::now();
        let mut created = false;
        self.maps
            .records
            .entry((kind, key.to_owned()))
            .and_modify(|r| {
                if r.expires <= now {
                    *r = Record {
                        value: value.to_owned(),
                        expires: now + ttl,
                        used: false,
                    };
                    created = true;
                }
            })
            .or_insert_with(|| {
                created = true;
                Record {
                    value: value.to_owned(),
                    expires: now + ttl,
                    used: false,
                }
            });
        created
    }

    pub fn use_code(&self, key: &str) -> CodeUse {
        match self
            .maps
            .records
            .get_mut(&(RecordKind::Code, key.to_owned()))
        {
            Some(r) if r.expires <= Instant::now() => CodeUse::Missing,
            Some(r) if r.used => CodeUse::AlreadyUsed,
            Some(mut r) => {
                r.used = true;
                CodeUse::First
            }
            None => CodeUse::Missing,
        }
    }

    pub fn revoke_access(&self, hash: &TokenHash) -> bool {
        match self.maps.access.get_mut(hash) {
            Some(mut e) => {
                if !e.revoked {
                    *e = Arc::new(AccessEntry {
                        token: e.token.clone(),
                        revoked: true,
                    });
                }
                true
            }
            None => false,
        }
    }

    /// Revokes every member of the grant; returns the access-token hashes it revoked. The
    /// grant is marked revoked and its members read under one lock, so a rotation either
    /// happened before (its tokens are among the members) or fails.
    pub fn revoke_grant(&self, grant_id: &str) -> Vec<TokenHash> {
        let members = match self.maps.grants.get_mut(grant_id) {
            Some(mut grant) => {
                grant.revoked = true;
                grant.members.clone()
            }
            None => Vec::new(),
        };
        let mut revoked = Vec::new();
        for member in members {
            match member {
                Member::Access(h) => {
                    if self.revoke_access(&h) {
                        revoked.push(h);
                    }
                }
                Member::Refresh(h) => {
                    if let Some(mut e) = self.maps.refresh.get_mut(&h) {
                        e.revoked = true;
                    }
                }
            }
        }
        revoked
    }
}

/// One sweep; `false` once the store is gone.
fn sweep(maps: &Weak<Maps>) -> bool {
    let Some(maps) = maps.upgrade() else {
        return false;
    };
    let now = now_millis();
    let live = |expires_at: Option<Millis>| keep_until(expires_at).is_none_or(|t| t > now);
    maps.refresh.retain(|_, e| live(e.token.expires_at));
    // An expired access token is kept while the refresh token issued with it is live (the
    // admin listing shows it, SPEC §9). Collected first: no lock on two maps at once.
    let refreshable: std::collections::HashSet<(String, Millis)> = maps
        .refresh
        .iter()
        .filter(|e| !e.revoked && e.retired_at.is_none() && !e.token.is_expired(now))
        .map(|e| (e.token.grant_id.clone(), e.token.issued_at))
        .collect();
    maps.access.retain(|_, e| {
        live(e.token.expires_at)
            || refreshable.contains(&(e.token.grant_id.clone(), e.token.issued_at))
    });
    let instant = Instant::now();
    maps.records.retain(|_, r| r.expires > instant);
    maps.grants.retain(|_, grant| {
        grant.members.retain(|m| match m {
            Member::Access(h) => maps.access.contains_key(h),
            Member::Refresh(h) => maps.refresh.contains_key(h),
        });
        !grant.members.is_empty()
    });
    true
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
