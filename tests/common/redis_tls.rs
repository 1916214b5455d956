//! A private `redis-server` that speaks only TLS (`--port 0 --tls-port P`), with a test CA
//! and a server certificate for `localhost` / `127.0.0.1` made by `openssl` in its temp dir,
//! and a second CA that has nothing to do with it (for the refusal tests). Killed on drop.

use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use super::redis_server::{free_port, spawn_server};
use super::{TempDir, TestCa, client_config};

pub struct RedisTls {
    port: u16,
    child: Child,
    ca: TestCa,
    other_ca: TestCa,
    _dir: TempDir,
}

impl RedisTls {
    /// Makes the certificates and starts the server; ready once a TLS client trusting the
    /// CA gets `+PONG` (so the certificate the gateway will see is known to verify).
    pub async fn start() -> RedisTls {
        let dir = TempDir::new("redis-tls");
        let ca = TestCa::new(dir.path(), "redis");
        let other_ca = TestCa::new(dir.path(), "unrelated");
        let leaf = ca.issue("redis-server");
        let path = |p: &Path| p.to_str().expect("UTF-8 temp path").to_owned();
        let mut failures = Vec::new();
        for _ in 0..5 {
            let port = free_port();
            let args = [
                "--port".to_owned(),
                "0".to_owned(),
                "--tls-port".to_owned(),
                port.to_string(),
                "--tls-cert-file".to_owned(),
                path(&leaf.cert),
                "--tls-key-file".to_owned(),
                path(&leaf.key),
                "--tls-ca-cert-file".to_owned(),
                path(&ca.cert),
                "--tls-auth-clients".to_owned(),
                "no".to_owned(),
            ];
            let connector = TlsConnector::from(Arc::new(client_config(&[&ca.cert], &[])));
            let ready = move || tls_ping(port, connector.clone());
            match spawn_server(&dir, &format!("redis-tls-{port}"), &args, ready).await {
                Ok(child) => {
                    return RedisTls {
                        port,
                        child,
                        ca,
                        other_ca,
                        _dir: dir,
                    };
                }
                Err(why) => failures.push(why),
            }
        }
        panic!(
            "TLS redis-server did not come up (does this redis-server support TLS?):\n{}",
            failures.join("\n---\n")
        );
    }

    /// `rediss://localhost:PORT/0`: the name the server certificate carries.
    pub fn url(&self) -> String {
        format!("rediss://localhost:{}/0", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA that signed the server's certificate (PEM).
    pub fn ca(&self) -> &Path {
        &self.ca.cert
    }

    /// A CA that signed nothing the server presents (PEM).
    pub fn unrelated_ca(&self) -> &Path {
        &self.other_ca.cert
    }
}

impl Drop for RedisTls {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True once a TLS handshake (SNI `localhost`) and `PING` → `+PONG` succeed within 500 ms.
async fn tls_ping(port: u16, connector: TlsConnector) -> bool {
    super::redis_server::answers_ping(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let name = ServerName::try_from("localhost").ok()?;
        connector.connect(name, tcp).await.ok()
    })
    .await
}
