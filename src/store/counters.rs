//! Counters shared by every node on the store: the guessing throttle's (SPEC §5 "Guessing",
//! §11), so N nodes allow no more guesses than one. Only the Redis store has them; with the
//! memory store there is one node, and `throttle` counts in the process instead.
//!
//! A counter is named by its subject and counts, within a fixed window that starts with its
//! first count, the failures and the checks in flight (reserved, not yet answered).

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{BackendImpl, StoreError, TokenStore};

/// What a counter says about one more check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Counted (in flight, or as a failure for [`TokenStore::counter_add`]).
    Taken,
    /// Failures and checks in flight fill the limit: wait for their answers.
    Busy,
    /// Failures have reached the limit: refuse for this long (the rest of the window).
    Refused(Duration),
}

/// The memory store has no shared counters; asking it is a bug of the caller, answered as an
/// unreachable store so that the check is refused rather than let through.
fn not_shared() -> StoreError {
    StoreError::Unavailable("the memory store keeps no shared counters".to_owned())
}

impl TokenStore {
    /// Reserves one check against `subject`: counted as in flight until
    /// [`TokenStore::counter_finish`] answers it (or its window ends).
    pub async fn counter_take(
        &self,
        subject: &str,
        limit: u32,
        window: Duration,
    ) -> Result<Count, StoreError> {
        match &*self.backend {
            BackendImpl::Memory(_) => Err(not_shared()),
            BackendImpl::Redis(r) => {
                self.counted(r.counter_take(subject, limit, window, false).await)
            }
        }
    }

    /// Counts one event against `subject` as a failure at once (something nobody answers
    /// later, like a parked authorization request), if the limit allows it.
    pub async fn counter_add(
        &self,
        subject: &str,
        limit: u32,
        window: Duration,
    ) -> Result<Count, StoreError> {
        match &*self.backend {
            BackendImpl::Memory(_) => Err(not_shared()),
            BackendImpl::Redis(r) => {
                self.counted(r.counter_take(subject, limit, window, true).await)
            }
        }
    }

    /// Answers a check reserved with [`TokenStore::counter_take`]: it failed, or it is given
    /// back (it succeeded, or another counter refused the check).
    pub async fn counter_finish(
        &self,
        subject: &str,
        failed: bool,
        window: Duration,
    ) -> Result<(), StoreError> {
        match &*self.backend {
            BackendImpl::Memory(_) => Err(not_shared()),
            BackendImpl::Redis(r) => self.counted(r.counter_finish(subject, failed, window).await),
        }
    }

    /// How long `subject` stays refused, if its failures have reached `limit`. Counts nothing.
    pub async fn counter_peek(
        &self,
        subject: &str,
        limit: u32,
    ) -> Result<Option<Duration>, StoreError> {
        match &*self.backend {
            BackendImpl::Memory(_) => Err(not_shared()),
            BackendImpl::Redis(r) => self.counted(r.counter_peek(subject, limit).await),
        }
    }

    /// Failures of the counters are store errors like any other (`tollgate_store_errors_total`).
    fn counted<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if result.is_err() {
            self.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}
