//! The embedded store: everything in this process's memory, lost on restart.
//!
//! Lookups are a `DashMap` read and an `Arc` clone, so this backend needs no cache in front.
//! A sweeper drops records [`super::EXPIRED_RETENTION`] after they expire.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use super::records::{CodeUse, RecordKind};
use super::{Retire, keep_until};
use crate::config::Client;
use crate::token::{
    AccessEntry, AccessToken, Millis, RefreshEntry, RefreshToken, TokenHash, now_millis,
};

const SWEEP_EVERY: Duration = Duration::from_secs(60);

#[derive(Clone, Copy)]
enum Member {
    Access(TokenHash),
    Refresh(TokenHash),
}

struct Record {
    value: String,
    expires: Instant,
    used: bool,
}

#[derive(Default)]
struct Maps {
    access: DashMap<TokenHash, Arc<AccessEntry>>,
    refresh: DashMap<TokenHash, RefreshEntry>,
    grants: DashMap<String, Vec<Member>>,
    records: DashMap<(RecordKind, String), Record>,
    clients: DashMap<String, Client>,
}

pub struct MemoryStore {
    maps: Arc<Maps>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        let maps = Arc::new(Maps::default());
        // The sweeper holds a weak reference so dropping the store ends it.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(sweep(Arc::downgrade(&maps)));
        }
        MemoryStore { maps }
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
            m.refresh.insert(
                *hash,
                RefreshEntry {
                    token: token.clone(),
                    retired_at: None,
                    revoked: false,
                    successor: None,
                },
            );
            members.push(Member::Refresh(*hash));
        }
        m.grants
            .entry(access.grant_id.clone())
            .or_default()
            .extend(members);
    }

    pub fn get_refresh(&self, hash: &TokenHash) -> Option<RefreshEntry> {
        self.maps.refresh.get(hash).map(|e| e.clone())
    }

    pub fn retire_refresh(&self, hash: &TokenHash, now: Millis) -> Retire {
        match self.maps.refresh.get_mut(hash) {
            None => Retire::Missing,
            Some(e) if e.retired_at.is_some() => Retire::AlreadyRetired,
            Some(mut e) => {
                e.retired_at = Some(now);
                Retire::Retired
            }
        }
    }

    pub fn set_refresh_successor(&self, hash: &TokenHash, sealed: &str) {
        if let Some(mut e) = self.maps.refresh.get_mut(hash) {
            e.successor = Some(sealed.to_owned());
        }
    }

    pub fn put_client(&self, client: &Client) {
        self.maps
            .clients
            .insert(client.client_id.clone(), client.clone());
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

    /// Revokes every member of the grant; returns the access-token hashes it revoked.
    pub fn revoke_grant(&self, grant_id: &str) -> Vec<TokenHash> {
        let members = self
            .maps
            .grants
            .get(grant_id)
            .map(|m| m.clone())
            .unwrap_or_default();
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

async fn sweep(maps: Weak<Maps>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(maps) = maps.upgrade() else { return };
        let now = now_millis();
        let live = |expires_at: Option<Millis>| keep_until(expires_at).is_none_or(|t| t > now);
        maps.access.retain(|_, e| live(e.token.expires_at));
        maps.refresh.retain(|_, e| live(e.token.expires_at));
        let instant = Instant::now();
        maps.records.retain(|_, r| r.expires > instant);
        maps.grants.retain(|_, members| {
            members.retain(|m| match m {
                Member::Access(h) => maps.access.contains_key(h),
                Member::Refresh(h) => maps.refresh.contains_key(h),
            });
            !members.is_empty()
        });
    }
}
