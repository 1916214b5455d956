//! End-to-end: a reload that removes a user or a client from the file revokes their tokens
//! (SPEC §6), on both store backends, while everyone else's keep working.

#[macro_use]
mod common;

use common::{Store, access_token, admin_fixture, assert_error, client_toml, refresh_token};
use serde_json::json;

both_backends!(removing_a_user_and_a_client_revokes_their_tokens);

/// `bob`'s tokens (granted through `photoprint`) and the client `gone`'s tokens were valid and
/// used (so a node may hold them in its cache); after a reload without `bob` and `gone`, every
/// one of them is refused, while `alice`'s and `photoprint`'s still pass.
async fn removing_a_user_and_a_client_revokes_their_tokens(store: Store) {
    let mut blocks = Vec::new();
    let (fx, admin) = admin_fixture(store, |c| {
        blocks.push(format!(
            "\n[[users]]\nusername = \"bob\"\npassword_hash = \"{}\"\nscopes = [\"reports\"]\n",
            c.password_hash
        ));
        blocks.push(client_toml(
            "gone",
            &format!("secret_hash = \"{}\"", c.secret_hash),
            &["client_credentials"],
            &["reports"],
            "",
        ));
        for b in &blocks {
            c.extra.push_str(b);
        }
    })
    .await;

    let bob = fx
        .token_request(
            "photoprint",
            &[
                ("grant_type", "password"),
                ("username", "bob"),
                ("password", &fx.creds.password),
                ("scope", "reports"),
            ],
        )
        .await;
    assert_eq!(bob.status, 200, "{bob}");
    let bob = bob.json();
    let gone = access_token(&fx.client_token_for("gone", Some("reports")).await);
    let alice = access_token(&fx.password_token_for("photoprint", "reports").await);
    let photoprint = fx.client_token(Some("reports")).await;
    let removed = [("bob", access_token(&bob)), ("gone", gone)];
    let kept = [("alice", alice), ("photoprint", photoprint)];
    for (who, token) in removed.iter().chain(&kept) {
        let resp = fx.get("/abc/x", Some(token)).await;
        assert_eq!(resp.status, 200, "{who}'s token before the reload: {resp}");
    }

    let mut text = fx.config.clone();
    for b in &blocks {
        assert!(text.contains(b.as_str()), "block not in the config: {b}");
        text = text.replacen(b.as_str(), "", 1);
    }
    std::fs::write(fx.gw.config_path(), &text).expect("write the config");
    let resp = admin.post("/admin/reload", &json!({})).await;
    assert_eq!(resp.status, 200, "{resp}");

    for (who, token) in &removed {
        let resp = fx.get("/abc/x", Some(token)).await;
        assert_error(&resp, 401, "invalid_token");
        assert_eq!(
            fx.up.uris().len(),
            4,
            "{who}'s token reached the upstream after the reload"
        );
    }
    let resp = fx
        .token_request(
            "photoprint",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token(&bob)),
            ],
        )
        .await;
    assert_error(&resp, 400, "invalid_grant");
    for (who, token) in &kept {
        let resp = fx.get("/abc/x", Some(token)).await;
        assert_eq!(resp.status, 200, "{who}'s token after the reload: {resp}");
    }
}
