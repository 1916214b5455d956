//! SPEC §12 framing, end to end on raw sockets: every ambiguous request gets 400 and a
//! closed connection and never reaches the upstream; a request hidden in a body stays a body;
//! and HTTP/1.0 clients and upstreams work, answered in the gateway's own version.

mod common;
mod hardening;

use std::io::Write;
use std::time::Duration;

use common::{Fixture, Store};
use hardening::{OldOrigin, closed_within, connect, exchange, read_answer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_requests_get_400_and_a_closed_connection() {
    let fx = Fixture::start(Store::memory()).await;
    let addr = fx.gw.addr();
    let table: &[(&str, &str)] = &[
        (
            "content-length then transfer-encoding",
            "POST /public/a1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "transfer-encoding then content-length",
            "POST /public/a2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        ),
        (
            "differing repeated content-length",
            "POST /public/a3 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        ),
        (
            "differing lengths in one content-length",
            "POST /public/a4 HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\nabcd",
        ),
        (
            "bad chunk size",
            "POST /public/a5 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        ),
        (
            "obs-folded header",
            "GET /public/a6 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n",
        ),
        (
            "transfer-encoding not ending in chunked",
            "POST /public/a7 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        ),
        (
            "transfer-encoding on HTTP/1.0",
            "POST /public/a8 HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
    ];
    let wanted = tokio::task::spawn_blocking(move || {
        let mut failures = Vec::new();
        for (case, request) in table {
            let (answer, mut s) = exchange(addr, request.as_bytes());
            let status = answer.as_ref().map(|a| a.status);
            let closed = closed_within(&mut s, Duration::from_secs(5));
            if status != Some(400) || !closed {
                failures.push(format!("{case}: status {status:?}, closed {closed}"));
            }
        }
        failures
    })
    .await
    .expect("client thread");
    assert!(wanted.is_empty(), "{wanted:#?}");
    // The control: a plain request on the same listener is served and kept alive.
    let ok = tokio::task::spawn_blocking(move || {
        let (answer, mut s) = exchange(addr, b"GET /public/ok HTTP/1.1\r\nHost: x\r\n\r\n");
        (
            answer.map(|a| a.status),
            closed_within(&mut s, Duration::from_millis(500)),
        )
    })
    .await
    .expect("client thread");
    assert_eq!(ok, (Some(200), false));
    assert_eq!(
        fx.up.uris(),
        vec!["/public/ok"],
        "no ambiguous request reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_smuggled_in_a_body_never_reaches_the_upstream() {
    let fx = Fixture::start(Store::memory()).await;
    let addr = fx.gw.addr();
    let hidden = "GET /public/smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let requests = [
        // CL.TE: a front end reading Content-Length forwards the hidden request as body.
        format!(
            "POST /public/clte HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}",
            5 + hidden.len()
        ),
        // TE.CL: one reading chunks forwards it, one reading Content-Length starts it.
        format!(
            "POST /public/tecl HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{:x}\r\n{hidden}\r\n0\r\n\r\n",
            hidden.len()
        ),
    ];
    let legit = format!(
        "POST /public/inbody HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{hidden}GET /public/after HTTP/1.1\r\nHost: x\r\n\r\n",
        hidden.len()
    );
    let outcome = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for r in &requests {
            let (answer, mut s) = exchange(addr, r.as_bytes());
            seen.push((
                answer.map(|a| a.status),
                closed_within(&mut s, Duration::from_secs(5)),
            ));
        }
        // A body that looks like a head with both framing headers is a body: forwarded as
        // is, and the next request on the connection is served.
        let mut s = connect(addr);
        s.write_all(legit.as_bytes()).expect("write");
        let first = read_answer(&mut s).map(|a| a.status);
        let second = read_answer(&mut s).map(|a| a.status);
        seen.push((first, false));
        seen.push((second, false));
        seen
    })
    .await
    .expect("client thread");
    assert_eq!(
        outcome,
        vec![
            (Some(400), true),
            (Some(400), true),
            (Some(200), false),
            (Some(200), false)
        ]
    );
    assert_eq!(fx.up.uris(), vec!["/public/inbody", "/public/after"]);
    let forwarded = &fx.up.requests()[0];
    assert_eq!(
        forwarded.body,
        hidden.as_bytes(),
        "the body arrives whole, as a body"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_upstreams_and_clients_work_in_the_gateways_version() {
    let sized = OldOrigin::start(true);
    let unsized_ = OldOrigin::start(false);
    let routes = format!(
        "{}{}",
        sized.route("old", "/old"),
        unsized_.route("eof", "/eof")
    );
    let fx = Fixture::start_with(Store::memory(), |c| c.extra.push_str(&routes)).await;
    let addr = fx.gw.addr();
    tokio::task::spawn_blocking(move || {
        // An HTTP/1.1 client behind HTTP/1.0 upstreams: HTTP/1.1 answers, the whole body,
        // and the client's connection kept alive across both.
        let mut s = connect(addr);
        for path in ["/old/x", "/eof/x", "/old/y"] {
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
            let a = read_answer(&mut s).unwrap_or_else(|| panic!("{path}: no answer"));
            assert_eq!(a.status_line, "HTTP/1.1 200 OK", "{path}");
            assert_eq!(a.body, b"hello from 1.0", "{path}");
        }
        assert!(!closed_within(&mut s, Duration::from_millis(300)));

        // An HTTP/1.0 client: served, and closed after the answer unless it asked for
        // keep-alive.
        let (a, mut s) = exchange(addr, b"GET /public/p HTTP/1.0\r\nHost: x\r\n\r\n");
        let a = a.expect("an answer");
        assert_eq!(a.status, 200);
        assert!(a.status_line.starts_with("HTTP/1."), "{}", a.status_line);
        assert!(
            closed_within(&mut s, Duration::from_secs(5)),
            "1.0 without keep-alive closes"
        );

        let mut s = connect(addr);
        for path in ["/public/k1", "/old/k2"] {
            write!(
                s,
                "GET {path} HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"
            )
            .expect("write");
            let a = read_answer(&mut s).unwrap_or_else(|| panic!("{path}: no answer"));
            assert_eq!(a.status, 200, "{path}");
            assert_eq!(
                a.header("connection")
                    .map(|v| v.to_ascii_lowercase())
                    .as_deref(),
                Some("keep-alive"),
                "{path}"
            );
        }
        assert!(!closed_within(&mut s, Duration::from_millis(300)));
    })
    .await
    .expect("client thread");
    let heads = sized.heads.lock().expect("log").clone();
    assert!(
        heads.iter().all(|h| h.contains(" HTTP/1.1\r\n")),
        "upstream requests are HTTP/1.1: {heads:?}"
    );
}
