//! Runs `tollgate run --config <tmp>/gateway.toml --log-format json` as a child process,
//! learns its addresses from its two `listening` log lines, waits for `/readyz` to say 200
//! (the ports open before the store and the revocation subscription are up), and keeps every
//! line it prints.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use super::{Resp, TempDir, get_with_token, metrics, parse_challenge, poll, tollgate_bin};

/// How long a gateway may take to bind both listeners, and then to become ready.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// A running gateway; killed on drop.
pub struct Gateway {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
    public: SocketAddr,
    admin: SocketAddr,
    _dir: TempDir,
}

impl Gateway {
    /// Writes `config` to a fresh temp dir and starts the gateway on it with `env` added to
    /// its environment (`RUST_LOG` defaults to `info`), then waits for `/readyz` 200. Panics
    /// with the captured logs if it exits, does not report both listeners within 10 s, or is
    /// not ready 10 s after that.
    pub async fn start(config: &str, env: &[(String, String)]) -> Gateway {
        let mut gw = Gateway::start_unready(config, env).await;
        gw.wait_ready(READY_WITHIN).await;
        gw
    }

    /// Like [`Gateway::start`] but returns once both listeners are open, ready or not: for
    /// tests that start a node while its store is down on purpose.
    pub async fn start_unready(config: &str, env: &[(String, String)]) -> Gateway {
        let dir = TempDir::new("gateway");
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, config).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        let bin = tollgate_bin();
        let mut cmd = Command::new(&bin);
        cmd.arg("run")
            .arg("--config")
            .arg(&path)
            .arg("--log-format")
            .arg("json")
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in env {
            cmd.env(name, value);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));

        let logs = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        if let Some(stderr) = child.stderr.take() {
            readers.push(capture(stderr, Arc::clone(&logs)));
        }
        if let Some(stdout) = child.stdout.take() {
            readers.push(capture(stdout, Arc::clone(&logs)));
        }

        let listeners = poll(READY_WITHIN, || {
            let listeners = listeners(&logs.lock().expect("log buffer"));
            let exited = child.try_wait().ok().flatten();
            async move {
                if let Some(status) = exited {
                    return Some(Err(format!("tollgate exited early ({status})")));
                }
                listeners.map(Ok)
            }
        })
        .await;
        let (public, admin) = match listeners {
            Some(Ok(addrs)) => addrs,
            outcome => {
                let _ = child.kill();
                let _ = child.wait();
                for reader in readers {
                    let _ = reader.join();
                }
                let why = match outcome {
                    Some(Err(why)) => why,
                    _ => {
                        format!("no `listening` lines for public and admin within {READY_WITHIN:?}")
                    }
                };
                panic!(
                    "{why}\n--- config ---\n{config}\n--- output ---\n{}",
                    logs.lock().expect("log buffer").join("\n")
                );
            }
        };
        Gateway {
            child,
            logs,
            readers,
            public,
            admin,
            _dir: dir,
        }
    }

    /// Polls `/readyz` until it says 200; panics (with the logs) if the process exits or
    /// `within` passes first.
    pub async fn wait_ready(&mut self, within: Duration) {
        let (admin, child) = (self.admin, &mut self.child);
        let outcome = poll(within, || {
            let exited = child.try_wait().ok().flatten();
            async move {
                if let Some(status) = exited {
                    return Some(Err(format!(
                        "tollgate exited before it was ready ({status})"
                    )));
                }
                (readyz_status(admin).await == Some(200)).then_some(Ok(()))
            }
        })
        .await;
        match outcome {
            Some(Ok(())) => {}
            Some(Err(why)) => panic!("{why}"),
            None => panic!(
                "/readyz not 200 within {within:?} (last answer: {:?})",
                readyz_status(admin).await
            ),
        }
    }

    /// The status `/readyz` answers now; `None` if the admin listener does not answer.
    pub async fn readyz(&self) -> Option<u16> {
        readyz_status(self.admin).await
    }

    /// Presents `token` on `path` of this node until one request is answered from the
    /// node's cache (its `tollgate_cache_hits_total` grows while the answers stay 200), so a
    /// test of revocation reaching this node knows the node held the token. Panics if that
    /// does not happen within 2 s. Nothing else may use the node meanwhile.
    pub async fn assert_cached(&self, path: &str, token: &str) {
        let url = format!("{}{path}", self.base_url());
        let admin = self.admin_url();
        let hits = || async { metrics(&admin).await.sum("tollgate_cache_hits_total", &[]) };
        let cached = poll(Duration::from_secs(2), || async {
            let before = hits().await;
            let resp = get_with_token(&url, Some(token)).await;
            assert_eq!(resp.status, 200, "{url} before the revocation: {resp}");
            (hits().await > before).then_some(())
        })
        .await;
        assert!(
            cached.is_some(),
            "{url} never served the token from its cache"
        );
    }

    /// `http://127.0.0.1:PORT` of the public listener.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.public)
    }

    /// `http://127.0.0.1:PORT` of the admin listener.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// The public listener's address (for raw TCP requests).
    pub fn addr(&self) -> SocketAddr {
        self.public
    }

    /// Every line the gateway printed so far (stderr and stdout).
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().expect("log buffer").clone()
    }

    /// Panics if any captured line contains one of `secrets` (never printing the secret).
    pub fn assert_logs_free_of(&self, secrets: &[&str]) {
        let logs = self.logs();
        assert!(!logs.is_empty(), "the gateway logged nothing at all");
        for (i, secret) in secrets.iter().enumerate() {
            assert!(!secret.is_empty(), "empty secret #{i} in the check list");
            if let Some(line) = logs.iter().position(|line| line.contains(secret)) {
                panic!("secret #{i} appears in log line {line} of {}", logs.len());
            }
        }
    }

    /// The process id (for signals sent by the test).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The `gateway.toml` the process runs on; tests edit it to exercise reload.
    pub fn config_path(&self) -> PathBuf {
        self._dir.path().join("gateway.toml")
    }

    /// Sends `kill -<signal>` (`"HUP"`, `"TERM"`, `"INT"`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap_or_else(|e| panic!("kill -{signal}: {e}"));
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// Waits up to `within` for the process to exit on its own (then joins the log readers);
    /// `None` if it is still running.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let child = &mut self.child;
        let status = poll(within, || {
            let exited = child.try_wait().ok().flatten();
            async move { exited }
        })
        .await?;
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        Some(status)
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (graceful shutdown), up to 10 s for the process to exit (then SIGKILL), and
    /// every line it printed collected. Returns how it exited.
    pub async fn shutdown(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let child = &mut self.child;
        let status = match poll(Duration::from_secs(10), || {
            let exited = child.try_wait().ok().flatten();
            async move { exited }
        })
        .await
        {
            Some(status) => status,
            None => {
                let _ = self.child.kill();
                self.child.wait().expect("reap tollgate")
            }
        };
        // The pipes are closed now; the readers end at EOF with every line captured.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        status
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let logs = self.logs();
            let tail = &logs[logs.len().saturating_sub(60)..];
            eprintln!("--- last gateway log lines ---\n{}", tail.join("\n"));
        }
    }
}

