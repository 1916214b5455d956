//! Config validation: what loads, and every error with its `FILE:LINE:COL`.

use std::path::Path;
use std::time::Duration;

use super::*;

/// A cheap argon2id hash (m=256) so tests need not spend real hashing time.
const HASH: &str =
    "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHRzYWx0$2kKJy8eJ1/nAEUlqrsYqGomF1P8fzJ6yL4w6ZwhbZUY";

const BASE: &str = r#"
[server]
listen = "127.0.0.1:8080"
public_url = "http://127.0.0.1:8080/"

[[scopes]]
name = "reports"
paths = ["/abc/*", "GET /reports/{id}"]

[[clients]]
client_id = "app"
secret_hash = "HASH"
grants = ["client_credentials", "refresh_token"]
scopes = ["reports"]

[[routes]]
name = "abc"
path = "/abc/*"
upstreams = ["http://127.0.0.1:9000"]
"#;

fn env(name: &str) -> Option<String> {
    match name {
        "SECRET" => Some("s3cret".to_owned()),
        "PORT" => Some("8181".to_owned()),
        _ => None,
    }
}

fn load(src: &str) -> Result<Config, ConfigError> {
    Config::from_str_with_env(Path::new("gw.toml"), &src.replace("HASH", HASH), &env)
}

fn errors(src: &str) -> Vec<String> {
    match load(src) {
        Ok(_) => Vec::new(),
        Err(e) => e.0,
    }
}

#[test]
fn minimal_file_loads_with_defaults() {
    let c = load(BASE).expect("valid");
    assert_eq!(
        c.server.public_url, "http://127.0.0.1:8080",
        "trailing slash trimmed"
    );
    assert_eq!(c.server.shutdown_grace, Duration::from_secs(30));
    assert_eq!(c.admin.listen.to_string(), "127.0.0.1:9090");
    assert_eq!(c.store.backend, Backend::Memory);
    assert_eq!(c.oauth.path, "/oauth");
    assert_eq!(c.oauth.access_token_ttl, Some(Duration::from_secs(600)));
    assert_eq!(
        c.oauth.refresh_token_ttl,
        Some(Duration::from_secs(30 * 86_400))
    );
    let app = c.client("app").expect("client");
    assert_eq!(app.kind, ClientType::Confidential);
    assert_eq!(app.access_token_ttl, Some(Duration::from_secs(600)));
    assert_eq!(app.refresh_count, RefreshCount::Unlimited);
    assert_eq!(c.routes[0].auth, RouteAuth::Bearer);
    assert_eq!(c.routes[0].timeout, Duration::from_secs(30));
}

