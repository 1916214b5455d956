//! The soak's tasks: the load connections on the fixed timetable, and the issuance and
//! revocation tasks beside them; the counters they share with the sampler.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::StatusCode;
use hyper::header::HeaderValue;

use super::client::{Conn, Target, bearer_value};
use super::hist::Hist;
use super::raw::RawConn;

/// A connection wakes this long before a request is due (tokio's timer granularity).
const EARLY: Duration = Duration::from_millis(1);
/// A revoked token must be refused within this long (SPEC §7).
const REVOKE_DEADLINE: Duration = Duration::from_secs(1);
const REVOKE_POLL: Duration = Duration::from_millis(10);

/// The timetable: request `i` is due at `start + i / rate`, for every such time before
/// `start + seconds`.
pub struct Plan {
    pub start: Instant,
    pub seconds: f64,
    pub rate: f64,
    pub connections: usize,
}

impl Plan {
    pub fn end(&self) -> Instant {
        self.start + Duration::from_secs_f64(self.seconds)
    }
}

/// Counters of the current interval, swapped out by the sampler.
#[derive(Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub errors: AtomicU64,
    pub issued: AtomicU64,
    pub revoked: AtomicU64,
    /// Slowest revocation (revoke answered → 401), µs.
    pub lag_max_us: AtomicU64,
    /// The generator's own delay at worst (µs): a request sent after both its due time and
    /// its connection's previous response, by this much (the load core short of CPU).
    pub generator_lag_max_us: AtomicU64,
}

/// What every task records into: the interval's counters and latencies, and the whole run's.
#[derive(Default)]
pub struct Shared {
    pub c: Counters,
    /// Bearer-route latency of the interval.
    pub lat: Hist,
    /// Token issuance and revocation lag, whole run.
    pub issue_lat: Hist,
    pub lag: Hist,
    /// Connections the load opened, whole run.
    pub opened: AtomicU64,
    /// Load requests sent so far, whole run (the timetable minus this is the backlog).
    pub started: AtomicU64,
    /// Failures by kind, whole run.
    pub kinds: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    pub fn error(&self, what: &str, e: impl std::fmt::Display) {
        self.c.errors.fetch_add(1, Relaxed);
        let key = format!("{what}: {e}");
        let mut kinds = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
        let n = kinds.entry(key.clone()).or_insert(0);
        *n += 1;
        if *n <= 3 {
            eprintln!("[soak] error: {key}");
        }
    }
}

pub fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// One load connection: requests `k`, `k + N`, `k + 2N`, … of the timetable, each one of
/// `requests` (prepared per token) in turn. Returns the connection still open, so the last
/// sample sees the gateway as it was under load.
pub async fn load(
    k: usize,
    plan: Arc<Plan>,
    target: Arc<Target>,
    requests: Arc<Vec<Vec<u8>>>,
    sh: Arc<Shared>,
) -> RawConn {
    let n = plan.connections as u64;
    let end = plan.end();
    let ns_per_request = 1e9 / plan.rate;
    let mut conn = RawConn::default();
    let mut i = k as u64;
    // When the connection last became free: a request due earlier waits for it (that wait is
    // the gateway's, and counts in the latency), not for the generator.
    let mut free = plan.start;
    loop {
        let due = plan.start + Duration::from_nanos((i as f64 * ns_per_request) as u64);
        if due >= end {
            break;
        }
        let request = &requests[(i / n) as usize % requests.len()];
        i += n;
        let wake = due.checked_sub(EARLY).unwrap_or(due);
        if wake > Instant::now() {
            tokio::time::sleep_until(wake.into()).await;
        }
        let sent = Instant::now();
        let lag = sent.saturating_duration_since(due.max(free));
        sh.c.generator_lag_max_us.fetch_max(us(lag), Relaxed);
        sh.started.fetch_add(1, Relaxed);
        let result = conn.get(target.addr, request, target.timeout).await;
        free = Instant::now();
        sh.lat.record(free - sent.min(due));
        sh.c.sent.fetch_add(1, Relaxed);
        match result {
            Ok(200) => {}
            Ok(status) => sh.error("bearer route", format!("status {status}")),
            Err(e) => sh.error("bearer route", e),
        }
    }
    sh.opened.fetch_add(conn.opened, Relaxed);
    conn
}

