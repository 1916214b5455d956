//! Resident memory of a node's local token cache holding 1,000,000 live tokens (target:
//! under 300 MB for the whole process).
//!
//! ```sh
//! cargo bench --bench cache_rss                        # 1,000,000 tokens
//! CACHE_RSS_TOKENS=200000 cargo bench --bench cache_rss
//! ```
//!
//! Fills a `TokenCache` through `get_or_fetch`, the path a Redis lookup takes, with records
//! decoded from JSON the way the Redis store decodes them (500 clients, a quarter of the
//! tokens granted by one of 100,000 users, a random grant id each), and reads
//! `VmRSS` / `VmHWM` from `/proc/self/status` before and after. The last line is
//! machine-readable (`cache_rss tokens=… rss_before_kb=… rss_after_kb=… hwm_kb=…`) for
//! `bench/run`. Run without `--bench` (as `cargo test --all-targets` does), it fills 10,000
//! entries as a smoke test.

use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tollgate::store::TokenCache;
use tollgate::token::{AccessEntry, AccessToken, TokenHash, now_millis};

const FULL: usize = 1_000_000;
const SMOKE: usize = 10_000;

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let tokens = std::env::var("CACHE_RSS_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { FULL } else { SMOKE });

    // The default `cache_capacity` is 1,000,000; leave room so every token is kept.
    let cache = TokenCache::new(Duration::from_secs(3600), tokens.max(1) + 1);
    cache.set_live(true);
    let before = status_kb("VmRSS");
    let started = Instant::now();
    let now = now_millis();
    for i in 0..tokens {
        // Token text is never kept; only its hash is, as in the gateway.
        let hash = TokenHash::of(&format!("bench-token-{i:012}-abcdefghijklmnopqrstu"));
        // As the Redis store hands records to the cache: deserialised, then interned.
        // The record as the Redis store keeps it, decoded the way the store decodes it.
        let record = format!(
            r#"{{"client_id":"client-{:03}",{}"scopes":["reports","read"],"issued_at":{now},"expires_at":{},"grant_id":"{:032x}"}}"#,
            i % 500,
            if i % 4 == 0 {
                format!(r#""username":"user-{:06}","#, i % 100_000)
            } else {
                String::new()
            },
            now + 3_600_000,
            (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        let token: AccessToken = serde_json::from_str(&record).expect("an access-token record");
        let entry = AccessEntry {
            token: token.interned(),
            revoked: false,
        };
        let got = cache
            .get_or_fetch(hash, || std::future::ready(Ok(Some(entry))))
            .now_or_never()
            .expect("an uncontended fill never waits")
            .expect("fill");
        assert!(got.is_some());
    }
    let fill = started.elapsed();
    let stats = cache.stats();
    assert_eq!(stats.entries, tokens, "every token stays cached");
    let after = status_kb("VmRSS");
    let hwm = status_kb("VmHWM");
    let per_token = (after.saturating_sub(before) * 1024) / tokens.max(1) as u64;
    println!(
        "{tokens} live tokens in the local cache: VmRSS {:.1} MB before, {:.1} MB after \
         ({per_token} B per token), VmHWM {:.1} MB, filled in {fill:.2?}",
        mb(before),
        mb(after),
        mb(hwm),
    );
    println!(
        "cache_rss tokens={tokens} rss_before_kb={before} rss_after_kb={after} hwm_kb={hwm} \
         fill_ms={}",
        fill.as_millis()
    );
    // Keep the cache alive until after the measurement.
    drop(cache);
}

fn mb(kb: u64) -> f64 {
    kb as f64 * 1024.0 / 1e6
}

/// A `kB` field of `/proc/self/status`, or 0 where there is none (not Linux).
fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
