//! Slowing down guessing (SPEC §5 "Guessing"): password and client-secret checks are counted
//! in fixed 60-second windows, tightly per (account, address), loosely per account over all
//! addresses, and per address over all accounts. One address cannot lock a user out (it hits
//! its own tight limit long before the loose one), and many addresses together cannot guess
//! faster than the loose limit.
//!
//! A check is *reserved* before the secret is verified ([`Throttle::begin`]) and refunded
//! only when it succeeds, so N parallel wrong guesses count as N before any is answered:
//! checks in flight count against the limit, and one that would pass it waits for their
//! answers instead of running. Each node counts on its own (store-backed counters are the
//! Redis Cluster issue's).

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

/// Longest a check waits for earlier checks of the same key to be answered.
const BUSY_WAIT: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct Throttle {
    windows: DashMap<Key, Window>,
    /// Woken whenever a reserved check is answered, for checks waiting on it.
    answered: tokio::sync::Notify,
    /// Size of the map after the last sweep: the next sweep waits until it has doubled, so
    /// sweeping costs O(1) amortised per new key.
    swept_at: AtomicUsize,
    sweeping: Mutex<()>,
}

/// A reserved check. Dropped as is (the secret was wrong, or the request went away), it
/// counts as a failure; [`Attempt::refund`] gives it back.
#[must_use = "an attempt counts as a failure unless it is refunded"]
pub struct Attempt<'t> {
    throttle: &'t Throttle,
    keys: Option<[Key; 3]>,
}

impl Attempt<'_> {
    /// The secret was right (or could not be checked at all): this check does not count.
    pub fn refund(mut self) {
        if let Some(keys) = self.keys.take() {
            self.throttle.finish(&keys, false);
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if let Some(keys) = self.keys.take() {
            self.throttle.finish(&keys, true);
        }
    }
}

/// What one key says about a new check.
enum Take {
    Taken,
    /// Earlier checks in flight fill the limit: wait for their answers.
    Busy,
    /// The limit is reached by failures: refuse for this long.
    Refused(Duration),
}

fn keys_of(account: Account, name: &str, remote: IpAddr) -> [Key; 3] {
    let remote = bucket(remote);
    [
        Key::Pair(account, name.to_owned(), remote),
        Key::Account(account, name.to_owned()),
        Key::Address(remote),
    ]
}

impl Throttle {
    /// Is a check of `account`'s secret from `remote` refused now? Counts nothing. For the
    /// shortcut that accepts a secret verified moments ago without a new check: a locked
    /// account stays locked for it too.
    pub fn refused(&self, account: Account, name: &str, remote: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let mut wait = Duration::ZERO;
        for key in keys_of(account, name, remote) {
            if let Some(w) = self.windows.get(&key)
                && w.started + WINDOW > now
                && w.failures >= key.limit()
            {
                wait = wait.max((w.started + WINDOW).saturating_duration_since(now));
            }
        }
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    /// Reserves one check of `account`'s secret from `remote`, counted before it runs.
    /// `Err(wait)` if a counter is at its limit with failures (nothing is counted then).
    /// While checks already in flight fill a limit, waits for their answers, so N parallel
    /// wrong guesses are verified at most up to the limit, and N parallel right ones all pass.
    pub async fn begin(
        &self,
        account: Account,
        name: &str,
        remote: IpAddr,
    ) -> Result<Attempt<'_>, Duration> {
        let keys = keys_of(account, name, remote);
        self.sweep_if_large();
        let deadline = tokio::time::Instant::now() + BUSY_WAIT;
        loop {
            // Register for wake-ups before looking, so an answer in between is not missed.
            let answered = self.answered.notified();
            match self.take_all(&keys) {
                Take::Taken => {
                    return Ok(Attempt {
                        throttle: self,
                        keys: Some(keys),
                    });
                }
                Take::Refused(wait) => return Err(wait),
                Take::Busy => {
                    if tokio::time::timeout_at(deadline, answered).await.is_err() {
                        return Err(Duration::from_secs(1));
                    }
                }
            }
        }
    }

    /// Takes `keys` all or none.
    fn take_all(&self, keys: &[Key; 3]) -> Take {
        let now = Instant::now();
        for (i, key) in keys.iter().enumerate() {
            let outcome = self.take(key, now);
            if !matches!(outcome, Take::Taken) {
                for k in &keys[..i] {
                    self.untake(k);
                }
                return outcome;
            }
        }
        Take::Taken
    }

    fn take(&self, key: &Key, now: Instant) -> Take {
        if !self.windows.contains_key(key) && self.windows.len() >= MAX_KEYS {
            return Take::Refused(WINDOW);
        }
        let mut w = self.windows.entry(key.clone()).or_insert(Window::new(now));
        if w.started + WINDOW <= now {
            w.started = now;
            w.failures = 0;
        }
        if w.failures >= key.limit() {
            Take::Refused((w.started + WINDOW).saturating_duration_since(now))
        } else if w.failures + w.in_flight >= key.limit() {
            Take::Busy
        } else {
            w.in_flight += 1;
            Take::Taken
        }
    }

    fn untake(&self, key: &Key) {
        if let Some(mut w) = self.windows.get_mut(key) {
            w.in_flight = w.in_flight.saturating_sub(1);
        }
    }

    /// A reserved check was answered: it failed, or it is given back.
    fn finish(&self, keys: &[Key; 3], failed: bool) {
        for key in keys {
            if let Some(mut w) = self.windows.get_mut(key) {
                w.in_flight = w.in_flight.saturating_sub(1);
                if failed {
                    w.failures += 1;
                }
            }
        }
        self.answered.notify_waiters();
    }

