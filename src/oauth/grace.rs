//! The refresh grace window: a client that retries a refresh (lost response, concurrent
//! refreshes) gets the same answer instead of tripping reuse detection.
//!
//! The answer holds live tokens, and tokens are never stored in the clear. So the response is
//! sealed (ChaCha20-Poly1305) with a key derived from the *presented* refresh token, which the
//! store only knows by its SHA-256. Only someone holding the old refresh token can open it,
//! and that someone is exactly who is allowed to see the answer.

use sha2::{Digest, Sha256};

use crate::seal::SealKey;

fn key(refresh_token: &str) -> SealKey {
    // Domain-separated from the store's SHA-256(token), which is public to anyone reading Redis.
    let mut h = Sha256::new();
    h.update(b"tollgate refresh grace v1\0");
    h.update(refresh_token.as_bytes());
    SealKey(h.finalize().into())
}

/// Seals `plaintext` under `refresh_token`; `None` only if the OS random generator fails.
pub fn seal(refresh_token: &str, plaintext: &[u8]) -> Option<String> {
    key(refresh_token).seal(plaintext)
}

/// Opens what [`seal`] made with the same token; `None` for any other token or tampering.
pub fn open(refresh_token: &str, sealed: &str) -> Option<Vec<u8>> {
    key(refresh_token).open(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_token_opens_it() {
        let sealed = seal("refresh-1", b"{\"access_token\":\"x\"}").expect("seal");
        assert_eq!(
            open("refresh-1", &sealed).as_deref(),
            Some(&b"{\"access_token\":\"x\"}"[..])
        );
        assert_eq!(open("refresh-2", &sealed), None);
        let mut tampered = sealed.clone();
        tampered.replace_range(20..21, if &sealed[20..21] == "A" { "B" } else { "A" });
        assert_eq!(open("refresh-1", &tampered), None);
        assert_eq!(open("refresh-1", "!!"), None);
    }
}
