//! The `tollgate` binary run as an operator runs it: arguments, environment, stdin, in a
//! directory of the test's choosing; and what it left on stdout, stderr and in its exit code.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{TempDir, poll, tollgate_bin};

/// How a CLI run ended.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub what: String,
}

impl Run {
    pub fn ok(&self) -> &Run {
        assert_eq!(self.code, Some(0), "{self}");
        self
    }

    /// Asserts exit code 1 (every failure of a command that ran) with `message` on stderr.
    pub fn failed(&self, message: &str) {
        self.exited(1, message);
    }

    /// Asserts exit `code` and `message` in stderr (2 is clap's code for a usage error).
    pub fn exited(&self, code: i32, message: &str) {
        assert_eq!(self.code, Some(code), "exit code: {self}");
        assert!(
            self.stderr.contains(message),
            "want {message:?} on stderr: {self}"
        );
        assert!(self.stdout.trim().is_empty(), "stdout on failure: {self}");
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout not JSON ({e}): {self}"))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exited {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what, self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `tollgate args...` with only `env` of the TOLLGATE_* variables set, in an empty
/// directory; killed after 20 s.
pub async fn tollgate<S: AsRef<OsStr>>(args: &[S], env: &[(&str, &str)]) -> Run {
    let dir = TempDir::new("cli");
    tollgate_in(dir.path(), args, env, None).await
}

/// [`tollgate`] in `dir`, with `stdin` as its standard input (none: an empty one).
pub async fn tollgate_in<S: AsRef<OsStr>>(
    dir: &Path,
    args: &[S],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> Run {
    let mut cmd = Command::new(tollgate_bin());
    cmd.args(args)
        .current_dir(dir)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in [
        "TOLLGATE_ADMIN_URL",
        "TOLLGATE_ADMIN_TOKEN",
        "TOLLGATE_CLIENT_ID",
        "TOLLGATE_CLIENT_SECRET",
        "TOLLGATE_URL",
    ] {
        cmd.env_remove(var);
    }
    for (name, value) in env {
        cmd.env(name, value);
    }
    let mut child = cmd.spawn().expect("spawn tollgate");
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).expect("write stdin");
        // dropped here: the CLI sees end of input
    }
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = poll(Duration::from_secs(20), || {
        let exited = child.try_wait().ok().flatten();
        async move { exited }
    })
    .await;
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    Run {
        code: status.and_then(|s| s.code()),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        what: format!(
            "tollgate {}",
            args.iter()
                .map(|a| a.as_ref().to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}
