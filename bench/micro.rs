//! Micro-benchmarks (divan) for the per-request work that is not I/O: path matching against
//! 10 / 1,000 / 100,000 patterns, path normalisation, token hashing, a cached token
//! validation, and attaching an outbound credential's token. `bench/run` runs them and
//! copies the medians into `bench/RESULTS.md`.
//!
//! ```sh
//! cargo bench --bench micro              # everything
//! cargo bench --bench micro -- matcher   # only the matcher benchmarks
//! ```
//!
//! Under `cargo test --all-targets` divan runs each benchmark once, as a smoke test.

use std::hint::black_box;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use divan::Bencher;
use futures_util::FutureExt;
use hyper::header::{AUTHORIZATION, HeaderValue};
use hyper::{HeaderMap, Method};
use tollgate::auth::{self, Credentials};
use tollgate::config::{Backend, Scope, StoreConfig};
use tollgate::pattern::{Matcher, Pattern, normalize};
use tollgate::registry::{Freshness, Rules};
use tollgate::store::{StoreError, TokenCache, TokenStore};
use tollgate::token::{AccessEntry, AccessToken, TokenHash, now_millis};

fn main() {
    divan::main();
}

// ---------------------------------------------------------------------------------------------
// Pattern sets

/// Patterns per service; a set of `n` patterns spans `n / 5` services (at least one).
const SERVICE_PATTERNS: [&str; 5] = [
    "/svc{i}/v1/items",
    "GET /svc{i}/v1/items/{id}",
    "/svc{i}/v1/items/{id}/notes/*",
    "GET,HEAD /svc{i}/static/*",
    "POST,PUT /svc{i}/v1/orders/{order}/lines/{line}",
];

/// Request paths per service: the first five hit one pattern each, the last two match nothing
/// (a wrong version, an unknown service), so a quarter of the lookups are misses that walk
/// as far as the trie lets them.
const SERVICE_REQUESTS: [(&str, &str); 7] = [
    ("GET", "/svc{i}/v1/items"),
    ("GET", "/svc{i}/v1/items/12345"),
    ("PUT", "/svc{i}/v1/items/987/notes/2024/01/a.txt"),
    ("GET", "/svc{i}/static/css/site.css"),
    ("POST", "/svc{i}/v1/orders/55/lines/3"),
    ("GET", "/svc{i}/v2/items/1"),
    ("GET", "/nosuch{i}/v1/items"),
];

/// Distinct requests each benchmark cycles through, so no single trie path stays hot.
const REQUESTS: usize = 4096;

struct PatternSet {
    matcher: Matcher<usize>,
    requests: Vec<(Method, String)>,
}

impl PatternSet {
    fn new(n: usize) -> PatternSet {
        let services = n.div_ceil(SERVICE_PATTERNS.len());
        let patterns = (0..services)
            .flat_map(|i| {
                SERVICE_PATTERNS
                    .iter()
                    .map(move |p| p.replace("{i}", &i.to_string()))
            })
            .take(n)
            .enumerate()
            .map(|(k, text)| {
                let pattern = Pattern::parse(&text).expect("benchmark pattern");
                // The value stands for a scope index, as in `ScopeRules`; ten scopes.
                (pattern, k % 10)
            });
        let matcher = Matcher::new(patterns);
        assert_eq!(matcher.len(), n);
        let mut rng = Lcg(0x5eed_1234_abcd_0042);
        let requests = (0..REQUESTS)
            .map(|_| {
                let service = rng.below(services);
                let (method, path) = SERVICE_REQUESTS[rng.below(SERVICE_REQUESTS.len())];
                let method = Method::from_bytes(method.as_bytes()).expect("method");
                (method, path.replace("{i}", &service.to_string()))
            })
            .collect();
        PatternSet { matcher, requests }
    }

    fn get(n: usize) -> &'static PatternSet {
        static S10: LazyLock<PatternSet> = LazyLock::new(|| PatternSet::new(10));
        static S1K: LazyLock<PatternSet> = LazyLock::new(|| PatternSet::new(1_000));
        static S100K: LazyLock<PatternSet> = LazyLock::new(|| PatternSet::new(100_000));
        match n {
            10 => &S10,
            1_000 => &S1K,
            100_000 => &S100K,
            _ => unreachable!("no pattern set of size {n}"),
        }
    }

    /// Yields the requests in turn (input generation is not timed by divan).
    fn cycle(&'static self) -> impl FnMut() -> &'static (Method, String) {
        let mut next = 0;
        move || {
            next = (next + 1) % self.requests.len();
            &self.requests[next]
        }
    }
}

/// A tiny deterministic generator: the sets must be the same on every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

const SIZES: [usize; 3] = [10, 1_000, 100_000];

/// Calls per timed sample: enough that the timer's own cost (≈ 20 ns) vanishes, and that a
/// sample sweeps many different requests. (Left to divan's auto-tuning, one slow first call —
/// a cold cache, a preemption on a shared machine — makes it settle on one call per sample.)
const SAMPLE_SIZE: u32 = 1024;

