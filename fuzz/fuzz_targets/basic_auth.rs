//! HTTP Basic client credentials (`src/oauth/params.rs` `parse_basic`, RFC 6749 §2.3.1:
//! `base64(urlencode(id) ":" urlencode(secret))`), and the encoder the outbound credentials
//! use for the same scheme (`src/outbound/fetch.rs` `basic`).
//!
//! Properties: no panic on any header text; whatever the encoder makes of an id and secret
//! decodes to exactly that id and secret (an empty id is refused); and any decoded text
//! `ID:SECRET` gives what an independent form-urlencoded decoder gives for each half
//! (`+` is a space, `%XX` a byte, anything else itself, the result UTF-8), so no byte of a
//! credential is dropped or reinterpreted.
//!
//! Input: byte 0 picks the mode: 0 = the rest is the header's credentials as sent; 1 = the
//! rest is `id` NUL `secret` to encode; else the rest is the decoded `ID:SECRET` text.

#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use tollgate::fuzzing::{basic, parse_basic};

/// `application/x-www-form-urlencoded` decoding of one component, written out independently.
fn form_decode(s: &[u8]) -> Option<String> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => match (
                s.get(i + 1).and_then(|&h| hex(h)),
                s.get(i + 2).and_then(|&l| hex(l)),
            ) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else {
        return;
    };
    let b64 = &base64::engine::general_purpose::STANDARD;
    match mode {
        0 => {
            if let Ok(header) = std::str::from_utf8(rest) {
                if let Some((id, _)) = parse_basic(header) {
                    assert!(!id.is_empty());
                }
            }
        }
        1 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            let (id, secret) = text.split_once('\0').unwrap_or((text, ""));
            let value = basic(id, secret);
            let header = value.to_str().expect("an ASCII header");
            let encoded = header.strip_prefix("Basic ").expect("the Basic scheme");
            let expected = (!id.is_empty()).then(|| (id.to_owned(), secret.to_owned()));
            assert_eq!(parse_basic(encoded), expected, "{header:?}");
        }
        _ => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            let got = parse_basic(&b64.encode(text));
            let expected = text.split_once(':').and_then(|(id, secret)| {
                let id = form_decode(id.as_bytes())?;
                let secret = form_decode(secret.as_bytes())?;
                (!id.is_empty()).then_some((id, secret))
            });
            assert_eq!(got, expected, "{text:?}");
        }
    }
});
