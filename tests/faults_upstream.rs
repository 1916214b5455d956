//! End-to-end: sick upstreams under load (issue 13 item 6; SPEC §4's 502 and 504 rows). Raw
//! TCP upstreams reset the connection, never answer, cut the body short, or stall in the
//! middle of it, while healthy traffic flows beside them, over HTTPS with HTTP/2 (streams on
//! one shared connection) and HTTP/1.1.
//!
//! What must hold: a reset is 502 `bad_gateway` and a silent upstream 504 `gateway_timeout`
//! at the route's timeout; a body cut short or stalled ends in an error the client sees (a
//! closed HTTP/1.1 connection, a reset HTTP/2 stream) promptly, never a hang and never a
//! short body passed off as whole; the sick streams leave the HTTP/2 connection they share
//! with healthy ones usable; healthy requests in parallel all succeed.

mod common;

use std::time::Duration;

use common::{
    FIRST_BYTES, Fixture, Load, Reply, Sick, SickUpstream, Store, TempDir, TestCa, TlsClient,
};
use futures_util::future::join_all;

/// The sick routes' `timeout`.
const ROUTE_TIMEOUT: Duration = Duration::from_millis(500);
/// The most any sick exchange may take: the route timeout plus slack for a loaded machine.
const PROMPTLY: Duration = Duration::from_secs(2);
/// The test's own deadline on each exchange (well past [`PROMPTLY`], so a hang is seen as
/// one and reported with its timings).
const DEADLINE: Duration = Duration::from_secs(5);
/// Concurrent requests per sickness and protocol.
const AT_ONCE: usize = 4;

const SICKNESSES: [(Sick, &str); 4] = [
    (Sick::Reset, "/reset"),
    (Sick::Stall, "/stall"),
    (Sick::ShortBody, "/short"),
    (Sick::StallMidBody, "/midbody"),
];

fn sick_route(prefix: &str, upstream: &str) -> String {
    format!(
        "\n[[routes]]\nname = \"sick{}\"\npath = \"{prefix}/*\"\nupstreams = [\"{upstream}\"]\n\
         auth = \"none\"\ntimeout = \"{}ms\"\n",
        prefix.replace('/', "-"),
        ROUTE_TIMEOUT.as_millis()
    )
}

/// An HTTPS gateway (memory store) with one route per sickness beside the fixture's routes.
async fn gateway(sick: &[SickUpstream], leaf: &common::Leaf) -> Fixture {
    let mut extra = String::new();
    for (upstream, (_, prefix)) in sick.iter().zip(SICKNESSES) {
        extra.push_str(&sick_route(prefix, &upstream.url()));
    }
    extra.push_str(&format!(
        "\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        leaf.cert.display(),
        leaf.key.display()
    ));
    Fixture::start_with(Store::memory(), |config| {
        config.public_url = "https://localhost:1".to_owned();
        config.extra.push_str(&extra);
    })
    .await
}

