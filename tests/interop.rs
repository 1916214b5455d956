//! Interoperability: Authlib, a widely used Python OAuth 2.0 client nobody here wrote,
//! drives every flow against the real gateway (Redis store, recording upstream) through
//! `tests/interop/authlib_flows.py`. `.ci/test` installs it into `target/interop-venv`
//! (set `TOLLGATE_INTEROP_PYTHON` to use another interpreter that has it).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Fixture, Store, add_auth_clients, client_toml};

fn python() -> PathBuf {
    match std::env::var_os("TOLLGATE_INTEROP_PYTHON") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/interop-venv/bin/python"),
    }
}

/// The script exits 0 only if metadata discovery, client_credentials, password, refresh
/// with rotation (explicit and Authlib's automatic one), the code flow with PKCE for a
/// confidential and a public client, implicit, introspection and revocation all work, each
/// proven by a protected call through the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authlib_drives_every_flow() {
    let python = python();
    assert!(
        python.exists(),
        "{} is missing: run `bash .ci/test`, which creates the venv with \
         tests/interop/requirements.txt (or set TOLLGATE_INTEROP_PYTHON)",
        python.display()
    );
    let fx = Fixture::start_with(Store::redis().await, |c| {
        c.use_fixed_port();
        add_auth_clients(c);
        let secret = format!("secret_hash = \"{}\"", c.secret_hash);
        let redirect = format!("redirect_uris = [\"{}/callback\"]", c.upstream);
        let grants = [
            "client_credentials",
            "password",
            "refresh_token",
            "authorization_code",
        ];
        let extra = client_toml(
            "everything",
            &secret,
            &grants,
            &["reports", "secret"],
            &redirect,
        );
        c.extra.push_str(&extra);
    })
    .await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/authlib_flows.py");
    let vars = [
        ("TOLLGATE_URL", fx.gw.base_url()),
        ("CLIENT_ID", "everything".to_owned()),
        ("CLIENT_SECRET", fx.creds.secret.clone()),
        ("PUBLIC_CLIENT_ID", "spa".to_owned()),
        ("IMPLICIT_CLIENT_ID", "implicit-app".to_owned()),
        ("USERNAME", "alice".to_owned()),
        ("PASSWORD", fx.creds.password.clone()),
        ("REDIRECT_URI", fx.callback()),
        ("PROTECTED_PATH", "/abc/x".to_owned()),
        ("FORBIDDEN_PATH", "/secret/x".to_owned()),
        // Everything is on loopback: never through a proxy the environment may name.
        ("NO_PROXY", "127.0.0.1,localhost".to_owned()),
        ("no_proxy", "127.0.0.1,localhost".to_owned()),
    ];
    // The upstream and the gateway's pipes live in this runtime: run the script off it.
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(&script)
            .envs(vars)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()))
    })
    .await
    .expect("interop script thread");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the Authlib script failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        output.status
    );
}
