//! Graceful shutdown of a listener's connections: when the listener stops, every open
//! connection is told to finish (hyper's `graceful_shutdown`: HTTP/1.1 closes after the
//! response in flight, HTTP/2 sends GOAWAY), and [`Drain::shutdown`] waits until all have.
//!
//! hyper-util's `GracefulShutdown` does the same on a `tokio::sync::watch` channel, whose
//! `changed()` is polled with each poll of each connection: a lock of the channel's shared
//! waiter list every time, ~300 instructions per proxied request and one mutex every
//! connection of every worker contends on. Here a connection's poll costs an atomic load and
//! an `AtomicWaker` registration (a compare when the waker is the same); the shared list is
//! locked once per connection, when it starts.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::Notify;

/// The connections of one listener.
#[derive(Clone, Default)]
pub struct Drain {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    draining: AtomicBool,
    /// Connections entered and not yet finished (handshakes included).
    open: AtomicUsize,
    /// Each watched connection's waker, so that shutdown reaches idle ones too.
    wakers: Mutex<Vec<Weak<AtomicWaker>>>,
    /// Notified when the last connection finishes while draining.
    finished: Notify,
}

impl Drain {
    pub fn new() -> Drain {
        Drain::default()
    }

    /// Counts a connection as open from now (before its TLS handshake, say) until the
    /// returned guard, or the connection it goes on to watch, is dropped.
    pub fn enter(&self) -> Entered {
        self.shared.open.fetch_add(1, Ordering::SeqCst);
        Entered {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Watches `conn`: it is told to finish when shutdown starts.
    pub fn watch<C: GracefulConnection>(&self, conn: C) -> Watched<C> {
        self.enter().watch(conn)
    }

    /// Tells every connection to finish, then waits until all have.
    pub async fn shutdown(&self) {
        let shared = &self.shared;
        shared.draining.store(true, Ordering::SeqCst);
        let wakers = std::mem::take(&mut *shared.wakers.lock().unwrap_or_else(|e| e.into_inner()));
        for waker in wakers.iter().filter_map(Weak::upgrade) {
            waker.wake();
        }
        loop {
            let finished = shared.finished.notified();
            tokio::pin!(finished);
            finished.as_mut().enable();
            if shared.open.load(Ordering::SeqCst) == 0 {
                return;
            }
            finished.await;
        }
    }
}

/// One open connection, counted until dropped.
pub struct Entered {
    shared: Arc<Shared>,
}

impl Entered {
    pub fn watch<C: GracefulConnection>(self, conn: C) -> Watched<C> {
        let waker = Arc::new(AtomicWaker::new());
        {
            let mut wakers = self.shared.wakers.lock().unwrap_or_else(|e| e.into_inner());
            // Finished connections leave dead entries; clear them before the list doubles.
            if wakers.len() >= 64 && wakers.len() == wakers.capacity() {
                wakers.retain(|w| w.strong_count() > 0);
            }
            wakers.push(Arc::downgrade(&waker));
        }
        Watched {
            conn: Box::pin(conn),
            waker,
            told: false,
            _entered: self,
        }
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        let shared = &self.shared;
        if shared.open.fetch_sub(1, Ordering::SeqCst) == 1 && shared.draining.load(Ordering::SeqCst)
        {
            shared.finished.notify_waiters();
        }
    }
}

/// A connection that finishes gracefully once its [`Drain`] shuts down.
pub struct Watched<C> {
    conn: Pin<Box<C>>,
    waker: Arc<AtomicWaker>,
    /// `graceful_shutdown` was called.
    told: bool,
    _entered: Entered,
}

impl<C: GracefulConnection> Future for Watched<C> {
    type Output = C::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = &mut *self;
        if !this.told {
            let draining = &this._entered.shared.draining;
            if !draining.load(Ordering::SeqCst) {
                this.waker.register(cx.waker());
            }
            // Checked again after registering: a shutdown in between has woken no one.
            if draining.load(Ordering::SeqCst) {
                this.told = true;
                this.conn.as_mut().graceful_shutdown();
            }
        }
        this.conn.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_waits_for_entered_connections_and_returns_when_none_are_open() {
        let drain = Drain::new();
        drain.shutdown().await; // nothing open: at once
        let drain = Drain::new();
        let entered = drain.enter();
        let waiting = tokio::spawn({
            let drain = drain.clone();
            async move { drain.shutdown().await }
        });
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "returned with a connection still open"
        );
        drop(entered);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("shutdown did not return after the last connection finished")
            .expect("task");
    }
}