#[test]
fn env_interpolation_and_plain_secrets() {
    let src = BASE
        .replace(
            r#"listen = "127.0.0.1:8080""#,
            r#"listen = "127.0.0.1:${PORT}""#,
        )
        .replace(r#"secret_hash = "HASH""#, r#"secret = "${SECRET}""#);
    let c = load(&src).expect("valid");
    assert_eq!(c.server.listen.port(), 8181);
    let hash = c
        .client("app")
        .and_then(|a| a.secret_hash.clone())
        .expect("hashed");
    assert!(
        hash.starts_with("$argon2id$"),
        "plain secret is hashed at load"
    );
    assert!(crate::secret::verify("s3cret", &hash));
}

#[test]
fn per_client_lifetimes_and_refresh_counts() {
    let src = BASE.replace(
        r#"scopes = ["reports"]
"#,
        r#"scopes = ["reports"]
access_token_ttl = "never"
refresh_count = 3
"#,
    );
    let c = load(&src).expect("valid");
    let app = c.client("app").expect("client");
    assert_eq!(app.access_token_ttl, None);
    assert_eq!(app.refresh_count, RefreshCount::Limited(3));
}

/// Each row: a change to BASE, and the `LINE:COL: message-fragment` it must produce.
#[test]
fn errors_carry_file_line_and_column() {
    let table: &[(&str, &str, &str)] = &[
        // (replace this, with this, expected error fragment)
        (
            "public_url = \"http://127.0.0.1:8080/\"",
            "public_url = \"http://127.0.0.1:8080/\"\nbogus = 1",
            "gw.toml:5:1: unknown field `bogus`",
        ),
        (
            "listen = \"127.0.0.1:8080\"",
            "listen = \"nowhere\"",
            "gw.toml:3:10: invalid listen address",
        ),
        (
            "listen = \"127.0.0.1:8080\"",
            "listen = \"${NOPE}\"",
            "gw.toml:3:10: environment variable NOPE is not set",
        ),
        (
            "name = \"reports\"",
            "name = \"admin\"",
            "gw.toml:7:8: `admin` is built in",
        ),
        (
            "name = \"reports\"",
            "name = \"Admin:Read\"",
            "gw.toml:7:8: `Admin:Read` is built in",
        ),
        (
            "paths = [\"/abc/*\", \"GET /reports/{id}\"]",
            "paths = [\"/abc/*/x\"]",
            "gw.toml:8:10: invalid path pattern",
        ),
        (
            "scopes = [\"reports\"]",
            "scopes = [\"nope\"]",
            "gw.toml:14:11: unknown scope \"nope\"",
        ),
        (
            "grants = [\"client_credentials\", \"refresh_token\"]",
            "grants = [\"client_credentials\", \"teleport\"]",
            "gw.toml:13:33: unknown grant \"teleport\"",
        ),
        (
            "secret_hash = \"HASH\"",
            "secret_hash = \"plain\"",
            "gw.toml:12:15: secret_hash: not a PHC hash string",
        ),
        (
            "secret_hash = \"HASH\"",
            "",
            "gw.toml:11:13: a confidential client needs `secret` or `secret_hash`",
        ),
        (
            "upstreams = [\"http://127.0.0.1:9000\"]",
            "upstreams = [\"ftp://x\"]",
            "gw.toml:19:14: invalid upstream URL",
        ),
        (
            "upstreams = [\"http://127.0.0.1:9000\"]",
            "upstreams = []",
            "gw.toml:19:13: a route needs at least one upstream",
        ),
        (
            "path = \"/abc/*\"",
            "path = \"/abc/*\"\nstrip_prefix = \"/ab\"",
            "gw.toml:19:16: strip_prefix must be leading whole segments",
        ),
        (
            "path = \"/abc/*\"",
            "path = \"/abc/*\"\ntimeout = \"soon\"",
            "gw.toml:19:11: invalid duration \"soon\"",
        ),
        (
            "path = \"/abc/*\"",
            "path = \"/abc/*\"\nauth = \"maybe\"",
            "gw.toml:19:8: unknown auth \"maybe\"",
        ),
        (
            "path = \"/abc/*\"",
            "path = \"/abc/*\"\ncredential = \"crm\"",
            "gw.toml:19:14: unknown credential \"crm\"",
        ),
        (
            "[server]",
            "[store]\nbackend = \"redis\"\n[server]",
            "gw.toml:3:11: backend = \"redis\" needs `url`",
        ),
        (
            "[server]",
            "[store]\nbackend = \"etcd\"\n[server]",
            "gw.toml:3:11: unknown store backend",
        ),
        (
            "[server]",
            "[oauth]\ndefault_client = \"app\"\n[server]",
            "gw.toml:3:18: [oauth].default_client must name a public client",
        ),
        (
            "[server]",
            "[oauth]\ndefault_client = \"ghost\"\n[server]",
            "gw.toml:3:18: [oauth].default_client names unknown client",
        ),
        (
            "name = \"reports\"",
            "name = \"introspect\"",
            "gw.toml:7:8: `introspect` is built in",
        ),
        (
            "[server]",
            "[oauth]\npath = \"/oauth/\"\n[server]",
            "gw.toml:3:8: path must be a literal path",
        ),
        (
            "[server]",
            "[oauth]\naccess_token_ttl = \"0s\"\n[server]",
            "gw.toml:3:20: a token lifetime must be more than 0",
        ),
        (
            "[server]",
            "[admin]\nlisten = \"127.0.0.1:8080\"\n[server]",
            "[admin].listen must differ from [server].listen",
        ),
        ("[server]", "[server", "gw.toml:2:8: unclosed table"),
    ];
    for (from, to, want) in table {
        assert!(BASE.contains(from), "test row does not apply: {from}");
        let errs = errors(&BASE.replacen(from, to, 1));
        assert!(
            errs.iter().any(|e| e.contains(want)),
            "changing {from:?} to {to:?}: want an error containing {want:?}, got {errs:#?}"
        );
    }
}

#[test]
fn every_error_is_reported_at_once() {
    let src = BASE
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"nowhere\"")
        .replace("scopes = [\"reports\"]", "scopes = [\"nope\"]")
        .replace("path = \"/abc/*\"", "path = \"/abc/*\"\ntimeout = \"soon\"");
    let errs = errors(&src);
    assert_eq!(errs.len(), 3, "{errs:#?}");
}

