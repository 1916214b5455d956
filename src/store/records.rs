//! Records beside the tokens: pending authorization requests, login sessions, authorization
//! codes, and outbound credentials' tokens, locks and connect states. Each lives under a key of its kind, expires on its own, and is shared
//! by every node on the same store (a login on one node, consent on another).

use std::time::Duration;

/// What a record is; each kind has its own key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// An authorization request waiting for login and consent.
    Request,
    /// A browser's login session.
    Session,
    /// An authorization code (single use).
    Code,
    /// An outbound credential's tokens, sealed with `[store] encryption_key` (SPEC §8).
    Credential,
    /// A short lock: one node fetches a credential's token while the others wait for it.
    CredentialLock,
    /// The `state` of an outbound authorization-code connect flow (single use).
    ConnectState,
}

impl RecordKind {
    pub fn key_part(self) -> &'static str {
        match self {
            RecordKind::Request => "req:",
            RecordKind::Session => "sess:",
            RecordKind::Code => "code:",
            RecordKind::Credential => "cred:",
            RecordKind::CredentialLock => "credlock:",
            RecordKind::ConnectState => "cstate:",
        }
    }
}

/// Result of marking a code as used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeUse {
    /// This call used it first.
    First,
    /// It had been used before: a replay.
    AlreadyUsed,
    /// No such code (never issued, or expired).
    Missing,
}

/// `Duration` → whole milliseconds, at least 1 (Redis refuses a zero expiry).
pub fn ttl_millis(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}
