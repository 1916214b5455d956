//! The pool on real sockets: reuse, abandoned bodies, closed connections, and the read
//! timeout that cuts off a body its upstream stopped sending.

use super::*;
use http_body_util::BodyExt;
use std::sync::atomic::AtomicUsize;

use super::h1::tests::{get, local};

/// An upstream that counts the connections it accepted and answers "ok" to each request;
/// it closes a connection after `per_conn` requests when that is set.
async fn upstream(per_conn: Option<usize>) -> (u16, Arc<AtomicUsize>) {
    super::h1::tests::upstream(move |stream| async move {
        let served = Arc::new(AtomicUsize::new(0));
        let svc = hyper::service::service_fn(move |_req| {
            let n = served.fetch_add(1, Ordering::SeqCst) + 1;
            let mut resp = Response::new(http_body_util::Full::new(Bytes::from("ok")));
            if per_conn == Some(n) {
                resp.headers_mut().insert(
                    "connection",
                    hyper::header::HeaderValue::from_static("close"),
                );
            }
            async move { Ok::<_, std::convert::Infallible>(resp) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), svc)
            .await;
    })
    .await
}

async fn fetch(pool: &Pool, to: &Endpoint<'_>) -> Bytes {
    let resp = pool.send(to, get(), Reuse::Idle).await.expect("response");
    resp.into_body().collect().await.expect("body").to_bytes()
}

#[tokio::test]
async fn a_connection_is_reused_once_its_body_has_been_read() {
    let (port, accepted) = upstream(None).await;
    let pool = Pool::default();
    let to = local(port);
    for _ in 0..5 {
        assert_eq!(fetch(&pool, &to).await, "ok");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(pool.idle_count(1), 1);
}

#[tokio::test]
async fn an_unread_body_keeps_its_connection_from_others_and_drops_it() {
    let (port, accepted) = upstream(None).await;
    let pool = Pool::default();
    let to = local(port);
    let first = pool.send(&to, get(), Reuse::Idle).await.expect("first");
    // The first body is not read yet: the second request needs a connection of its own.
    assert_eq!(fetch(&pool, &to).await, "ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    drop(first);
    assert_eq!(
        pool.idle_count(1),
        1,
        "the abandoned connection is not pooled"
    );
}

#[tokio::test]
async fn a_connection_the_upstream_closed_is_replaced_without_an_error() {
    let (port, accepted) = upstream(Some(1)).await;
    let pool = Pool::default();
    let to = local(port);
    for _ in 0..4 {
        assert_eq!(fetch(&pool, &to).await, "ok");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_kept_alive_connection_closed_under_a_request_is_reported_and_a_resend_skips_idle_ones() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Answers the first request on a connection, then closes it when the next arrives.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                let _ = stream.read(&mut buf).await;
            });
        }
    });
    let pool = Pool::default();
    let to = local(port);
    // Two connections answered once each, both idle now.
    let (a, b) = tokio::join!(
        pool.send(&to, get(), Reuse::Idle),
        pool.send(&to, get(), Reuse::Idle)
    );
    for resp in [a, b] {
        let body = resp.expect("response").into_body().collect().await;
        assert_eq!(body.expect("body").to_bytes(), "ok");
    }
    assert_eq!(pool.idle_count(1), 2);
    let err = pool
        .send(&to, get(), Reuse::Idle)
        .await
        .expect_err("closed");
    assert!(matches!(err, SendError::Closed(_)), "{err:?}");
    // The other idle connection would fail the same way: a resend skips it.
    let resp = pool.send(&to, get(), Reuse::NewOnly).await.expect("resend");
    assert_eq!(
        resp.into_body().collect().await.expect("body").to_bytes(),
        "ok"
    );
    assert_eq!(
        pool.idle_count(1),
        2,
        "the stale one is still idle, the new one joined"
    );
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let pool = Pool::default();
    let to = local(port);
    let err = pool
        .send(&to, get(), Reuse::Idle)
        .await
        .expect_err("refused");
    assert!(matches!(err, SendError::Connect(_)), "{err:?}");
}

/// An upstream that sends a 200 with `Content-Length: 30` and its body in three pieces of
/// ten bytes, `gap` apart (and, with `stall_after`, nothing more after that many pieces,
/// holding the connection open).
async fn trickling(gap: Duration, stall_after: Option<usize>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (port, _) = super::h1::tests::upstream(move |mut stream| async move {
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf).await;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 30\r\n\r\n")
            .await;
        for piece in 0..3 {
            if stall_after == Some(piece) {
                std::future::pending::<()>().await;
            }
            let _ = stream.write_all(b"0123456789").await;
            tokio::time::sleep(gap).await;
        }
        std::future::pending::<()>().await;
    })
    .await;
    port
}

/// `GET` on a new pool, the response's body read with a 200 ms read timeout.
async fn get_with_read_timeout(port: u16) -> (Pool, Response<PooledBody>) {
    let pool = Pool::default();
    let mut resp = pool
        .send(&local(port), get(), Reuse::Idle)
        .await
        .expect("head");
    resp.body_mut().set_read_timeout(Duration::from_millis(200));
    (pool, resp)
}

#[tokio::test]
async fn a_body_that_stops_coming_fails_after_the_read_timeout() {
    let port = trickling(Duration::ZERO, Some(1)).await;
    let (pool, resp) = get_with_read_timeout(port).await;
    let started = std::time::Instant::now();
    let body = tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect())
        .await
        .expect("the read timeout ends the body, not the test's deadline");
    let err = body.expect_err("a body cut off mid-way is an error");
    assert!(matches!(err, h1::Error::Stalled(_)), "{err:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(pool.idle_count(1), 0, "a stalled connection is not pooled");
}

#[tokio::test]
async fn the_read_timeout_counts_between_reads_not_in_total() {
    // 3 pieces 150 ms apart: 300 ms in all, past the 200 ms timeout, never 200 ms idle.
    let port = trickling(Duration::from_millis(150), None).await;
    let (_pool, resp) = get_with_read_timeout(port).await;
    let body = tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect())
        .await
        .expect("body within 5 s");
    assert_eq!(body.expect("whole body").to_bytes().len(), 30);
}
