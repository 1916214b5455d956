//! A private `redis-server` per test on a free port (never 6379), which a test can stop
//! (or crash) and start again on the same port to simulate a store outage.

use std::fs::File;
use std::future::Future;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{TempDir, poll};

const UP_WITHIN: Duration = Duration::from_secs(10);

/// A running `redis-server`, killed on drop. Nothing is ever flushed: tests isolate
/// themselves by key prefix and by having their own server.
pub struct Redis {
    port: u16,
    child: Option<Child>,
    dir: TempDir,
    /// Started by [`Redis::start_durable`]: every write is in the append-only file, fsynced,
    /// before Redis acknowledges it.
    durable: bool,
}

impl Redis {
    /// Starts `redis-server` on a free port, retrying with another port if it does not come
    /// up. Panics with a pointer to the README if `redis-server` is not installed.
    pub async fn start() -> Redis {
        Redis::start_with(false).await
    }

    /// Like [`Redis::start`], with persistence as a production Redis that must not lose an
    /// acknowledged write has it: `appendonly yes`, `appendfsync always`. With it,
    /// [`Redis::crash`] then [`Redis::restart`] come back with every write Redis answered.
    pub async fn start_durable() -> Redis {
        Redis::start_with(true).await
    }

    async fn start_with(durable: bool) -> Redis {
        let dir = TempDir::new("redis");
        let mut failures = Vec::new();
        for _ in 0..5 {
            let port = free_port();
            match spawn(port, &dir, durable).await {
                Ok(child) => {
                    return Redis {
                        port,
                        child: Some(child),
                        dir,
                        durable,
                    };
                }
                Err(why) => failures.push(why),
            }
        }
        panic!(
            "redis-server did not come up:\n{}",
            failures.join("\n---\n")
        );
    }

    /// `redis://127.0.0.1:PORT/0`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Takes the server down. The data is snapshotted first (`SAVE`; automatic saving is
    /// off) so that a later [`Redis::restart`] comes back with the same keys, like a real
    /// Redis with persistence after an outage.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Err(e) = save(self.port) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("SAVE before stopping redis failed: {e}");
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGKILLs the server with no `SAVE` first: what it had not persisted by itself is
    /// gone, as in a real crash. Only a [`Redis::start_durable`] server keeps its data
    /// through this (from its append-only file); a plain one comes back empty.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `Child::kill` is SIGKILL on Unix: no shutdown hook of Redis runs.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (after [`Redis::stop`] or [`Redis::crash`]),
    /// once it has loaded its data (`PING` answers `PONG`, not `LOADING`).
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "redis is already running");
        let mut failures = Vec::new();
        // The old socket may linger briefly; a few attempts cover that.
        for _ in 0..5 {
            match spawn(self.port, &self.dir, self.durable).await {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(why) => failures.push(why),
            }
        }
        panic!(
            "redis-server did not come back on port {}:\n{}",
            self.port,
            failures.join("\n---\n")
        );
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port the OS just handed out and we released (never Redis's default 6379).
pub(super) fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        if port != 6379 {
            return port;
        }
    }
}

async fn spawn(port: u16, dir: &TempDir, durable: bool) -> Result<Child, String> {
    let mut args = vec!["--port".to_owned(), port.to_string()];
    if durable {
        // Later arguments override the shared "no persistence" ones of `spawn_server`.
        for arg in ["--appendonly", "yes", "--appendfsync", "always"] {
            args.push(arg.to_owned());
        }
    }
    spawn_server(dir, &format!("redis-{port}"), &args, move || ping(port)).await
}

/// Starts `redis-server` with `args` after the settings every test server shares (loopback
/// only, no persistence, its files in `dir`), logging to `<dir>/<name>.log`, and polls
/// `ready` until it says yes. On failure (exit, or not ready within 10 s) the process is
/// killed and the error carries its log. Shared by the plain, cluster and TLS servers.
pub(super) async fn spawn_server<F, Fut>(
    dir: &TempDir,
    name: &str,
    args: &[String],
    ready: F,
) -> Result<Child, String>
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let log_path = dir.path().join(format!("{name}.log"));
    let log = File::create(&log_path).map_err(|e| format!("create {}: {e}", log_path.display()))?;
    let log_err = log.try_clone().map_err(|e| e.to_string())?;
    let spawned = Command::new("redis-server")
        .args(["--bind", "127.0.0.1"])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .args(["--daemonize", "no"])
        .arg("--dir")
        .arg(dir.path())
        .args(args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "redis-server is not on PATH; the end-to-end tests need it. \
             Run the test command from README.md, which installs it."
        ),
        Err(e) => return Err(format!("spawn redis-server: {e}")),
    };
    let up = poll(UP_WITHIN, || {
        let exited = child.try_wait().ok().flatten();
        let probe = ready();
        async move {
            if let Some(status) = exited {
                return Some(Err(format!("redis-server exited ({status})")));
            }
            probe.await.then_some(Ok(()))
        }
    })
    .await;
    let why = match up {
        Some(Ok(())) => return Ok(child),
        Some(Err(why)) => why,
        None => format!("{name} not ready within {UP_WITHIN:?}"),
    };
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    Err(format!("{why}\n{log}"))
}

/// True once the server answers `PING` with `+PONG` (not `-LOADING`).
pub(super) async fn ping(port: u16) -> bool {
    answers_ping(async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
    })
    .await
}

/// Sends `PING` on the stream `connect` opens and looks for `+PONG`, within 500 ms.
pub(super) async fn answers_ping<S>(connect: impl Future<Output = Option<S>>) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let attempt = async {
        let mut stream = connect.await?;
        stream.write_all(b"*1\r\n$4\r\nPING\r\n").await.ok()?;
        let mut reply = [0u8; 64];
        let n = stream.read(&mut reply).await.ok()?;
        Some(reply[..n].starts_with(b"+PONG"))
    };
    tokio::time::timeout(Duration::from_millis(500), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Sends `SAVE` and waits for `+OK`.
fn save(port: u16) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"*1\r\n$4\r\nSAVE\r\n")
        .map_err(|e| e.to_string())?;
    let mut reply = [0u8; 64];
    let n = stream.read(&mut reply).map_err(|e| e.to_string())?;
    if reply[..n].starts_with(b"+OK") {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&reply[..n]).into_owned())
    }
}
