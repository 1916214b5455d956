//! The response head parser: every framing case of RFC 9112 §6.3 that must be refused, the
//! ones that must work, keep-alive, 1xx, HEAD/204/304, and what is left after a body.

use super::super::body::tests::{feed, whole};
use super::*;

/// Parses `wire` whole (as a GET's response): the head, or the error.
fn head(wire: &str) -> Result<Option<Head>, ResponseError> {
    parse_head(&mut BytesMut::from(wire), false)
}

fn err(wire: &str) -> ResponseError {
    match head(wire) {
        Err(e) => e,
        Ok(h) => panic!("accepted {wire:?}: {h:?}"),
    }
}

#[test]
fn ambiguous_or_malformed_framing_is_refused() {
    use ResponseError::*;
    let cases = [
        (
            "content-length: 5\r\ntransfer-encoding: chunked",
            LengthAndTransferEncoding,
        ),
        (
            "transfer-encoding: chunked\r\ncontent-length: 5",
            LengthAndTransferEncoding,
        ),
        ("content-length: 5\r\ncontent-length: 6", BadContentLength),
        ("content-length: 5, 6", BadContentLength),
        ("content-length: abc", BadContentLength),
        ("content-length: -1", BadContentLength),
        ("content-length: +5", BadContentLength),
        ("content-length: 5 5", BadContentLength),
        ("content-length: 0x10", BadContentLength),
        ("content-length: ", BadContentLength),
        ("content-length: 5,", BadContentLength),
        ("content-length: 99999999999999999999", BadContentLength),
        ("transfer-encoding: gzip", BadTransferEncoding),
        ("transfer-encoding: chunked, gzip", BadTransferEncoding),
        (
            "transfer-encoding: chunked\r\ntransfer-encoding: chunked",
            BadTransferEncoding,
        ),
        (
            "transfer-encoding: chunked\r\ntransfer-encoding: gzip",
            BadTransferEncoding,
        ),
        ("transfer-encoding: ,chunked", BadTransferEncoding),
        ("transfer-encoding: ", BadTransferEncoding),
        ("transfer-encoding: chunkedx", BadTransferEncoding),
    ];
    for (headers, want) in cases {
        let wire = format!("HTTP/1.1 200 OK\r\n{headers}\r\n\r\n");
        assert_eq!(err(&wire), want, "{headers:?}");
        // The same for a HEAD's response: the headers still lie about the framing.
        assert_eq!(
            parse_head(&mut BytesMut::from(wire.as_str()), true).err(),
            Some(want),
            "{headers:?} for HEAD"
        );
    }
}

#[test]
fn unusable_heads_are_refused() {
    use ResponseError::*;
    assert_eq!(
        err("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n"),
        SwitchingProtocols
    );
    assert!(matches!(err("HTTP/1.1 2000 OK\r\n\r\n"), Malformed(_)));
    assert!(matches!(err("HTTP/2 200 OK\r\n\r\n"), Malformed(_)));
    assert!(matches!(
        err("HTTP/1.1 200 OK\r\nbad header\r\n\r\n"),
        Malformed(_)
    ));
    assert!(matches!(
        err("HTTP/1.1 200 OK\r\nx: a\x01b\r\n\r\n"),
        Malformed(_)
    ));
    assert!(matches!(err("hello\r\n\r\n"), Malformed(_)));
    let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: v\r\n")).collect();
    assert_eq!(
        err(&format!("HTTP/1.1 200 OK\r\n{many}\r\n")),
        TooManyHeaders
    );
    let ok: String = (0..MAX_HEADERS).map(|i| format!("x-{i}: v\r\n")).collect();
    assert!(
        head(&format!("HTTP/1.1 200 OK\r\n{ok}\r\n"))
            .expect("100 headers")
            .is_some()
    );
    // Oversize: complete but too long, and incomplete at the limit.
    let long = "v".repeat(MAX_HEAD);
    assert_eq!(
        err(&format!("HTTP/1.1 200 OK\r\nx: {long}\r\n\r\n")),
        HeadTooLarge
    );
    assert_eq!(err(&format!("HTTP/1.1 200 OK\r\nx: {long}")), HeadTooLarge);
    let fits = "v".repeat(MAX_HEAD - 40);
    assert!(
        head(&format!("HTTP/1.1 200 OK\r\nx: {fits}\r\n\r\n"))
            .expect("fits")
            .is_some()
    );
}

