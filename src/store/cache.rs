//! A node's local cache of access-token records, in front of the shared store.
//!
//! Rules it keeps:
//! - an entry lives at most `cache_ttl`, and a valid token's entry never past its expiry;
//! - concurrent misses for one token make one store lookup (the others wait for its answer;
//!   if the one looking up is cancelled, a waiter takes over, and the last one to leave
//!   removes the in-flight entry, so cancelled lookups leave nothing behind);
//! - a full cache makes room a batch at a time (expired entries, then arbitrary ones, down
//!   to 7/8 of capacity): one pass over the entries per capacity/8 inserts, O(1) amortised;
//! - unknown tokens are never cached;
//! - a revocation drops the entry at once, and an answer fetched while a revocation arrived is
//!   not cached (it may predate the revocation);
//! - the cache is used only while the node is subscribed to revocations (`set_live`).
//!
//! Sized for a million entries per node: an entry is keyed by the last 128 bits of the
//! token's SHA-256 (the first two bytes of a `TokenHash` are the grant's slot tag, see
//! `token::SlotTag`; a false hit would need a 2^128 second preimage; the store itself uses the
//! full hash) and holds its deadline as milliseconds on the cache's own clock.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::sync::OnceCell;

use super::StoreError;
use crate::token::{AccessEntry, DigestHasher, TokenHash, now_millis};

type Fetched = Result<Option<Arc<AccessEntry>>, StoreError>;

/// The cache's key for a token: the second half of its hash (pure SHA-256 digest bytes).
type Key = u128;

fn key(hash: &TokenHash) -> Key {
    let mut half = [0u8; 16];
    half.copy_from_slice(&hash.0[16..]);
    u128::from_le_bytes(half)
}

struct Cached {
    entry: Arc<AccessEntry>,
    /// Milliseconds since the cache's `epoch`.
    until: u64,
}

/// Counters for metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheStats {
    pub entries: usize,
    pub hits: u64,
    pub misses: u64,
    pub live: bool,
    /// Revocation messages received on the store channel.
    pub messages: u64,
}

pub struct TokenCache {
    entries: DashMap<Key, Cached, DigestHasher>,
    inflight: DashMap<Key, Arc<OnceCell<Fetched>>, DigestHasher>,
    epoch: Instant,
    ttl: Duration,
    capacity: usize,
    /// Set while one caller makes room; the others skip caching rather than wait.
    evicting: AtomicBool,
    /// Passes over the whole cache made to make room (the bound the tests check).
    scans: AtomicU64,
    live: AtomicBool,
    /// Bumped by every invalidation; a fetch that saw it change does not cache its answer.
    generation: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    messages: AtomicU64,
}

impl TokenCache {
    pub fn new(ttl: Duration, capacity: usize) -> TokenCache {
        TokenCache {
            entries: DashMap::default(),
            inflight: DashMap::default(),
            epoch: Instant::now(),
            ttl,
            capacity,
            evicting: AtomicBool::new(false),
            scans: AtomicU64::new(0),
            live: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            messages: AtomicU64::new(0),
        }
    }

    /// The cached record, or the store's answer through `fetch` (one fetch per token at a time).
    pub async fn get_or_fetch<F, Fut>(&self, hash: TokenHash, fetch: F) -> Fetched
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<AccessEntry>, StoreError>>,
    {
        if !self.live.load(Ordering::Acquire) {
            return fetch().await.map(|found| found.map(Arc::new));
        }
        let hash_key = key(&hash);
        if let Some(hit) = self.entries.get(&hash_key)
            && hit.until > self.clock()
        {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(Arc::clone(&hit.entry)));
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let waiter = Waiter {
            cache: self,
            key: hash_key,
            cell: Some(Arc::clone(
                self.inflight
                    .entry(hash_key)
                    .or_insert_with(|| Arc::new(OnceCell::new()))
                    .value(),
            )),
        };
        // If this future is dropped while fetching, tokio's `OnceCell` lets one of the other
        // waiters run its own fetch; `waiter`'s drop cleans up the in-flight entry.
        waiter
            .cell()
            .get_or_init(|| async {
                let generation = self.generation.load(Ordering::Acquire);
                let fetched = fetch().await.map(|found| found.map(Arc::new));
                if let Ok(Some(entry)) = &fetched {
                    self.insert(hash_key, entry, generation);
                }
                fetched
            })
            .await
            .clone()
    }

