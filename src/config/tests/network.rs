//! `[server] trusted_proxies` and upstream URLs: what is a CIDR block, and located errors.

use super::*;

#[test]
fn trusted_proxies_are_cidr_blocks() {
    let c = load(BASE).expect("valid");
    assert!(
        !c.server
            .trusted_proxies
            .contains("127.0.0.1".parse().expect("ip")),
        "no peer is trusted by default"
    );
    let src = BASE.replacen(
        "public_url = \"http://127.0.0.1:8080/\"",
        "public_url = \"http://127.0.0.1:8080/\"\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]",
        1,
    );
    let c = load(&src).expect("valid");
    for (peer, trusted) in [("10.9.8.7", true), ("::1", true), ("127.0.0.1", false)] {
        assert_eq!(
            c.server.trusted_proxies.contains(peer.parse().expect("ip")),
            trusted,
            "{peer}"
        );
    }
}

#[test]
fn bad_trusted_proxies_and_upstream_userinfo_are_located() {
    let table: &[(&str, &str, &str)] = &[
        (
            "public_url = \"http://127.0.0.1:8080/\"",
            "public_url = \"http://127.0.0.1:8080/\"\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/33\"]",
            "gw.toml:5:34: trusted_proxies: invalid CIDR \"10.0.0.0/33\"",
        ),
        (
            "public_url = \"http://127.0.0.1:8080/\"",
            "public_url = \"http://127.0.0.1:8080/\"\ntrusted_proxies = [\"proxy.local\"]",
            "gw.toml:5:20: trusted_proxies: invalid CIDR \"proxy.local\"",
        ),
        (
            "upstreams = [\"http://127.0.0.1:9000\"]",
            "upstreams = [\"http://svc:hunter2@127.0.0.1:9000\"]",
            "gw.toml:19:14: an upstream URL cannot carry user:password@",
        ),
        (
            "upstreams = [\"http://127.0.0.1:9000\"]",
            "upstreams = [\"http://127.0.0.1:9000\", \"https://token@example.com/base\"]",
            "gw.toml:19:39: an upstream URL cannot carry user:password@",
        ),
    ];
    for (from, to, want) in table {
        assert!(BASE.contains(from), "test row does not apply: {from}");
        let errs = errors(&BASE.replacen(from, to, 1));
        assert!(
            errs.iter().any(|e| e.contains(want)),
            "changing {from:?} to {to:?}: want an error containing {want:?}, got {errs:#?}"
        );
        assert!(
            errs.iter().all(|e| !e.contains("hunter2")),
            "the password is echoed: {errs:#?}"
        );
    }
}
