//! The token store's registry, driven through the library against the memory store and a
//! real `redis-server`: a client's `enabled` is the registry's (whatever its record says), a
//! deleted client's id stays disabled until a client with that id is created again, a write
//! that must replace does not bring a deleted client back, and every write moves the stamp.

#[macro_use]
mod common;

use common::Store;
use tollgate::config::{Client, ClientType, RefreshCount, TokenFields};
use tollgate::store::TokenStore;

both_backends!(
    enabled_is_the_registry_s,
    a_deleted_client_stays_disabled_until_created_again
);

fn open(store: &Store) -> TokenStore {
    store.token_store()
}

fn client(id: &str, enabled: bool) -> Client {
    Client {
        client_id: id.to_owned(),
        name: id.to_owned(),
        version: String::new(),
        description: String::new(),
        kind: ClientType::Public,
        secret_hash: None,
        redirect_uris: Vec::new(),
        grants: Vec::new(),
        scopes: Vec::new(),
        access_token_ttl: None,
        refresh_count: RefreshCount::Unlimited,
        enabled,
        logo_uri: None,
        token_response: TokenFields::Standard,
    }
}

async fn enabled_of(ts: &TokenStore, id: &str) -> bool {
    ts.get_client(id)
        .await
        .expect("get")
        .expect("exists")
        .enabled
}

async fn enabled_is_the_registry_s(store: Store) {
    let ts = open(&store);
    let start = ts.registry_stamp().await.expect("stamp");
    assert!(
        ts.put_client(&client("c1", false), false, Some(false))
            .await
            .expect("put")
    );
    assert!(!enabled_of(&ts, "c1").await);
    let disabled = ts.registry_stamp().await.expect("stamp");
    assert_ne!(disabled, start, "a disable moves the stamp");
    // A write that does not name `enabled` (a PATCH of the description) leaves the
    // registry's word, even with a record that says enabled (read before the disable).
    assert!(
        ts.put_client(&client("c1", true), true, None)
            .await
            .expect("put")
    );
    assert!(
        !enabled_of(&ts, "c1").await,
        "a stale record re-enabled the client"
    );
    let listed = ts.list_clients().await.expect("list");
    assert!(
        listed.iter().any(|c| c.client_id == "c1" && !c.enabled),
        "{listed:?}"
    );
    assert!(
        ts.put_client(&client("c1", true), true, Some(true))
            .await
            .expect("put")
    );
    assert!(enabled_of(&ts, "c1").await);
    assert_ne!(ts.registry_stamp().await.expect("stamp"), disabled);
}

async fn a_deleted_client_stays_disabled_until_created_again(store: Store) {
    let ts = open(&store);
    assert!(
        ts.put_client(&client("c2", true), false, Some(true))
            .await
            .expect("put")
    );
    assert!(ts.delete_client("c2").await.expect("delete"));
    assert!(
        ts.is_disabled("c2").await.expect("tombstone"),
        "no tombstone"
    );
    let snapshot = ts.read_registry().await.expect("read");
    assert!(snapshot.disabled.contains(&"c2".to_owned()), "{snapshot:?}");
    // A PATCH racing the DELETE (it read the client before) does not bring it back.
    assert!(
        !ts.put_client(&client("c2", true), true, None)
            .await
            .expect("put")
    );
    assert!(ts.get_client("c2").await.expect("get").is_none());
    // Created again: the tombstone goes.
    assert!(
        ts.put_client(&client("c2", true), false, Some(true))
            .await
            .expect("put")
    );
    assert!(!ts.is_disabled("c2").await.expect("tombstone"));
    assert!(enabled_of(&ts, "c2").await);
}
