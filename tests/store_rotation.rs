//! The token store's refresh rotation, driven through the library against the memory store
//! and a real `redis-server`: one atomic step, safe against concurrent refreshes of the same
//! token and against revoking its grant at the same time, and a grant's member list that
//! does not grow with every refresh.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Store;
use tollgate::store::{Rotate, Rotation, TokenStore};
use tollgate::token::{AccessToken, RefreshToken, TokenHash, now_millis};

both_backends!(
    concurrent_rotations_have_one_winner,
    rotations_racing_a_revocation_leave_nothing_live
);

/// The same races on a real 6-node Redis Cluster: a grant's keys share one slot, so the
/// rotation and the revocation scripts serialise there as on one server.
mod on_a_cluster {
    use crate::common::Store;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_rotations_have_one_winner() {
        super::concurrent_rotations_have_one_winner(Store::cluster().await).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rotations_racing_a_revocation_leave_nothing_live() {
        super::rotations_racing_a_revocation_leave_nothing_live(Store::cluster().await).await
    }
}

fn open(store: &Store) -> TokenStore {
    store.token_store()
}

fn access(grant: &str, expires_at: Option<u64>) -> AccessToken {
    AccessToken {
        client_id: "c".into(),
        username: Some("alice".into()),
        scopes: vec!["s".into()].into(),
        issued_at: now_millis(),
        expires_at,
        grant_id: grant.into(),
        refreshes_used: 0,
    }
}

fn refresh(grant: &str) -> RefreshToken {
    RefreshToken {
        client_id: "c".into(),
        username: Some("alice".into()),
        scopes: vec!["s".into()],
        issued_at: now_millis(),
        expires_at: Some(now_millis() + 3_600_000),
        grant_id: grant.into(),
        refreshes_used: 0,
    }
}

/// A new grant with one access and one refresh token; returns the refresh token's hash.
/// A token hash of `grant`'s: tagged with its slot (as the gateway's tokens are, see
/// `token::SlotTag`), so the grant's records share a Redis Cluster slot; `name` keeps it
/// distinct and repeatable.
fn token_of(grant: &str, name: &str) -> TokenHash {
    let tag = tollgate::token::SlotTag::of_grant(grant).hex();
    let text = format!("{tag}{name:->43}");
    assert_eq!(text.len(), 47, "name too long: {name}");
    TokenHash::of(&text)
}

async fn new_grant(store: &TokenStore, grant: &str) -> TokenHash {
    let r = token_of(grant, &format!("{grant}-r0"));
    store
        .issue(
            &token_of(grant, &format!("{grant}-a0")),
            &access(grant, Some(now_millis() + 600_000)),
            Some((&r, &refresh(grant))),
        )
        .await
        .expect("issue");
    r
}

/// Rotates `old` of `grant` into tokens named after `tag`: (outcome, access, refresh).
async fn rotate(
    store: &TokenStore,
    grant: &str,
    old: TokenHash,
    tag: &str,
    access_expires: Option<u64>,
) -> (Rotate, TokenHash, TokenHash) {
    let (a, r) = (
        token_of(grant, &format!("a-{tag}")),
        token_of(grant, &format!("r-{tag}")),
    );
    let (at, rt) = (access(grant, access_expires), refresh(grant));
    let rotation = Rotation {
        old: &old,
        access_hash: &a,
        access: &at,
        refresh: Some((&r, &rt)),
        successor: Some("sealed"),
        grace: Duration::ZERO,
    };
    let outcome = store.rotate_refresh(&rotation).await.expect("rotate");
    (outcome, a, r)
}

/// N refreshes of one token at once: one rotates, the rest are told it was retired, and
/// only the winner's tokens exist.
async fn concurrent_rotations_have_one_winner(store: Store) {
    let ts = Arc::new(open(&store));
    let old = new_grant(&ts, "g1").await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let ts = Arc::clone(&ts);
            tokio::spawn(async move {
                let expires = Some(now_millis() + 600_000);
                rotate(&ts, "g1", old, &format!("one-{i}"), expires).await
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        let (outcome, a, r) = task.await.expect("task");
        match outcome {
            Rotate::Rotated => {
                won += 1;
                assert!(ts.get_refresh(&r).await.expect("get").is_some());
            }
            Rotate::AlreadyRetired => {
                assert!(ts.lookup_access(&a).await.expect("get").is_none());
                assert!(ts.get_refresh(&r).await.expect("get").is_none());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1);
    let retired = ts.get_refresh(&old).await.expect("get").expect("old kept");
    assert!(retired.retired_at.is_some());
    assert_eq!(
        retired.successor.as_deref(),
        Some("sealed"),
        "successor stored with it"
    );
}

/// Refreshes of one token racing a revocation of its grant, many rounds: whatever the
/// interleaving, once both are done no token of the grant is live, and the grant cannot be
/// refreshed any more. (Retire-then-issue as two steps fails this: a refresh that retired
/// before the revocation read the grant stores its new tokens after it.)
async fn rotations_racing_a_revocation_leave_nothing_live(store: Store) {
    let ts = Arc::new(open(&store));
    for round in 0..20 {
        let grant = format!("race-{round}");
        // Many members make the revocation's marking take a while, so the refreshes, started
        // a little after it, land before, during and after its read of the grant.
        for i in 0..100 {
            let expires = Some(now_millis() + 600_000);
            let hash = token_of(&grant, &format!("{grant}-pad-{i}"));
            ts.issue(&hash, &access(&grant, expires), None)
                .await
                .expect("issue");
        }
        let old = new_grant(&ts, &grant).await;
        let revoke = {
            let (ts, grant) = (Arc::clone(&ts), grant.clone());
            tokio::spawn(async move { ts.revoke_grant(&grant).await.expect("revoke") })
        };
        let mut tasks = Vec::new();
        for i in 0..4 {
            let (ts, grant) = (Arc::clone(&ts), grant.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..(round * 3 + i) {
                    tokio::task::yield_now().await;
                }
                let expires = Some(now_millis() + 600_000);
                rotate(&ts, &grant, old, &format!("{grant}-{i}"), expires).await
            }));
        }
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.expect("task"));
        }
        revoke.await.expect("revoke task");
        let mut won = 0;
        for (outcome, a, r) in outcomes {
            match outcome {
                Rotate::Rotated => {
                    won += 1;
                    let entry = ts.lookup_access(&a).await.expect("get").expect("stored");
                    assert!(entry.revoked, "round {round}: a live access token survived");
                    let entry = ts.get_refresh(&r).await.expect("get").expect("stored");
                    assert!(
                        entry.revoked,
                        "round {round}: a live refresh token survived"
                    );
                    let (later, ..) = rotate(&ts, &grant, r, &format!("{grant}-later"), None).await;
                    assert_eq!(later, Rotate::Revoked, "round {round}");
                }
                Rotate::AlreadyRetired | Rotate::Revoked => {
                    assert!(ts.lookup_access(&a).await.expect("get").is_none());
                }
                Rotate::Missing => panic!("round {round}: the token went missing"),
            }
        }
        assert!(won <= 1, "round {round}: {won} winners");
    }
}