/// The JSON `error` of a gateway-made body.
fn error_code(reply: &Reply) -> String {
    let body = reply.body.as_ref().map(|b| b.to_vec()).unwrap_or_default();
    serde_json::from_slice::<serde_json::Value>(&body).map_or_else(
        |_| format!("(not JSON: {:?})", String::from_utf8_lossy(&body)),
        |v| v["error"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Checks one sick exchange against what its sickness must produce.
fn assert_sick_reply(sick: Sick, protocol: &str, reply: &Reply) {
    let what = format!("{sick:?} over {protocol}: {reply:?}");
    assert!(reply.took < PROMPTLY, "not over promptly: {what}");
    match sick {
        Sick::Reset => {
            assert_eq!(reply.status, Ok(502), "{what}");
            assert_eq!(error_code(reply), "bad_gateway", "{what}");
        }
        Sick::Stall => {
            assert_eq!(reply.status, Ok(504), "{what}");
            assert_eq!(error_code(reply), "gateway_timeout", "{what}");
            assert!(
                reply.head_after >= ROUTE_TIMEOUT - Duration::from_millis(50),
                "504 before the route timeout: {what}"
            );
        }
        Sick::ShortBody | Sick::StallMidBody => {
            // The gateway streams: the upstream's 200 head may reach the client before the
            // failure does (HTTP/2 may also reset the stream first). What matters is that
            // the response does not end as if it were whole.
            assert!(matches!(reply.status, Ok(200) | Err(_)), "{what}");
            if let Ok(body) = &reply.body {
                panic!(
                    "a cut body passed off as whole ({} of 1000 bytes, starts {:?}): {what}",
                    body.len(),
                    body.starts_with(FIRST_BYTES)
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sick_upstreams_fail_fast_and_cleanly_beside_healthy_traffic() {
    let dir = TempDir::new("faults-upstream");
    let ca = TestCa::new(dir.path(), "gw");
    let leaf = ca.issue("gateway");
    let mut sick = Vec::new();
    for (sickness, _) in SICKNESSES {
        sick.push(SickUpstream::start(sickness).await);
    }
    let fx = gateway(&sick, &leaf).await;
    let h2 = TlsClient::h2(fx.gw.addr(), &ca.cert).await;
    let h1 = TlsClient::h1(fx.gw.addr(), &ca.cert);

    // Healthy traffic the whole time: streams on the shared HTTP/2 connection, and HTTP/1.1.
    let mut load = Load::new();
    for (label, client) in [("healthy-h2", &h2), ("healthy-h1", &h1)] {
        let client = client.clone();
        load.spawn(label, 2, move |i| {
            let client = client.clone();
            async move {
                let path = format!("/public/ok{i}");
                client.get(&path, DEADLINE).await.into_resp()
            }
        });
    }
    assert!(
        load.wait_for(
            &["healthy-h2", "healthy-h1"],
            5,
            Duration::ZERO,
            Duration::from_secs(10)
        )
        .await,
        "healthy traffic did not get going"
    );

    let mut report = Vec::new();
    for (upstream, (sickness, prefix)) in sick.iter().zip(SICKNESSES) {
        for client in [&h2, &h1] {
            let replies = join_all((0..AT_ONCE).map(|i| {
                let path = format!("{prefix}/x{i}");
                async move { client.get(&path, DEADLINE).await }
            }))
            .await;
            for reply in &replies {
                assert_sick_reply(sickness, client.protocol(), reply);
            }
            let slowest = replies.iter().map(|r| r.took).max().unwrap_or_default();
            let statuses: Vec<String> = replies
                .iter()
                .map(|r| match (&r.status, &r.body) {
                    (Ok(s), Ok(_)) => s.to_string(),
                    (Ok(s), Err(_)) => format!("{s}+cut"),
                    (Err(_), _) => "none".to_owned(),
                })
                .collect();
            report.push(format!(
                "{sickness:?}/{}: {statuses:?} slowest {slowest:?}",
                client.protocol()
            ));
            // The shared HTTP/2 connection (and new HTTP/1.1 ones) still serve healthy routes.
            let after = client.get("/public/after", DEADLINE).await;
            assert_eq!(
                after.into_resp().map(|r| r.status),
                Ok(200),
                "a healthy route over {} right after {sickness:?}",
                client.protocol()
            );
        }
        assert!(
            upstream.requests() >= 2 * AT_ONCE,
            "{sickness:?}: the sick upstream saw {} requests",
            upstream.requests()
        );
    }

    let samples = load.finish().await;
    for s in &samples {
        let resp = s.outcome.as_ref().unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(resp.status, 200, "{s}");
        assert!(resp.body.contains("upstream=up"), "{s}");
    }
    let slowest = samples.iter().map(|s| s.took).max().unwrap_or_default();
    eprintln!(
        "sick upstreams: {}; healthy: {} answers all 200, slowest {slowest:?}",
        report.join("; "),
        samples.len()
    );
}

/// An upstream may answer before it has read the whole request body. While the client's
/// upload is still going out, the route's read timeout does not run on the response body
/// (nginx starts `proxy_read_timeout` once the request is sent): a slow upload whose pieces
/// come well within the timeout, but which takes longer than it in all, gets its response
/// whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_is_not_cut_while_the_request_body_is_still_coming() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let upstream = listener.local_addr().expect("addr");
    let serve = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let mut answered = false;
        // The head is answered at once; "ok" follows once all 30 body bytes are in.
        loop {
            let n = stream.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            seen.extend_from_slice(&buf[..n]);
            let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            if !answered {
                answered = true;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
                    .await;
            }
            if seen.len() - (end + 4) >= 30 {
                let _ = stream.write_all(b"ok").await;
                std::future::pending::<()>().await;
            }
        }
    });
    let fx = Fixture::start_with(Store::memory(), |config| {
        config.extra.push_str(&format!(
            "\n[[routes]]\nname = \"early\"\npath = \"/early/*\"\nupstreams = [\"http://{upstream}\"]\n\
             auth = \"none\"\ntimeout = \"300ms\"\n"
        ));
    })
    .await;
    let addr = fx.gw.addr();
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.write_all(b"POST /early/x HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\n\r\n")
            .expect("write");
        // 30 bytes in three pieces 250 ms apart: 750 ms in all, past the 300 ms timeout.
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(250));
            s.write_all(b"0123456789").expect("write body");
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.ends_with(b"\r\n\r\nok") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    })
    .await
    .expect("client thread");
    serve.abort();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(
        answer.ends_with("\r\n\r\nok"),
        "the response was cut while the request body was still coming: {answer:?}"
    );
}
