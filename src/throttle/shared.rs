//! The counters in the store (Redis), shared by every node (SPEC §11: N nodes allow no more
//! guesses than one). The same rules as `local`, one store call per counter: a check's
//! counters may live in different cluster slots, so they are taken one by one, and those
//! already taken are given back when a later one refuses. Every store error fails closed:
//! no check runs without its counters.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{join_all, try_join_all};
use tokio::sync::Notify;

use super::{Key, WINDOW};
use crate::store::counters::Count;
use crate::store::{StoreError, TokenStore};

/// The longest wait among `keys` whose failures have reached their limit, if any.
pub(super) async fn refused(
    store: &TokenStore,
    keys: &[Key; 3],
) -> Result<Option<Duration>, StoreError> {
    let subjects = keys.each_ref().map(Key::subject);
    let waits = try_join_all(
        keys.iter()
            .zip(&subjects)
            .map(|(key, subject)| store.counter_peek(subject, key.limit())),
    )
    .await?;
    Ok(waits.into_iter().flatten().max())
}

/// Takes `keys` all or none, in order.
pub(super) async fn take_all(store: &TokenStore, keys: &[Key; 3]) -> Result<Count, StoreError> {
    for (i, key) in keys.iter().enumerate() {
        let outcome = store
            .counter_take(&key.subject(), key.limit(), WINDOW)
            .await;
        if !matches!(outcome, Ok(Count::Taken)) {
            give_back(store, &keys[..i]).await;
            return outcome;
        }
    }
    Ok(Count::Taken)
}

/// Gives back checks reserved on `keys` by a take that did not complete.
async fn give_back(store: &TokenStore, keys: &[Key]) {
    for key in keys {
        if let Err(e) = store.counter_finish(&key.subject(), false, WINDOW).await {
            dropped(&e);
        }
    }
}

/// Answers a reserved check on every key, then wakes this node's waiting checks (other
/// nodes' find out by polling).
pub(super) async fn finish(store: TokenStore, keys: [Key; 3], failed: bool, answered: Arc<Notify>) {
    let subjects = keys.each_ref().map(Key::subject);
    let results = join_all(
        subjects
            .iter()
            .map(|subject| store.counter_finish(subject, failed, WINDOW)),
    )
    .await;
    for e in results.iter().filter_map(|r| r.as_ref().err()) {
        dropped(e);
    }
    answered.notify_waiters();
}

/// An answer that could not reach the store is dropped: the reservation stays counted until
/// its window ends, so the error costs the account checks (fails closed), never adds any.
fn dropped(e: &StoreError) {
    tracing::warn!(error = %e, "throttle: an answered check could not reach the store; it counts until its window ends");
}

/// Counts one event on `key` as a failure at once, if the limit allows it.
pub(super) async fn add(store: &TokenStore, key: &Key) -> Result<Count, StoreError> {
    store.counter_add(&key.subject(), key.limit(), WINDOW).await
}
