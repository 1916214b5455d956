//! End-to-end: SIGHUP reload storms under load (issue 13 item 6; SPEC §6). Fifty SIGHUPs in
//! quick succession while client loops use the routes every version of the file keeps, the
//! file rewritten (by rename, as deploy tools do) before every fifth with one route added and
//! the previous one removed, on the memory store and on Redis.
//!
//! What must hold: no request to an unchanged route fails (nor a token request), tokens
//! issued before the storm stay valid, every reload succeeds, the gateway stays up, and the
//! last file wins: its route serves, the removed ones are gone, and it stays so once the
//! reloads (SIGHUPs and the file watcher's) have settled.

#[macro_use]
mod common;

use std::process::Command;
use std::time::Duration;

use common::{Fixture, Load, Store, basic_auth, metrics, poll, pooled_client, try_issue, try_send};

const HANGUPS: usize = 50;
/// The file is rewritten before every this-many SIGHUPs.
const REWRITE_EVERY: usize = 5;
const REQUEST_WITHIN: Duration = Duration::from_secs(5);

both_backends!(reload_storm_under_load);

/// A public route `/{name}/*` to `upstream`.
fn route(name: &str, upstream: &str) -> String {
    format!(
        "\n[[routes]]\nname = \"{name}\"\npath = \"/{name}/*\"\nupstreams = [\"{upstream}\"]\nauth = \"none\"\n"
    )
}

/// Replaces the file by rename, so no reload ever reads it half written.
fn install(path: &std::path::Path, text: &str) {
    let tmp = path.with_file_name(".gateway.toml.new");
    std::fs::write(&tmp, text).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename over {}: {e}", path.display()));
}

/// Reloads counted with `outcome` so far.
async fn reloads(fx: &Fixture, outcome: &str) -> f64 {
    metrics(&fx.gw.admin_url())
        .await
        .sum("tollgate_config_reloads_total", &[("outcome", outcome)])
}

async fn status(fx: &Fixture, path: &str) -> u16 {
    fx.get(path, None).await.status
}

async fn reload_storm_under_load(store: Store) {
    let fx = Fixture::start(store).await;
    let before_storm = fx.client_token(Some("reports")).await;
    let rounds = HANGUPS / REWRITE_EVERY;

    let mut load = Load::new();
    let pooled = pooled_client();
    let auth = format!("Bearer {before_storm}");
    for (label, path, fresh) in [
        ("abc", "/abc/x", false),
        ("public", "/public/x", false),
        ("abc-new-conn", "/abc/y", true),
    ] {
        let (pooled, url, auth) = (pooled.clone(), fx.url(path), auth.clone());
        load.spawn(label, 2, move |_| {
            let client = if fresh {
                pooled_client()
            } else {
                pooled.clone()
            };
            let (url, auth) = (url.clone(), auth.clone());
            async move {
                let headers = [("authorization", auth.as_str())];
                try_send(&client, "GET", &url, &headers, "", REQUEST_WITHIN).await
            }
        });
    }
    let (url, basic) = (fx.token_url(), basic_auth("photoprint", &fx.creds.secret));
    load.spawn("issue", 1, move |_| {
        let (client, url, basic) = (pooled.clone(), url.clone(), basic.clone());
        async move { try_issue(&client, &url, &basic, REQUEST_WITHIN).await }
    });
    let labels = ["abc", "public", "abc-new-conn", "issue"];
    assert!(
        load.wait_for(&labels, 5, Duration::ZERO, Duration::from_secs(10))
            .await,
        "the load did not get going"
    );

    // The storm, from a blocking thread (each signal is a `kill` process).
    let storm_started = load.now();
    let (pid, path, base, upstream) = (
        fx.gw.pid().to_string(),
        fx.gw.config_path(),
        fx.config.clone(),
        fx.up.url(),
    );
    let storm = tokio::task::spawn_blocking(move || {
        for k in 0..HANGUPS {
            if k % REWRITE_EVERY == 0 {
                let round = k / REWRITE_EVERY;
                let added = if round + 1 == rounds {
                    "last".to_owned()
                } else {
                    format!("extra{round}")
                };
                install(&path, &format!("{base}{}", route(&added, &upstream)));
            }
            let status = Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .expect("kill -HUP");
            assert!(
                status.success(),
                "kill -HUP {pid} failed: is tollgate gone?"
            );
        }
    });
    storm.await.expect("the storm thread");
    let storm_took = load.now() - storm_started;

    // The last file wins: its route serves, every earlier one is gone.
    let settled = poll(Duration::from_secs(5), || async {
        let mut ok = status(&fx, "/last/x").await == 200;
        for round in 0..rounds - 1 {
            ok = ok && status(&fx, &format!("/extra{round}/x")).await == 404;
        }
        ok.then_some(())
    })
    .await;
    assert!(settled.is_some(), "the last config is not in force");
    // ... and stays so once reloads stop (the file watcher may still be catching up): the
    // counter must stand still for 1.5 s, longer than the watcher's poll and settle.
    let last_change = std::cell::Cell::new((reloads(&fx, "success").await, load.now()));
    let (last_change, fx_ref, load_ref) = (&last_change, &fx, &load);
    let quiet = poll(Duration::from_secs(10), || async move {
        let count = reloads(fx_ref, "success").await;
        if count != last_change.get().0 {
            last_change.set((count, load_ref.now()));
        }
        (load_ref.now() - last_change.get().1 >= Duration::from_millis(1500)).then_some(count)
    })
    .await
    .expect("reloads never settled");
    assert!(quiet >= 1.0, "no reload was counted");
    let settled_at = load.now();
    assert_eq!(
        status(&fx, "/last/x").await,
        200,
        "the last route after settling"
    );
    for round in 0..rounds - 1 {
        let path = format!("/extra{round}/x");
        assert_eq!(status(&fx, &path).await, 404, "{path} after settling");
    }

    let samples = load.finish().await;
    for s in &samples {
        assert_eq!(s.status(), Some(200), "an unchanged route failed: {s}");
    }
    let during = samples
        .iter()
        .filter(|s| s.sent >= storm_started && s.sent <= settled_at)
        .count();
    assert!(during > 0, "no request ran while the reloads went on");
    assert_eq!(reloads(&fx, "failure").await, 0.0, "a reload was refused");
    assert!(
        fx.gw.readyz().await == Some(200),
        "the gateway is not ready after the storm"
    );
    assert_eq!(
        fx.get("/abc/x", Some(&before_storm)).await.status,
        200,
        "a token from before the storm"
    );
    let slowest = samples.iter().map(|s| s.took).max().unwrap_or_default();
    eprintln!(
        "reload storm: {HANGUPS} SIGHUPs in {storm_took:?}, {quiet} reloads counted; {} \
         requests all 200 ({during} sent between the first SIGHUP and the reloads settling), \
         slowest {slowest:?}",
        samples.len()
    );
}