#[test]
fn framing_and_keep_alive_follow_the_headers() {
    // (response, body, kept alive)
    let cases = [
        ("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", "ok", true),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\n\r\nok",
            "ok",
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nok",
            "ok",
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            "ok",
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, Chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            "ok",
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
            "ok",
            false,
        ),
        (
            "HTTP/1.1 200 OK\r\nconnection: x, Close\r\ncontent-length: 2\r\n\r\nok",
            "ok",
            false,
        ),
        (
            "HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
            "ok",
            false,
        ),
        (
            "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok",
            "ok",
            true,
        ),
        ("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", "", true),
        (
            "HTTP/1.1 204 No Content\r\ncontent-length: 7\r\n\r\n",
            "",
            true,
        ),
        (
            "HTTP/1.1 304 Not Modified\r\ntransfer-encoding: chunked\r\n\r\n",
            "",
            true,
        ),
    ];
    for (wire, body, alive) in cases {
        let (h, b, left) = whole(wire).unwrap_or_else(|e| panic!("{wire:?}: {e}"));
        assert_eq!(b, body.as_bytes(), "{wire:?}");
        assert_eq!(h.keep_alive, alive, "{wire:?}");
        assert!(left.is_empty(), "{wire:?}");
    }
    let (h, _, _) = whole("HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\n\r\nok").expect("ok");
    let lengths: Vec<_> = h.headers.get_all(CONTENT_LENGTH).iter().collect();
    assert_eq!(lengths, ["2"], "one Content-Length is forwarded");
    // No framing at all: the body runs until the upstream closes, and the connection ends.
    let (h, b, _) =
        feed(&[b"HTTP/1.1 200 OK\r\n\r\nuntil", b" close"], false, true).expect("close-delimited");
    assert_eq!(b, b"until close");
    assert!(!h.keep_alive);
}

#[test]
fn head_responses_have_no_body_whatever_they_say() {
    for wire in [
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\n\r\n",
    ] {
        let (h, b, left) = feed(&[wire.as_bytes()], true, false).expect(wire);
        assert!(b.is_empty() && left.is_empty(), "{wire:?}");
        assert_eq!(h.body.remaining(), Some(0));
        assert!(h.keep_alive, "{wire:?}");
    }
}

#[test]
fn informational_responses_are_skipped() {
    let wire = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n\
                HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    let (h, b, _) = whole(wire).expect("1xx then 200");
    assert_eq!(h.status, StatusCode::OK);
    assert!(
        h.headers.get("link").is_none(),
        "1xx headers are not the response's"
    );
    assert_eq!(b, b"ok");
    // A 1xx alone is consumed, and the final head awaited.
    let mut buf = BytesMut::from("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2");
    assert!(parse_head(&mut buf, false).expect("partial").is_none());
    assert_eq!(&buf[..], b"HTTP/1.1 2");
}

#[test]
fn heads_keep_status_version_reason_and_headers() {
    let (h, _, _) =
        whole("HTTP/1.0 418 Short And Stout\r\nX-Up: a\r\nx-up: b\r\ncontent-length: 0\r\n\r\n")
            .expect("head");
    assert_eq!(h.status.as_u16(), 418);
    assert_eq!(h.version, Version::HTTP_10);
    assert_eq!(h.reason.as_deref(), Some(&b"Short And Stout"[..]));
    let ups: Vec<_> = h.headers.get_all("x-up").iter().collect();
    assert_eq!(ups, ["a", "b"]);
    let (h, _, _) = whole("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").expect("head");
    assert_eq!(h.reason, None, "the usual reason is not carried");
    // Found by the fuzz target: a reason httparse will not read comes back as a "" that is
    // not in the buffer (the offset arithmetic on it overflowed).
    let mut buf = BytesMut::from(&b"HTTP/1.1 200 \xff\xff\xffntent-length: 2\r\n\r\n"[..]);
    let h = parse_head(&mut buf, false)
        .expect("parsed")
        .expect("complete");
    assert_eq!((h.status.as_u16(), h.reason), (200, None));
}

#[test]
fn pipelined_bytes_after_a_body_stay_in_the_buffer() {
    let second = "HTTP/1.1 204 No Content\r\n\r\n";
    for first in [
        "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx-t: 1\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\n\r\n",
    ] {
        let (_, _, left) = whole(&format!("{first}{second}")).expect(first);
        assert_eq!(left, second.as_bytes(), "{first:?}");
        let (h, _, left) = whole(second).expect("second");
        assert_eq!((h.status.as_u16(), left.len()), (204, 0));
    }
}

#[test]
fn hop_by_hop_headers_are_left_out_and_connection_kept_only_when_it_names_others() {
    let (h, _, _) = whole(
        "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\
         Upgrade: h2c\r\nTrailer: x-sum\r\nTE: trailers\r\nProxy-Authenticate: Basic\r\n\
         X-End: kept\r\ncontent-length: 0\r\n\r\n",
    )
    .expect("head");
    let names: Vec<&str> = h.headers.keys().map(|k| k.as_str()).collect();
    assert_eq!(names, ["x-end", "content-length"]);
    let (h, _, _) = whole(
        "HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\ncontent-length: 0\r\n\r\n",
    )
    .expect("head");
    assert!(!h.keep_alive, "close is still read");
    assert_eq!(
        h.headers.get("connection").map(|v| v.as_bytes()),
        Some(&b"close, X-Hop"[..])
    );
    assert!(
        h.headers.contains_key("x-hop"),
        "the proxy drops the named ones"
    );
}
