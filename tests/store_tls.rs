//! End-to-end: the store over TLS (SPEC §2 `rediss://` and `[store] ca`, §11): a
//! certificate that verifies against `ca` carries tokens like plain Redis does; one that
//! does not is an error at start, never a silent fallback.

mod common;

use std::time::Duration;

use common::{
    Creds, Fixture, GatewayConfig, Store, TempDir, TlsCa, access_token, assert_invalid_token,
    get_with_token, random_token, refresh_token, time_until_status, tollgate_in,
};

/// `rediss://` verified against `[store] ca`: tokens are issued, checked, refreshed and
/// revoked through the TLS store, across two nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_on_rediss_with_its_ca_issues_and_checks_tokens() {
    let fx = Fixture::start(Store::redis_tls(TlsCa::Right).await).await;
    let b = fx.start_node().await;
    let on_b = format!("{}/abc/x", b.base_url());

    let token = fx.client_token(Some("reports")).await;
    assert_eq!(fx.get("/abc/x", Some(&token)).await.status, 200);
    let resp = get_with_token(&on_b, Some(&token)).await;
    assert_eq!(resp.status, 200, "issued on A, checked on B: {resp}");
    assert_invalid_token(
        &get_with_token(&on_b, Some(&random_token())).await,
        "unknown token",
    );

    let grant = fx.password_token_for("photoprint", "reports").await;
    let rt = refresh_token(&grant);
    let params = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt.as_str()),
    ];
    let renewed = fx.token_request("photoprint", &params).await;
    assert_eq!(renewed.status, 200, "{renewed}");
    let renewed = access_token(&renewed.json());
    assert_eq!(get_with_token(&on_b, Some(&renewed)).await.status, 200);

    b.assert_cached("/abc/x", &renewed).await;
    let basic = Some(("photoprint", fx.creds.secret.as_str()));
    let revoke = fx.url("/oauth/revoke");
    let resp = common::post_form(&revoke, &[("token", &renewed)], basic).await;
    assert_eq!(resp.status, 200, "{resp}");
    let took = time_until_status(&on_b, &renewed, 401, Duration::from_secs(1)).await;
    assert!(
        took.is_some(),
        "revocation over TLS did not reach B within 1 s"
    );
}

/// Starts `tollgate run` on a config whose store is `store` and returns how it ended
/// (killed after 20 s if it keeps running).
async fn run_on(store: &Store) -> common::Run {
    let dir = TempDir::new("store-tls");
    let config = GatewayConfig::new(store, &common::dead_port_url(), &Creds::random());
    std::fs::write(dir.path().join("gateway.toml"), config.render()).expect("write config");
    let args = ["run", "--config", "gateway.toml"];
    tollgate_in(dir.path(), &args, &[], None).await
}

/// A server certificate the gateway cannot verify: it exits with a failure that names the
/// certificate problem, whether `ca` names an unrelated CA or is left to the system roots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_refuses_to_start_on_a_redis_certificate_it_cannot_verify() {
    for ca in [TlsCa::Unrelated, TlsCa::SystemRoots] {
        let store = Store::redis_tls(ca).await;
        let run = run_on(&store).await;
        assert!(
            run.code.is_some_and(|code| code != 0),
            "{ca:?}: the gateway must exit with a failure: {run}"
        );
        let output = format!("{}{}", run.stdout, run.stderr).to_ascii_lowercase();
        assert!(
            output.contains("certificate"),
            "{ca:?}: the message must name the certificate problem: {run}"
        );
        // The config is fine; it is the server's certificate that is refused.
        assert!(
            !output.contains("invalid config"),
            "{ca:?}: refused as a config error, not at the TLS handshake: {run}"
        );
    }
}
