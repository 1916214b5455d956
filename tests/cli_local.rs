//! End-to-end: the commands an operator runs without a gateway: `tollgate check` (every
//! error as `FILE:LINE:COL: message`, exit 1) and `tollgate hash-secret` (SPEC §1).

mod common;

use common::{
    Fixture, Store, TempDir, access_token, assert_error, client_toml, post_form, tollgate_in,
};

/// A config with two unknown keys in different tables and two bad values.
const BROKEN_CONFIG: &str = r#"[server]
listen = "nowhere"
public_url = "http://127.0.0.1:8080"
colour = "red"

[[scopes]]
name = "reports"
paths = ["/abc/*"]
bogus = 1

[[routes]]
name = "abc"
path = "/abc/*"
upstreams = ["http://127.0.0.1:9000"]
timeout = "soon"
"#;

#[tokio::test]
async fn check_reports_every_error_as_file_line_col_and_exits_1() {
    let dir = TempDir::new("check");
    std::fs::write(dir.path().join("gw.toml"), BROKEN_CONFIG).expect("write config");
    let run = tollgate_in(dir.path(), &["check", "--config", "gw.toml"], &[], None).await;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stdout.is_empty(), "{run}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines,
        [
            "gw.toml:2:10: invalid listen address \"nowhere\" (expected IP:PORT, e.g. \
             \"127.0.0.1:8080\")",
            "gw.toml:4:1: unknown field `colour`, expected one of `listen`, `public_url`, \
             `shutdown_grace`, `workers`, `trusted_proxies`, `max_header_bytes`, `header_timeout`, \
             `idle_timeout`, `max_connections`, `tls`",
            "gw.toml:9:1: unknown field `bogus`, expected one of `name`, `description`, `paths`",
            "gw.toml:15:11: invalid duration \"soon\": expected a whole number and a unit \
             (ms, s, m, h, d), e.g. \"30s\"",
        ],
        "{run}"
    );

    // Fixed, the same file passes with a summary on stdout.
    let fixed = BROKEN_CONFIG
        .replace("\"nowhere\"", "\"127.0.0.1:8080\"")
        .replace("colour = \"red\"\n", "")
        .replace("bogus = 1\n", "")
        .replace("\"soon\"", "\"5s\"");
    std::fs::write(dir.path().join("gw.toml"), fixed).expect("write config");
    let run = tollgate_in(dir.path(), &["check", "--config", "gw.toml"], &[], None).await;
    run.ok();
    assert!(run.stdout.starts_with("gw.toml: OK\n"), "{run}");
    assert!(run.stdout.contains("1 routes, 1 scopes"), "{run}");

    let run = tollgate_in(
        dir.path(),
        &["check", "--config", "missing.toml"],
        &[],
        None,
    )
    .await;
    run.failed("missing.toml: No such file or directory");
}

/// A bearer route no scope covers is a warning (SPEC §2): `check` passes and says where,
/// `check --strict` fails on it.
#[tokio::test]
async fn check_warns_of_an_unreachable_route_and_strict_fails_on_it() {
    let dir = TempDir::new("check-warn");
    let fixed = BROKEN_CONFIG
        .replace("\"nowhere\"", "\"127.0.0.1:8080\"")
        .replace("colour = \"red\"\n", "")
        .replace("bogus = 1\n", "")
        .replace("\"soon\"", "\"5s\"");
    let unreachable = fixed.replace("path = \"/abc/*\"", "path = \"/elsewhere/*\"");
    assert_ne!(unreachable, fixed);
    std::fs::write(dir.path().join("gw.toml"), &unreachable).expect("write config");
    let warning = "gw.toml:11:8: warning: route \"abc\" is unreachable: auth = \"bearer\" \
                   but no scope covers any path of \"/elsewhere/*\"";

    let run = tollgate_in(dir.path(), &["check", "--config", "gw.toml"], &[], None).await;
    run.ok();
    assert!(run.stdout.starts_with("gw.toml: OK\n"), "{run}");
    assert_eq!(run.stderr.lines().collect::<Vec<_>>(), [warning], "{run}");

    let strict = ["check", "--strict", "--config", "gw.toml"];
    let run = tollgate_in(dir.path(), &strict, &[], None).await;
    run.failed(warning);
    assert!(run.stderr.contains("--strict"), "{run}");

    // Without warnings --strict passes as plain check does.
    std::fs::write(dir.path().join("gw.toml"), &fixed).expect("write config");
    let run = tollgate_in(dir.path(), &strict, &[], None).await;
    run.ok();
    assert!(run.stderr.is_empty(), "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_secret_prints_an_argon2id_string_a_client_can_use() {
    let dir = TempDir::new("hash-secret");
    let secret = format!("hs-{}", common::random_hex(12));
    // As `echo` sends it: the trailing newline is not part of the secret.
    let run = tollgate_in(
        dir.path(),
        &["hash-secret"],
        &[],
        Some(&format!("{secret}\n")),
    )
    .await;
    run.ok();
    assert!(run.stderr.is_empty(), "{run}");
    let hash = run
        .stdout
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("one line: {run}"));
    assert!(
        !hash.contains('\n') && hash.starts_with("$argon2id$v=19$"),
        "{run}"
    );
    assert!(!hash.contains(&secret), "{run}");

    let secret_line = format!("secret_hash = \"{hash}\"");
    let fx = Fixture::start_with(Store::memory(), |config| {
        let client = client_toml(
            "hashed",
            &secret_line,
            &["client_credentials"],
            &["reports"],
            "",
        );
        config.extra.push_str(&client);
    })
    .await;
    let resp = post_form(
        &fx.token_url(),
        &[("grant_type", "client_credentials")],
        Some(("hashed", &secret)),
    )
    .await;
    assert_eq!(resp.status, 200, "the hashed secret works: {resp}");
    assert_eq!(
        fx.get("/abc/x", Some(&access_token(&resp.json())))
            .await
            .status,
        200
    );
    let with_newline = format!("{secret}\n");
    let resp = post_form(
        &fx.token_url(),
        &[("grant_type", "client_credentials")],
        Some(("hashed", &with_newline)),
    )
    .await;
    assert_error(&resp, 401, "invalid_client");

    tollgate_in(dir.path(), &["hash-secret"], &[], Some("\n"))
        .await
        .failed("tollgate: no secret on stdin");
}
