//! Slowing down guessing (SPEC §5 "Guessing"): password and client-secret checks are counted
//! in fixed 60-second windows, tightly per (account, address), loosely per account over all
//! addresses, and per address over all accounts. One address cannot lock a user out (it hits
//! its own tight limit long before the loose one), and many addresses together cannot guess
//! faster than the loose limit.
//!
//! A check is *reserved* before the secret is verified ([`Throttle::begin`]) and refunded
//! only when it succeeds, so N parallel wrong guesses count as N before any is answered:
//! checks in flight count against the limit, and one that would pass it waits for their
//! answers instead of running.
//!
//! # Layout
//! - `local.rs`: the counters in the process, for the memory store (one node).
//! - `shared.rs`: the counters in the Redis store, shared by every node (SPEC §11), so N
//!   nodes allow no more guesses than one. A store error there fails closed: the check is
//!   refused ([`Denied::Unavailable`]), never run uncounted.

mod local;
mod shared;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::store::counters::Count;
use crate::store::{StoreError, TokenStore};

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

/// Longest a check waits for earlier checks of the same key to be answered.
const BUSY_WAIT: Duration = Duration::from_secs(5);
/// How often a check waiting on shared counters looks again: answers given on other nodes
/// wake nobody here.
const BUSY_POLL: Duration = Duration::from_millis(50);
/// The wait a check is told when it cannot be counted (busy past [`BUSY_WAIT`]).
const RETRY_SOON: Duration = Duration::from_secs(1);

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

    /// The counter's name in the store. The address is bracketed and the account name comes
    /// last, so no two subjects share a name whatever the name contains.
    fn subject(&self) -> String {
        let kind = |a: &Account| match a {
            Account::User => 'u',
            Account::Client => 'c',
        };
        match self {
            Key::Pair(a, name, ip) => format!("pair:{}:[{ip}]:{name}", kind(a)),
            Key::Account(a, name) => format!("acct:{}:{name}", kind(a)),
            Key::Address(ip) => format!("addr:[{ip}]"),
            Key::Pending(ip) => format!("pend:[{ip}]"),
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

fn keys_of(account: Account, name: &str, remote: IpAddr) -> [Key; 3] {
    let remote = bucket(remote);
    [
        Key::Pair(account, name.to_owned(), remote),
        Key::Account(account, name.to_owned()),
        Key::Address(remote),
    ]
}

/// Why a check may not run now.
#[derive(Debug)]
pub enum Denied {
    /// Too many failures (or checks in flight for too long): try again after this long.
    SlowDown(Duration),
    /// The shared counters could not be reached: without them no check runs (fail closed).
    Unavailable(StoreError),
}

impl Denied {
    /// How long to wait before trying again.
    pub fn wait(&self) -> Duration {
        match self {
            Denied::SlowDown(wait) => *wait,
            Denied::Unavailable(_) => RETRY_SOON,
        }
    }
}

/// Where the counters live.
enum Counters {
    Local(local::Local),
    Shared(TokenStore),
}

pub struct Throttle {
    counters: Counters,
    /// Woken whenever a reserved check on this node is answered, for checks waiting on it.
    answered: Arc<Notify>,
}

/// Counters in the process, for one node (the memory store, and tests).
impl Default for Throttle {
    fn default() -> Throttle {
        Throttle {
            counters: Counters::Local(local::Local::default()),
            answered: Arc::default(),
        }
    }
}

/// A reserved check. [`Attempt::fail`] counts it as a failure before the answer goes out;
/// [`Attempt::refund`] gives it back. Dropped as is (the request went away mid-check), it
/// counts as a failure too, answered in the background.
#[must_use = "an attempt counts as a failure unless it is refunded"]
pub struct Attempt<'t> {
    throttle: &'t Throttle,
    keys: Option<[Key; 3]>,
}

impl Attempt<'_> {
    /// The secret was right (or could not be checked at all): this check does not count.
    pub fn refund(mut self) {
        if let Some(keys) = self.keys.take() {
            drop(self.throttle.finish(keys, false)); // answered in the background
        }
    }

    /// The secret was wrong: the failure is counted, in the shared counters too, before
    /// this returns. A client told "wrong" and trying again at once then meets the count:
    /// answered in the background, its sixth try could still see five checks in flight
    /// and be waved through the remembered-secret shortcut.
    pub async fn fail(mut self) {
        let Some(keys) = self.keys.take() else { return };
        // Awaited, not done in place: a request dropped meanwhile cannot cut the count short.
        if let Some(counted) = self.throttle.finish(keys, true)
            && let Err(e) = counted.await
        {
            tracing::warn!(error = %e, "throttle: counting a failure did not finish");
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if let Some(keys) = self.keys.take() {
            drop(self.throttle.finish(keys, true)); // answered in the background
        }
    }
}

impl Throttle {
    /// The throttle for a node on `store`: counters in the store when it is shared by several
    /// nodes (Redis), else in the process.
    pub fn for_store(store: &TokenStore) -> Throttle {
        if store.is_shared() {
            Throttle {
                counters: Counters::Shared(store.clone()),
                answered: Arc::default(),
            }
        } else {
            Throttle::default()
        }
    }

    /// Is a check of `account`'s secret from `remote` refused now? Counts nothing. For the
    /// shortcut that accepts a secret verified moments ago without a new check: a locked
    /// account stays locked for it too.
    pub async fn refused(
        &self,
        account: Account,
        name: &str,
        remote: IpAddr,
    ) -> Result<(), Denied> {
        let keys = keys_of(account, name, remote);
        let wait = match &self.counters {
            Counters::Local(local) => local.refused(&keys),
            Counters::Shared(store) => shared::refused(store, &keys)
                .await
                .map_err(Denied::Unavailable)?,
        };
        wait.map_or(Ok(()), |wait| Err(Denied::SlowDown(wait)))
    }

    /// Reserves one check of `account`'s secret from `remote`, counted before it runs.
    /// [`Denied::SlowDown`] if a counter is at its limit with failures (nothing is counted
    /// then). While checks already in flight fill a limit, waits for their answers, so N
    /// parallel wrong guesses are verified at most up to the limit, and N parallel right ones
    /// all pass.
    pub async fn begin(
        &self,
        account: Account,
        name: &str,
        remote: IpAddr,
    ) -> Result<Attempt<'_>, Denied> {
        let keys = keys_of(account, name, remote);
        if let Counters::Local(local) = &self.counters {
            local.sweep_if_large();
        }
        let deadline = tokio::time::Instant::now() + BUSY_WAIT;
        loop {
            // Register for wake-ups before looking, so an answer in between is not missed.
            let answered = self.answered.notified();
            let outcome = match &self.counters {
                Counters::Local(local) => local.take_all(&keys),
                Counters::Shared(store) => shared::take_all(store, &keys)
                    .await
                    .map_err(Denied::Unavailable)?,
            };
            match outcome {
                Count::Taken => {
                    return Ok(Attempt {
                        throttle: self,
                        keys: Some(keys),
                    });
                }
                Count::Refused(wait) => return Err(Denied::SlowDown(wait)),
                Count::Busy => {
                    let wake = match &self.counters {
                        Counters::Local(_) => deadline,
                        Counters::Shared(_) => {
                            deadline.min(tokio::time::Instant::now() + BUSY_POLL)
                        }
                    };
                    let woken = tokio::time::timeout_at(wake, answered).await.is_ok();
                    if !woken && tokio::time::Instant::now() >= deadline {
                        return Err(Denied::SlowDown(RETRY_SOON));
                    }
                }
            }
        }
    }

    /// A reserved check was answered: it failed, or it is given back. Shared counters are
    /// answered by a task of its own, returned for a caller that must wait for it (an attempt
    /// is also answered when it is dropped, where nothing can wait).
    fn finish(&self, keys: [Key; 3], failed: bool) -> Option<JoinHandle<()>> {
        match &self.counters {
            Counters::Local(local) => {
                local.finish(&keys, failed);
                self.answered.notify_waiters();
                None
            }
            Counters::Shared(store) => match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    let answered = Arc::clone(&self.answered);
                    Some(runtime.spawn(shared::finish(store.clone(), keys, failed, answered)))
                }
                // Only outside a runtime (never on a request path): the reservation then
                // counts until its window ends.
                Err(_) => {
                    tracing::warn!("throttle: no runtime to answer a check on");
                    None
                }
            },
        }
    }

    /// Counts one parked authorization request from `remote`; [`Denied`] past the limit.
    pub async fn begin_pending(&self, remote: IpAddr) -> Result<(), Denied> {
        let key = Key::Pending(bucket(remote));
        // Parked requests are not answered later: they count as done at once.
        let outcome = match &self.counters {
            Counters::Local(local) => local.add(&key),
            Counters::Shared(store) => shared::add(store, &key)
                .await
                .map_err(Denied::Unavailable)?,
        };
        match outcome {
            Count::Taken => Ok(()),
            Count::Busy => Err(Denied::SlowDown(RETRY_SOON)),
            Count::Refused(wait) => Err(Denied::SlowDown(wait)),
        }
    }

    /// Counters tracked in the process now (for tests of the bound; 0 when they are shared).
    pub fn tracked(&self) -> usize {
        match &self.counters {
            Counters::Local(local) => local.tracked(),
            Counters::Shared(_) => 0,
        }
    }
}
