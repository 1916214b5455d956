//! Slowing down guessing (SPEC §5 "Guessing"): password and client-secret checks are counted
//! in fixed 60-second windows, tightly per (account, address), loosely per account over all
//! addresses, and per address over all accounts. One address cannot lock a user out (it hits
//! its own tight limit long before the loose one), and many addresses together cannot guess
//! faster than the loose limit.
//!
//! An attempt is *reserved* before the secret is verified ([`Throttle::begin`]) and refunded
//! only when it succeeds, so N parallel wrong guesses count as N before any is answered: the
//! check and the count are one step per key, not a check now and a count after an awaited
//! argon2 run. Each node counts on its own (the store-backed counters are issue 10's).

use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// Failures allowed per (account, address) within [`WINDOW`].
pub const PER_ACCOUNT_AND_ADDRESS: u32 = 5;
/// Failures allowed per account over all addresses within [`WINDOW`].
pub const PER_ACCOUNT: u32 = 50;
/// Failures allowed per address over all accounts within [`WINDOW`].
pub const PER_ADDRESS: u32 = 20;
/// Authorization requests an address may park per [`WINDOW`]: with their 10-minute lifetime,
/// at most ten times this many pending records per address.
pub const PENDING_PER_ADDRESS: u32 = 60;
pub const WINDOW: Duration = Duration::from_secs(60);
/// Tracked keys before a sweep of stale windows is considered.
const SWEEP_ABOVE: usize = 10_000;
/// Tracked keys at most. Past it (after a sweep) attempts on new keys are refused: failing
/// closed bounds memory against an attacker spraying addresses, at the cost of refusing
/// checks until old windows end.
const MAX_KEYS: usize = 500_000;

/// Whose secret is being checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Account {
    User,
    Client,
}

/// A counter's subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Pair(Account, String, IpAddr),
    Account(Account, String),
    Address(IpAddr),
    /// Authorization requests parked (each a 10-minute record in the store).
    Pending(IpAddr),
}

impl Key {
    fn limit(&self) -> u32 {
        match self {
            Key::Pair(..) => PER_ACCOUNT_AND_ADDRESS,
            Key::Account(..) => PER_ACCOUNT,
            Key::Address(_) => PER_ADDRESS,
            Key::Pending(_) => PENDING_PER_ADDRESS,
        }
    }
}

/// IPv6 clients usually hold a whole /64: count them as one address, or an attacker would
/// get a fresh tight limit per address of its prefix.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
            }
        },
    }
}

struct Window {
    started: Instant,
    attempts: u32,
}

#[derive(Default)]
pub struct Throttle {
    windows: DashMap<Key, Window>,
    /// Size of the map after the last sweep: the next sweep waits until it has doubled, so
    /// sweeping costs O(1) amortised per new key.
    swept_at: AtomicUsize,
    sweeping: Mutex<()>,
}

/// A reserved attempt. Dropped as is, it stays counted as a failure; [`Attempt::refund`]
/// gives it back.
#[must_use = "an attempt counts as a failure unless it is refunded"]
pub struct Attempt<'t> {
    throttle: &'t Throttle,
    keys: [(Key, Instant); 3],
}

impl Attempt<'_> {
    /// The secret was right (or could not be checked at all): this attempt does not count.
    pub fn refund(self) {
        for (key, started) in &self.keys {
            self.throttle.release(key, *started);
        }
    }
}

