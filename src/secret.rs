//! Client secrets and user passwords: argon2id hashing and verification.
//!
//! Secrets are only ever held as PHC strings. Verification is CPU-heavy by design, so callers
//! on the async runtime go through [`verify_blocking`], which runs it off the reactor threads,
//! at most one per core at a time (each argon2id run holds ~19 MiB), and remembers successes.
//!
//! Why remember successes: a client that fetches a token per job would otherwise pay a full
//! argon2id run (tens of ms) per token, capping issuance at a few dozen per second per core.
//! The memory holds no secret: its keys are HMAC-SHA256 tags of (hash, secret) under a random
//! key made at start and never stored, so neither a memory dump nor the tags themselves help
//! anyone guess a secret faster than argon2 allows. Only successes are kept, for
//! [`VERIFIED_TTL`]; changing a secret changes its hash and so every tag of it. Failures always
//! pay the full price (and are throttled, see `throttle`).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use dashmap::DashMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::LazyLock;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Hashes `secret` with argon2id and the crate's default (OWASP-recommended) parameters.
pub fn hash(secret: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("OS random generator failed: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks that `phc` is a well-formed argon2 PHC string (done at config load, so a typo is
/// reported with its line rather than as failed logins).
pub fn check_phc(phc: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(phc).map_err(|e| format!("not a PHC hash string: {e}"))?;
    match parsed.algorithm.as_str() {
        "argon2id" | "argon2i" | "argon2d" => Ok(()),
        other => Err(format!(
            "unsupported hash algorithm {other:?} (use argon2id; `tollgate hash-secret` makes one)"
        )),
    }
}

/// Does `secret` match the PHC string `phc`? A malformed hash never matches.
pub fn verify(secret: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(secret.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// How long a successful verification is remembered.
pub const VERIFIED_TTL: Duration = Duration::from_secs(300);
/// Most remembered verifications; past it the memory starts over.
const VERIFIED_MAX: usize = 100_000;

struct Verified {
    key: [u8; 32],
    seen: DashMap<[u8; 32], Instant>,
}

static VERIFIED: LazyLock<Verified> = LazyLock::new(|| {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("the OS random generator failed");
    Verified {
        key,
        seen: DashMap::new(),
    }
});

/// One argon2 run per core at a time: more would only queue on the CPU and multiply memory.
static ARGON2_SLOTS: LazyLock<Semaphore> =
    LazyLock::new(|| Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get())));

impl Verified {
    fn tag(&self, secret: &str, phc: &str) -> [u8; 32] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(phc.as_bytes());
        mac.update(&[0]);
        mac.update(secret.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn remembers(&self, tag: &[u8; 32]) -> bool {
        self.seen
            .get(tag)
            .is_some_and(|at| at.elapsed() < VERIFIED_TTL)
    }

    fn remember(&self, tag: [u8; 32]) {
        if self.seen.len() >= VERIFIED_MAX {
            self.seen.clear();
        }
        self.seen.insert(tag, Instant::now());
    }
}

/// Was `secret` verified against `phc` moments ago? A cheap HMAC, no argon2 run: callers
/// accept such a secret without reserving a throttled check, since it is no guess.
pub fn remembered(secret: &str, phc: &str) -> bool {
    VERIFIED.remembers(&VERIFIED.tag(secret, phc))
}

/// [`verify`] on the blocking pool, so a slow hash never stalls other requests; a recent
/// success with the same secret and hash is answered from memory.
pub async fn verify_blocking(secret: String, phc: String) -> bool {
    let tag = VERIFIED.tag(&secret, &phc);
    if VERIFIED.remembers(&tag) {
        return true;
    }
    let Ok(_slot) = ARGON2_SLOTS.acquire().await else {
        return false;
    };
    let ok = tokio::task::spawn_blocking(move || verify(&secret, &phc))
        .await
        .unwrap_or(false);
    if ok {
        VERIFIED.remember(tag);
    }
    ok
}

/// The cost part of a PHC string (`$argon2id$v=19$m=19456,t=2,p=1`): algorithm, version and
/// parameters, which decide how long a verification takes.
fn cost_of(phc: &str) -> Option<&str> {
    let mut dollars = phc.match_indices('$').map(|(i, _)| i);
    let end = dollars.nth(3)?;
    Some(&phc[..end])
}

/// The cost most of `hashes` share: the one a decoy should have, so that checking a secret
/// against an unknown account takes as long as against a real one.
pub fn usual_cost<'a>(hashes: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut counts: Vec<(&str, &str, usize)> = Vec::new();
    for phc in hashes {
        let Some(cost) = cost_of(phc) else { continue };
        match counts.iter_mut().find(|(c, _, _)| *c == cost) {
            Some(entry) => entry.2 += 1,
            None => counts.push((cost, phc, 1)),
        }
    }
    counts.into_iter().max_by_key(|c| c.2).map(|c| c.1)
}

/// Decoys made so far, by cost. A config names few distinct costs; the bound only guards
/// against a pathological one.
static DECOYS: LazyLock<DashMap<String, String>> = LazyLock::new(DashMap::new);
const DECOYS_MAX: usize = 64;

/// A hash of a random secret nobody knows, with the algorithm and parameters of `template`
/// (the crate defaults without one, or if it does not parse).
fn make_decoy(template: Option<&str>) -> Option<String> {
    let mut noise = [0u8; 32];
    getrandom::fill(&mut noise).ok()?;
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).ok()?;
    let salt = SaltString::encode_b64(&salt).ok()?;
    let argon = template
        .and_then(|t| PasswordHash::new(t).ok())
        .and_then(|parsed| {
            let algorithm = argon2::Algorithm::try_from(parsed.algorithm).ok()?;
            let version = argon2::Version::try_from(parsed.version.unwrap_or(0x13)).ok()?;
            let params = argon2::Params::try_from(&parsed).ok()?;
            Some(Argon2::new(algorithm, version, params))
        })
        .unwrap_or_default();
    argon
        .hash_password(&noise, &salt)
        .ok()
        .map(|h| h.to_string())
}

/// Spends what checking `secret` against a hash like `template` costs, and fails: for an
/// account that does not exist, so that timing does not tell which accounts do. Runs on the
/// blocking pool like [`verify_blocking`], making the decoy there on first use.
pub async fn verify_decoy(secret: String, template: Option<&str>) {
    let key = template.and_then(cost_of).unwrap_or("").to_owned();
    let decoy = match DECOYS.get(&key).map(|d| d.clone()) {
        Some(d) => d,
        None => {
            let template = template.map(str::to_owned);
            let made = {
                let Ok(_slot) = ARGON2_SLOTS.acquire().await else {
                    return;
                };
                tokio::task::spawn_blocking(move || make_decoy(template.as_deref()))
                    .await
                    .ok()
                    .flatten()
            };
            let Some(made) = made else { return };
            if DECOYS.len() < DECOYS_MAX {
                DECOYS.insert(key, made.clone());
            }
            made
        }
    };
    let _ = verify_blocking(secret, decoy).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let h = hash("s3cret").expect("hash");
        assert!(h.starts_with("$argon2id$"));
        check_phc(&h).expect("valid phc");
        assert!(verify("s3cret", &h));
        assert!(!verify("s3cret ", &h));
        assert!(!verify("s3cret", "not-a-hash"));
    }

    #[tokio::test]
    async fn successes_are_remembered_failures_are_not() {
        let h = hash("remember-me").expect("hash");
        assert!(verify_blocking("remember-me".into(), h.clone()).await);
        let tag = VERIFIED.tag("remember-me", &h);
        assert!(VERIFIED.remembers(&tag));
        assert!(!verify_blocking("wrong".into(), h.clone()).await);
        assert!(!VERIFIED.remembers(&VERIFIED.tag("wrong", &h)));
        // A tag depends on the hash too: the same secret under another hash is not vouched for.
        let other = hash("remember-me").expect("hash");
        assert!(!VERIFIED.remembers(&VERIFIED.tag("remember-me", &other)));
    }

    #[test]
    fn decoys_take_the_cost_of_the_configured_hashes() {
        let cheap = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        let default = hash("x").expect("hash");
        assert_eq!(cost_of(cheap), Some("$argon2id$v=19$m=8,t=1,p=1"));
        // The usual cost wins, whatever order the hashes come in.
        let hashes = [default.as_str(), cheap, cheap];
        assert_eq!(usual_cost(hashes.into_iter()), Some(cheap));
        let decoy = make_decoy(Some(cheap)).expect("decoy");
        assert_eq!(cost_of(&decoy), cost_of(cheap));
        let decoy = make_decoy(None).expect("decoy");
        assert_eq!(cost_of(&decoy), cost_of(&default));
    }

    #[test]
    fn phc_checks() {
        assert!(check_phc("$argon2id$v=19$m=19456,t=2,p=1$...").is_err());
        assert!(check_phc("plaintext").is_err());
        assert!(
            check_phc("$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$ZGVhZGJlZWZkZWFkYmVlZmRlYWRiZWVm")
                .is_err()
        );
    }
}
