//! `[server]` limits (SPEC §12) → [`Limits`]: each value in a range a node can serve with.

use super::super::raw::RawServer;
use super::*;

/// Bounds of `max_header_bytes`: it is also hyper's connection buffer size, which hyper
/// wants at least 8 KiB; above 256 KiB a head costs more memory than any client needs.
const HEADER_BYTES: std::ops::RangeInclusive<i64> = 8192..=262_144;
const CONNECTIONS: std::ops::RangeInclusive<i64> = 1..=1_000_000;

impl Validator<'_> {
    pub(super) fn limits(&mut self, rs: &RawServer) -> Limits {
        let default = Limits::default();
        let max_header_bytes = match &rs.max_header_bytes {
            Some(n) if HEADER_BYTES.contains(n.get_ref()) => *n.get_ref() as usize,
            Some(n) => {
                self.d.error(
                    n.span(),
                    "max_header_bytes must be from 8192 to 262144 (256 KiB)",
                );
                default.max_header_bytes
            }
            None => default.max_header_bytes,
        };
        let max_connections = match &rs.max_connections {
            Some(n) if CONNECTIONS.contains(n.get_ref()) => *n.get_ref() as usize,
            Some(n) => {
                self.d
                    .error(n.span(), "max_connections must be from 1 to 1000000");
                default.max_connections
            }
            None => default.max_connections,
        };
        Limits {
            max_header_bytes,
            header_timeout: self.timeout(
                &rs.header_timeout,
                "header_timeout",
                default.header_timeout,
            ),
            idle_timeout: self.timeout(&rs.idle_timeout, "idle_timeout", default.idle_timeout),
            max_connections,
        }
    }

    /// A duration that must be more than 0: a zero timeout would cut every connection.
    fn timeout(&mut self, raw: &Option<Str>, key: &str, default: Duration) -> Duration {
        let d = self.duration_or(raw, default);
        match raw {
            Some(at) if d.is_zero() => {
                self.err(at, format!("{key} must be more than 0s"));
                default
            }
            _ => d,
        }
    }
}