/// A protected route's answer to a token it refuses (SPEC §4, README's table): 401
/// `invalid_token` with `description` ("unknown token", "token revoked", "token expired")
/// in both the body and the `WWW-Authenticate` challenge.
pub fn assert_invalid_token(resp: &Resp, description: &str) {
    assert_eq!(resp.status, 401, "expected 401 {description:?}: {resp}");
    let body = resp.json();
    assert_eq!(body["error"], "invalid_token", "{resp}");
    assert_eq!(body["error_description"], description, "{resp}");
    let challenge = resp.header("www-authenticate").unwrap_or_default();
    let (scheme, params) = parse_challenge(challenge);
    assert_eq!(scheme, "Bearer", "{resp}");
    assert_eq!(
        params.get("error").map(String::as_str),
        Some("invalid_token")
    );
    assert_eq!(
        params.get("error_description").map(String::as_str),
        Some(description),
        "challenge in {resp}"
    );
}

/// `GET /readyz` over a plain socket (no client that panics on a refused connection):
/// the status code, or `None` if there is no answer within a second.
async fn readyz_status(admin: SocketAddr) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(admin).await.ok()?;
        let request = b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        stream.write_all(request).await.ok()?;
        let mut head = Vec::new();
        stream.read_to_end(&mut head).await.ok()?;
        let line = head.split(|b| *b == b'\n').next()?;
        std::str::from_utf8(line)
            .ok()?
            .split(' ')
            .nth(1)?
            .parse()
            .ok()
    };
    tokio::time::timeout(Duration::from_secs(1), exchange)
        .await
        .ok()
        .flatten()
}

/// Copies `pipe` line by line into `logs` from a background thread.
fn capture(pipe: impl Read + Send + 'static, logs: Arc<Mutex<Vec<String>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                    logs.lock().expect("log buffer").push(text);
                }
            }
        }
    })
}

/// The public and admin addresses once both `listening` lines have been printed.
fn listeners(logs: &[String]) -> Option<(SocketAddr, SocketAddr)> {
    let mut public = None;
    let mut admin = None;
    for line in logs {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        // tracing-subscriber's json layout nests them under "fields"; accept flattened too.
        let fields = event.get("fields").unwrap_or(&event);
        if fields["message"] != "listening" {
            continue;
        }
        let addr = fields["addr"]
            .as_str()
            .and_then(|a| a.parse::<SocketAddr>().ok());
        match fields["listener"].as_str() {
            Some("public") => public = addr.or(public),
            Some("admin") => admin = addr.or(admin),
            _ => {}
        }
    }
    Some((public?, admin?))
}
