//! The counters of one node, in the process: what the memory store (a single node) uses.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use super::{Key, WINDOW};
use crate::store::counters::Count;

/// Tracked keys before a sweep of stale windows is considered.
pub(super) const SWEEP_ABOVE: usize = 10_000;
/// Tracked keys at most. Past it (after a sweep) attempts on new keys are refused: failing
/// closed bounds memory against an attacker spraying addresses, at the cost of refusing
/// checks until old windows end.
const MAX_KEYS: usize = 500_000;

struct Window {
    started: Instant,
    /// Failed checks in the window that started at `started`.
    failures: u32,
    /// Checks reserved and not yet answered. They count against the limit too: a check may
    /// start only while `failures + in_flight` is under it.
    in_flight: u32,
}

impl Window {
    fn new(now: Instant) -> Window {
        Window {
            started: now,
            failures: 0,
            in_flight: 0,
        }
    }
}

#[derive(Default)]
pub(super) struct Local {
    windows: DashMap<Key, Window>,
    /// Size of the map after the last sweep: the next sweep waits until it has doubled, so
    /// sweeping costs O(1) amortised per new key.
    swept_at: AtomicUsize,
    sweeping: Mutex<()>,
}

impl Local {
    /// The longest wait among `keys` whose failures have reached their limit, if any.
    pub(super) fn refused(&self, keys: &[Key; 3]) -> Option<Duration> {
        let now = Instant::now();
        let mut wait = Duration::ZERO;
        for key in keys {
            if let Some(w) = self.windows.get(key)
                && w.started + WINDOW > now
                && w.failures >= key.limit()
            {
                wait = wait.max((w.started + WINDOW).saturating_duration_since(now));
            }
        }
        (!wait.is_zero()).then_some(wait)
    }

    /// Takes `keys` all or none.
    pub(super) fn take_all(&self, keys: &[Key; 3]) -> Count {
        let now = Instant::now();
        for (i, key) in keys.iter().enumerate() {
            let outcome = self.take(key, now);
            if outcome != Count::Taken {
                for k in &keys[..i] {
                    self.untake(k);
                }
                return outcome;
            }
        }
        Count::Taken
    }

    fn take(&self, key: &Key, now: Instant) -> Count {
        if !self.windows.contains_key(key) && self.windows.len() >= MAX_KEYS {
            return Count::Refused(WINDOW);
        }
        let mut w = self.windows.entry(key.clone()).or_insert(Window::new(now));
        if w.started + WINDOW <= now {
            w.started = now;
            w.failures = 0;
        }
        if w.failures >= key.limit() {
            Count::Refused((w.started + WINDOW).saturating_duration_since(now))
        } else if w.failures + w.in_flight >= key.limit() {
            Count::Busy
        } else {
            w.in_flight += 1;
            Count::Taken
        }
    }

    fn untake(&self, key: &Key) {
        if let Some(mut w) = self.windows.get_mut(key) {
            w.in_flight = w.in_flight.saturating_sub(1);
        }
    }

    /// A reserved check was answered: it failed, or it is given back.
    pub(super) fn finish(&self, keys: &[Key; 3], failed: bool) {
        for key in keys {
            self.finish_one(key, failed);
        }
    }

    fn finish_one(&self, key: &Key, failed: bool) {
        if let Some(mut w) = self.windows.get_mut(key) {
            w.in_flight = w.in_flight.saturating_sub(1);
            if failed {
                w.failures += 1;
            }
        }
    }

    /// Counts one event on `key` as a failure at once, if the limit allows it.
    pub(super) fn add(&self, key: &Key) -> Count {
        self.sweep_if_large();
        let outcome = self.take(key, Instant::now());
        if outcome == Count::Taken {
            self.finish_one(key, true);
        }
        outcome
    }

    pub(super) fn sweep_if_large(&self) {
        let len = self.windows.len();
        let threshold = self.swept_at.load(Ordering::Relaxed).max(SWEEP_ABOVE / 2) * 2;
        if len <= threshold {
            return;
        }
        // One sweeper at a time; the others go on counting.
        let Ok(_guard) = self.sweeping.try_lock() else {
            return;
        };
        let now = Instant::now();
        self.windows
            .retain(|_, w| w.in_flight > 0 || (w.failures > 0 && w.started + WINDOW > now));
        self.swept_at.store(self.windows.len(), Ordering::Relaxed);
    }

    pub(super) fn tracked(&self) -> usize {
        self.windows.len()
    }

    /// (failures, in flight) of `key`, for tests.
    #[cfg(test)]
    pub(super) fn counts(&self, key: &Key) -> Option<(u32, u32)> {
        self.windows.get(key).map(|w| (w.failures, w.in_flight))
    }
}
