//! Prometheus metrics, kept with atomics so recording costs a few nanoseconds on the request
//! path, and rendered as text on the admin listener's `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A latency histogram with fixed buckets.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Outcome of checking a bearer token on a proxied request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    Valid,
    Expired,
    Revoked,
    Unknown,
    InsufficientScope,
}

impl Validation {
    const ALL: [Validation; 5] = [
        Validation::Valid,
        Validation::Expired,
        Validation::Revoked,
        Validation::Unknown,
        Validation::InsufficientScope,
    ];

    fn label(self) -> &'static str {
        match self {
            Validation::Valid => "valid",
            Validation::Expired => "expired",
            Validation::Revoked => "revoked",
            Validation::Unknown => "unknown",
            Validation::InsufficientScope => "insufficient_scope",
        }
    }
}

/// Every metric of one node.
#[derive(Default)]
pub struct Metrics {
    /// Keyed by a hash of (route, status) so recording needs no allocation; the value keeps
    /// the route name for rendering.
    requests: DashMap<u64, (Box<str>, u16, AtomicU64)>,
    pub request_duration: Histogram,
    validations: [AtomicU64; 5],
    pub store_errors: AtomicU64,
    pub store_duration: Histogram,
    issued: DashMap<&'static str, AtomicU64>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    /// Outbound token requests by (credential, outcome).
    credential_requests: DashMap<(String, &'static str), AtomicU64>,
    /// Expiry (Unix seconds) of each credential's current upstream token.
    credential_expiry: DashMap<String, AtomicU64>,
}

impl Metrics {
    pub fn request(&self, route: &str, status: u16, took: Duration) {
        use std::hash::{Hash, Hasher};
        self.request_duration.observe(took);
        let mut h = rustc_hash::FxHasher::default();
        (route, status).hash(&mut h);
        let key = h.finish();
        // Read-lock fast path: the (route, status) pair almost always exists already.
        if let Some(c) = self.requests.get(&key) {
            c.2.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.requests
            .entry(key)
            .or_insert_with(|| (route.into(), status, AtomicU64::new(0)))
            .2
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn validation(&self, v: Validation) {
        self.validations[v as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn issued(&self, grant: &'static str) {
        self.issued
            .entry(grant)
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn reload(&self, ok: bool) {
        let c = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// One outbound token request of `credential` ended with `outcome` (`ok`, `refused`, …).
    pub fn credential_request(&self, credential: &str, outcome: &'static str) {
        self.credential_requests
            .entry((credential.to_owned(), outcome))
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    /// `credential`'s current upstream token expires at `unix_ms`.
    pub fn credential_expiry(&self, credential: &str, unix_ms: u64) {
        self.credential_expiry
            .entry(credential.to_owned())
            .or_default()
            .store(unix_ms / 1000, Ordering::Relaxed);
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self, cache: Option<crate::store::CacheStats>, revocations: u64) -> String {
        let mut out = String::with_capacity(4096);
        let mut requests: Vec<_> = self
            .requests
            .iter()
            .map(|e| {
                let (route, status, n) = e.value();
                ((route.to_string(), *status), n.load(Ordering::Relaxed))
            })
            .collect();
        requests.sort();
        out.push_str("# HELP tollgate_requests_total Requests on the public listener by route and status.\n# TYPE tollgate_requests_total counter\n");
        for ((route, status), n) in requests {
            let _ = writeln!(
                out,
                "tollgate_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                route.replace('\\', "\\\\").replace('"', "\\\"")
            );
        }
        self.request_duration.render(
            &mut out,
            "tollgate_request_duration_seconds",
            "Time from request to response headers on the public listener.",
        );
        out.push_str("# HELP tollgate_token_validations_total Bearer token checks on proxied requests by outcome.\n# TYPE tollgate_token_validations_total counter\n");
        for v in Validation::ALL {
            let n = self.validations[v as usize].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "tollgate_token_validations_total{{outcome=\"{}\"}} {n}",
                v.label()
            );
        }
        let cache = cache.unwrap_or_default();
        counter(
            &mut out,
            "tollgate_cache_hits_total",
            "Token lookups answered by the local cache.",
            cache.hits,
        );
        counter(
            &mut out,
            "tollgate_cache_misses_total",
            "Token lookups that went to the store.",
            cache.misses,
        );
        gauge(
            &mut out,
            "tollgate_cache_entries",
            "Tokens in the local cache.",
            cache.entries as u64,
        );
        counter(
            &mut out,
            "tollgate_store_errors_total",
            "Token store operations that failed.",
            self.store_errors.load(Ordering::Relaxed),
        );
        self.store_duration.render(
            &mut out,
            "tollgate_store_request_duration_seconds",
            "Token lookups that reached the store.",
        );
        out.push_str("# HELP tollgate_tokens_issued_total Access tokens issued by grant.\n# TYPE tollgate_tokens_issued_total counter\n");
        let mut issued: Vec<_> = self
            .issued
            .iter()
            .map(|e| (*e.key(), e.value().load(Ordering::Relaxed)))
            .collect();
        issued.sort();
        for (grant, n) in issued {
            let _ = writeln!(out, "tollgate_tokens_issued_total{{grant=\"{grant}\"}} {n}");
        }
        counter(
            &mut out,
            "tollgate_revocation_messages_total",
            "Revocation messages received from the store channel.",
            revocations,
        );
        let escape = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        out.push_str("# HELP tollgate_credential_token_requests_total Outbound token requests by credential and outcome.\n# TYPE tollgate_credential_token_requests_total counter\n");
        let mut requests: Vec<_> = self
            .credential_requests
            .iter()
            .map(|e| (e.key().clone(), e.value().load(Ordering::Relaxed)))
            .collect();
        requests.sort();
        for ((credential, outcome), n) in requests {
            let _ = writeln!(
                out,
                "tollgate_credential_token_requests_total{{credential=\"{}\",outcome=\"{outcome}\"}} {n}",
                escape(&credential)
            );
        }
        out.push_str("# HELP tollgate_credential_token_expiry_seconds When each credential's current upstream token expires (Unix time).\n# TYPE tollgate_credential_token_expiry_seconds gauge\n");
        let mut expiry: Vec<_> = self
            .credential_expiry
            .iter()
            .map(|e| (e.key().clone(), e.value().load(Ordering::Relaxed)))
            .collect();
        expiry.sort();
        for (credential, at) in expiry {
            let _ = writeln!(
                out,
                "tollgate_credential_token_expiry_seconds{{credential=\"{}\"}} {at}",
                escape(&credential)
            );
        }
        out.push_str("# HELP tollgate_config_reloads_total Config reloads by outcome.\n# TYPE tollgate_config_reloads_total counter\n");
        let _ = writeln!(
            out,
            "tollgate_config_reloads_total{{outcome=\"success\"}} {}",
            self.reloads_ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "tollgate_config_reloads_total{{outcome=\"failure\"}} {}",
            self.reloads_failed.load(Ordering::Relaxed)
        );
        out
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.request("reports", 200, Duration::from_micros(300));
        m.request("reports", 200, Duration::from_millis(3));
        m.request("-", 404, Duration::from_micros(50));
        m.validation(Validation::Expired);
        m.issued("password");
        m.reload(false);
        let text = m.render(None, 7);
        for line in [
            "tollgate_requests_total{route=\"reports\",status=\"200\"} 2",
            "tollgate_requests_total{route=\"-\",status=\"404\"} 1",
            "tollgate_request_duration_seconds_bucket{le=\"0.0001\"} 1",
            "tollgate_request_duration_seconds_bucket{le=\"0.0005\"} 2",
            "tollgate_request_duration_seconds_bucket{le=\"+Inf\"} 3",
            "tollgate_request_duration_seconds_count 3",
            "tollgate_token_validations_total{outcome=\"expired\"} 1",
            "tollgate_tokens_issued_total{grant=\"password\"} 1",
            "tollgate_revocation_messages_total 7",
            "tollgate_config_reloads_total{outcome=\"failure\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
