//! Route precedence across host-bound and generic routes (README "Routes").

use std::time::Duration;

use hyper::Method;

use super::runtime::RouteTable;
use crate::config::{Route, RouteAuth};
use crate::pattern::Pattern;

fn route(name: &str, host: Option<&str>, pattern: &str) -> Route {
    Route {
        name: name.to_owned(),
        pattern: Pattern::parse(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}")),
        host: host.map(str::to_owned),
        upstreams: Vec::new(),
        auth: RouteAuth::None,
        strip_prefix: None,
        timeout: Duration::from_secs(1),
        forward_authorization: false,
        upstream_ca: None,
        credential: None,
    }
}

#[test]
fn the_most_specific_route_wins_then_the_host_bound_one() {
    let routes = [
        route("any-rest", None, "/api/*"),
        route("host-rest", Some("a.example"), "/api/*"),
        route("any-users-rest", None, "/api/users/*"),
        route("host-root", Some("a.example"), "/*"),
        route("any-param", None, "/api/items/{id}"),
        route("host-items-rest", Some("a.example"), "/api/items/*"),
        route("any-exact", None, "/api/orders/1"),
        route("host-orders-param", Some("a.example"), "/api/orders/{id}"),
        route("host-param", Some("a.example"), "/p/{id}"),
        route("any-param-p", None, "/p/{id}"),
        route("any-get", None, "GET /m/*"),
        route("host-m", Some("a.example"), "/m/*"),
    ];
    let table = RouteTable::new(&routes);
    let cases: &[(Option<&str>, &str, Option<&str>)] = &[
        // Same pattern: the host-bound route wins on its host only.
        (Some("a.example"), "/api/x", Some("host-rest")),
        (Some("b.example"), "/api/x", Some("any-rest")),
        (None, "/api/x", Some("any-rest")),
        // A longer literal prefix beats the host binding.
        (Some("a.example"), "/api/users/1", Some("any-users-rest")),
        // The host's catch-all serves what no generic route takes.
        (Some("a.example"), "/other", Some("host-root")),
        (Some("b.example"), "/other", None),
        // Equal prefix (`/api/items`): `{id}` over `*`, even against the host.
        (Some("a.example"), "/api/items/7", Some("any-param")),
        (Some("a.example"), "/api/items/7/x", Some("host-items-rest")),
        // Equal prefix (`/api/orders`): a fully literal pattern over `{id}`.
        (Some("a.example"), "/api/orders/1", Some("any-exact")),
        (
            Some("a.example"),
            "/api/orders/2",
            Some("host-orders-param"),
        ),
        // Same kind and prefix: the host decides.
        (Some("a.example"), "/p/1", Some("host-param")),
        (Some("b.example"), "/p/1", Some("any-param-p")),
        // A method list is a later tie-break than the host.
        (Some("a.example"), "/m/1", Some("host-m")),
        (Some("b.example"), "/m/1", Some("any-get")),
    ];
    for (host, path, want) in cases {
        let got = table
            .find(*host, &Method::GET, path)
            .map(|i| routes[i].name.as_str());
        assert_eq!(got, *want, "host {host:?} path {path}");
    }
}

/// A registry snapshot older than the one in force is dropped (two admin changes at once, or
/// a change racing the poll); a reset (the store's version went back) is taken as it is.
#[tokio::test]
async fn an_older_registry_snapshot_never_replaces_a_newer_one() {
    use crate::registry::Snapshot;
    let toml = "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"http://127.0.0.1\"\n\
[admin]\nlisten = \"127.0.0.1:0\"\n[store]\nbackend = \"memory\"\n";
    let config =
        crate::config::Config::from_str_with_env(std::path::Path::new("gw.toml"), toml, &|_| None)
            .expect("config");
    let store = crate::store::TokenStore::open(&config.store).expect("memory store");
    let gateway = super::Gateway::new(config, store);
    let snapshot = |version, disabled: &[&str]| Snapshot {
        version,
        nonce: format!("n{version}"),
        scopes: Vec::new(),
        disabled: disabled.iter().map(|s| s.to_string()).collect(),
    };
    let disabled = |id| gateway.runtime().rules.is_disabled(id);
    gateway.apply_registry(snapshot(2, &["a", "b"]), None);
    gateway.apply_registry(snapshot(1, &["a"]), None);
    assert!(disabled("b"), "an older snapshot won");
    assert_eq!(gateway.registry_stamp().0, 2);
    gateway.apply_registry(snapshot(2, &["a", "b", "c"]), None);
    assert!(disabled("c"), "the same version is applied");
    // A reset seen from a stamp no longer held (something newer came meanwhile) is not one.
    let stale = (1, "n1".to_owned());
    gateway.apply_registry(snapshot(1, &[]), Some(&stale));
    assert!(disabled("a"), "a stale reset won");
    let held = gateway.registry_stamp();
    gateway.apply_registry(snapshot(1, &[]), Some(&held));
    assert!(!disabled("a"), "a reset is the store's word");
    assert_eq!(gateway.registry_stamp().0, 1);
}