/// Redis: a grant refreshed many times keeps only the members revoking it must reach;
/// retired refresh tokens past the grace window (none here) and expired access tokens go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_grant_members_are_pruned_on_rotation() {
    let store = Store::redis().await;
    let ts = open(&store);
    let mut current = new_grant(&ts, "long").await;
    let mut access = token_of("long", "long-a0");
    for i in 0..30 {
        // Already expired access tokens: each is kept while its refresh token is live (for
        // the admin listing), then cut back by the next rotation, and so gone at once.
        let (outcome, a, next) = rotate(&ts, "long", current, &format!("long-{i}"), Some(1)).await;
        assert_eq!(outcome, Rotate::Rotated);
        current = next;
        access = a;
    }
    let mut conn = store.redis_connection().await;
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(tollgate::store::keys::Keys::new(&store.prefix).grant("long"))
        .query_async(&mut conn)
        .await
        .expect("SMEMBERS");
    // Left: the live refresh token, the access token issued with it, and the first access
    // token (still live: revoking the grant must reach it).
    let mut members = members;
    members.sort();
    let mut expected = vec![
        format!("r:{}", current.to_hex()),
        format!("a:{}", access.to_hex()),
        format!("a:{}", token_of("long", "long-a0").to_hex()),
    ];
    expected.sort();
    assert_eq!(members, expected, "after 30 refreshes");
}

/// Redis: an access token issued by a refresh is kept as long as the refresh token issued
/// with it (so the admin listing shows it expired while the grant can be refreshed, SPEC §9),
/// and the rotation cuts the grant's older access token back to an hour after its expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_refreshed_access_tokens_are_kept_as_long_as_their_refresh_token() {
    let store = Store::redis().await;
    let ts = open(&store);
    let first = new_grant(&ts, "kept").await;
    let first_access = token_of("kept", "kept-a0");
    let (outcome, access, _) =
        rotate(&ts, "kept", first, "kept-1", Some(now_millis() + 1_000)).await;
    assert_eq!(outcome, Rotate::Rotated);
    let mut conn = store.redis_connection().await;
    let keys = tollgate::store::keys::Keys::new(&store.prefix);
    let pttl = |key: String| {
        let mut conn = conn.clone();
        async move {
            redis::cmd("PTTL")
                .arg(key)
                .query_async::<i64>(&mut conn)
                .await
                .expect("PTTL")
        }
    };
    const MIN: i64 = 60_000;
    // The refresh token lives an hour: the new access record an hour past that.
    let new_left = pttl(keys.access(&access)).await;
    assert!(
        new_left > 110 * MIN,
        "the refreshed access token is kept only {new_left} ms"
    );
    // The first access token expires in 10 minutes: cut back to an hour after that.
    let old_left = pttl(keys.access(&first_access)).await;
    assert!(
        (0..=71 * MIN).contains(&old_left),
        "the older access token is still kept {old_left} ms"
    );
    let _ = &mut conn;
}
