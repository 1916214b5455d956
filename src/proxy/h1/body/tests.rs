//! The body decoder on every framing case of RFC 9112 §7.1 (chunked), bodies cut short, and
//! (proptest) any response split anywhere decodes to the same head and body. `feed` drives a
//! whole response through head parser and decoder, as a connection does; the head tests use
//! it too.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::super::response::{Head, ResponseError, parse_head};
use super::*;

/// Feeds `pieces` in turn, as reads would deliver them, through head and body; `closed`:
/// the upstream closes after the last piece. → head, body, bytes left in the buffer.
pub(in crate::proxy::h1) fn feed(
    pieces: &[&[u8]],
    head_request: bool,
    closed: bool,
) -> Result<(Head, Vec<u8>, Vec<u8>), ResponseError> {
    let mut buf = BytesMut::new();
    let mut pieces = pieces.iter();
    let mut head = None;
    let mut body = Vec::new();
    loop {
        if head.is_none() && !buf.is_empty() {
            head = parse_head(&mut buf, head_request)?;
        }
        if let Some(h) = head.as_mut() {
            match h.body.decode(&mut buf)? {
                Decoded::Data(d) => {
                    assert!(!d.is_empty(), "empty data frame");
                    body.extend_from_slice(&d);
                    continue;
                }
                Decoded::End => break,
                Decoded::NeedMore => {}
            }
        }
        match pieces.next() {
            Some(p) => buf.extend_from_slice(p),
            None if closed => match head.as_mut() {
                Some(h) => {
                    h.body.eof()?;
                    break;
                }
                None => return Err(ResponseError::Truncated),
            },
            None => return Err(ResponseError::Truncated),
        }
    }
    let head = head.ok_or(ResponseError::Truncated)?;
    assert!(head.body.is_done());
    Ok((head, body, buf.to_vec()))
}

pub(in crate::proxy::h1) fn whole(wire: &str) -> Result<(Head, Vec<u8>, Vec<u8>), ResponseError> {
    feed(&[wire.as_bytes()], false, false)
}

#[test]
fn bad_chunk_lines_are_refused() {
    for body in [
        "g\r\n",
        "\r\n",
        " 5\r\nhello\r\n0\r\n\r\n",
        "10000000000000000\r\n",
        "5\nhello\r\n0\r\n\r\n",
        "5\r\r\nhello\r\n0\r\n\r\n",
        "5 x\r\nhello\r\n0\r\n\r\n",
        "5;a\x01\r\nhello\r\n0\r\n\r\n",
        "5;a\rb\r\nhello\r\n0\r\n\r\n",
        "5\r\nhelloXY0\r\n\r\n",
        "5\r\nhello\n0\r\n\r\n",
        "-5\r\nhello\r\n0\r\n\r\n",
        "0x5\r\nhello\r\n0\r\n\r\n",
    ] {
        let wire = format!("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{body}");
        assert_eq!(
            whole(&wire).err(),
            Some(ResponseError::BadChunk),
            "{body:?}"
        );
    }
    let long = format!("5;{}\r\nhello\r\n0\r\n\r\n", "x".repeat(MAX_CHUNK_LINE));
    let wire = format!("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{long}");
    assert_eq!(whole(&wire).err(), Some(ResponseError::BadChunk));
    for trailers in [
        "nocolon\r\n\r\n",
        ": v\r\n\r\n",
        "x y: v\r\n\r\n",
        "x: v\n\r\n",
    ] {
        let wire = format!("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n{trailers}");
        assert_eq!(
            whole(&wire).err(),
            Some(ResponseError::BadTrailers),
            "{trailers:?}"
        );
    }
}

#[test]
fn odd_but_valid_chunks_decode() {
    for (body, want) in [
        ("5;ext=1;b=\"q\"\r\nhello\r\n0\r\n\r\n", "hello"),
        ("5 ;ext\r\nhello\r\n0\r\n\r\n", "hello"),
        ("5\t\r\nhello\r\n0\r\n\r\n", "hello"),
        ("0005\r\nhello\r\n000\r\n\r\n", "hello"),
        ("A\r\n0123456789\r\n0\r\n\r\n", "0123456789"),
        ("1\r\na\r\n1\r\nb\r\n0\r\nx-a: 1\r\nx-b: 2\r\n\r\n", "ab"),
    ] {
        let wire = format!("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{body}");
        let (_, b, left) = whole(&wire).unwrap_or_else(|e| panic!("{body:?}: {e}"));
        assert_eq!((b.as_slice(), left.len()), (want.as_bytes(), 0), "{body:?}");
    }
    // Sixteen hex digits fit; the size is taken at its word (the body is then truncated).
    let wire = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nffffffffffffffff\r\nab";
    assert_eq!(
        feed(&[wire.as_bytes()], false, true).err(),
        Some(ResponseError::Truncated)
    );
}

#[test]
fn a_body_cut_short_is_an_error_not_an_end() {
    for wire in [
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nabc",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nabc",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nabcde\r\n",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\nx-t: 1\r\n",
    ] {
        assert_eq!(
            feed(&[wire.as_bytes()], false, true).err(),
            Some(ResponseError::Truncated),
            "{wire:?}"
        );
    }
}

