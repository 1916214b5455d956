//! Tests of the memory store: atomic rotation against revocation, grant pruning, the sweeper.

use std::sync::Barrier;

use super::*;
use crate::store::Rotation;

fn access(grant: &str, expires_at: Option<Millis>) -> AccessToken {
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
        expires_at: None,
        grant_id: grant.into(),
        refreshes_used: 0,
    }
}

/// Rotates `old` into fresh tokens (named after `tag`); returns the outcome and new hashes.
fn rotate(
    store: &MemoryStore,
    old: &TokenHash,
    tag: &str,
    access_expires: Option<Millis>,
    grace: Duration,
) -> (Rotate, TokenHash, TokenHash) {
    let (a, r) = (
        TokenHash::of(&format!("a-{tag}")),
        TokenHash::of(&format!("r-{tag}")),
    );
    let (at, rt) = (access("g", access_expires), refresh("g"));
    let rotation = Rotation {
        old,
        access_hash: &a,
        access: &at,
        refresh: Some((&r, &rt)),
        successor: Some("sealed"),
        grace,
    };
    (store.rotate_refresh(&rotation, now_millis()), a, r)
}

/// Many threads rotate one refresh token while another revokes its grant, over and over:
/// exactly one rotation wins, and once the revocation is done no token of the grant is live
/// (a rotation that ran first is revoked with the grant, one that ran later stored nothing).
#[test]
fn rotation_races_with_revocation_leave_nothing_live() {
    const THREADS: usize = 6;
    for round in 0..100 {
        let store = MemoryStore::new();
        let first = TokenHash::of("first");
        // Many members make the revocation's marking take a while, so the rotations (spread
        // out a little) land before, during and after its read of the grant. The refresh
        // token is the last member: marked last, it leaves the widest window.
        for i in 0..500 {
            store.issue(
                &TokenHash::of(&format!("pad-{i}")),
                &access("g", None),
                None,
            );
        }
        store.issue(
            &TokenHash::of("a0"),
            &access("g", None),
            Some((&first, &refresh("g"))),
        );
        let barrier = Barrier::new(THREADS + 1);
        let outcomes: Vec<(Rotate, TokenHash, TokenHash)> = std::thread::scope(|s| {
            let rotations: Vec<_> = (0..THREADS)
                .map(|i| {
                    let (store, barrier, first) = (&store, &barrier, &first);
                    s.spawn(move || {
                        barrier.wait();
                        for _ in 0..(round * 50 + i * 200) {
                            std::hint::spin_loop();
                        }
                        rotate(store, first, &format!("{round}-{i}"), None, Duration::ZERO)
                    })
                })
                .collect();
            barrier.wait();
            store.revoke_grant("g");
            rotations
                .into_iter()
                .map(|t| t.join().expect("rotation thread"))
                .collect()
        });
        let won = outcomes.iter().filter(|o| o.0 == Rotate::Rotated).count();
        assert!(won <= 1, "round {round}: {won} rotations of one token won");
        for (outcome, a, r) in &outcomes {
            if *outcome == Rotate::Rotated {
                let entry = store.get_access(a).expect("rotated access token stored");
                assert!(
                    entry.revoked,
                    "round {round}: a rotated access token is live"
                );
                let entry = store.get_refresh(r).expect("rotated refresh token stored");
                assert!(
                    entry.revoked,
                    "round {round}: a rotated refresh token is live"
                );
            } else {
                assert!(store.get_access(a).is_none(), "a losing rotation stored");
                assert!(store.get_refresh(r).is_none(), "a losing rotation stored");
            }
        }
        // And the grant stays dead: a later rotation of the newest token fails.
        if let Some((_, _, r)) = outcomes.iter().find(|o| o.0 == Rotate::Rotated) {
            let (later, ..) = rotate(&store, r, "later", None, Duration::ZERO);
            assert_eq!(later, Rotate::Revoked);
        }
    }
}

#[test]
fn rotation_outcomes() {
    let store = MemoryStore::new();
    let first = TokenHash::of("first");
    store.issue(
        &TokenHash::of("a0"),
        &access("g", None),
        Some((&first, &refresh("g"))),
    );
    assert_eq!(
        rotate(&store, &TokenHash::of("nope"), "x", None, Duration::ZERO).0,
        Rotate::Missing
    );
    let (won, _, next) = rotate(&store, &first, "1", None, Duration::ZERO);
    assert_eq!(won, Rotate::Rotated);
    let retired = store.get_refresh(&first).expect("old kept");
    assert!(retired.retired_at.is_some());
    assert_eq!(retired.successor.as_deref(), Some("sealed"));
    assert_eq!(
        rotate(&store, &first, "2", None, Duration::ZERO).0,
        Rotate::AlreadyRetired
    );
    assert!(
        store.get_access(&TokenHash::of("a-2")).is_none(),
        "nothing stored on a retry"
    );
    store.revoke_grant("g");
    assert_eq!(
        rotate(&store, &next, "3", None, Duration::ZERO).0,
        Rotate::Revoked
    );
}

