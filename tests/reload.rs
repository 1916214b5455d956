//! End-to-end: config reload (SPEC §6) by SIGHUP, by a change of the file on disk (written in
//! place, replaced by rename the way editors save, or swapped under a ConfigMap's `..data`
//! symlink), and by `POST /admin/reload`; a bad edit leaves the running config serving and is
//! reported with `FILE:LINE:COL`.

mod common;

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{
    Admin, Fixture, Store, access_token, admin_fixture, assert_error, get, get_with_token, poll,
    post_form,
};
use serde_json::{Value, json};

/// How long a change of the file may take to be noticed (SPEC: "within ~2 s"; some slack).
const FILE_CHANGE_WITHIN: Duration = Duration::from_secs(4);

/// Counter of reloads with `outcome`.
async fn reloads(admin: &Admin, outcome: &str) -> f64 {
    admin
        .metrics()
        .await
        .sum("tollgate_config_reloads_total", &[("outcome", outcome)])
}

/// Polls until the reload counter for `outcome` exceeds `than`.
async fn reload_counted(admin: &Admin, outcome: &str, than: f64) -> bool {
    poll(Duration::from_secs(3), || async {
        (reloads(admin, outcome).await > than).then_some(())
    })
    .await
    .is_some()
}

/// TOML adding scope `fresh{n}` (`/fresh{n}/*`), a route for it and a client
/// `fresh{n}-client` (the fixture's shared secret) allowed that scope.
fn fresh(fx: &Fixture, n: u32) -> String {
    fresh_toml(&fx.up.url(), &fx.creds.secret_hash, n)
}

/// [`fresh`] from the parts of a config that is not running yet.
fn fresh_toml(upstream: &str, secret_hash: &str, n: u32) -> String {
    format!(
        "\n[[scopes]]\nname = \"fresh{n}\"\npaths = [\"/fresh{n}/*\"]\n\
         \n[[routes]]\nname = \"fresh{n}\"\npath = \"/fresh{n}/*\"\nupstreams = [\"{upstream}\"]\n\
         \n[[clients]]\nclient_id = \"fresh{n}-client\"\nname = \"Fresh {n}\"\n\
         secret_hash = \"{secret_hash}\"\ngrants = [\"client_credentials\"]\nscopes = [\"fresh{n}\"]\n",
    )
}

/// True if `fresh{n}` is in force: its client gets a token that passes `/fresh{n}/x`.
async fn serves(fx: &Fixture, n: u32) -> bool {
    let client = format!("fresh{n}-client");
    let resp = post_form(
        &fx.token_url(),
        &[("grant_type", "client_credentials")],
        Some((&client, &fx.creds.secret)),
    )
    .await;
    if resp.status != 200 {
        return false;
    }
    let token = access_token(&resp.json());
    fx.get(&format!("/fresh{n}/x"), Some(&token)).await.status == 200
}

async fn wait_serving(fx: &Fixture, n: u32, within: Duration) -> bool {
    // Poll without credentials: a token request for a client that does not exist yet is a
    // failed client authentication, and enough of those trip the guessing throttle (429).
    // The route answers 404 until the reload lands, then 401; only then ask for a token.
    let path = format!("/fresh{n}/x");
    let routed = poll(within, || async {
        (fx.get(&path, None).await.status != 404).then_some(())
    })
    .await
    .is_some();
    routed && serves(fx, n).await
}

fn write(fx: &Fixture, text: &str) {
    let path = fx.gw.config_path();
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Saves the way many editors do: a new file beside the old one, renamed over it.
fn replace_by_rename(fx: &Fixture, text: &str) {
    let path = fx.gw.config_path();
    let tmp = path.with_file_name(".gateway.toml.swp");
    std::fs::write(&tmp, text).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, &path).unwrap_or_else(|e| panic!("rename over {}: {e}", path.display()));
}

/// Keeps `GET /abc/x` with a valid token going until stopped; returns every answer that
/// was not 200.
struct Traffic {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(usize, Vec<String>)>,
}

impl Traffic {
    fn start(url: String, token: String) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let stop = Arc::clone(&stop);
            async move {
                let (mut sent, mut failures) = (0, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let resp = get_with_token(&url, Some(&token)).await;
                    sent += 1;
                    if resp.status != 200 {
                        failures.push(resp.to_string());
                    }
                }
                (sent, failures)
            }
        });
        Traffic { stop, task }
    }

    async fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let (sent, failures) = self.task.await.expect("traffic task");
        assert!(sent > 0, "no traffic was sent");
        assert!(
            failures.is_empty(),
            "{} of {sent} requests failed during reloads: {failures:?}",
            failures.len()
        );
    }
}

