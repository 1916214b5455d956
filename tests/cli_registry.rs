//! End-to-end: `tollgate scopes …` and `tollgate clients enable|disable` against a running
//! gateway's admin API (SPEC §1, §9).

mod common;

use common::{Admin, Run, Store, access_token, admin_fixture, assert_invalid_token, tollgate};
use serde_json::json;

/// `tollgate --admin-url .. --token .. <args>`.
async fn cli(admin: &Admin, args: &[&str]) -> Run {
    let mut all = vec!["--admin-url", &admin.base, "--token", &admin.token];
    all.extend_from_slice(args);
    tollgate(&all, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_manages_scopes() {
    let (fx, admin) = admin_fixture(Store::memory(), |_| {}).await;
    let run = cli(
        &admin,
        &[
            "scopes",
            "create",
            "archive",
            "--description",
            "Old reports",
            "--path",
            "GET /reports/archive/*",
            "--path",
            "GET /reports/old/{id}",
        ],
    )
    .await;
    run.ok();
    assert!(run.stdout.contains("archive"), "{run}");

    let run = cli(&admin, &["scopes", "list", "--json"]).await;
    let listed = run.ok().json();
    let archive = listed["scopes"]
        .as_array()
        .and_then(|l| l.iter().find(|s| s["name"] == "archive").cloned())
        .unwrap_or_else(|| panic!("archive not listed: {run}"));
    assert_eq!(archive["source"], "store");
    assert_eq!(
        archive["paths"],
        json!(["GET /reports/archive/*", "GET /reports/old/{id}"])
    );
    // The table for people names the source.
    let table = cli(&admin, &["scopes", "list"]).await;
    assert!(
        table
            .ok()
            .stdout
            .lines()
            .any(|l| l.contains("reports") && l.contains("file")),
        "{table}"
    );

    let run = cli(
        &admin,
        &[
            "scopes",
            "update",
            "archive",
            "--path",
            "GET /reports/2024/*",
        ],
    )
    .await;
    run.ok();
    let shown = cli(&admin, &["scopes", "show", "archive", "--json"]).await;
    assert_eq!(shown.ok().json()["paths"], json!(["GET /reports/2024/*"]));

    // Errors come back with the API's status and message.
    cli(&admin, &["scopes", "create", "bad", "--path", "/a/*/b"])
        .await
        .failed("/a/*/b");
    cli(&admin, &["scopes", "delete", "reports"])
        .await
        .failed("409");
    cli(&admin, &["scopes", "create", "nopath"])
        .await
        .exited(2, "--path");

    // In use by a client: refused, then deleted once it is not.
    let created = admin
        .create_client(&json!({"name": "Archivist", "scopes": ["archive"]}))
        .await;
    let id = created["client_id"].as_str().expect("id").to_owned();
    cli(&admin, &["scopes", "delete", "archive"])
        .await
        .failed(&id);
    assert_eq!(
        admin.delete(&format!("/admin/clients/{id}")).await.status,
        204
    );
    cli(&admin, &["scopes", "delete", "archive"]).await.ok();
    assert_eq!(admin.get("/admin/scopes/archive").await.status, 404);
    let _ = fx;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_disables_and_enables_a_client() {
    let (fx, admin) = admin_fixture(Store::memory(), |_| {}).await;
    let created = admin
        .create_client(&json!({"name": "Batch", "scopes": ["reports"]}))
        .await;
    let id = created["client_id"].as_str().expect("id").to_owned();
    let secret = created["client_secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let resp = common::post_form(
        &fx.token_url(),
        &[("grant_type", "client_credentials")],
        Some((&id, &secret)),
    )
    .await;
    let token = access_token(&resp.json());
    assert_eq!(fx.get("/abc/x", Some(&token)).await.status, 200);

    let run = cli(&admin, &["clients", "disable", &id]).await;
    assert!(run.ok().stdout.contains("disabled"), "{run}");
    assert_invalid_token(&fx.get("/abc/x", Some(&token)).await, "client disabled");
    let listed = cli(&admin, &["clients", "list"]).await;
    assert!(
        listed
            .ok()
            .stdout
            .lines()
            .any(|l| l.contains(&id) && l.contains("false")),
        "the table shows it disabled: {listed}"
    );
    cli(&admin, &["clients", "enable", &id]).await.ok();
    assert_eq!(fx.get("/abc/x", Some(&token)).await.status, 200);
    // File clients stay read-only.
    cli(&admin, &["clients", "disable", "photoprint"])
        .await
        .failed("gateway.toml");
}