/// serde stops at the first unknown key; `check` must still report every one of them, where
/// it is, together with the value errors found after them.
#[test]
fn unknown_keys_are_reported_with_every_other_error() {
    let src = BASE
        .replace(
            "public_url = \"http://127.0.0.1:8080/\"",
            "public_url = \"http://127.0.0.1:8080/\"\n  colour = \"red\"",
        )
        .replace(
            "scopes = [\"reports\"]",
            "scopes = [\"reports\"]\nsecrett = \"typo\"",
        )
        .replace("path = \"/abc/*\"", "path = \"/abc/*\"\ntimeout = \"soon\"");
    let errs = errors(&src);
    let at: Vec<&str> = errs
        .iter()
        .map(|e| e.split(": ").next().unwrap_or(e))
        .collect();
    assert_eq!(
        at,
        ["gw.toml:5:3", "gw.toml:16:1", "gw.toml:21:11"],
        "{errs:#?}"
    );
    assert!(
        errs[0].contains(": unknown field `colour`, expected one of `listen`, `public_url`"),
        "{errs:#?}"
    );
    assert!(errs[1].contains(": unknown field `secrett`"), "{errs:#?}");
    assert!(errs[2].contains(": invalid duration \"soon\""), "{errs:#?}");
}

/// Unknown keys in a table header, an inline table and a plain table, and values of the
/// wrong type: each reported once, where it is, in file order, with the value checks that
/// still run after them (the certificate that does not exist).
#[test]
fn every_serde_level_problem_is_reported_once() {
    let src = BASE
        .replace(
            "[server]",
            "[oauth]\ndefault_client = 5\n\n[server]\nworkers = \"two\"\n\
             tls = { cert = \"c.pem\", key = \"k.pem\", chain = \"x\" }",
        )
        .replace("[[routes]]", "[oauth.extra]\nx = 1\n\n[[routes]]");
    let errs = errors(&src);
    assert_eq!(errs.len(), 5, "{errs:#?}");
    assert_eq!(
        errs[..2],
        [
            "gw.toml:3:18: invalid type: integer `5`, expected a string",
            "gw.toml:6:11: invalid type: string \"two\", expected i64",
        ],
        "{errs:#?}"
    );
    assert!(
        errs[2].starts_with("gw.toml:7:16: cannot read certificate c.pem"),
        "{errs:#?}"
    );
    assert_eq!(
        errs[3..],
        [
            "gw.toml:7:40: unknown field `chain`, expected `cert` or `key`",
            "gw.toml:21:8: unknown field `extra`, expected one of `path`, `access_token_ttl`, \
             `refresh_token_ttl`, `authorization_code_ttl`, `refresh_grace`, `default_client`, `aliases`",
        ],
        "{errs:#?}"
    );
}

/// A table missing a required key (or with a mistyped one) is reported, and the key errors of
/// the rest of the file still are; the value checks are skipped, as they would see a config
/// without that table.
#[test]
fn key_errors_after_an_incomplete_table_are_still_reported() {
    let second =
        "\n[[routes]]\nname = \"b\"\npath = \"/b/*\"\nupstreams = [\"http://x\"]\nbogus = 1\n";
    let src = format!("{BASE}{second}")
        .replace("upstreams = [\"http://127.0.0.1:9000\"]", "upstreams = [5]")
        .replacen("[[routes]]", "[[routes]]\nnope = 1", 1)
        .replace(
            "public_url = \"http://127.0.0.1:8080/\"",
            "public_url = \"http://127.0.0.1:8080/\"\ntls.certt = \"x\"",
        );
    let errs = errors(&src);
    assert_eq!(
        errs,
        [
            "gw.toml:5:1: missing field `cert`",
            "gw.toml:5:5: unknown field `certt`, expected `cert` or `key`",
            "gw.toml:18:1: unknown field `nope`, expected one of `name`, `path`, `host`, \
             `upstreams`, `auth`, `strip_prefix`, `timeout`, `forward_authorization`, \
             `upstream_ca`, `credential`",
            "gw.toml:21:14: invalid type: integer `5`, expected a string",
            "gw.toml:27:1: unknown field `bogus`, expected one of `name`, `path`, `host`, \
             `upstreams`, `auth`, `strip_prefix`, `timeout`, `forward_authorization`, \
             `upstream_ca`, `credential`",
        ],
        "{errs:#?}"
    );
}

