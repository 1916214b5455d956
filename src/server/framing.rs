//! The one framing check hyper's server does not make (SPEC §12): a request head with both
//! `Content-Length` and `Transfer-Encoding` gets 400 and the connection closed.
//!
//! hyper already refuses, with 400 and a closed connection, differing `Content-Length`s, a
//! `Transfer-Encoding` that does not end in `chunked` (or any on HTTP/1.0), obs-folded lines
//! and a bad chunk line. Both framing headers, though, it resolves as RFC 9112 §6.3 lets an
//! intermediary: chunked wins and the `Content-Length` is dropped, which leaves no trace in
//! the `Request` the gateway sees. So the check runs on the bytes, before hyper parses them:
//! [`HeadScanner`] follows the request heads of a connection line by line (a `memchr` per
//! line, a few byte compares per header, no allocation), and when a head carries both
//! headers it turns the head's last byte into a NUL. No head may contain one (RFC 9110
//! §5.5), so hyper's own parser refuses the head, answers 400 and closes the connection, as
//! for every other malformed head; the request never reaches the service.
//!
//! To find the next head, the scanner skips `Content-Length` bodies. A chunked body it does
//! not follow: it stops watching that connection (hyper's own resolution still applies
//! there, and nothing ambiguous is forwarded, since the upstream request is framed anew).
//! Whatever it cannot be sure of (an unreadable length, HTTP/2, `CONNECT`) also stops it:
//! a head it is unsure of is left to hyper, never refused by guesswork.

/// Bytes kept of a line that continues in the next read: enough for any framing header
/// name and length value.
const KEEP: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a head (or waiting for the next one).
    Head,
    /// Skipping this many body bytes.
    Body(u64),
    /// Not watching any more.
    Off,
    /// The HTTP/2 preface was seen: no more heads on this connection.
    H2,
}

/// What one head said about framing.
#[derive(Debug, Default)]
struct Seen {
    request_line: bool,
    length_header: bool,
    /// The length, when every `Content-Length` line gave the same readable number.
    length: Option<u64>,
    length_unsure: bool,
    transfer_encoding: bool,
}

/// Follows the request heads of one HTTP/1.1 connection as its bytes are read.
pub struct HeadScanner {
    state: State,
    seen: Seen,
    /// The start of a line begun in an earlier read.
    carry: [u8; KEEP],
    carry_len: usize,
    /// The line was longer than `carry` holds.
    carry_cut: bool,
    /// Bytes of the current head so far (in state `Head`).
    head_bytes: usize,
}

impl HeadScanner {
    pub fn new() -> HeadScanner {
        HeadScanner {
            state: State::Head,
            seen: Seen::default(),
            carry: [0; KEEP],
            carry_len: 0,
            carry_cut: false,
            head_bytes: 0,
        }
    }

    /// A scanner that watches nothing (HTTP/2 by ALPN).
    pub fn off() -> HeadScanner {
        HeadScanner {
            state: State::Off,
            ..HeadScanner::new()
        }
    }

    /// While a head is being read: how many of its bytes have been seen.
    pub fn head_bytes(&self) -> Option<usize> {
        (self.state == State::Head).then_some(self.head_bytes)
    }

    /// The connection turned out to be HTTP/2 (prior knowledge).
    pub fn is_h2(&self) -> bool {
        self.state == State::H2
    }

    /// Looks at the bytes just read, before hyper does; a head with both framing headers
    /// has its last byte replaced by a NUL.
    pub fn scan(&mut self, buf: &mut [u8]) {
        let mut i = 0;
        while i < buf.len() {
            match self.state {
                State::Off | State::H2 => return,
                State::Body(left) => {
                    let take = left.min((buf.len() - i) as u64);
                    i += take as usize;
                    self.state = if take == left {
                        State::Head
                    } else {
                        State::Body(left - take)
                    };
                }
                State::Head => {
                    let Some(offset) = memchr::memchr(b'\n', &buf[i..]) else {
                        self.keep(&buf[i..]);
                        self.head_bytes += buf.len() - i;
                        return;
                    };
                    let end = i + offset;
                    self.head_bytes += offset + 1;
                    let refuse = if self.carry_len == 0 && !self.carry_cut {
                        self.line(&buf[i..end], false)
                    } else {
                        self.keep(&buf[i..end]);
                        let (carry, len, cut) = (self.carry, self.carry_len, self.carry_cut);
                        self.carry_len = 0;
                        self.carry_cut = false;
                        self.line(&carry[..len], cut)
                    };
                    if refuse {
                        buf[end] = 0;
                        self.state = State::Off;
                        return;
                    }
                    i = end + 1;
                }
            }
        }
    }

    fn keep(&mut self, part: &[u8]) {
        let room = KEEP - self.carry_len;
        let n = part.len().min(room);
        self.carry[self.carry_len..self.carry_len + n].copy_from_slice(&part[..n]);
        self.carry_len += n;
        self.carry_cut |= part.len() > room;
    }

    /// One line of a head, without its `\n`; `cut`: only its start is known. Returns whether
    /// the head (ending at this line) must be refused.
    fn line(&mut self, line: &[u8], cut: bool) -> bool {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !self.seen.request_line {
            // Empty lines before a request line are allowed (RFC 9112 §2.2), as hyper does.
            if !line.is_empty() {
                self.seen.request_line = true;
                if line.starts_with(b"PRI * HTTP/2.0") {
                    self.state = State::H2;
                } else if cut || line.starts_with(b"CONNECT ") {
                    self.state = State::Off;
                }
            }
            return false;
        }
        if line.is_empty() {
            let seen = std::mem::take(&mut self.seen);
            self.head_bytes = 0;
            if seen.transfer_encoding && seen.length_header {
                return true;
            }
            self.state = match seen.length {
                _ if seen.transfer_encoding || seen.length_unsure => State::Off,
                Some(n) if n > 0 => State::Body(n),
                _ => State::Head,
            };
            return false;
        }
        if has_name(line, b"content-length:") {
            self.seen.length_header = true;
            match parse_length(&line[b"content-length:".len()..]) {
                Some(n) if !cut && self.seen.length.is_none_or(|l| l == n) => {
                    self.seen.length = Some(n);
                }
                _ => self.seen.length_unsure = true,
            }
        } else if has_name(line, b"transfer-encoding:") {
            self.seen.transfer_encoding = true;
        }
        false
    }
}

impl Default for HeadScanner {
    fn default() -> Self {
        HeadScanner::new()
    }
}

/// Does the header line start with `name` (lower case, colon included), in any case?
fn has_name(line: &[u8], name: &[u8]) -> bool {
    // The first byte turns away most lines before the whole-name compare.
    line.len() >= name.len()
        && line[0].eq_ignore_ascii_case(&name[0])
        && line[..name.len()].eq_ignore_ascii_case(name)
}

fn parse_length(value: &[u8]) -> Option<u64> {
    let v = value.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

#[cfg(test)]
mod tests;