async fn start() -> (Fixture, Admin) {
    admin_fixture(Store::memory(), |_| {}).await
}

/// SIGHUP reloads: once on an untouched file, and once on a file changed in a way the file
/// watcher cannot see (same inode, same size, the old modification time put back), so only
/// the signal can explain the new config being served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config() {
    // A comment exactly as long as the block that later replaces it.
    let mut block = String::new();
    let (fx, admin) = admin_fixture(Store::memory(), |c| {
        block = fresh_toml(&c.upstream, &c.secret_hash, 1);
        c.extra
            .push_str(&format!("#{}\n", "-".repeat(block.len() - 2)));
    })
    .await;
    let placeholder = format!("#{}\n", "-".repeat(block.len() - 2));
    let traffic = Traffic::start(fx.url("/abc/x"), fx.client_token(Some("reports")).await);

    // The file is untouched, so only the signal can cause this reload.
    let before = reloads(&admin, "success").await;
    fx.gw.signal("HUP");
    assert!(
        reload_counted(&admin, "success", before).await,
        "SIGHUP did not reload (config_reloads_total{{outcome=\"success\"}} unchanged)"
    );

    assert!(!serves(&fx, 1).await);
    let path = fx.gw.config_path();
    let old = std::fs::metadata(&path).expect("config metadata");
    let changed = fx.config.replacen(&placeholder, &block, 1);
    assert_eq!(
        changed.len(),
        fx.config.len(),
        "the edit must keep the size"
    );
    assert_ne!(changed, fx.config);
    write(&fx, &changed);
    // The watcher compares inode, size and mtime; a look mid-edit sees the file change back
    // before it settles, and so does not reload either.
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(old.modified()?))
        .unwrap_or_else(|e| panic!("restore the mtime of {}: {e}", path.display()));
    let now = std::fs::metadata(&path).expect("config metadata");
    assert_eq!(
        (now.ino(), now.len(), now.modified().ok()),
        (old.ino(), old.len(), old.modified().ok()),
        "the watcher could tell the file changed"
    );
    assert!(!serves(&fx, 1).await, "reloaded before the signal");
    fx.gw.signal("HUP");
    assert!(
        wait_serving(&fx, 1, Duration::from_secs(3)).await,
        "a scope, route and client added to the file and SIGHUP: not served"
    );
    traffic.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_is_reloaded_without_a_signal() {
    let (fx, admin) = start().await;
    let traffic = Traffic::start(fx.url("/abc/x"), fx.client_token(Some("reports")).await);
    let before = reloads(&admin, "success").await;

    let mut text = format!("{}{}", fx.config, fresh(&fx, 1));
    write(&fx, &text);
    assert!(
        wait_serving(&fx, 1, FILE_CHANGE_WITHIN).await,
        "file written in place: not reloaded within {FILE_CHANGE_WITHIN:?}"
    );
    assert!(
        reloads(&admin, "success").await > before,
        "reload not counted"
    );

    text.push_str(&fresh(&fx, 2));
    replace_by_rename(&fx, &text);
    assert!(
        wait_serving(&fx, 2, FILE_CHANGE_WITHIN).await,
        "file replaced by rename: not reloaded within {FILE_CHANGE_WITHIN:?}"
    );

    // Still watching after the rename replaced the file it watched.
    text.push_str(&fresh(&fx, 3));
    write(&fx, &text);
    assert!(
        wait_serving(&fx, 3, FILE_CHANGE_WITHIN).await,
        "file written in place after a rename: not reloaded"
    );
    assert!(serves(&fx, 1).await && serves(&fx, 2).await);
    traffic.finish().await;
}

