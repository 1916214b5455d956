//! A stand-in for Tollgate for the smoke run (`cargo test --all-targets` runs this bench
//! without `--bench`): the three endpoints the soak calls, on a port of its own, so the
//! generator's own logic (timetable, connections, revocation check, report) is exercised in
//! CI without a release build, nginx or Redis.
//!
//! `POST /oauth/token` issues a token, `POST /oauth/revoke` forgets it, and any `GET` answers
//! 200 with a live bearer token and 401 otherwise.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(Default)]
struct Tokens {
    live: Mutex<HashSet<String>>,
    next: AtomicU64,
}

/// Starts the stand-in on 127.0.0.1, port 0; it runs until the runtime ends.
pub async fn start() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let tokens = Arc::new(Tokens::default());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tokens = tokens.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let tokens = tokens.clone();
                    async move { Ok::<_, hyper::Error>(answer(&tokens, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn answer(tokens: &Tokens, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r
    };
    let (head, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut live = match tokens.live.lock() {
        Ok(l) => l,
        Err(p) => p.into_inner(),
    };
    match (head.method, head.uri.path()) {
        (Method::POST, "/oauth/token") => {
            let n = tokens.next.fetch_add(1, Ordering::Relaxed);
            let token = format!("fake-token-{n}");
            live.insert(token.clone());
            reply(
                StatusCode::OK,
                format!(r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":3600}}"#),
            )
        }
        (Method::POST, "/oauth/revoke") => {
            for (k, v) in form_urlencoded::parse(&body) {
                if k == "token" {
                    live.remove(&*v);
                }
            }
            reply(StatusCode::OK, String::new())
        }
        (Method::GET, _) => {
            let bearer = head
                .headers
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            match bearer {
                Some(t) if live.contains(t) => reply(StatusCode::OK, "ok\n".into()),
                _ => reply(StatusCode::UNAUTHORIZED, String::new()),
            }
        }
        _ => reply(StatusCode::NOT_FOUND, String::new()),
    }
}