/// A required key with a value of the wrong type is reported once, not again as missing.
#[test]
fn a_mistyped_required_key_is_not_also_missing() {
    let errs = errors(&BASE.replace("name = \"abc\"", "name = 7"));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(
        errs[0], "gw.toml:17:8: invalid type: integer `7`, expected a string",
        "{errs:#?}"
    );
}

#[test]
fn duplicates_are_refused() {
    let twice = |block: &str| format!("{BASE}\n{block}");
    let client2 =
        "[[clients]]\nclient_id = \"app\"\nsecret_hash = \"HASH\"\nscopes = [\"reports\"]\n";
    assert!(
        errors(&twice(client2))
            .iter()
            .any(|e| e.contains("duplicate client_id"))
    );
    let same_name = "[[clients]]\nclient_id = \"other\"\nname = \"APP\"\nsecret_hash = \"HASH\"\n";
    assert!(
        errors(&twice(same_name))
            .iter()
            .any(|e| e.contains("already named")),
        "name+version unique, name compared case-insensitively"
    );
    let scope2 = "[[scopes]]\nname = \"REPORTS\"\npaths = [\"/x\"]\n";
    assert!(
        errors(&twice(scope2))
            .iter()
            .any(|e| e.contains("duplicate scope name"))
    );
    let route2 =
        "[[routes]]\nname = \"abc\"\npath = \"/abc/x\"\nupstreams = [\"http://127.0.0.1:1\"]\n";
    assert!(
        errors(&twice(route2))
            .iter()
            .any(|e| e.contains("duplicate route name"))
    );
}

#[test]
fn public_clients_have_no_secret_and_no_client_credentials() {
    let public = "[[clients]]\nclient_id = \"spa\"\ntype = \"public\"\nsecret = \"x\"\ngrants = [\"client_credentials\"]\n";
    let errs = errors(&format!("{BASE}\n{public}"));
    assert!(
        errs.iter()
            .any(|e| e.contains("a public client has no secret")),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("cannot use client_credentials")),
        "{errs:#?}"
    );
    let needs_redirect =
        "[[clients]]\nclient_id = \"spa\"\ntype = \"public\"\ngrants = [\"authorization_code\"]\n";
    let errs = errors(&format!("{BASE}\n{needs_redirect}"));
    assert!(
        errs.iter().any(|e| e.contains("redirect_uris")),
        "{errs:#?}"
    );
}

#[test]
fn a_public_route_needs_no_scope() {
    let route = "[[routes]]\nname = \"open\"\npath = \"/open/*\"\nauth = \"none\"\nupstreams = [\"http://127.0.0.1:9000\"]\n";
    load(&format!("{BASE}\n{route}")).expect("public routes are reachable without a scope");
}

#[test]
fn the_shipped_gateway_toml_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.toml");
    let config = Config::load(&path).expect("shipped gateway.toml must load");
    assert_eq!(config.store.backend, Backend::Memory);
}

mod compat;
mod limits;
mod network;

/// `[admin.tls]` is checked like `[server.tls]`: an unreadable certificate and an unknown
/// key are reported at their line and column; without it the admin listener is plain HTTP.
#[test]
fn admin_tls_errors_are_located() {
    assert!(load(BASE).expect("valid").admin.tls.is_none());
    let src = BASE.replace(
        "[[scopes]]",
        "[admin]\nlisten = \"127.0.0.1:9191\"\n\n[admin.tls]\ncert = \"nope.pem\"\nkey = \"nope-key.pem\"\n\
         chain = \"x\"\n\n[[scopes]]",
    );
    let errs = errors(&src);
    assert_eq!(
        errs[1..],
        ["gw.toml:12:1: unknown field `chain`, expected `cert` or `key`"],
        "{errs:#?}"
    );
    let src = src.replace("chain = \"x\"\n", "");
    let errs = errors(&src);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].starts_with("gw.toml:10:8: cannot read certificate nope.pem"),
        "{errs:#?}"
    );
}