/// `Matcher::any`, as the scope check uses it: stop at the first pattern whose scope the
/// token holds (here: any scope). Requests spread over every service of the set, so with
/// many patterns this includes the cache misses of a large trie.
#[divan::bench(args = SIZES, sample_size = SAMPLE_SIZE)]
fn matcher_any(bencher: Bencher, n: usize) {
    let set = PatternSet::get(n);
    bencher
        .with_inputs(set.cycle())
        .bench_local_refs(|(method, path)| set.matcher.any(method, path, |_| true));
}

/// `Matcher::best`, as route selection uses it: visit every match, keep the most specific.
#[divan::bench(args = SIZES, sample_size = SAMPLE_SIZE)]
fn matcher_best(bencher: Bencher, n: usize) {
    let set = PatternSet::get(n);
    bencher
        .with_inputs(set.cycle())
        .bench_local_refs(|(method, path)| set.matcher.best(method, path).map(|(_, &v)| v));
}

/// `Matcher::any` on one request over and over: the algorithmic cost alone, caches warm.
#[divan::bench(args = SIZES, sample_size = SAMPLE_SIZE)]
fn matcher_any_one_path(bencher: Bencher, n: usize) {
    let set = PatternSet::get(n);
    let path = "/svc0/v1/items/12345";
    bencher.bench_local(|| set.matcher.any(&Method::GET, black_box(path), |_| true));
}

// ---------------------------------------------------------------------------------------------
// Path normalisation

/// An already canonical path: checked in one pass, returned borrowed.
#[divan::bench(sample_size = SAMPLE_SIZE)]
fn normalize_typical() -> usize {
    normalize(black_box("/api/v1/items/12345/notes/2024"))
        .map(|p| p.len())
        .unwrap_or(0)
}

/// A path that needs every rewrite: `//`, `.`, `..`, lowercase and unreserved escapes,
/// raw bytes to encode.
#[divan::bench(sample_size = SAMPLE_SIZE)]
fn normalize_dirty() -> usize {
    normalize(black_box(
        "/api//v1/./items/%7euser/../x%2dy/%e2%82%ac/caf\u{e9}/a%3Ab",
    ))
    .map(|p| p.len())
    .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Tokens

const TOKENS: usize = 100_000;

fn token_text(i: usize) -> String {
    // The shape of a real token: 43 base64url characters.
    format!("{i:0>10}-bench-token-abcdefghijklmnopqrstuvwxy")
}

/// A record as the Redis store holds it, decoded the way the store decodes it (JSON, then
/// client id and scope list shared with other tokens).
fn access_entry(i: usize) -> AccessEntry {
    let now = now_millis();
    let record = serde_json::json!({
        "client_id": format!("client-{}", i % 100),
        "scopes": ["reports", "read"],
        "issued_at": now,
        "expires_at": now + 3_600_000,
        "grant_id": format!("{:032x}", i as u128 * 0x9e37_79b9_7f4a_7c15),
    });
    let token: AccessToken = serde_json::from_value(record).expect("an access-token record");
    AccessEntry {
        token: token.interned(),
        revoked: false,
    }
}

fn hashes() -> &'static [TokenHash] {
    static HASHES: LazyLock<Vec<TokenHash>> =
        LazyLock::new(|| (0..TOKENS).map(|i| TokenHash::of(&token_text(i))).collect());
    &HASHES
}

fn cycle_hashes() -> impl FnMut() -> TokenHash {
    let mut next = 0;
    move || {
        next = (next + 1) % TOKENS;
        hashes()[next]
    }
}

/// A warm, live token cache holding [`TOKENS`] entries.
fn warm_cache() -> &'static TokenCache {
    static CACHE: LazyLock<TokenCache> = LazyLock::new(|| {
        let cache = TokenCache::new(Duration::from_secs(3600), TOKENS * 2);
        cache.set_live(true);
        for (i, hash) in hashes().iter().enumerate() {
            cache
                .get_or_fetch(*hash, || std::future::ready(Ok(Some(access_entry(i)))))
                .now_or_never()
                .expect("an uncontended fill never waits")
                .expect("fill");
        }
        cache
    });
    &CACHE
}

/// A cache hit never awaits anything, so polling it once is the whole lookup.
fn cache_hit(cache: &TokenCache, hash: TokenHash) -> Option<Arc<AccessEntry>> {
    cache
        .get_or_fetch(hash, || {
            std::future::ready(Err(StoreError::Unavailable("a hit never fetches".into())))
        })
        .now_or_never()
        .and_then(Result::ok)
        .flatten()
}

/// SHA-256 of a 43-character token: done once per request.
#[divan::bench(sample_size = SAMPLE_SIZE)]
fn token_hash(bencher: Bencher) {
    let token = token_text(7);
    bencher.bench_local(|| TokenHash::of(black_box(&token)));
}

