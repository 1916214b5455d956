//! `[server]` limits (SPEC §12): defaults, values, and located errors.

use super::*;

const AT: &str = "public_url = \"http://127.0.0.1:8080/\"";

fn with_server(lines: &str) -> String {
    BASE.replacen(AT, &format!("{AT}\n{lines}"), 1)
}

#[test]
fn limits_default_to_the_spec_values() {
    let c = load(BASE).expect("valid");
    let l = c.server.limits;
    assert_eq!(l.max_header_bytes, 65_536);
    assert_eq!(l.header_timeout, Duration::from_secs(10));
    assert_eq!(l.idle_timeout, Duration::from_secs(60));
    assert_eq!(l.max_connections, 10_000);
}

#[test]
fn limits_are_read() {
    let c = load(&with_server(
        "max_header_bytes = 8192\nheader_timeout = \"2s\"\nidle_timeout = \"500ms\"\nmax_connections = 3",
    ))
    .expect("valid");
    assert_eq!(
        c.server.limits,
        Limits {
            max_header_bytes: 8192,
            header_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_millis(500),
            max_connections: 3,
        }
    );
}

#[test]
fn bad_limits_are_located() {
    let table: &[(&str, &str)] = &[
        (
            "max_header_bytes = 4096",
            "gw.toml:5:20: max_header_bytes must be from 8192 to 262144",
        ),
        (
            "max_header_bytes = 1048576",
            "gw.toml:5:20: max_header_bytes must be from 8192 to 262144",
        ),
        (
            "max_header_bytes = \"64k\"",
            "gw.toml:5:20: invalid type: string \"64k\", expected i64",
        ),
        (
            "header_timeout = \"0s\"",
            "gw.toml:5:18: header_timeout must be more than 0s",
        ),
        ("header_timeout = \"10\"", "gw.toml:5:18: "),
        (
            "idle_timeout = \"0ms\"",
            "gw.toml:5:16: idle_timeout must be more than 0s",
        ),
        (
            "max_connections = 0",
            "gw.toml:5:19: max_connections must be from 1 to 1000000",
        ),
    ];
    for (line, want) in table {
        let errs = errors(&with_server(line));
        assert!(
            errs.iter().any(|e| e.starts_with(want)),
            "{line:?}: want an error starting {want:?}, got {errs:#?}"
        );
    }
}