/// A Kubernetes ConfigMap volume: `gateway.toml` is a symlink to `..data/gateway.toml`, and
/// `..data` a symlink to a timestamped directory. An update writes a new directory, points a
/// new `..data_tmp` link at it and renames that over `..data` (one atomic step), then
/// deletes the old directory. The file the gateway was given never changes itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_style_symlink_swap_is_reloaded() {
    use std::os::unix::fs::symlink;

    let (fx, admin) = start().await;
    let traffic = Traffic::start(fx.url("/abc/x"), fx.client_token(Some("reports")).await);
    let path = fx.gw.config_path();
    let dir = path.parent().expect("config dir").to_path_buf();
    let version = |n: u32, text: &str| {
        let v = dir.join(format!("..2026_01_01_00_00_0{n}.000000000"));
        std::fs::create_dir(&v).expect("version dir");
        std::fs::write(v.join("gateway.toml"), text).expect("versioned config");
        v
    };
    let swap_data = |to: &std::path::Path| {
        let tmp = dir.join("..data_tmp");
        symlink(to.file_name().expect("dir name"), &tmp).expect("..data_tmp link");
        std::fs::rename(&tmp, dir.join("..data")).expect("rename ..data_tmp over ..data");
    };

    // Turn the plain file into the ConfigMap layout, same content (seen as one reload).
    let before = reloads(&admin, "success").await;
    let mut current = version(1, &fx.config);
    swap_data(&current);
    let link = dir.join("gateway.toml.link");
    symlink("..data/gateway.toml", &link).expect("gateway.toml link");
    std::fs::rename(&link, &path).expect("link over gateway.toml");
    assert!(
        poll(FILE_CHANGE_WITHIN, || async {
            (reloads(&admin, "success").await > before).then_some(())
        })
        .await
        .is_some(),
        "the file turned into a symlink: not reloaded"
    );

    let mut text = fx.config.clone();
    for n in 1..=2 {
        text.push_str(&fresh(&fx, n));
        let next = version(n + 1, &text);
        swap_data(&next);
        std::fs::remove_dir_all(&current).expect("remove the old version");
        current = next;
        assert!(
            wait_serving(&fx, n, FILE_CHANGE_WITHIN).await,
            "..data swapped (update {n}): not reloaded within {FILE_CHANGE_WITHIN:?}"
        );
    }
    assert!(serves(&fx, 1).await && serves(&fx, 2).await);
    traffic.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_admin_reload_applies_the_file() {
    let (fx, admin) = start().await;
    let before = reloads(&admin, "success").await;
    let resp = admin.post("/admin/reload", &json!({})).await;
    assert_eq!(resp.status, 200, "{resp}");
    assert_eq!(resp.json(), json!({"reloaded": true}));
    assert!(
        reloads(&admin, "success").await > before,
        "reload not counted"
    );

    write(&fx, &format!("{}{}", fx.config, fresh(&fx, 1)));
    let resp = admin.call("POST", "/admin/reload", None).await;
    assert_eq!(resp.status, 200, "{resp}");
    assert_eq!(resp.json()["reloaded"], true, "{resp}");
    // In force when the call returns: no waiting.
    assert!(
        serves(&fx, 1).await,
        "POST /admin/reload returned before the swap"
    );
}

/// The 1-based line of `text` that equals `line`.
fn line_of(text: &str, line: &str) -> usize {
    text.lines()
        .position(|l| l == line)
        .unwrap_or_else(|| panic!("{line:?} not in the config"))
        + 1
}

/// Asserts some entry of `errors` reads `...gateway.toml:LINE:COL: message`.
fn assert_reported_at(errors: &[String], line: usize) {
    let found = errors.iter().any(|e| located_at(e, line));
    assert!(found, "no `gateway.toml:{line}:COL: message` in {errors:?}");
}

