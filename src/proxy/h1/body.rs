//! Upstream response bodies without I/O: `Content-Length`, chunked (trailers read and
//! dropped) or until the connection closes, decoded out of the connection's read buffer as
//! `Bytes` split off it, never copied. Whatever follows the body stays in the buffer.

use bytes::{Buf, Bytes, BytesMut};

use super::response::ResponseError;

/// Longest chunk-size line (with its extensions, which are ignored) and trailer section.
pub const MAX_CHUNK_LINE: usize = 4096;
pub const MAX_TRAILERS: usize = 64 * 1024;

/// What [`Decoder::decode`] found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes, split off the buffer.
    Data(Bytes),
    /// Nothing decodable yet: read more, then decode again (or call [`Decoder::eof`]).
    NeedMore,
    /// The body is complete; what follows in the buffer is not part of it.
    End,
}

/// A response body's decoding state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoder {
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// Bytes still to come.
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
    /// An error met while reading ahead past data already handed out; reported next.
    Failed(ResponseError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Bytes left in the current chunk.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines (discarded), with the bytes seen so far.
    Trailers(usize),
}

impl Decoder {
    pub fn length(n: u64) -> Decoder {
        Decoder {
            kind: if n == 0 { Kind::Done } else { Kind::Length(n) },
        }
    }

    pub fn chunked() -> Decoder {
        Decoder {
            kind: Kind::Chunked(Chunk::Size),
        }
    }

    pub fn until_close() -> Decoder {
        Decoder {
            kind: Kind::UntilClose,
        }
    }

    /// The body runs until the upstream closes the connection.
    pub fn is_close_delimited(&self) -> bool {
        self.kind == Kind::UntilClose
    }

    /// The whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.kind == Kind::Done
    }

    /// Body bytes still to come, when the framing says.
    pub fn remaining(&self) -> Option<u64> {
        match self.kind {
            Kind::Length(n) => Some(n),
            Kind::Done => Some(0),
            _ => None,
        }
    }

    /// Takes the next body bytes (or the end) from the start of `buf`. After a chunk's data,
    /// the framing that follows in the buffer is read at once, so that a body whose last
    /// chunk is already buffered is [`done`](Self::is_done) as soon as its data is taken.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ResponseError> {
        match &mut self.kind {
            Kind::Done => Ok(Decoded::End),
            Kind::Failed(e) => Err(e.clone()),
            _ if buf.is_empty() => Ok(Decoded::NeedMore),
            Kind::UntilClose => Ok(Decoded::Data(buf.split().freeze())),
            Kind::Length(n) => {
                let take = usize::try_from(*n).map_or(buf.len(), |n| n.min(buf.len()));
                *n -= take as u64;
                if *n == 0 {
                    self.kind = Kind::Done;
                }
                Ok(Decoded::Data(buf.split_to(take).freeze()))
            }
            Kind::Chunked(_) => {
                self.framing(buf)?;
                let Kind::Chunked(Chunk::Data(n)) = &mut self.kind else {
                    return Ok(if self.is_done() {
                        Decoded::End
                    } else {
                        Decoded::NeedMore
                    });
                };
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let take = usize::try_from(*n).map_or(buf.len(), |n| n.min(buf.len()));
                *n -= take as u64;
                if *n == 0 {
                    self.kind = Kind::Chunked(Chunk::DataEnd);
                }
                let data = buf.split_to(take).freeze();
                if let Err(e) = self.framing(buf) {
                    self.kind = Kind::Failed(e);
                }
                Ok(Decoded::Data(data))
            }
        }
    }

    /// The upstream closed the connection: the end of a close-delimited body, else a body cut
    /// short.
    pub fn eof(&mut self) -> Result<(), ResponseError> {
        match self.kind {
            Kind::UntilClose | Kind::Done => {
                self.kind = Kind::Done;
                Ok(())
            }
            Kind::Failed(ref e) => Err(e.clone()),
            _ => Err(ResponseError::Truncated),
        }
    }

    /// Consumes chunk framing (size lines, CRLFs, trailers) from `buf` until chunk data is
    /// next, the body is done, or more bytes are needed.
    fn framing(&mut self, buf: &mut BytesMut) -> Result<(), ResponseError> {
        loop {
            let Kind::Chunked(state) = self.kind else {
                return Ok(());
            };
            match state {
                Chunk::Data(_) => return Ok(()),
                Chunk::DataEnd => match buf.get(..2) {
                    None if buf.first().is_none_or(|&b| b == b'\r') => return Ok(()),
                    Some(b"\r\n") => {
                        buf.advance(2);
                        self.kind = Kind::Chunked(Chunk::Size);
                    }
                    _ => return Err(ResponseError::BadChunk),
                },
                Chunk::Size => {
                    let Some(line) = line(buf, MAX_CHUNK_LINE, ResponseError::BadChunk)? else {
                        return Ok(());
                    };
                    let size = chunk_size(&buf[..line - 2])?;
                    buf.advance(line);
                    self.kind = Kind::Chunked(match size {
                        0 => Chunk::Trailers(0),
                        n => Chunk::Data(n),
                    });
                }
                Chunk::Trailers(seen) => {
                    let limit = MAX_TRAILERS.saturating_sub(seen);
                    let Some(line) = line(buf, limit, ResponseError::BadTrailers)? else {
                        return Ok(());
                    };
                    if line == 2 {
                        buf.advance(2);
                        self.kind = Kind::Done;
                        return Ok(());
                    }
                    // A trailer field is a name, a colon and a value; its content is dropped.
                    match buf[..line].iter().position(|&b| b == b':') {
                        Some(colon) if colon > 0 && is_token(&buf[..colon]) => {}
                        _ => return Err(ResponseError::BadTrailers),
                    }
                    buf.advance(line);
                    self.kind = Kind::Chunked(Chunk::Trailers(seen + line));
                }
            }
        }
    }
}

/// The length (with its CRLF) of the line at the start of `buf`, if it is complete; a line
/// longer than `limit`, or one ending in a bare LF, is `err`.
fn line(buf: &[u8], limit: usize, err: ResponseError) -> Result<Option<usize>, ResponseError> {
    let window = &buf[..buf.len().min(limit)];
    match window.iter().position(|&b| b == b'\n') {
        Some(lf) if lf > 0 && window[lf - 1] == b'\r' => Ok(Some(lf + 1)),
        Some(_) => Err(err),
        None if buf.len() >= limit => Err(err),
        None => Ok(None),
    }
}

/// `chunk-size [ BWS ";" chunk-ext ]` (RFC 9112 §7.1): one to sixteen hex digits; extensions
/// are ignored but may hold no control characters (a CR or LF inside would split the line
/// differently for another parser).
fn chunk_size(line: &[u8]) -> Result<u64, ResponseError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(ResponseError::BadChunk);
    }
    let size = line[..digits].iter().fold(0u64, |n, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => d - b'A' + 10,
        };
        n << 4 | u64::from(v)
    });
    let rest = &line[digits..];
    let ext = &rest[rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count()..];
    let ok = match ext.first() {
        None => true,
        Some(b';') => ext
            .iter()
            .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80),
        Some(_) => false,
    };
    if ok {
        Ok(size)
    } else {
        Err(ResponseError::BadChunk)
    }
}

fn is_token(name: &[u8]) -> bool {
    name.iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
pub(super) mod tests;
