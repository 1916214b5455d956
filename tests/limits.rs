//! SPEC §12 limits, end to end on raw sockets: 431 for a head over `max_header_bytes`, 413
//! for an OAuth body over 64 KiB, slow and silent clients cut at `header_timeout`, idle
//! keep-alive connections at `idle_timeout` (and not at the header timeout), and
//! connections past `max_connections` left waiting until one closes.

mod common;
mod hardening;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{Fixture, Store};
use hardening::{closed_within, connect, exchange, read_answer};

fn with_server(extra: &'static str) -> impl FnOnce(&mut common::GatewayConfig) {
    move |c| c.server_extra = extra.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_over_max_header_bytes_get_431_and_large_oauth_bodies_413() {
    let fx = Fixture::start(Store::memory()).await;
    let addr = fx.gw.addr();
    let (big, fits, token, small) = tokio::task::spawn_blocking(move || {
        let head = |pad: usize| {
            format!("GET /public/h HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n", "a".repeat(pad))
        };
        let (a, mut s) = exchange(addr, head(70 * 1024).as_bytes());
        let big = (a.map(|a| a.status), closed_within(&mut s, Duration::from_secs(5)));
        let (a, _) = exchange(addr, head(60 * 1024).as_bytes());
        let fits = a.map(|a| a.status);
        let form = |n: usize| {
            let body = format!("grant_type=client_credentials&pad={}", "a".repeat(n));
            format!(
                "POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let (a, _) = exchange(addr, form(100_000).as_bytes());
        let token = a.map(|a| (a.status, String::from_utf8_lossy(&a.body).into_owned()));
        let (a, _) = exchange(addr, form(1000).as_bytes());
        (big, fits, token, a.map(|a| a.status))
    })
    .await
    .expect("client thread");
    assert_eq!(big, (Some(431), true), "a 70 KiB head");
    assert_eq!(fits, Some(200), "a 60 KiB head");
    let (status, body) = token.expect("an answer to the 100 KB token request");
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("invalid_request"), "{body}");
    assert_eq!(
        small,
        Some(401),
        "a small token request without a client is read"
    );
    assert_eq!(
        fx.up.uris(),
        vec!["/public/h"],
        "only the head that fits is forwarded"
    );
}

/// Writes `bytes` one at a time, `every` apart, until the gateway closes the connection;
/// returns how long that took, or `None` if it was still open after `within`.
fn trickle(
    addr: std::net::SocketAddr,
    bytes: &[u8],
    every: Duration,
    within: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let mut s = connect(addr);
    for &b in bytes.iter().cycle() {
        if start.elapsed() > within {
            return None;
        }
        if s.write_all(&[b]).is_err() || closed_within(&mut s, every) {
            return Some(start.elapsed());
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_clients_are_cut_at_header_timeout() {
    let fx = Fixture::start_with(
        Store::memory(),
        with_server("header_timeout = \"1s\"\nidle_timeout = \"30s\""),
    )
    .await;
    let addr = fx.gw.addr();
    let (slow, silent, slow_second) = tokio::task::spawn_blocking(move || {
        // One byte of a head every 200 ms: never finishes in time.
        let slow = trickle(
            addr,
            b"GET /public/s HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaa",
            Duration::from_millis(200),
            Duration::from_secs(8),
        );
        // Connected, nothing sent (nor the HTTP/2 preface).
        let mut s = connect(addr);
        let t = Instant::now();
        let silent = closed_within(&mut s, Duration::from_secs(8)).then(|| t.elapsed());
        // A kept-alive connection whose second head trickles in.
        let mut s = connect(addr);
        s.write_all(b"GET /public/first HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let first = read_answer(&mut s).map(|a| a.status);
        assert_eq!(first, Some(200));
        let t = Instant::now();
        let mut cut = None;
        for b in b"GET /public/second HTTP/1.1\r\nX: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter()
        {
            if s.write_all(&[*b]).is_err() || closed_within(&mut s, Duration::from_millis(200)) {
                cut = Some(t.elapsed());
                break;
            }
        }
        (slow, silent, cut)
    })
    .await
    .expect("client thread");
    for (case, took) in [
        ("slow head", slow),
        ("silent client", silent),
        ("slow second head", slow_second),
    ] {
        let took = took.unwrap_or_else(|| panic!("{case}: still connected after 8 s"));
        assert!(
            took >= Duration::from_millis(900),
            "{case}: cut after {took:?}, before header_timeout"
        );
    }
    assert_eq!(fx.up.uris(), vec!["/public/first"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_at_idle_timeout_not_header_timeout() {
    let fx = Fixture::start_with(
        Store::memory(),
        with_server("header_timeout = \"1s\"\nidle_timeout = \"3s\""),
    )
    .await;
    let addr = fx.gw.addr();
    let (open_at_2s, closed_by_6s, next_ok) = tokio::task::spawn_blocking(move || {
        let mut s = connect(addr);
        s.write_all(b"GET /public/i HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        assert_eq!(read_answer(&mut s).map(|a| a.status), Some(200));
        let open = !closed_within(&mut s, Duration::from_secs(2));
        let closed = closed_within(&mut s, Duration::from_secs(4));
        // Past header_timeout but within idle_timeout, the next request is served.
        let mut s = connect(addr);
        s.write_all(b"GET /public/i1 HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        assert_eq!(read_answer(&mut s).map(|a| a.status), Some(200));
        std::thread::sleep(Duration::from_millis(1500));
        s.write_all(b"GET /public/i2 HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        (open, closed, read_answer(&mut s).map(|a| a.status))
    })
    .await
    .expect("client thread");
    assert!(open_at_2s, "closed before idle_timeout");
    assert!(closed_by_6s, "still open well after idle_timeout");
    assert_eq!(next_ok, Some(200));
}

/// The idle clock starts when the last response finished, not at the accept, and a request
/// in flight longer than both timeouts is never cut (the connection's timer fires on the
/// way and is armed again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_clock_starts_at_the_last_response_and_busy_connections_are_not_cut() {
    let fx = Fixture::start_with(
        Store::memory(),
        with_server("header_timeout = \"1s\"\nidle_timeout = \"2s\""),
    )
    .await;
    let addr = fx.gw.addr();
    let (statuses, open_after_last, closed_later, slow) = tokio::task::spawn_blocking(move || {
        let mut s = connect(addr);
        let start = Instant::now();
        let mut statuses = Vec::new();
        // Requests every 400 ms until well past idle_timeout after the accept.
        while start.elapsed() < Duration::from_millis(3200) {
            s.write_all(b"GET /public/k HTTP/1.1\r\nHost: x\r\n\r\n")
                .expect("write");
            statuses.push(read_answer(&mut s).map(|a| a.status));
            std::thread::sleep(Duration::from_millis(400));
        }
        let open = !closed_within(&mut s, Duration::from_millis(1200));
        let closed = closed_within(&mut s, Duration::from_secs(3));
        // The upstream takes 2 s to answer /slow: longer than either timeout.
        let mut s = connect(addr);
        s.write_all(b"GET /public/slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let first = read_answer(&mut s).map(|a| a.status);
        s.write_all(b"GET /public/after HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let second = read_answer(&mut s).map(|a| a.status);
        (statuses, open, closed, (first, second))
    })
    .await
    .expect("client thread");
    assert!(statuses.len() >= 6, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == Some(200)), "{statuses:?}");
    assert!(
        open_after_last,
        "closed within 1.2 s of the last response: the idle clock ran from the accept"
    );
    assert!(closed_later, "still open 4 s after the last response");
    assert_eq!(slow, (Some(200), Some(200)), "a busy connection was cut");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_max_connections_wait_until_one_closes() {
    let fx = Fixture::start_with(
        Store::memory(),
        with_server("max_connections = 2\nworkers = 2"),
    )
    .await;
    let addr = fx.gw.addr();
    tokio::task::spawn_blocking(move || {
        let held: Vec<_> = (0..2)
            .map(|i| {
                let mut s = connect(addr);
                write!(s, "GET /public/held{i} HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
                assert_eq!(read_answer(&mut s).map(|a| a.status), Some(200));
                s
            })
            .collect();
        // The third connects (the kernel's backlog takes it) but is not served...
        let mut third = connect(addr);
        third
            .write_all(b"GET /public/third HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        third
            .set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        let mut byte = [0u8; 1];
        let early = std::io::Read::read(&mut third, &mut byte);
        assert!(early.is_err(), "served past max_connections: {early:?}");
        // ...until one of the two closes.
        drop(held);
        third
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let answer = read_answer(&mut third).expect("served once a slot is free");
        assert_eq!(answer.status, 200);
    })
    .await
    .expect("client thread");
    assert!(fx.up.uris().contains(&"/public/third".to_owned()));
}
