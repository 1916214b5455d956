//! Slowing down guessing: failed password and client-secret checks are counted per username,
//! per client and per address, and once a key has too many failures in its window it is
//! refused (429) until the window passes. Each node counts on its own.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// Failures allowed per username or per client within [`WINDOW`].
pub const PER_ACCOUNT: u32 = 5;
/// Failures allowed per client address within [`WINDOW`].
pub const PER_ADDRESS: u32 = 20;
pub const WINDOW: Duration = Duration::from_secs(60);
/// Past this many tracked keys, stale ones are swept on the next failure.
const SWEEP_ABOVE: usize = 10_000;

/// What a failure or check is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    User(String),
    Client(String),
    Address(IpAddr),
}

impl Key {
    fn limit(&self) -> u32 {
        match self {
            Key::User(_) | Key::Client(_) => PER_ACCOUNT,
            Key::Address(_) => PER_ADDRESS,
        }
    }
}

struct Window {
    started: Instant,
    failures: u32,
}

#[derive(Default)]
pub struct Throttle {
    windows: DashMap<Key, Window>,
}

impl Throttle {
    /// `Err(wait)` if any of `keys` is over its limit: refuse, and say how long to wait.
    pub fn check(&self, keys: &[Key]) -> Result<(), Duration> {
        let now = Instant::now();
        let mut wait = Duration::ZERO;
        for key in keys {
            if let Some(w) = self.windows.get(key) {
                let ends = w.started + WINDOW;
                if w.failures >= key.limit() && ends > now {
                    wait = wait.max(ends - now);
                }
            }
        }
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    /// Counts one failed check against each of `keys`.
    pub fn fail(&self, keys: &[Key]) {
        let now = Instant::now();
        if self.windows.len() > SWEEP_ABOVE {
            self.windows.retain(|_, w| w.started + WINDOW > now);
        }
        for key in keys {
            let mut w = self.windows.entry(key.clone()).or_insert(Window {
                started: now,
                failures: 0,
            });
            if w.started + WINDOW <= now {
                *w = Window {
                    started: now,
                    failures: 0,
                };
            }
            w.failures += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_lock_after_five_failures_and_others_are_unaffected() {
        let t = Throttle::default();
        let alice = [Key::User("alice".into())];
        for _ in 0..PER_ACCOUNT {
            assert!(t.check(&alice).is_ok());
            t.fail(&alice);
        }
        let wait = t.check(&alice).expect_err("locked");
        assert!(wait <= WINDOW && wait > Duration::from_secs(50));
        assert!(t.check(&[Key::User("bob".into())]).is_ok());
    }

    #[test]
    fn addresses_allow_more() {
        let t = Throttle::default();
        let ip = [Key::Address(IpAddr::from([10, 0, 0, 1]))];
        for _ in 0..PER_ADDRESS - 1 {
            t.fail(&ip);
        }
        assert!(t.check(&ip).is_ok());
        t.fail(&ip);
        assert!(t.check(&ip).is_err());
    }
}
