//! The codec on real sockets against scripted upstreams: what goes on the wire, what comes
//! back, and which connections may carry another request.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::channel::{Channel, Sender};
use http_body_util::{BodyExt, Empty, Full};
use hyper::Request;
use hyper::http::request::Parts;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::proxy::pool::{Endpoint, Pool, Reuse, SendError};

const DEADLINE: Duration = Duration::from_secs(5);

/// An upstream on a loopback port that runs `serve` on each connection it accepts; counts them.
/// (Shared with the pool's tests, like [`local`] and [`get`].)
pub(in crate::proxy) async fn upstream<F, Fut>(serve: F) -> (u16, Arc<AtomicUsize>)
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream));
        }
    });
    (port, accepted)
}

/// Reads until `buf` holds `marker`; false if the connection closed first.
async fn read_until(stream: &mut TcpStream, buf: &mut Vec<u8>, marker: &[u8]) -> bool {
    while !buf.windows(marker.len()).any(|w| w == marker) {
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    true
}

/// An upstream that reads one request head per response in `answers` (in turn, per
/// connection) and writes the answer; closes after the last.
async fn scripted(answers: &'static [&'static str]) -> (u16, Arc<AtomicUsize>) {
    upstream(move |mut s| async move {
        for answer in answers {
            let mut buf = Vec::new();
            if !read_until(&mut s, &mut buf, b"\r\n\r\n").await {
                return;
            }
            let _ = s.write_all(answer.as_bytes()).await;
        }
    })
    .await
}

pub(in crate::proxy) fn local(port: u16) -> Endpoint<'static> {
    Endpoint {
        id: 1,
        host: "127.0.0.1",
        port,
        tls: None,
    }
}

pub(in crate::proxy) fn get() -> Request<crate::proxy::pool::OutboundBody> {
    Request::builder()
        .uri("/")
        .header("host", "upstream")
        .body(http_body_util::Either::Right(Empty::new()))
        .expect("request")
}

fn parts(method: &str) -> Parts {
    let req = Request::builder()
        .method(method)
        .uri("/up?q=1")
        .header("host", "up");
    req.body(()).expect("request").into_parts().0
}