/// `TokenCache::get_or_fetch` on a hit (the Redis store's hot path), cycling through
/// [`TOKENS`] different tokens.
#[divan::bench(sample_size = SAMPLE_SIZE)]
fn token_cache_hit(bencher: Bencher) {
    let cache = warm_cache();
    bencher
        .with_inputs(cycle_hashes())
        .bench_local_values(|hash| cache_hit(cache, hash));
}

/// `TokenStore::lookup_access` on the memory store (its hot path; no cache in front),
/// cycling through [`TOKENS`] different tokens.
#[divan::bench(sample_size = SAMPLE_SIZE)]
fn memory_store_lookup(bencher: Bencher) {
    static STORE: LazyLock<TokenStore> = LazyLock::new(|| {
        let config = StoreConfig {
            backend: Backend::Memory,
            prefix: "bench:".into(),
            cache_ttl: Duration::from_secs(30),
            cache_capacity: 0,
            encryption_key: None,
        };
        let store = TokenStore::open(&config).expect("memory store");
        for (i, hash) in hashes().iter().enumerate() {
            store
                .issue(hash, &access_entry(i).token, None)
                .now_or_never()
                .expect("the memory store never waits")
                .expect("issue");
        }
        store
    });
    let store = &*STORE;
    bencher
        .with_inputs(cycle_hashes())
        .bench_local_values(|hash| {
            store
                .lookup_access(&hash)
                .now_or_never()
                .and_then(Result::ok)
                .flatten()
        });
}

/// The whole bearer check of a cached token, without I/O: read the header, hash the token,
/// cache hit, expiry check, scope check against the path.
#[divan::bench(sample_size = SAMPLE_SIZE)]
fn bearer_check_cached(bencher: Bencher) {
    let cache = warm_cache();
    let scopes: Vec<Scope> = ["reports", "read", "write", "admin-tools"]
        .iter()
        .enumerate()
        .map(|(k, name)| Scope {
            name: (*name).into(),
            description: String::new(),
            patterns: [format!("/api{k}/v1/*"), format!("GET /api{k}/items/{{id}}")]
                .iter()
                .map(|p| Pattern::parse(p).expect("pattern"))
                .collect(),
        })
        .collect();
    let rules = Rules::of(
        scopes.into_iter().map(|s| (s, "file")).collect(),
        ["someone-else"],
        Arc::new(Freshness::new(false)),
    );
    let mut headers = HeaderMap::new();
    let value = format!("Bearer {}", token_text(4242));
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&value).expect("header"),
    );
    let method = Method::GET;
    bencher.bench_local(|| {
        let Credentials::Bearer(token) = auth::credentials(black_box(&headers)) else {
            return false;
        };
        let Some(entry) = cache_hit(cache, TokenHash::of(token)) else {
            return false;
        };
        let now = now_millis();
        !entry.revoked
            && !entry.token.is_expired(now)
            && rules.check(&entry.token.client_id, now).is_ok()
            && rules
                .scopes
                .allows(&entry.token.scopes, &method, black_box("/api0/v1/items/42"))
    });
}

/// Numbers of disabled clients for [`registry_check`].
const DISABLED: [usize; 3] = [0, 1, 10_000];

/// What the registry adds to a bearer check (SPEC §9): is this node's copy current, and is
/// the token's client disabled? An atomic load, and a hash lookup once any client is.
#[divan::bench(args = DISABLED, sample_size = SAMPLE_SIZE)]
fn registry_check(bencher: Bencher, n: usize) {
    let ids: Vec<String> = (0..n).map(|i| format!("disabled-{i}")).collect();
    let rules = Rules::of(
        Vec::new(),
        ids.iter().map(String::as_str),
        Arc::new(Freshness::new(false)),
    );
    let now = now_millis();
    bencher.bench_local(|| rules.check(black_box("photoprint"), now).is_ok());
}

/// `Outbound::header` for a credential whose token is in hand: what attaching an upstream
/// token costs a proxied request (SPEC §8). The token comes once from a throwaway token
/// endpoint on loopback; the measured call never leaves memory.
#[divan::bench(sample_size = SAMPLE_SIZE)]
fn credential_header(bencher: Bencher) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let outbound = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let body = r#"{"access_token":"bench-upstream-token","token_type":"Bearer","expires_in":3600}"#;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(format!("{head}{body}").as_bytes()).await;
            }
        });
        let toml = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"http://127.0.0.1\"\n\
             [[credentials]]\nname = \"crm\"\ntoken_url = \"http://127.0.0.1:{port}/token\"\n\
             grant = \"client_credentials\"\nclient_id = \"bench\"\nclient_secret = \"s\"\n"
        );
        let config = tollgate::config::Config::from_str_with_env(
            std::path::Path::new("bench.toml"),
            &toml,
            &|_| None,
        )
        .expect("config");
        let store = TokenStore::open(&config.store).expect("memory store");
        let outbound = tollgate::outbound::Outbound::new(&config, store);
        outbound.header("crm", None).await.expect("first token");
        outbound
    });
    bencher.bench_local(|| {
        outbound
            .header(black_box("crm"), None)
            .now_or_never()
            .and_then(Result::ok)
    });
}