/// A grant refreshed again and again lists only what revoking it must still reach: the
/// newest refresh token and the access tokens that have not expired.
#[test]
fn rotation_prunes_the_grant_member_list() {
    let store = MemoryStore::new();
    let mut current = TokenHash::of("first");
    store.issue(
        &TokenHash::of("a0"),
        &access("g", Some(1)),
        Some((&current, &refresh("g"))),
    );
    for i in 0..50 {
        // Access tokens that are already expired, and no grace window: nothing to keep.
        let (outcome, _, next) = rotate(&store, &current, &i.to_string(), Some(1), Duration::ZERO);
        assert_eq!(outcome, Rotate::Rotated);
        current = next;
    }
    assert!(
        store.member_count("g") <= 2,
        "grant lists {} tokens",
        store.member_count("g")
    );

    // Within the grace window the retired refresh tokens stay (revoking must mark them).
    let (_, _, next) = rotate(&store, &current, "graced", None, Duration::from_secs(60));
    let (_, _, _) = rotate(&store, &next, "graced2", None, Duration::from_secs(60));
    let retired = store
        .maps
        .grants
        .get("g")
        .map(|g| g.members.clone())
        .unwrap_or_default();
    assert!(retired.contains(&Member::Refresh(current)), "{retired:?}");
}

/// The sweeper runs without any async runtime (it has a thread of its own).
#[test]
fn sweeper_runs_on_its_own_thread() {
    let store = MemoryStore::with_sweep_interval(Duration::from_millis(10));
    let hash = TokenHash::of("old");
    store.issue(&hash, &access("g", Some(1)), None); // expired (and past retention) in 1970
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.get_access(&hash).is_some() {
        assert!(Instant::now() < deadline, "not swept within 5 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        store.member_count("g"),
        0,
        "the emptied grant is dropped too"
    );
}

/// An expired access token is kept while the refresh token issued with it is live (the admin
/// listing shows it, SPEC §9), and swept like any other once that refresh token is retired.
#[test]
fn an_expired_access_token_is_kept_while_its_refresh_token_is_live() {
    let store = MemoryStore::new();
    let (kept, gone) = (TokenHash::of("kept"), TokenHash::of("gone"));
    let mut with_refresh = access("g1", Some(1)); // expired (and past retention) in 1970
    let mut its_refresh = refresh("g1");
    // Issued together, a while before the rotation below mints the next pair.
    with_refresh.issued_at = now_millis() - 5_000;
    its_refresh.issued_at = with_refresh.issued_at;
    store.issue(
        &kept,
        &with_refresh,
        Some((&TokenHash::of("r1"), &its_refresh)),
    );
    store.issue(&gone, &access("g2", Some(1)), None);
    assert!(sweep(&Arc::downgrade(&store.maps)));
    assert!(
        store.get_access(&kept).is_some(),
        "its refresh token is live"
    );
    assert!(store.get_access(&gone).is_none(), "no refresh token: swept");

    // Retired by a rotation: no longer refreshable, so swept.
    let (outcome, _, _) = rotate_in(&store, &TokenHash::of("r1"), "g1");
    assert_eq!(outcome, Rotate::Rotated);
    assert!(sweep(&Arc::downgrade(&store.maps)));
    assert!(
        store.get_access(&kept).is_none(),
        "its refresh token is retired"
    );
}

/// [`rotate`] for grant `grant`, with a live new access token.
fn rotate_in(store: &MemoryStore, old: &TokenHash, grant: &str) -> (Rotate, TokenHash, TokenHash) {
    let (a, r) = (TokenHash::of("a-next"), TokenHash::of("r-next"));
    let (at, rt) = (access(grant, None), refresh(grant));
    let rotation = Rotation {
        old,
        access_hash: &a,
        access: &at,
        refresh: Some((&r, &rt)),
        successor: None,
        grace: Duration::ZERO,
    };
    (store.rotate_refresh(&rotation, now_millis()), a, r)
}
