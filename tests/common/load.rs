//! Load for the fault tests: tokio tasks that loop requests until stopped and record every
//! answer with when it was sent, so a test can ask what was answered before, during and
//! after a fault. Requests never panic here: a refused connection, a cut body or a missed
//! deadline is recorded as an `Err` for the test to judge.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::Resp;

/// A pooled keep-alive HTTP/1.1 client, shared by a load's tasks the way a real client
/// fleet reuses connections across a fault.
pub type Pooled = Client<HttpConnector, Full<Bytes>>;

pub fn pooled_client() -> Pooled {
    Client::builder(TokioExecutor::new()).build_http()
}

/// One request, bounded by `within`: the response with its body read whole, or why there
/// is none (connection error, body cut off, deadline passed).
pub async fn try_send(
    client: &Pooled,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
    within: Duration,
) -> Result<Resp, String> {
    let mut request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?)
        .uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(body.into()))
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("request: {e:?}"))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("{} then body: {e}", parts.status))?
            .to_bytes();
        Ok(Resp {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    tokio::time::timeout(within, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no whole answer within {within:?}")))
}

/// A `client_credentials` token request for the `reports` scope with HTTP Basic `basic`
/// (an `Authorization` value), bounded by `within`.
pub async fn try_issue(
    client: &Pooled,
    token_url: &str,
    basic: &str,
    within: Duration,
) -> Result<Resp, String> {
    let headers = [
        ("authorization", basic),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let body = "grant_type=client_credentials&scope=reports";
    try_send(client, "POST", token_url, &headers, body, within).await
}

/// One answer of a load.
#[derive(Debug)]
pub struct Answered {
    /// Which loop sent it.
    pub label: &'static str,
    /// When it was sent, since the load started.
    pub sent: Duration,
    /// How long the answer took.
    pub took: Duration,
    pub outcome: Result<Resp, String>,
}

impl Answered {
    pub fn status(&self) -> Option<u16> {
        self.outcome.as_ref().ok().map(|r| r.status)
    }

    /// When the answer was complete, since the load started.
    pub fn done(&self) -> Duration {
        self.sent + self.took
    }
}

impl std::fmt::Display for Answered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let outcome = match &self.outcome {
            Ok(resp) => resp.to_string(),
            Err(e) => format!("no answer: {e}"),
        };
        write!(
            f,
            "[{} sent at {:?}, took {:?}] {outcome}",
            self.label, self.sent, self.took
        )
    }
}

/// Loops of requests running until [`Load::finish`] (or drop, when a test fails first).
pub struct Load {
    epoch: Instant,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Answered>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Default for Load {
    fn default() -> Self {
        Load::new()
    }
}

impl Load {
    pub fn new() -> Load {
        Load {
            epoch: Instant::now(),
            stop: Arc::new(AtomicBool::new(false)),
            samples: Arc::new(Mutex::new(Vec::new())),
            tasks: Vec::new(),
        }
    }

    /// Time since the load started (the clock of every [`Answered::sent`]).
    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Starts `tasks` loops labelled `label`; each calls `request(i)` with its iteration
    /// number `i` and records the outcome, until the load is stopped.
    pub fn spawn<F, Fut>(&mut self, label: &'static str, tasks: usize, request: F)
    where
        F: Fn(u64) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<Resp, String>> + Send,
    {
        for _ in 0..tasks {
            let (stop, samples, epoch) = (
                Arc::clone(&self.stop),
                Arc::clone(&self.samples),
                self.epoch,
            );
            let request = request.clone();
            self.tasks.push(tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let sent = epoch.elapsed();
                    let outcome = request(i).await;
                    let took = epoch.elapsed() - sent;
                    // A loop whose requests fail at once must neither starve the runtime
                    // (nothing else would run, not even the test's own deadline) nor
                    // flood memory with failures.
                    if outcome.is_err() {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    } else {
                        tokio::task::yield_now().await;
                    }
                    samples.lock().expect("samples").push(Answered {
                        label,
                        sent,
                        took,
                        outcome,
                    });
                    i += 1;
                }
            }));
        }
    }

    /// How many answers labelled `label` were sent at or after `since`.
    pub fn count(&self, label: &str, since: Duration) -> usize {
        let samples = self.samples.lock().expect("samples");
        samples
            .iter()
            .filter(|s| s.label == label && s.sent >= since)
            .count()
    }

    /// Polls until every label in `labels` has `n` answers sent since `since`; false if
    /// `within` passes first.
    pub async fn wait_for(
        &self,
        labels: &[&str],
        n: usize,
        since: Duration,
        within: Duration,
    ) -> bool {
        super::poll(within, || async {
            labels
                .iter()
                .all(|l| self.count(l, since) >= n)
                .then_some(())
        })
        .await
        .is_some()
    }

    /// Stops every loop (each finishes the request it is on: they are all bounded) and
    /// returns every answer, in the order they completed.
    pub async fn finish(mut self) -> Vec<Answered> {
        self.stop.store(true, Ordering::Relaxed);
        for task in std::mem::take(&mut self.tasks) {
            if let Err(e) = task.await {
                panic!("a load task failed: {e}");
            }
        }
        std::mem::take(&mut *self.samples.lock().expect("samples"))
    }
}
