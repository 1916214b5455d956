//! End-to-end: the ops CLI (`tollgate clients …`, `tollgate tokens …`, `tollgate explain`)
//! against a running gateway's admin API, with credentials from flags, files, stdin, the
//! environment, or fetched by client_credentials (SPEC §1, §7).

mod common;

use std::time::Duration;

use common::{
    Admin, Fixture, OPS_CLIENT, Run, Store, TempDir, access_token, admin_fixture, post_form,
    time_until_status, tollgate, tollgate_in,
};
use serde_json::{Value, json};

/// The CLI pointed at `admin` with its token by flags: `tollgate --admin-url .. --token ..
/// <args>`.
async fn cli_args(admin: &Admin, args: &[&str]) -> Run {
    let mut all = vec!["--admin-url", &admin.base, "--token", &admin.token];
    all.extend_from_slice(args);
    tollgate(&all, &[]).await
}

/// [`cli_args`] with `line` split at whitespace.
async fn cli(admin: &Admin, line: &str) -> Run {
    cli_args(admin, &line.split_whitespace().collect::<Vec<_>>()).await
}

/// The `array` field of a `--json` output.
fn items(run: &Run, array: &str) -> Vec<Value> {
    run.ok().json()[array]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no {array} array: {run}"))
}

async fn client_credentials(fx: &Fixture, id: &str, secret: &str) -> u16 {
    post_form(
        &fx.token_url(),
        &[("grant_type", "client_credentials")],
        Some((id, secret)),
    )
    .await
    .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_manages_clients() {
    let (fx, admin) = admin_fixture(Store::memory(), |_| {}).await;

    let list = cli(&admin, "clients list --json").await;
    let clients = items(&list, "clients");
    assert!(
        clients.iter().any(|c| c["client_id"] == "photoprint"),
        "{list}"
    );

    // The table for people: a header line, then a row per client.
    let table = cli(&admin, "clients list").await;
    table.ok();
    let mut lines = table.stdout.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().unwrap_or_default();
    assert!(
        header.to_ascii_lowercase().contains("id"),
        "no header: {table}"
    );
    assert!(!header.contains("photoprint"), "no header: {table}");
    assert!(lines.any(|l| l.contains("photoprint")), "{table}");
    assert!(
        serde_json::from_str::<Value>(&table.stdout).is_err(),
        "JSON"
    );

    let line = "clients create --name CliApp --version 1.2 --type confidential \
                --grant client_credentials --grant password --scope reports --scope secret \
                --access-token-ttl 5m --refresh-count 3 --json";
    let mut args: Vec<&str> = line.split_whitespace().collect();
    args.extend(["--description", "Made by the CLI"]);
    let created = cli_args(&admin, &args).await;
    let body = created.ok().json();
    let id = body["client_id"].as_str().expect("client_id").to_owned();
    let secret = body["client_secret"].as_str().expect("secret").to_owned();
    for (key, value) in [
        ("name", json!("CliApp")),
        ("version", json!("1.2")),
        ("description", json!("Made by the CLI")),
        ("type", json!("confidential")),
        ("access_token_ttl", json!("5m")),
        ("refresh_count", json!(3)),
    ] {
        assert_eq!(body[key], value, "{key}: {created}");
    }
    assert_eq!(
        body["grants"].as_array().map(Vec::len),
        Some(2),
        "{created}"
    );
    assert_eq!(
        body["scopes"].as_array().map(Vec::len),
        Some(2),
        "{created}"
    );
    assert_eq!(client_credentials(&fx, &id, &secret).await, 200);

    let shown = cli(&admin, &format!("clients show {id} --json")).await;
    assert_eq!(shown.ok().json()["client_id"], id.as_str(), "{shown}");
    assert!(
        !shown.stdout.contains(&secret),
        "secret shown again: {shown}"
    );

    // Without --json the secret is still printed, once, for a person to copy.
    let human = cli(&admin, "clients create --name CliHuman").await;
    human.ok();
    let human_id = admin.get("/admin/clients").await.json()["clients"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "CliHuman").cloned())
        .and_then(|c| c["client_id"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("CliHuman not created: {human}"));
    assert!(human.stdout.contains(&human_id), "{human}");
    let mut works = false;
    for word in human
        .stdout
        .split(|c: char| c.is_whitespace() || "\"',|:".contains(c))
    {
        // Labels like `client_credentials` are not secrets; each wrong try counts
        // towards the token endpoint's throttling, so skip them.
        let label = word.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        if word.len() >= 16 && word != human_id && !label {
            works = client_credentials(&fx, &human_id, word).await == 200;
            if works {
                break;
            }
        }
    }
    assert!(works, "no working client secret in the output: {human}");

    let public = cli(
        &admin,
        "clients create --name CliPublic --type public --grant authorization_code \
         --redirect-uri http://127.0.0.1:3000/cb --json",
    )
    .await;
    let body = public.ok().json();
    assert_eq!(body["type"], "public", "{public}");
    assert!(body.get("client_secret").is_none(), "{public}");
    assert_eq!(body["redirect_uris"], json!(["http://127.0.0.1:3000/cb"]));

    // Failures exit 1 with the API's status, error and description.
    for (line, message) in [
        (
            "clients create --name cliapp --version 1.2",
            "tollgate: 409 Conflict: conflict: a client named \"cliapp\" version \"1.2\" exists already",
        ),
        (
            "clients show no-such-client",
            "tollgate: 404 Not Found: not_found: no client \"no-such-client\"",
        ),
        (
            "clients delete no-such-client",
            "tollgate: 404 Not Found: not_found: no client \"no-such-client\"",
        ),
        (
            "clients delete photoprint",
            "tollgate: 409 Conflict: conflict: this client is defined in gateway.toml",
        ),
        (
            "clients create --name Bad --type weird",
            "tollgate: 400 Bad Request: invalid_request: `type` must be",
        ),
    ] {
        cli(&admin, line).await.failed(message);
    }

    let resp = post_form(
        &fx.token_url(),
        &[("grant_type", "client_credentials")],
        Some((&id, &secret)),
    )
    .await;
    let token = access_token(&resp.json());
    cli(&admin, &format!("clients delete {id}")).await.ok();
    assert_eq!(admin.get(&format!("/admin/clients/{id}")).await.status, 404);
    cli(&admin, &format!("clients show {id}"))
        .await
        .failed("tollgate: 404 Not Found: not_found: no client");
    let took = time_until_status(&fx.url("/abc/x"), &token, 401, Duration::from_secs(1)).await;
    assert!(took.is_some(), "the deleted client's token still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_manages_tokens_and_explains() {
    let (fx, admin) = admin_fixture(Store::memory(), |_| {}).await;

    let line = "tokens issue --client-id photoprint --scope reports --days 2 --json";
    let issued = cli(&admin, line).await;
    let body = issued.ok().json();
    let token = access_token(&body);
    let expires_in = body["expires_in"].as_i64().expect("expires_in");
    assert!(
        (2 * 86_400 - 60..=2 * 86_400).contains(&expires_in),
        "{issued}"
    );
    assert_eq!(fx.get("/abc/x", Some(&token)).await.status, 200);
    cli(&admin, "tokens issue --client-id nobody")
        .await
        .failed("tollgate: 400 Bad Request: invalid_request: no client \"nobody\"");
    let line = "tokens issue --client-id photoprint --scope nope";
    cli(&admin, line)
        .await
        .failed("tollgate: 400 Bad Request: invalid_scope: ");

    let pw = fx.password_token_for("photoprint", "reports").await;
    let listed = cli(&admin, "tokens list --client-id photoprint --json").await;
    assert_eq!(items(&listed, "tokens").len(), 2, "{listed}");
    for secret in [&token, &access_token(&pw), &common::refresh_token(&pw)] {
        assert!(!listed.stdout.contains(secret.as_str()), "listed: {listed}");
    }
    let alice = cli(&admin, "tokens list --username alice --json").await;
    let alice = items(&alice, "tokens");
    assert_eq!(alice.len(), 1, "{alice:?}");
    assert_eq!(alice[0]["username"], "alice");
    let id = alice[0]["id"].as_str().expect("id").to_owned();

    let table = cli(&admin, "tokens list --client-id photoprint").await;
    table.ok();
    assert!(
        table.stdout.contains(&id),
        "token handle in the table: {table}"
    );
    assert!(
        table.stdout.lines().count() >= 3,
        "header + two rows: {table}"
    );

    cli(&admin, &format!("tokens revoke {id}")).await.ok();
    let url = fx.url("/abc/x");
    let took = time_until_status(&url, &access_token(&pw), 401, Duration::from_secs(1)).await;
    assert!(took.is_some(), "a token revoked by the CLI still works");
    assert_eq!(fx.get("/abc/x", Some(&token)).await.status, 200, "only it");
    cli(&admin, "tokens revoke no-such-handle")
        .await
        .failed("tollgate: 404 Not Found: not_found: no token \"no-such-handle\"");

    let explain = |path: &str, json: &str| {
        format!("explain --method GET --path {path} --explain-token {token} {json}")
    };
    let explained = cli(&admin, &explain("/abc/x", "--json")).await;
    let e = explained.ok().json();
    assert_eq!(e["allowed"], true, "{explained}");
    assert_eq!(e["route"]["name"], "abc", "{explained}");
    assert_eq!(e["allowed_by"]["scope"], "reports", "{explained}");
    let refused = cli(&admin, &explain("/secret/x", "--json")).await;
    assert_eq!(refused.ok().json()["status"], 403, "{refused}");
    let human = cli(&admin, &explain("/abc/x", "")).await;
    assert!(!human.ok().stdout.trim().is_empty(), "{human}");
    assert!(!human.stdout.contains(&token), "token echoed: {human}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_takes_credentials_from_flags_env_or_client_credentials() {
    let (fx, admin) = admin_fixture(Store::memory(), |_| {}).await;
    let public = fx.gw.base_url();
    let secret = fx.creds.secret.clone();
    let list = ["clients", "list", "--json"];

    let env = [
        ("TOLLGATE_ADMIN_URL", admin.base.as_str()),
        ("TOLLGATE_ADMIN_TOKEN", admin.token.as_str()),
    ];
    let by_env = tollgate(&list, &env).await;
    assert!(by_env.ok().json()["clients"].is_array(), "{by_env}");

    let with_client = |secret: &'_ str| -> Vec<String> {
        let line = format!(
            "--admin-url {} --client-id {OPS_CLIENT} --client-secret {secret} --url {public} \
             clients list --json",
            admin.base
        );
        line.split_whitespace().map(str::to_owned).collect()
    };
    let args = with_client(&secret);
    let by_flags = tollgate(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]).await;
    assert!(by_flags.ok().json()["clients"].is_array(), "{by_flags}");

    let env = [
        ("TOLLGATE_ADMIN_URL", admin.base.as_str()),
        ("TOLLGATE_CLIENT_ID", OPS_CLIENT),
        ("TOLLGATE_CLIENT_SECRET", secret.as_str()),
        ("TOLLGATE_URL", public.as_str()),
    ];
    let by_client_env = tollgate(&list, &env).await;
    assert!(
        by_client_env.ok().json()["clients"].is_array(),
        "{by_client_env}"
    );
    // `--client-id` after `tokens list` is the filter, not the credentials from the env.
    fx.client_token(Some("reports")).await;
    let args = ["tokens", "list", "--client-id", "photoprint", "--json"];
    let filtered = tollgate(&args, &env).await;
    let tokens = items(&filtered, "tokens");
    assert_eq!(tokens.len(), 1, "photoprint's one token: {filtered}");
    assert_eq!(tokens[0]["client_id"], "photoprint", "{filtered}");

    // Bad credentials of every kind fail with exit 1 and what went wrong.
    let bad_token = admin.with_token(&common::random_token());
    cli_args(&bad_token, &list)
        .await
        .failed("tollgate: 401 Unauthorized: invalid_token: unknown token");
    let not_admin = admin.with_token(&fx.client_token(Some("reports")).await);
    cli_args(&not_admin, &list)
        .await
        .failed("tollgate: 403 Forbidden: insufficient_scope");
    let args = with_client("wrong-secret");
    tollgate(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[])
        .await
        .failed("tollgate: 401 Unauthorized: invalid_client");
    let dead_url = common::dead_port_url();
    let dead = Admin::new(&dead_url, &admin.token);
    cli_args(&dead, &list).await.failed(&format!(
        "tollgate: cannot reach {dead_url}/admin/clients: "
    ));
    tollgate(&list, &[]).await.failed(
        "tollgate: no admin URL: give --admin-url (TOLLGATE_ADMIN_URL) or a readable --config",
    );
    let args = ["--admin-url", &admin.base, "clients", "list"];
    tollgate(&args, &[])
        .await
        .failed("tollgate: no admin credentials: give --token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_reads_secrets_from_files_and_stdin() {
    let (fx, admin) = admin_fixture(Store::memory(), |_| {}).await;
    let dir = TempDir::new("cli-secrets");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write secret file");
        path.display().to_string()
    };
    // Files as `echo` and editors write them: with a trailing newline (CRLF too).
    let token_file = write("token", &format!("{}\n", admin.token));
    let secret_file = write("secret", &format!("{}\r\n", fx.creds.secret));
    let empty_file = write("empty", "\n");
    let (base, public) = (admin.base.as_str(), fx.gw.base_url());
    let in_dir = |args: Vec<String>, env: &[(&str, &str)], stdin: Option<&str>| {
        let (env, stdin): (Vec<(String, String)>, Option<String>) = (
            env.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            stdin.map(str::to_owned),
        );
        let dir = dir.path().to_owned();
        async move {
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            tollgate_in(&dir, &args, &env, stdin.as_deref()).await
        }
    };
    let listed = |run: &Run| assert!(run.ok().json()["clients"].is_array(), "{run}");
    let list = ["clients", "list", "--json"];
    let by_token_file = |file: &str| {
        let mut args = vec!["--admin-url", base, "--token-file"];
        args.push(file);
        args.extend(list);
        owned(&args)
    };
    let token_line = format!("{}\n", admin.token);

    // The admin token from a file, from stdin, and a file on the command line over a (here
    // wrong) token in the environment.
    listed(&in_dir(by_token_file(&token_file), &[], None).await);
    listed(&in_dir(by_token_file("-"), &[], Some(&token_line)).await);
    let wrong = common::random_token();
    let env = [("TOLLGATE_ADMIN_TOKEN", wrong.as_str())];
    listed(&in_dir(by_token_file(&token_file), &env, None).await);

    // The client secret from a file (CRLF dropped), and from stdin.
    let by_secret_file = |file: &str| {
        let mut args = vec![
            "--admin-url",
            base,
            "--url",
            &public,
            "--client-id",
            OPS_CLIENT,
        ];
        args.extend(["--client-secret-file", file]);
        args.extend(list);
        owned(&args)
    };
    listed(&in_dir(by_secret_file(&secret_file), &[], None).await);
    listed(&in_dir(by_secret_file("-"), &[], Some(&fx.creds.secret)).await);

    // The token to explain from stdin while the admin token comes from a file.
    let reports = fx.client_token(Some("reports")).await;
    let explain = |admin_token_file: &str| {
        let mut args = vec!["--admin-url", base, "--token-file"];
        args.push(admin_token_file);
        args.extend([
            "explain",
            "--path",
            "/abc/x",
            "--explain-token-file",
            "-",
            "--json",
        ]);
        owned(&args)
    };
    let reports_line = format!("{reports}\n");
    let explained = in_dir(explain(&token_file), &[], Some(&reports_line)).await;
    let e = explained.ok().json();
    assert_eq!(e["allowed"], true, "{explained}");
    assert_eq!(e["token"]["client_id"], "photoprint", "{explained}");

    // Stdin serves one secret only; an empty secret is refused (exit 1); a secret given both
    // ways on the command line is a usage error (exit 2).
    in_dir(explain("-"), &[], Some(&reports_line))
        .await
        .failed("tollgate: --token-file and --explain-token-file cannot both read stdin");
    in_dir(by_token_file(&empty_file), &[], None)
        .await
        .failed(&format!("tollgate: --token-file: {empty_file} is empty"));
    let mut twice = vec![
        "--admin-url",
        base,
        "--token",
        "x",
        "--token-file",
        &token_file,
    ];
    twice.extend(list);
    in_dir(owned(&twice), &[], None).await.exited(
        2,
        "the argument '--token' cannot be used with '--token-file'",
    );
    let twice = vec![
        "explain",
        "--path",
        "/x",
        "--explain-token",
        "x",
        "--explain-token-file",
        "-",
    ];
    in_dir(owned(&twice), &[], None)
        .await
        .exited(2, "the argument '--explain-token <EXPLAIN_TOKEN>' cannot be used with '--explain-token-file <PATH>'");

    // --help says why and how.
    for args in [vec!["--help"], vec!["explain", "--help"]] {
        let help = in_dir(owned(&args), &[], None).await;
        for needle in [
            "`ps`",
            "--token-file",
            "--client-secret-file",
            "--explain-token-file",
            "the path `-` reads stdin",
            "TOLLGATE_ADMIN_TOKEN",
            "TOLLGATE_CLIENT_SECRET",
        ] {
            assert!(
                help.ok().stdout.contains(needle),
                "{needle:?} not in {help}"
            );
        }
    }
}

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}
