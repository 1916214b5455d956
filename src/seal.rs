//! Sealing small secrets for the store: ChaCha20-Poly1305 with a random nonce, base64 text
//! out. Used for the refresh grace answer (key derived from the old refresh token) and for
//! upstream tokens (key from `[store] encryption_key`).

use std::fmt;

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

const NONCE_BYTES: usize = 12;

/// A 32-byte sealing key; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SealKey(pub [u8; 32]);

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(<redacted>)")
    }
}

impl SealKey {
    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(&self.0))
    }

    /// Seals `plaintext`; `None` only if the OS random generator fails.
    pub fn seal(&self, plaintext: &[u8]) -> Option<String> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).ok()?;
        let mut out = nonce.to_vec();
        out.extend(
            self.cipher()
                .encrypt(Nonce::from_slice(&nonce), plaintext)
                .ok()?,
        );
        Some(base64::engine::general_purpose::STANDARD_NO_PAD.encode(out))
    }

    /// Opens what [`SealKey::seal`] made with the same key; `None` for another key or tampering.
    pub fn open(&self, sealed: &str) -> Option<Vec<u8>> {
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(sealed)
            .ok()?;
        if bytes.len() < NONCE_BYTES {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        self.cipher()
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .ok()
    }
}
