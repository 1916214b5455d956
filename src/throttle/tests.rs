//! The throttle's rules, on the in-process counters (the shared ones are tested end to end in
//! `tests/throttling_shared.rs`, against a real Redis).

use super::local::SWEEP_ABOVE;
use super::*;

fn ip(last: u8) -> IpAddr {
    IpAddr::from([10, 0, 0, last])
}

async fn fail(t: &Throttle, account: Account, name: &str, from: IpAddr) {
    drop(t.begin(account, name, from).await.expect("allowed"));
}

#[tokio::test]
async fn one_address_is_stopped_by_its_tight_limit_and_cannot_lock_the_user_out() {
    let t = Throttle::default();
    for _ in 0..PER_ACCOUNT_AND_ADDRESS {
        fail(&t, Account::User, "alice", ip(1)).await;
    }
    let wait = t
        .begin(Account::User, "alice", ip(1))
        .await
        .err()
        .expect("locked")
        .wait();
    assert!(wait <= WINDOW && wait > Duration::from_secs(50));
    assert!(t.refused(Account::User, "alice", ip(1)).await.is_err());
    // alice from elsewhere, and bob from the same address, are unaffected.
    assert!(t.refused(Account::User, "alice", ip(2)).await.is_ok());
    t.begin(Account::User, "alice", ip(2))
        .await
        .expect("other address")
        .refund();
    t.begin(Account::User, "bob", ip(1))
        .await
        .expect("other user")
        .refund();
}

#[tokio::test]
async fn checks_in_flight_count_against_the_limit() {
    // Five checks in flight fill the limit: a sixth waits for an answer instead of
    // running, and is refused once the five have failed.
    let t = Throttle::default();
    let held: Vec<_> = futures_util::future::join_all(
        (0..PER_ACCOUNT_AND_ADDRESS).map(|_| t.begin(Account::Client, "app", ip(1))),
    )
    .await
    .into_iter()
    .map(|a| a.expect("allowed"))
    .collect();
    let sixth = t.begin(Account::Client, "app", ip(1));
    tokio::pin!(sixth);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(
        std::future::Future::poll(sixth.as_mut(), &mut cx).is_pending(),
        "a sixth check ran while five were in flight"
    );
    drop(held);
    assert!(sixth.await.is_err(), "five failures lock the pair");
}

#[tokio::test]
async fn right_secrets_in_parallel_all_pass() {
    let t = Throttle::default();
    let checks = (0..50).map(|_| async {
        let attempt = t.begin(Account::Client, "busy", ip(1)).await?;
        tokio::task::yield_now().await;
        attempt.refund();
        Ok::<(), Denied>(())
    });
    let results = futures_util::future::join_all(checks).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

#[tokio::test]
async fn many_addresses_meet_the_loose_account_limit() {
    let t = Throttle::default();
    let mut n = 0;
    'outer: for a in 0..=255u8 {
        for _ in 0..PER_ACCOUNT_AND_ADDRESS {
            match t.begin(Account::User, "alice", ip(a)).await {
                Ok(attempt) => drop(attempt),
                Err(_) => break 'outer,
            }
            n += 1;
        }
    }
    assert_eq!(n, PER_ACCOUNT);
    assert!(t.begin(Account::User, "alice", ip(254)).await.is_err());
}

#[tokio::test]
async fn an_address_over_all_accounts_is_limited() {
    let t = Throttle::default();
    for i in 0..PER_ADDRESS {
        fail(&t, Account::User, &format!("u{i}"), ip(9)).await;
    }
    assert!(t.begin(Account::User, "fresh", ip(9)).await.is_err());
}

#[tokio::test]
async fn a_refused_attempt_counts_nothing() {
    let t = Throttle::default();
    for i in 0..PER_ADDRESS {
        fail(&t, Account::User, &format!("u{i}"), ip(7)).await;
    }
    // Refused by the address key: the pair and account keys taken before it are given
    // back, so carol's own counters are untouched.
    assert!(t.begin(Account::User, "carol", ip(7)).await.is_err());
    let carol = |t: &Throttle| match &t.counters {
        Counters::Local(local) => local.counts(&Key::Account(Account::User, "carol".into())),
        Counters::Shared(_) => None,
    };
    assert_eq!(carol(&t), Some((0, 0)));
    fail(&t, Account::User, "carol", ip(8)).await;
    assert_eq!(carol(&t), Some((1, 0)));
}

#[tokio::test]
async fn parked_requests_per_address_are_bounded() {
    let t = Throttle::default();
    for _ in 0..PENDING_PER_ADDRESS {
        t.begin_pending(ip(3)).await.expect("allowed");
    }
    assert!(t.begin_pending(ip(3)).await.is_err());
    assert!(t.begin_pending(ip(4)).await.is_ok());
    // Separate from guessing: alice may still sign in from that address.
    assert!(t.refused(Account::User, "alice", ip(3)).await.is_ok());
}

#[test]
fn ipv6_addresses_of_one_prefix_share_counters() {
    let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
    let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
    assert_eq!(bucket(a), bucket(b));
    let mapped: IpAddr = "::ffff:10.0.0.1".parse().expect("ip");
    assert_eq!(bucket(mapped), ip(1));
}

#[tokio::test]
async fn stale_windows_are_swept_and_the_map_stays_bounded() {
    let t = Throttle::default();
    // Successful checks leave empty windows behind; sweeps clear them.
    for i in 0..SWEEP_ABOVE as u32 {
        t.begin(
            Account::User,
            &format!("u{i}"),
            IpAddr::from(i.to_be_bytes()),
        )
        .await
        .expect("ok")
        .refund();
    }
    assert!(
        t.tracked() <= SWEEP_ABOVE + 3,
        "tracked {} keys, sweep threshold {SWEEP_ABOVE}",
        t.tracked()
    );
}

#[test]
fn every_counter_has_a_name_of_its_own_in_the_store() {
    let v4 = ip(1);
    let v6 = bucket("2001:db8::1".parse().expect("ip"));
    let keys = [
        Key::Pair(Account::User, "alice".into(), v4),
        Key::Pair(Account::Client, "alice".into(), v4),
        Key::Pair(Account::User, "1:alice".into(), v6),
        Key::Pair(Account::User, "alice".into(), v6),
        Key::Account(Account::User, "alice".into()),
        Key::Account(Account::Client, "alice".into()),
        Key::Account(Account::User, "[10.0.0.1]:alice".into()),
        Key::Address(v4),
        Key::Address(v6),
        Key::Pending(v4),
    ];
    let names: std::collections::HashSet<String> = keys.iter().map(Key::subject).collect();
    assert_eq!(names.len(), keys.len(), "{names:?}");
    assert_eq!(keys[0].subject(), "pair:u:[10.0.0.1]:alice");
}