fn located_at(text: &str, line: usize) -> bool {
    let marker = format!("gateway.toml:{line}:");
    text.match_indices(&marker).any(|(i, _)| {
        let rest = &text[i + marker.len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        digits > 0 && rest[digits..].starts_with(": ") && rest.len() > digits + 2
    })
}

/// `POST /admin/reload` must answer 400 `invalid_config` with the errors list.
async fn reload_refused(admin: &Admin) -> Vec<String> {
    let resp = admin.post("/admin/reload", &json!({})).await;
    assert_error(&resp, 400, "invalid_config");
    let body = resp.json();
    body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors list: {resp}"))
        .iter()
        .map(|e| {
            e.as_str()
                .unwrap_or_else(|| panic!("error not a string: {e}"))
                .to_owned()
        })
        .collect()
}

/// An ERROR log line naming the file and `:LINE:`, printed after the first `skip` lines.
async fn logged_at(fx: &Fixture, skip: usize, line: usize) -> bool {
    poll(Duration::from_secs(3), || async {
        fx.gw
            .logs()
            .iter()
            .skip(skip)
            .any(|l| {
                let error = serde_json::from_str::<Value>(l).is_ok_and(|v| {
                    v["level"]
                        .as_str()
                        .is_some_and(|lv| lv.eq_ignore_ascii_case("error"))
                });
                error && l.contains("gateway.toml") && l.contains(&format!(":{line}:"))
            })
            .then_some(())
    })
    .await
    .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_edit_leaves_the_old_config_serving() {
    let (fx, admin) = start().await;
    let traffic = Traffic::start(fx.url("/abc/x"), fx.client_token(Some("reports")).await);
    let failures_before = reloads(&admin, "failure").await;

    // A syntax error, with a new scope and route that must not take effect.
    let broken_line = "this is not toml";
    let syntax = format!("{}{}\n{broken_line}\n", fx.config, fresh(&fx, 1));
    let line = line_of(&syntax, broken_line);
    let logs_before = fx.gw.logs().len();
    write(&fx, &syntax);
    // The watcher sees the edit and logs its failure...
    assert!(
        logged_at(&fx, logs_before, line).await,
        "no ERROR log line with gateway.toml:{line}:COL after a bad edit on disk"
    );
    // ...the API reports it...
    assert_reported_at(&reload_refused(&admin).await, line);
    // ...and so does SIGHUP, in the logs.
    let logs_before = fx.gw.logs().len();
    fx.gw.signal("HUP");
    assert!(
        logged_at(&fx, logs_before, line).await,
        "no ERROR log line with gateway.toml:{line}:COL after SIGHUP on a bad file"
    );
    assert!(!serves(&fx, 1).await, "part of a broken file took effect");
    assert!(
        reload_counted(&admin, "failure", failures_before).await,
        "failed reloads not counted"
    );

    // An unknown key, by API.
    let anchor = "shutdown_grace = \"2s\"";
    let unknown = format!("{}{}", fx.config, fresh(&fx, 2)).replacen(
        anchor,
        &format!("{anchor}\nbogus_key = true"),
        1,
    );
    let line = line_of(&unknown, "bogus_key = true");
    write(&fx, &unknown);
    let errors = reload_refused(&admin).await;
    assert_reported_at(&errors, line);
    assert!(errors.iter().any(|e| e.contains("bogus_key")), "{errors:?}");
    assert!(!serves(&fx, 2).await, "part of a rejected file took effect");

    // The old config kept serving throughout; a good file is taken again.
    let resp = fx
        .get("/abc/x", Some(&fx.client_token(Some("reports")).await))
        .await;
    assert_eq!(resp.status, 200, "{resp}");
    write(&fx, &format!("{}{}", fx.config, fresh(&fx, 3)));
    let resp = admin.post("/admin/reload", &json!({})).await;
    assert_eq!(resp.status, 200, "{resp}");
    assert!(
        serves(&fx, 3).await,
        "a good file after bad ones was not applied"
    );
    traffic.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_finish_on_the_config_they_started_with() {
    let drain = "\n[[routes]]\nname = \"drain\"\npath = \"/drain/*\"\nupstreams = [\"@UP@\"]\n\
                 auth = \"none\"\ntimeout = \"10s\"\n";
    let (fx, admin) = admin_fixture(Store::memory(), |config| {
        let block = drain.replace("@UP@", &config.upstream);
        config.extra.push_str(&block);
    })
    .await;
    let block = drain.replace("@UP@", &fx.up.url());
    assert!(fx.config.contains(&block));

    let url = fx.url("/drain/slow");
    let request = tokio::spawn(async move { get(&url, &[]).await });
    let arrived = poll(Duration::from_secs(5), || async {
        fx.up
            .uris()
            .iter()
            .any(|u| u == "/drain/slow")
            .then_some(())
    })
    .await;
    assert!(
        arrived.is_some(),
        "the slow request never reached the upstream"
    );

    // Reload to a config without the route while the request is at the upstream.
    write(&fx, &fx.config.replace(&block, ""));
    let resp = admin.post("/admin/reload", &json!({})).await;
    assert_eq!(resp.status, 200, "{resp}");
    let resp = fx.get("/drain/x", None).await;
    assert_error(&resp, 404, "not_found");
    assert!(!request.is_finished(), "the slow request ended early");
    let resp = request.await.expect("request task");
    assert_eq!(
        resp.status, 200,
        "in-flight request across a reload: {resp}"
    );
}

#[test]
fn located_at_wants_file_line_col_and_message() {
    assert!(located_at("/tmp/x/gateway.toml:12:5: unknown key", 12));
    assert!(located_at(r#"{"msg":"gateway.toml:3:1: expected `=`"}"#, 3));
    assert!(!located_at("gateway.toml:12: unknown key", 12));
    assert!(!located_at("gateway.toml:13:5: unknown key", 12));
    assert!(!located_at("gateway.toml:12:5:", 12));
}