    /// Counts one parked authorization request from `remote`; `Err(wait)` past the limit.
    pub fn begin_pending(&self, remote: IpAddr) -> Result<(), Duration> {
        self.sweep_if_large();
        let key = Key::Pending(bucket(remote));
        match self.take(&key, Instant::now()) {
            // Parked requests are not answered later: count them as done at once.
            Take::Taken => {
                self.finish_one(&key);
                Ok(())
            }
            Take::Busy => Err(Duration::from_secs(1)),
            Take::Refused(wait) => Err(wait),
        }
    }

    fn finish_one(&self, key: &Key) {
        if let Some(mut w) = self.windows.get_mut(key) {
            w.in_flight = w.in_flight.saturating_sub(1);
            w.failures += 1;
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
            .retain(|_, w| w.in_flight > 0 || (w.failures > 0 && w.started + WINDOW > now));
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

    async fn fail(t: &Throttle, account: Account, name: &str, from: IpAddr) {
        drop(t.begin(account, name, from).await.expect("allowed"));
    }

    #[tokio::test]
    async fn one_address_is_stopped_by_its_tight_limit_and_cannot_lock_the_user_out() {
        let t = Throttle::default();
        for _ in 0..PER_ACCOUNT_AND_ADDRESS {
            fail(&t, Account::User, "alice", ip(1)).await;
        }
        let wait = t
            .begin(Account::User, "alice", ip(1))
            .await
            .err()
            .expect("locked");
        assert!(wait <= WINDOW && wait > Duration::from_secs(50));
        assert!(t.refused(Account::User, "alice", ip(1)).is_err());
        // alice from elsewhere, and bob from the same address, are unaffected.
        assert!(t.refused(Account::User, "alice", ip(2)).is_ok());
        t.begin(Account::User, "alice", ip(2))
            .await
            .expect("other address")
            .refund();
        t.begin(Account::User, "bob", ip(1))
            .await
            .expect("other user")
            .refund();
    }

    #[tokio::test]
    async fn checks_in_flight_count_against_the_limit() {
        // Five checks in flight fill the limit: a sixth waits for an answer instead of
        // running, and is refused once the five have failed.
        let t = Throttle::default();
        let held: Vec<_> = futures_util::future::join_all(
            (0..PER_ACCOUNT_AND_ADDRESS).map(|_| t.begin(Account::Client, "app", ip(1))),
        )
        .await
        .into_iter()
        .map(|a| a.expect("allowed"))
        .collect();
        let sixth = t.begin(Account::Client, "app", ip(1));
        tokio::pin!(sixth);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(
            std::future::Future::poll(sixth.as_mut(), &mut cx).is_pending(),
            "a sixth check ran while five were in flight"
        );
        drop(held);
        assert!(sixth.await.is_err(), "five failures lock the pair");
    }

    #[tokio::test]
    async fn right_secrets_in_parallel_all_pass() {
        let t = Throttle::default();
        let checks = (0..50).map(|_| async {
            let attempt = t.begin(Account::Client, "busy", ip(1)).await?;
            tokio::task::yield_now().await;
            attempt.refund();
            Ok::<(), Duration>(())
        });
        let results = futures_util::future::join_all(checks).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
    }

    #[tokio::test]
    async fn many_addresses_meet_the_loose_account_limit() {
        let t = Throttle::default();
        let mut n = 0;
        'outer: for a in 0..=255u8 {
            for _ in 0..PER_ACCOUNT_AND_ADDRESS {
                match t.begin(Account::User, "alice", ip(a)).await {
                    Ok(attempt) => drop(attempt),
                    Err(_) => break 'outer,
                }
                n += 1;
            }
        }
        assert_eq!(n, PER_ACCOUNT);
        assert!(t.begin(Account::User, "alice", ip(254)).await.is_err());
    }

    #[tokio::test]
    async fn an_address_over_all_accounts_is_limited() {
        let t = Throttle::default();
        for i in 0..PER_ADDRESS {
            fail(&t, Account::User, &format!("u{i}"), ip(9)).await;
        }
        assert!(t.begin(Account::User, "fresh", ip(9)).await.is_err());
    }

    #[tokio::test]
    async fn a_refused_attempt_counts_nothing() {
        let t = Throttle::default();
        for i in 0..PER_ADDRESS {
            fail(&t, Account::User, &format!("u{i}"), ip(7)).await;
        }
        // Refused by the address key: the pair and account keys taken before it are given
        // back, so carol's own counters are untouched.
        assert!(t.begin(Account::User, "carol", ip(7)).await.is_err());
        let carol = |t: &Throttle| {
            t.windows
                .get(&Key::Account(Account::User, "carol".into()))
                .map(|w| (w.failures, w.in_flight))
        };
        assert_eq!(carol(&t), Some((0, 0)));
        fail(&t, Account::User, "carol", ip(8)).await;
        assert_eq!(carol(&t), Some((1, 0)));
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
        assert!(t.refused(Account::User, "alice", ip(3)).is_ok());
    }

    #[test]
    fn ipv6_addresses_of_one_prefix_share_counters() {
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        assert_eq!(bucket(a), bucket(b));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().expect("ip");
        assert_eq!(bucket(mapped), ip(1));
    }

    #[tokio::test]
    async fn stale_windows_are_swept_and_the_map_stays_bounded() {
        let t = Throttle::default();
        // Successful checks leave empty windows behind; sweeps clear them.
        for i in 0..SWEEP_ABOVE as u32 {
            t.begin(
                Account::User,
                &format!("u{i}"),
                IpAddr::from(i.to_be_bytes()),
            )
            .await
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