#[test]
fn a_chunked_body_is_done_as_its_last_data_is_taken() {
    let mut buf = BytesMut::from("3\r\nabc\r\n0\r\n\r\nNEXT");
    let mut d = Decoder::chunked();
    assert_eq!(
        d.decode(&mut buf),
        Ok(Decoded::Data(Bytes::from_static(b"abc")))
    );
    assert!(d.is_done(), "the end was in the buffer already");
    assert_eq!(&buf[..], b"NEXT");
}

#[test]
fn chunked_split_at_every_byte_boundary() {
    let wire = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                 3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n1\r\n!\r\n0\r\nx-t: 1\r\n\r\nNEXT";
    let (_, whole_body, left) = feed(&[wire], false, false).expect("whole");
    assert_eq!(whole_body, b"abc0123456789abcdef!");
    assert_eq!(left, b"NEXT");
    for i in 0..=wire.len() {
        for j in i..=wire.len() {
            let pieces = [&wire[..i], &wire[i..j], &wire[j..]];
            let (_, body, left) =
                feed(&pieces, false, false).unwrap_or_else(|e| panic!("split {i},{j}: {e}"));
            assert_eq!(body, whole_body, "split {i},{j}");
            // The decoder stops at the body's end; "NEXT" arrives with the last piece.
            assert!(b"NEXT".starts_with(&left), "split {i},{j}: {left:?}");
        }
    }
}

/// A response as the upstream would send it, and what should come out of it.
#[derive(Debug, Clone)]
struct Sample {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// `None`: Content-Length; `Some(sizes)`: chunked with chunks of these sizes (the rest of
    /// the body in a last chunk).
    chunks: Option<Vec<usize>>,
    informational: bool,
}

impl Sample {
    fn wire(&self) -> Vec<u8> {
        let mut w = Vec::new();
        if self.informational {
            w.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        w.extend_from_slice(format!("HTTP/1.1 {} X\r\n", self.status).as_bytes());
        for (k, v) in &self.headers {
            w.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        let Some(sizes) = &self.chunks else {
            w.extend_from_slice(format!("content-length: {}\r\n\r\n", self.body.len()).as_bytes());
            w.extend_from_slice(&self.body);
            return w;
        };
        w.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
        let mut rest = &self.body[..];
        for size in sizes.iter().chain([&usize::MAX]) {
            let (chunk, more) = rest.split_at((*size).clamp(1, rest.len().max(1)).min(rest.len()));
            if chunk.is_empty() {
                break;
            }
            w.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            w.extend_from_slice(chunk);
            w.extend_from_slice(b"\r\n");
            rest = more;
        }
        w.extend_from_slice(b"0\r\nx-trailer: t\r\n\r\n");
        w
    }
}

fn sample() -> impl Strategy<Value = Sample> {
    (
        prop_oneof![200u16..=203, 205u16..=303, 305u16..=599],
        proptest::collection::vec(("x-[a-z0-9-]{1,12}", "[ -~]{0,20}"), 0..8),
        proptest::collection::vec(any::<u8>(), 0..600),
        proptest::option::of(proptest::collection::vec(1usize..80, 0..10)),
        any::<bool>(),
    )
        .prop_map(|(status, headers, body, chunks, informational)| Sample {
            status,
            // httparse trims the value's ends: the expected values must have none to trim.
            headers: headers
                .into_iter()
                .map(|(k, v)| (k, v.trim().to_owned()))
                .collect(),
            body,
            chunks,
            informational,
        })
}

/// The wire cut at these (sorted, deduplicated) offsets.
fn cut<'a>(wire: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    at.sort_unstable();
    at.dedup();
    let mut pieces = Vec::new();
    let mut from = 0;
    for c in at.into_iter().chain([wire.len()]) {
        pieces.push(&wire[from..c]);
        from = c;
    }
    pieces
}

proptest! {
    #[test]
    fn any_split_decodes_to_the_same_head_and_body(
        s in sample(),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        next in any::<bool>(),
    ) {
        let mut wire = s.wire();
        let pipelined = b"HTTP/1.1 200 OK\r\n";
        if next {
            wire.extend_from_slice(pipelined);
        }
        let (h, body, left) = feed(&cut(&wire, &cuts), false, false)
            .map_err(|e| TestCaseError::fail(format!("{e}: {:?}", String::from_utf8_lossy(&wire))))?;
        prop_assert_eq!(h.status.as_u16(), s.status);
        for (k, v) in &s.headers {
            prop_assert!(h.headers.get_all(k.as_str()).iter().any(|x| x == v.as_str()), "{} lost", k);
        }
        prop_assert_eq!(body, s.body);
        prop_assert!(h.keep_alive);
        // Everything after the body is left for what comes next, nothing of it taken.
        prop_assert!(pipelined.starts_with(&left) && (next || left.is_empty()));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_never_overrun(wire in proptest::collection::vec(any::<u8>(), 0..400), cuts in proptest::collection::vec(any::<usize>(), 0..6)) {
        let mut framed = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        framed.extend_from_slice(&wire);
        for input in [&wire[..], &framed[..]] {
            if let Ok((_, body, left)) = feed(&cut(input, &cuts), false, true) {
                prop_assert!(body.len() + left.len() <= input.len());
            }
        }
    }
}