async fn issue(conn: &mut Conn, target: &Target) -> Result<String, String> {
    let (status, body) = conn
        .send(
            target,
            target.oauth("token", "grant_type=client_credentials".into()),
        )
        .await?;
    if status != StatusCode::OK {
        return Err(format!("status {status}"));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("token response: {e}"))?;
    v.get("access_token")
        .and_then(|t| t.as_str())
        .map(str::to_string)
        .ok_or_else(|| "token response without access_token".to_string())
}

/// The bearer route's status for `token`.
async fn bearer_status(
    conn: &mut Conn,
    target: &Target,
    token: &HeaderValue,
) -> Result<StatusCode, String> {
    Ok(conn.send(target, target.bearer(token)).await?.0)
}

/// Issues a token and checks the bearer route accepts it; → its header value.
pub async fn issue_checked(
    conn: &mut Conn,
    target: &Target,
    sh: &Shared,
) -> Result<HeaderValue, String> {
    let started = Instant::now();
    let token = issue(conn, target)
        .await
        .map_err(|e| format!("issue: {e}"))?;
    sh.issue_lat.record(started.elapsed());
    let value = bearer_value(&token)?;
    match bearer_status(conn, target, &value).await? {
        StatusCode::OK => {}
        s => return Err(format!("a fresh token on the bearer route: status {s}")),
    }
    sh.c.issued.fetch_add(1, Relaxed);
    Ok(value)
}

async fn revoke(conn: &mut Conn, target: &Target, sh: &Shared) -> Result<(), String> {
    let value = issue_checked(conn, target, sh).await?;
    let token = value
        .to_str()
        .unwrap_or_default()
        .trim_start_matches("Bearer ");
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("token", token)
        .append_pair("token_type_hint", "access_token")
        .finish();
    match conn.send(target, target.oauth("revoke", form)).await {
        Ok((StatusCode::OK, _)) => {}
        Ok((s, _)) => return Err(format!("revoke: status {s}")),
        Err(e) => return Err(format!("revoke: {e}")),
    }
    let revoked = Instant::now();
    loop {
        match bearer_status(conn, target, &value).await? {
            StatusCode::UNAUTHORIZED => break,
            StatusCode::OK if revoked.elapsed() < REVOKE_DEADLINE => {
                tokio::time::sleep(REVOKE_POLL).await
            }
            StatusCode::OK => return Err("a revoked token still accepted after 1 s".into()),
            s => return Err(format!("a revoked token on the bearer route: status {s}")),
        }
    }
    let lag = revoked.elapsed();
    if lag > REVOKE_DEADLINE {
        return Err(format!(
            "a revoked token refused only after {} ms",
            lag.as_millis()
        ));
    }
    sh.lag.record(lag);
    sh.c.lag_max_us.fetch_max(us(lag), Relaxed);
    sh.c.revoked.fetch_add(1, Relaxed);
    Ok(())
}

/// Issuance (`revoking == false`) or revocation at a steady `rate` per second, from the
/// load's start to its end.
pub async fn side(
    revoking: bool,
    rate: f64,
    plan: Arc<Plan>,
    target: Arc<Target>,
    sh: Arc<Shared>,
) -> Conn {
    let mut conn = Conn::default();
    if rate <= 0.0 {
        return conn;
    }
    let end = plan.end();
    // Offset from the load's start so the side tasks do not all fire on the same tick.
    let first = if revoking { 0.5 } else { 0.25 } / rate;
    for i in 0u64.. {
        let due = plan.start + Duration::from_secs_f64(first + i as f64 / rate);
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        if Instant::now() >= end {
            break; // behind (slow answers): what is left would run past the end
        }
        let result = if revoking {
            revoke(&mut conn, &target, &sh).await
        } else {
            issue_checked(&mut conn, &target, &sh).await.map(drop)
        };
        if let Err(e) = result {
            sh.error(if revoking { "revocation" } else { "issuance" }, e);
        }
    }
    conn
}
