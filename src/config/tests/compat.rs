//! What existing clients and older configs need (SPEC §2, §5): `[oauth] aliases`, and the
//! unreachable route that is a warning rather than an error.

use super::*;

const OAUTH: &str = "[oauth]\npath = \"/oauth\"\n";

fn with_aliases(aliases: &str) -> String {
    format!("{BASE}\n{OAUTH}aliases = {{ {aliases} }}\n")
}

#[test]
fn aliases_map_full_paths_to_endpoints() {
    let c = load(&with_aliases(
        r#""/integration/rest/oAuth/getToken" = "token", "/integration/rest/oAuth/authorize" = "authorize", "/meta" = "metadata""#,
    ))
    .expect("valid");
    let mut got: Vec<(&str, &str)> = c
        .oauth
        .aliases
        .iter()
        .map(|(p, e)| (p.as_str(), *e))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("/integration/rest/oAuth/authorize", "authorize"),
            ("/integration/rest/oAuth/getToken", "token"),
            ("/meta", "metadata"),
        ]
    );
    assert!(load(BASE).expect("valid").oauth.aliases.is_empty());
}

/// Each row: the aliases, and the error they must produce at the key (or value) they name.
#[test]
fn bad_aliases_are_located() {
    // BASE ends on line 19; `[oauth]` is line 21, `path` 22, `aliases` 23 (col 13 = first key).
    let table: &[(&str, &str)] = &[
        (
            r#""/x/token" = "tokn""#,
            "gw.toml:23:26: unknown OAuth endpoint \"tokn\"",
        ),
        (
            r#""/x/c" = "connect""#,
            "gw.toml:23:22: unknown OAuth endpoint \"connect\"",
        ),
        (
            r#""x/token" = "token""#,
            "gw.toml:23:13: alias \"x/token\" must be a normalised",
        ),
        (
            r#""/x/../token" = "token""#,
            "gw.toml:23:13: alias \"/x/../token\" must be",
        ),
        (
            r#""/x/%7Etoken" = "token""#,
            "gw.toml:23:13: alias \"/x/%7Etoken\" must be",
        ),
        (
            r#""/x/*" = "token""#,
            "gw.toml:23:13: alias \"/x/*\" must be",
        ),
        (
            r#""/x/{id}" = "token""#,
            "gw.toml:23:13: alias \"/x/{id}\" must be",
        ),
        (
            r#""/x?a=1" = "token""#,
            "gw.toml:23:13: alias \"/x?a=1\" must be",
        ),
        (
            r#""/oauth/token2" = "token""#,
            "gw.toml:23:13: alias \"/oauth/token2\" clashes",
        ),
        (
            r#""/oauth" = "token""#,
            "gw.toml:23:13: alias \"/oauth\" clashes",
        ),
        (
            r#""/.well-known/oauth-authorization-server" = "token""#,
            "gw.toml:23:13: alias \"/.well-known/oauth-authorization-server\" clashes",
        ),
        (
            r#""/ok" = "token", "/y" = "nope""#,
            "gw.toml:23:37: unknown OAuth endpoint \"nope\"",
        ),
    ];
    for (aliases, want) in table {
        let errs = errors(&with_aliases(aliases));
        assert!(
            errs.iter().any(|e| e.starts_with(want)),
            "aliases {aliases}: want {want:?}, got {errs:#?}"
        );
    }
    // A path that merely starts like the mount point is not under it.
    load(&with_aliases(r#""/oauthx/token" = "token""#)).expect("not under /oauth/");
}

/// A bearer route no scope covers loads, with a located warning; a public one warns of
/// nothing, and a route some scope covers neither.
#[test]
fn an_unreachable_route_is_a_warning() {
    assert!(load(BASE).expect("valid").warnings.is_empty());
    let src = BASE.replace("path = \"/abc/*\"", "path = \"/elsewhere/*\"");
    let c = load(&src).expect("an unreachable route is no error");
    assert_eq!(
        c.warnings,
        [
            "gw.toml:18:8: warning: route \"abc\" is unreachable: auth = \"bearer\" but no scope covers any path of \"/elsewhere/*\""
        ]
    );
    assert_eq!(unreachable_routes(&c.routes, &c.scopes), [0]);
    assert_eq!(
        unreachable_routes(&c.routes, &[]),
        [0],
        "no scopes, nothing reachable"
    );

    let public = "[[routes]]\nname = \"open\"\npath = \"/open/*\"\nauth = \"none\"\nupstreams = [\"http://127.0.0.1:9000\"]\n";
    let c = load(&format!("{BASE}\n{public}")).expect("valid");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    // A scope added later (a reload, the store) makes it reachable: the check is a function
    // of the routes and the scopes alone.
    let c = load(&src).expect("valid");
    let later = Scope {
        name: "later".into(),
        description: String::new(),
        patterns: vec![crate::pattern::Pattern::parse("GET /elsewhere/x").expect("pattern")],
    };
    assert!(unreachable_routes(&c.routes, &[later]).is_empty());
}

/// Warnings are not reported beside errors (the file fails on those anyway), and an error
/// elsewhere still fails the file.
#[test]
fn errors_still_fail_a_file_with_warnings() {
    let src = BASE
        .replace("path = \"/abc/*\"", "path = \"/elsewhere/*\"")
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"nowhere\"");
    let errs = errors(&src);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].starts_with("gw.toml:3:10: invalid listen address"));
}