    /// Milliseconds since this cache was made.
    fn clock(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn insert(&self, hash: Key, entry: &Arc<AccessEntry>, generation: u64) {
        if !self.live.load(Ordering::Acquire) {
            return;
        }
        if self.entries.len() >= self.capacity && !self.make_room() {
            return;
        }
        let now = self.clock();
        let mut until = now + self.ttl.as_millis() as u64;
        if !entry.revoked {
            // A valid token is trusted no longer than it lives; after that the store says
            // "expired" (and that answer is final, so it may be cached for the full ttl).
            if let Some(expires_at) = entry.token.expires_at {
                until = until.min(now + expires_at.saturating_sub(now_millis()));
            }
        }
        self.entries.insert(
            hash,
            Cached {
                entry: Arc::clone(entry),
                until,
            },
        );
        // Re-check after inserting: an invalidation that raced the insert must win.
        if self.generation.load(Ordering::Acquire) != generation {
            self.entries.remove(&hash);
        }
    }

    /// Counts one revocation message from the store channel.
    pub fn note_message(&self) {
        self.messages.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops one token (it was revoked).
    pub fn invalidate(&self, hash: &TokenHash) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.remove(&key(hash));
    }

    /// Turns the cache on (subscribed) or off (subscription lost); both start from empty.
    pub fn set_live(&self, live: bool) {
        if !live {
            self.live.store(false, Ordering::Release);
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.clear();
        if live {
            self.live.store(true, Ordering::Release);
        }
    }

    /// Makes room in a full cache: one pass that drops expired entries and, while the cache
    /// is above 7/8 of its capacity, arbitrary ones (hash order, so effectively random).
    /// The next capacity/8 inserts then find room without a pass. Returns whether there is
    /// room now; `false` also when another caller is already at it (this entry is then
    /// simply not cached: the next miss fetches it again).
    fn make_room(&self) -> bool {
        if self.evicting.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.scans.fetch_add(1, Ordering::Relaxed);
        let now = self.clock();
        let low = self.capacity - (self.capacity / 8).max(1);
        let mut excess = self.entries.len().saturating_sub(low);
        self.entries.retain(|_, c| {
            if c.until <= now || excess > 0 {
                excess = excess.saturating_sub(1);
                return false;
            }
            true
        });
        self.evicting.store(false, Ordering::Release);
        self.entries.len() < self.capacity
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.entries.len(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            live: self.live.load(Ordering::Relaxed),
            messages: self.messages.load(Ordering::Relaxed),
        }
    }
}

/// One caller's interest in an in-flight lookup. Dropped when the lookup is answered or the
/// caller's future is cancelled; the last waiter to go (or any, once there is an answer)
/// removes the entry, so a cancelled lookup cannot leak it.
struct Waiter<'a> {
    cache: &'a TokenCache,
    key: Key,
    cell: Option<Arc<OnceCell<Fetched>>>,
}

impl Waiter<'_> {
    fn cell(&self) -> &OnceCell<Fetched> {
        // `None` only inside `drop`; an internal invariant, nothing a request can change.
        self.cell
            .as_deref()
            .expect("a waiter holds its cell until dropped")
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let Some(cell) = self.cell.take() else {
            return;
        };
        // Our reference goes first, so the last waiter sees only the map's: every waiter
        // checks after letting go, so whichever checks last finds the count at 1.
        let ptr = Arc::as_ptr(&cell);
        drop(cell);
        self.cache.inflight.remove_if(&self.key, |_, c| {
            Arc::as_ptr(c) == ptr && (c.initialized() || Arc::strong_count(c) == 1)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::AccessToken;
    use std::sync::atomic::AtomicUsize;

    fn entry(expires_in_ms: Option<u64>) -> AccessEntry {
        AccessEntry {
            token: AccessToken {
                client_id: "c".into(),
                username: None,
                scopes: vec!["s".into()].into(),
                issued_at: now_millis(),
                expires_at: expires_in_ms.map(|ms| now_millis() + ms),
                grant_id: "g".into(),
                refreshes_used: 0,
            },
            revoked: false,
        }
    }

    #[tokio::test]
    async fn concurrent_misses_make_one_fetch() {
        let cache = Arc::new(TokenCache::new(Duration::from_secs(30), 100));
        cache.set_live(true);
        let fetches = Arc::new(AtomicUsize::new(0));
        let hash = TokenHash::of("t");
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (cache, fetches) = (Arc::clone(&cache), Arc::clone(&fetches));
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch(hash, || async {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(Some(entry(Some(60_000))))
                    })
                    .await
            }));
        }
        for t in tasks {
            assert!(t.await.expect("task").expect("fetch").is_some());
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn unknown_tokens_are_not_cached_and_revocations_drop_entries() {
        let cache = TokenCache::new(Duration::from_secs(30), 100);
        cache.set_live(true);
        let hash = TokenHash::of("t");
        let got = cache.get_or_fetch(hash, || async { Ok(None) }).await;
        assert!(got.expect("fetch").is_none());
        assert_eq!(cache.stats().entries, 0);

        cache
            .get_or_fetch(hash, || async { Ok(Some(entry(None))) })
            .await
            .expect("fetch");
        assert_eq!(cache.stats().entries, 1);
        cache.invalidate(&hash);
        assert_eq!(cache.stats().entries, 0);
    }

    #[tokio::test]
    async fn not_live_means_not_used() {
        let cache = TokenCache::new(Duration::from_secs(30), 100);
        let hash = TokenHash::of("t");
        cache
            .get_or_fetch(hash, || async { Ok(Some(entry(None))) })
            .await
            .expect("fetch");
        assert_eq!(
            cache.stats().entries,
            0,
            "nothing cached while not subscribed"
        );
        cache.set_live(true);
        cache
            .get_or_fetch(hash, || async { Ok(Some(entry(None))) })
            .await
            .expect("fetch");
        cache.set_live(false);
        assert_eq!(
            cache.stats().entries,
            0,
            "losing the subscription empties the cache"
        );
    }

    #[tokio::test]
    async fn entries_never_outlive_the_token() {
        let cache = TokenCache::new(Duration::from_secs(30), 100);
        cache.set_live(true);
        let hash = TokenHash::of("t");
        cache
            .get_or_fetch(hash, || async { Ok(Some(entry(Some(0)))) })
            .await
            .expect("fetch");
        let refetched = AtomicUsize::new(0);
        cache
            .get_or_fetch(hash, || async {
                refetched.fetch_add(1, Ordering::SeqCst);
                Ok(Some(entry(Some(0))))
            })
            .await
            .expect("fetch");
        assert_eq!(
            refetched.load(Ordering::SeqCst),
            1,
            "an expired entry is not served"
        );
    }

    #[tokio::test]
    async fn capacity_is_respected() {
        let cache = TokenCache::new(Duration::from_secs(30), 2);
        cache.set_live(true);
        for i in 0..5 {
            let hash = TokenHash::of(&i.to_string());
            cache
                .get_or_fetch(hash, || async { Ok(Some(entry(None))) })
                .await
                .expect("fetch");
        }
        assert!(cache.stats().entries <= 2);
    }

    /// A full cache of live entries still takes new ones, and makes room a batch at a time:
    /// one pass over the cache per capacity/8 inserts, not one per miss.
    #[tokio::test]
    async fn a_full_cache_evicts_in_batches() {
        const CAPACITY: usize = 64;
        let cache = TokenCache::new(Duration::from_secs(30), CAPACITY);
        cache.set_live(true);
        let inserts = 1000;
        for i in 0..inserts {
            let hash = TokenHash::of(&format!("t{i}"));
            cache
                .get_or_fetch(hash, || async { Ok(Some(entry(None))) })
                .await
                .expect("fetch");
            assert!(cache.stats().entries <= CAPACITY);
        }
        let scans = cache.scans.load(Ordering::Relaxed);
        assert!(
            scans <= (inserts / (CAPACITY / 8)) as u64,
            "{scans} full passes for {inserts} inserts"
        );
        let hits = cache.stats().hits;
        let newest = TokenHash::of(&format!("t{}", inserts - 1));
        cache
            .get_or_fetch(newest, || async {
                panic!("the newest entry was not cached")
            })
            .await
            .expect("hit");
        assert_eq!(cache.stats().hits, hits + 1);
    }

    /// The only caller waiting for a lookup is cancelled: nothing stays in flight.
    #[tokio::test]
    async fn a_cancelled_lookup_leaves_no_inflight_entry() {
        let cache = TokenCache::new(Duration::from_secs(30), 100);
        cache.set_live(true);
        for i in 0..10 {
            let hash = TokenHash::of(&format!("slow{i}"));
            let lookup = cache.get_or_fetch(hash, std::future::pending);
            let cancelled = tokio::time::timeout(Duration::from_millis(5), lookup).await;
            assert!(cancelled.is_err(), "the lookup cannot finish");
        }
        assert_eq!(
            cache.inflight.len(),
            0,
            "cancelled lookups leaked in-flight entries"
        );
    }

    /// The caller doing the lookup is cancelled while another waits on it: the other takes
    /// over (runs its own fetch) instead of waiting forever, and nothing is left in flight.
    #[tokio::test]
    async fn a_cancelled_leader_does_not_strand_its_waiters() {
        let cache = Arc::new(TokenCache::new(Duration::from_secs(30), 100));
        cache.set_live(true);
        let hash = TokenHash::of("t");
        let leader = {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move { cache.get_or_fetch(hash, std::future::pending).await })
        };
        while cache.inflight.is_empty() {
            tokio::task::yield_now().await;
        }
        let follower = {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move {
                cache
                    .get_or_fetch(hash, || async { Ok(Some(entry(None))) })
                    .await
            })
        };
        // The follower is queued once it holds the cell too (map, leader, follower).
        while cache
            .inflight
            .get(&key(&hash))
            .is_some_and(|c| Arc::strong_count(c.value()) < 3)
        {
            tokio::task::yield_now().await;
        }
        leader.abort();
        let answered = tokio::time::timeout(Duration::from_secs(2), follower).await;
        let found = answered.expect("the follower was stranded").expect("task");
        assert!(found.expect("fetch").is_some());
        assert_eq!(cache.inflight.len(), 0);
    }
}