impl Throttle {
    /// Reserves one attempt at `account`'s secret from `remote`: `Err(wait)` if any of its
    /// counters is at its limit (nothing is counted then), else the attempt, already counted.
    pub fn begin(
        &self,
        account: Account,
        name: &str,
        remote: IpAddr,
    ) -> Result<Attempt<'_>, Duration> {
        let remote = bucket(remote);
        let keys = [
            Key::Pair(account, name.to_owned(), remote),
            Key::Account(account, name.to_owned()),
            Key::Address(remote),
        ];
        self.sweep_if_large();
        let now = Instant::now();
        let mut taken: Vec<(Key, Instant)> = Vec::with_capacity(keys.len());
        for key in keys {
            match self.take(&key, now) {
                Ok(started) => taken.push((key, started)),
                Err(wait) => {
                    for (k, started) in &taken {
                        self.release(k, *started);
                    }
                    return Err(wait);
                }
            }
        }
        let keys: [(Key, Instant); 3] = taken
            .try_into()
            .unwrap_or_else(|_| unreachable!("three keys were taken"));
        Ok(Attempt {
            throttle: self,
            keys,
        })
    }

    /// Counts one parked authorization request from `remote`; `Err(wait)` past the limit.
    pub fn begin_pending(&self, remote: IpAddr) -> Result<(), Duration> {
        self.sweep_if_large();
        self.take(&Key::Pending(bucket(remote)), Instant::now())
            .map(|_| ())
    }

    /// Counts one attempt against `key` unless it is at its limit; returns its window start.
    fn take(&self, key: &Key, now: Instant) -> Result<Instant, Duration> {
        if !self.windows.contains_key(key) && self.windows.len() >= MAX_KEYS {
            return Err(WINDOW);
        }
        let mut w = self.windows.entry(key.clone()).or_insert(Window {
            started: now,
            attempts: 0,
        });
        if w.started + WINDOW <= now {
            *w = Window {
                started: now,
                attempts: 0,
            };
        }
        if w.attempts >= key.limit() {
            return Err((w.started + WINDOW).saturating_duration_since(now));
        }
        w.attempts += 1;
        Ok(w.started)
    }

    /// Gives back an attempt taken in the window that started at `started` (a window that
    /// has since started over owes nothing).
    fn release(&self, key: &Key, started: Instant) {
        if let Some(mut w) = self.windows.get_mut(key)
            && w.started == started
        {
            w.attempts = w.attempts.saturating_sub(1);
        }
    }

    fn sweep_if_large(&self) {
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
            .retain(|_, w| w.started + WINDOW > now && w.attempts > 0);
        self.swept_at.store(self.windows.len(), Ordering::Relaxed);
    }

    /// Counters tracked now (for tests of the bound).
    pub fn tracked(&self) -> usize {
        self.windows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn one_address_is_stopped_by_its_tight_limit_and_cannot_lock_the_user_out() {
        let t = Throttle::default();
        for _ in 0..PER_ACCOUNT_AND_ADDRESS {
            drop(t.begin(Account::User, "alice", ip(1)).expect("allowed"));
        }
        let wait = t
            .begin(Account::User, "alice", ip(1))
            .err()
            .expect("locked");
        assert!(wait <= WINDOW && wait > Duration::from_secs(50));
        // alice from elsewhere, and bob from the same address, are unaffected.
        t.begin(Account::User, "alice", ip(2))
            .expect("other address")
            .refund();
        t.begin(Account::User, "bob", ip(1))
            .expect("other user")
            .refund();
    }

    #[test]
    fn reservations_count_before_they_are_answered() {
        // N attempts in flight at once: the limit holds even though none has failed yet.
        let t = Throttle::default();
        let held: Vec<_> = (0..PER_ACCOUNT_AND_ADDRESS)
            .map(|_| t.begin(Account::Client, "app", ip(1)).expect("allowed"))
            .collect();
        assert!(t.begin(Account::Client, "app", ip(1)).is_err());
        // Successes give their attempt back.
        for a in held {
            a.refund();
        }
        assert!(t.begin(Account::Client, "app", ip(1)).is_ok());
    }

    #[test]
    fn many_addresses_meet_the_loose_account_limit() {
        let t = Throttle::default();
        let mut n = 0;
        'outer: for a in 0..=255u8 {
            for _ in 0..PER_ACCOUNT_AND_ADDRESS {
                match t.begin(Account::User, "alice", ip(a)) {
                    Ok(attempt) => drop(attempt),
                    Err(_) => break 'outer,
                }
                n += 1;
            }
        }
        assert_eq!(n, PER_ACCOUNT);
        assert!(t.begin(Account::User, "alice", ip(254)).is_err());
    }

    #[test]
    fn an_address_over_all_accounts_is_limited() {
        let t = Throttle::default();
        for i in 0..PER_ADDRESS {
            drop(
                t.begin(Account::User, &format!("u{i}"), ip(9))
                    .expect("allowed"),
            );
        }
        assert!(t.begin(Account::User, "fresh", ip(9)).is_err());
    }

    #[test]
    fn a_refused_attempt_counts_nothing() {
        let t = Throttle::default();
        for i in 0..PER_ADDRESS {
            drop(t.begin(Account::User, &format!("u{i}"), ip(7)).expect("ok"));
        }
        // Refused by the address key: the pair and account keys taken before it are given
        // back, so carol's own counters are untouched.
        assert!(t.begin(Account::User, "carol", ip(7)).is_err());
        for _ in 0..PER_ACCOUNT_AND_ADDRESS {
            drop(t.begin(Account::User, "carol", ip(8)).expect("ok"));
        }
        assert_eq!(
            t.windows
                .get(&Key::Account(Account::User, "carol".into()))
                .map(|w| w.attempts),
            Some(PER_ACCOUNT_AND_ADDRESS)
        );
    }

    #[test]
    fn parked_requests_per_address_are_bounded() {
        let t = Throttle::default();
        for _ in 0..PENDING_PER_ADDRESS {
            t.begin_pending(ip(3)).expect("allowed");
        }
        assert!(t.begin_pending(ip(3)).is_err());
        assert!(t.begin_pending(ip(4)).is_ok());
        // Separate from guessing: alice may still sign in from that address.
        assert!(t.begin(Account::User, "alice", ip(3)).is_ok());
    }

    #[test]
    fn ipv6_addresses_of_one_prefix_share_counters() {
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        assert_eq!(bucket(a), bucket(b));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().expect("ip");
        assert_eq!(bucket(mapped), ip(1));
    }

    #[test]
    fn stale_windows_are_swept_and_the_map_stays_bounded() {
        let t = Throttle::default();
        // Successful checks leave zero-count windows behind; a sweep clears them.
        for i in 0..SWEEP_ABOVE as u32 {
            t.begin(Account::User, &format!("u{i}"), IpAddr::from(i.to_be_bytes()))
                .expect("ok")
                .refund();
        }
        assert!(
            t.tracked() <= SWEEP_ABOVE + 3,
            "tracked {} keys, sweep threshold {SWEEP_ABOVE}",
            t.tracked()
        );
    }
}