/// Reads a response body through [`Conn::poll_response`], as the pool's body does.
async fn body_of<B>(
    conn: &mut Conn,
    head: &mut Head,
    out: &mut Option<Box<Outgoing<B>>>,
) -> Result<Vec<u8>, Error>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut body = Vec::new();
    while let Some(data) =
        std::future::poll_fn(|cx| conn.poll_response(cx, &mut head.body, out)).await
    {
        body.extend_from_slice(&data?);
    }
    Ok(body)
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_response_with_ambiguous_framing_is_an_error_not_a_response() {
    let (port, _) = scripted(&[
        "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ])
    .await;
    let err = Pool::default()
        .send(&local(port), get(), Reuse::Idle)
        .await
        .expect_err("refused");
    assert!(
        matches!(
            err,
            SendError::Request(Error::Response(ResponseError::LengthAndTransferEncoding))
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_body_cut_short_ends_in_an_error() {
    for answer in [
        "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\na\r\nabc",
    ] {
        let (port, _) = upstream(move |mut s| async move {
            let mut buf = Vec::new();
            read_until(&mut s, &mut buf, b"\r\n\r\n").await;
            let _ = s.write_all(answer.as_bytes()).await;
        })
        .await;
        let resp = Pool::default()
            .send(&local(port), get(), Reuse::Idle)
            .await
            .expect("head");
        let body = resp.into_body().collect().await;
        assert!(body.is_err(), "{answer:?} read as complete");
    }
}

#[tokio::test]
async fn only_connections_that_may_carry_another_request_are_pooled() {
    let cases: [(&'static str, &str, usize); 8] = [
        ("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", "ok", 1),
        (
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
            "ok",
            0,
        ),
        ("HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok", "ok", 0),
        (
            "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok",
            "ok",
            1,
        ),
        ("HTTP/1.1 200 OK\r\n\r\nok", "ok", 0),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokSURPLUS",
            "ok",
            0,
        ),
        (
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            "ok",
            1,
        ),
        ("HTTP/1.1 204 No Content\r\n\r\n", "", 1),
    ];
    for (answer, want, pooled) in cases {
        // Close-delimited bodies end when the upstream closes: close after writing.
        let (port, _) = upstream(move |mut s| async move {
            let mut buf = Vec::new();
            read_until(&mut s, &mut buf, b"\r\n\r\n").await;
            let _ = s.write_all(answer.as_bytes()).await;
            if answer == "HTTP/1.1 200 OK\r\n\r\nok" {
                return;
            }
            let _ = s.read(&mut [0u8; 1]).await;
        })
        .await;
        let pool = Pool::default();
        let resp = pool
            .send(&local(port), get(), Reuse::Idle)
            .await
            .expect("response");
        assert_eq!(
            resp.status(),
            200 + 4 * u16::from(want.is_empty()),
            "{answer:?}"
        );
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(body, want, "{answer:?}");
        assert_eq!(pool.idle_count(1), pooled, "{answer:?}");
    }
}

#[tokio::test]
async fn an_idle_connection_the_upstream_closed_is_noticed_before_reuse() {
    // Answers once, then closes when told, without having said so (an upstream's keep-alive
    // timeout).
    let hang_up = Arc::new(tokio::sync::Notify::new());
    let told = Arc::clone(&hang_up);
    let (port, accepted) = upstream(move |mut s| {
        let told = Arc::clone(&told);
        async move {
            let mut buf = Vec::new();
            read_until(&mut s, &mut buf, b"\r\n\r\n").await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
            told.notified().await;
        }
    })
    .await;
    let pool = Pool::default();
    let to = local(port);
    let resp = pool.send(&to, get(), Reuse::Idle).await.expect("first");
    resp.into_body().collect().await.expect("body");
    assert_eq!(pool.idle_count(1), 1);
    hang_up.notify_one();
    // The check a reuse makes (the sweep makes the same) sees the close once it has arrived.
    until("the close is seen", || {
        pool.sweep_now();
        pool.idle_count(1) == 0
    })
    .await;
    let resp = pool
        .send(&to, get(), Reuse::Idle)
        .await
        .expect("second, on a new connection");
    assert_eq!(
        resp.into_body().collect().await.expect("body").to_bytes(),
        "ok"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

/// The request bytes an upstream received on one connection, up to `marker`.
async fn received(marker: &'static [u8]) -> (u16, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (port, _) = upstream(move |mut s| {
        let tx = tx.clone();
        async move {
            let mut buf = Vec::new();
            read_until(&mut s, &mut buf, marker).await;
            let _ = tx.send(buf);
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await;
            let _ = s.read(&mut [0u8; 1]).await;
        }
    })
    .await;
    (port, rx)
}

#[tokio::test]
async fn request_bodies_go_out_framed_as_given_or_chunked() {
    // A body of unknown length: chunked, each piece a chunk.
    let (port, mut seen) = received(b"0\r\n\r\n").await;
    let mut conn = Conn::connect("127.0.0.1", port, None)
        .await
        .expect("connect");
    let (mut tx, body) = Channel::<Bytes, Infallible>::new(4);
    tokio::spawn(async move {
        let _ = tx.send_data(Bytes::from_static(b"hello")).await;
        let _ = tx
            .send_data(Bytes::from(vec![b'x'; request::COPY_MAX + 1]))
            .await;
    });
    let (mut head, mut out) = conn
        .send(&RequestHead::of(&parts("POST")), body)
        .await
        .expect("head");
    assert_eq!(
        body_of(&mut conn, &mut head, &mut out).await.expect("body"),
        b""
    );
    let wire = seen.recv().await.expect("request");
    let text = String::from_utf8_lossy(&wire);
    let expected = format!(
        "POST /up?q=1 HTTP/1.1\r\nhost: up\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n2001\r\n{}\r\n0\r\n\r\n",
        "x".repeat(request::COPY_MAX + 1)
    );
    assert_eq!(text, expected);
    assert!(conn.is_reusable());
    // A body of known size gets its Content-Length, in the same write as the head (so one
    // read has it all); an empty one gets no framing at all.
    for (method, body, marker, expected) in [
        (
            "PUT",
            &b"hello"[..],
            &b"hello"[..],
            &b"PUT /up?q=1 HTTP/1.1\r\nhost: up\r\ncontent-length: 5\r\n\r\nhello"[..],
        ),
        (
            "GET",
            b"",
            b"\r\n\r\n",
            b"GET /up?q=1 HTTP/1.1\r\nhost: up\r\n\r\n",
        ),
    ] {
        let (port, mut seen) = received(marker).await;
        let mut conn = Conn::connect("127.0.0.1", port, None)
            .await
            .expect("connect");
        conn.send(
            &RequestHead::of(&parts(method)),
            Full::new(Bytes::from_static(body)),
        )
        .await
        .expect("head");
        let wire = seen.recv().await.expect("request");
        assert_eq!(wire, expected, "{}", String::from_utf8_lossy(&wire));
    }
}

/// Answers the head at once with the first chunk, then waits for the request body's end
/// before it ends its own body.
async fn early_answer() -> u16 {
    upstream(|mut s| async move {
        let mut buf = Vec::new();
        read_until(&mut s, &mut buf, b"\r\n\r\n").await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            .await;
        if read_until(&mut s, &mut buf, b"0\r\n\r\n").await {
            let _ = s.write_all(b"4\r\nlast\r\n0\r\n\r\n").await;
        }
        let _ = s.read(&mut [0u8; 1]).await;
    })
    .await
    .0
}

#[tokio::test]
async fn the_response_may_start_before_the_request_body_ends() {
    let mut conn = Conn::connect("127.0.0.1", early_answer().await, None)
        .await
        .expect("connect");
    let (mut tx, body): (Sender<Bytes>, _) = Channel::new(1);
    let sent =
        tokio::time::timeout(DEADLINE, conn.send(&RequestHead::of(&parts("POST")), body)).await;
    let (mut head, mut out) = sent.expect("in time").expect("head first");
    assert!(out.is_some(), "the request body is still open");
    let first = std::future::poll_fn(|cx| conn.poll_response(cx, &mut head.body, &mut out)).await;
    assert_eq!(first.expect("data").expect("data"), "first");
    // Both directions at once: the rest of the request goes out while the response is read.
    let sending = tokio::spawn(async move {
        tx.send_data(Bytes::from_static(b"more"))
            .await
            .expect("sent");
    });
    assert_eq!(
        body_of(&mut conn, &mut head, &mut out).await.expect("rest"),
        b"last"
    );
    sending.await.expect("sender");
    assert!(
        conn.is_reusable(),
        "the request ended before its response did"
    );
}

#[tokio::test]
async fn an_answer_to_a_body_the_upstream_never_reads_is_returned() {
    let (port, _) = upstream(|mut s| async move {
        let mut buf = Vec::new();
        read_until(&mut s, &mut buf, b"\r\n\r\n").await;
        let _ = s
            .write_all(
                b"HTTP/1.1 413 Payload Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
            )
            .await;
    })
    .await;
    let mut conn = Conn::connect("127.0.0.1", port, None)
        .await
        .expect("connect");
    // A body that never ends: only the answer can end the exchange.
    let (tx, body): (Sender<Bytes>, _) = Channel::new(1);
    let sent =
        tokio::time::timeout(DEADLINE, conn.send(&RequestHead::of(&parts("POST")), body)).await;
    let (head, _) = sent.expect("answered in time").expect("early answer");
    assert_eq!(head.status, 413);
    assert!(!head.keep_alive);
    drop(tx);
}

#[tokio::test]
async fn a_request_dropped_in_flight_closes_its_connection() {
    let (closed_tx, mut closed) = tokio::sync::mpsc::unbounded_channel();
    let (port, _) = upstream(move |mut s| {
        let closed_tx = closed_tx.clone();
        async move {
            let mut buf = Vec::new();
            read_until(&mut s, &mut buf, b"\r\n\r\n").await;
            // Never answers; tells when the gateway side hangs up.
            let n = s.read(&mut [0u8; 1]).await.unwrap_or(0);
            let _ = closed_tx.send(n);
        }
    })
    .await;
    let pool = Pool::default();
    let sent = tokio::time::timeout(
        Duration::from_millis(100),
        pool.send(&local(port), get(), Reuse::Idle),
    )
    .await;
    assert!(sent.is_err(), "no answer, so the caller's timeout fires");
    let n = tokio::time::timeout(DEADLINE, closed.recv())
        .await
        .expect("closed in time");
    assert_eq!(
        n,
        Some(0),
        "the connection was closed, nothing more written"
    );
    assert_eq!(pool.idle_count(1), 0);
}
