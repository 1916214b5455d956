//! The head scanner on whole streams and on the same streams cut into reads anywhere.

use super::*;

/// Runs `stream` through a scanner in reads of `sizes` (cycled) and returns what hyper would
/// get.
fn scanned(stream: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = stream.to_vec();
    let mut scanner = HeadScanner::new();
    let mut at = 0;
    for size in sizes.iter().cycle() {
        if at >= out.len() {
            break;
        }
        let end = (at + size).min(out.len());
        scanner.scan(&mut out[at..end]);
        at = end;
    }
    out
}

/// Where a NUL was put, if anywhere (the streams below contain none of their own).
fn refused_at(stream: &[u8], sizes: &[usize]) -> Option<usize> {
    scanned(stream, sizes).iter().position(|&b| b == 0)
}

const GET: &str = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";

#[test]
fn heads_with_both_framing_headers_are_refused_at_their_last_byte() {
    let table: &[(&str, bool)] = &[
        (GET, false),
        ("POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", false),
        (
            "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            false,
        ),
        (
            "POST /a HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            true,
        ),
        (
            "POST /a HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
            true,
        ),
        (
            "POST /a HTTP/1.1\r\nCONTENT-LENGTH:3\r\nTRANSFER-ENCODING: gzip\r\n\r\n",
            true,
        ),
        // Bare LF line ends, which hyper accepts too.
        (
            "POST /a HTTP/1.1\nContent-Length: 3\nTransfer-Encoding: chunked\n\n",
            true,
        ),
        // Names that only start like the framing headers are other headers.
        (
            "POST /a HTTP/1.1\r\nContent-Lengths: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        ),
        (
            "POST /a HTTP/1.1\r\nX-Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        ),
    ];
    for (stream, refused) in table {
        let want = refused.then(|| stream.rfind('\n').expect("a head"));
        for sizes in [&[usize::MAX][..], &[1], &[2, 7], &[5, 1, 3]] {
            assert_eq!(
                refused_at(stream.as_bytes(), sizes),
                want,
                "{stream:?} read in pieces of {sizes:?}"
            );
        }
    }
}

#[test]
fn later_heads_are_found_past_length_bodies_and_bodies_are_not_read_as_heads() {
    // The first body looks like a head with both headers; it is a body all the same.
    let body = "GET /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let smuggler = "POST /b HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
    let stream = format!(
        "POST /a HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}{GET}{smuggler}",
        body.len()
    );
    let want = stream.len() - 1;
    for size in 1..stream.len() {
        assert_eq!(
            refused_at(stream.as_bytes(), &[size]),
            Some(want),
            "reads of {size}"
        );
    }
}

#[test]
fn what_the_scanner_cannot_follow_it_leaves_alone() {
    let both = "POST /b HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
    let leaders = [
        // A chunked body is not followed.
        "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_owned(),
        // Nor a length it cannot read (hyper refuses those itself).
        "POST /a HTTP/1.1\r\nContent-Length: x\r\n\r\n".to_owned(),
        "POST /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".to_owned(),
        // HTTP/2, by prior knowledge.
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_owned(),
    ];
    for leader in leaders {
        let stream = format!("{leader}{both}");
        assert_eq!(refused_at(stream.as_bytes(), &[3]), None, "{leader:?}");
    }
}

#[test]
fn a_long_line_split_across_reads_keeps_its_name() {
    let pad = "a".repeat(300);
    let stream = format!(
        "POST /a HTTP/1.1\r\nX-Pad: {pad}\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
    );
    for size in [1, 10, 63, 64, 65, 200] {
        assert_eq!(
            refused_at(stream.as_bytes(), &[size]),
            Some(stream.len() - 1),
            "reads of {size}"
        );
    }
}
