//! Client secrets and user passwords: argon2id hashing and verification.
//!
//! Secrets are only ever held as PHC strings. Verification is CPU-heavy by design, so callers
//! on the async runtime go through [`verify_blocking`], which runs it off the reactor threads.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

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

/// [`verify`] on the blocking pool, so a slow hash never stalls other requests.
pub async fn verify_blocking(secret: String, phc: String) -> bool {
    tokio::task::spawn_blocking(move || verify(&secret, &phc))
        .await
        .unwrap_or(false)
}

/// A hash of a random secret nobody knows: verifying against it when the user does not exist
/// makes "unknown user" take as long as "wrong password", so timing does not reveal usernames.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let mut noise = [0u8; 32];
        let _ = getrandom::fill(&mut noise);
        hash(&String::from_utf8_lossy(&noise)).unwrap_or_default()
    })
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
