//! The grant store's contract: lifecycle, rotation and reuse, concurrency (through one store and
//! through two, like two replicas), restarts, revocations and purging.

use std::collections::HashSet;
use std::sync::Arc;

use keybound_core::UnixTime;
use keybound_store::{
    Grant, GrantId, GrantStore, RefreshTokenRecord, RefreshTokenState, Rotation, StoreError,
};

use super::{Backend, DAY, NOW, fresh, grant, token};

pub(crate) async fn a_new_grant_has_an_active_first_token<B: Backend>() {
    let Some((_backend, store)) = fresh::<B>().await else {
        return;
    };
    let g = grant("g1", 30 * DAY);
    store.create_grant(&g, &token(1, &g, DAY)).await.unwrap();
    assert_eq!(
        store.refresh_token_state(&[1; 32], NOW).await.unwrap(),
        RefreshTokenState::Active(g.clone())
    );
    assert_eq!(B::schema_version(&store).await, B::LATEST_VERSION);
    store.ping().await.unwrap();
}

pub(crate) async fn all_grant_fields_round_trip<B: Backend>() {
    let Some((_backend, store)) = fresh::<B>().await else {
        return;
    };
    let mut g = grant("g-fields", DAY);
    g.dpop_jkt = None;
    g.cert_x5t = Some("bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2".to_owned());
    g.expires_at = UnixTime::from_secs(u64::MAX); // stored clamped to i64::MAX
    store.create_grant(&g, &token(1, &g, DAY)).await.unwrap();
    let RefreshTokenState::Active(read) = store.refresh_token_state(&[1; 32], NOW).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(read.expires_at, UnixTime::from_secs(i64::MAX as u64));
    assert_eq!(
        Grant {
            expires_at: g.expires_at,
            ..read
        },
        g
    );
}

pub(crate) async fn rotation_uses_the_old_token_and_activates_the_next<B: Backend>() {
    let Some((_backend, store)) = fresh::<B>().await else {
        return;
    };
    let g = grant("g1", 30 * DAY);
    store.create_grant(&g, &token(1, &g, DAY)).await.unwrap();
    let later = NOW.saturating_add(60);
    assert_eq!(
        store
            .rotate_refresh_token(&[1; 32], &token(2, &g, DAY + 60), later)
            .await
            .unwrap(),
        Rotation::Rotated(g.clone())
    );
    assert_eq!(
        store.refresh_token_state(&[1; 32], later).await.unwrap(),
        RefreshTokenState::Used(g.clone())
    );
    assert_eq!(
        store.refresh_token_state(&[2; 32], later).await.unwrap(),
        RefreshTokenState::Active(g.clone())
    );
    // And the next one rotates in turn.
    assert_eq!(
        store
            .rotate_refresh_token(&[2; 32], &token(3, &g, DAY + 120), later)
            .await
            .unwrap(),
        Rotation::Rotated(g.clone())
    );
    assert_eq!(
        store.refresh_token_state(&[3; 32], later).await.unwrap(),
        RefreshTokenState::Active(g)
    );
}

pub(crate) async fn reuse_of_a_rotated_token_revokes_the_grant<B: Backend>() {
    let Some((_backend, store)) = fresh::<B>().await else {
        return;
    };
    let g = grant("g1", 30 * DAY);
    let other = grant("g2", 30 * DAY);
    store.create_grant(&g, &token(1, &g, DAY)).await.unwrap();
    store
        .create_grant(&other, &token(9, &other, DAY))
        .await
        .unwrap();
    assert!(matches!(
        store
            .rotate_refresh_token(&[1; 32], &token(2, &g, DAY), NOW)
            .await
            .unwrap(),
        Rotation::Rotated(_)
    ));

    // The old token again (an attacker, or the client after the attacker): reuse.
    assert_eq!(
        store
            .rotate_refresh_token(&[1; 32], &token(3, &g, DAY), NOW)
            .await
            .unwrap(),
        Rotation::ReuseDetected(g.id.clone())
    );
    // Every token of the grant is now inactive, the current one included; nothing was inserted.
    for hash in [[1; 32], [2; 32]] {
        assert_eq!(
            store.refresh_token_state(&hash, NOW).await.unwrap(),
            RefreshTokenState::Inactive
        );
    }
    assert_eq!(
        store.refresh_token_state(&[3; 32], NOW).await.unwrap(),
        RefreshTokenState::Unknown
    );
    assert_eq!(
        store
            .rotate_refresh_token(&[2; 32], &token(4, &g, DAY), NOW)
            .await
            .unwrap(),
        Rotation::Rejected
    );
    assert_eq!(
        store
            .rotate_refresh_token(&[1; 32], &token(5, &g, DAY), NOW)
            .await
            .unwrap(),
        Rotation::Rejected,
        "reported once"
    );
    // Another grant is untouched.
    assert_eq!(
        store.refresh_token_state(&[9; 32], NOW).await.unwrap(),
        RefreshTokenState::Active(other)
    );
}

pub(crate) async fn an_expired_token_is_rejected_and_inactive<B: Backend>() {
    let Some((_backend, store)) = fresh::<B>().await else {
        return;
    };
    let g = grant("g1", 30 * DAY);
    store.create_grant(&g, &token(1, &g, DAY)).await.unwrap();
    let expiry = NOW.saturating_add(DAY);
    assert_eq!(
        store
            .refresh_token_state(&[1; 32], expiry.saturating_sub(1))
            .await
            .unwrap(),
        RefreshTokenState::Active(g.clone())
    );
    assert_eq!(
        store.refresh_token_state(&[1; 32], expiry).await.unwrap(),
        RefreshTokenState::Inactive
    );
    assert_eq!(
        store
            .rotate_refresh_token(&[1; 32], &token(2, &g, 2 * DAY), expiry)
            .await
            .unwrap(),
        Rotation::Rejected
    );
    assert_eq!(
        store.refresh_token_state(&[2; 32], expiry).await.unwrap(),
        RefreshTokenState::Unknown,
        "next not stored"
    );
    // A used token past its own expiry is merely inactive: presenting it revokes nothing.
    let h = grant("g2", 30 * DAY);
    store.create_grant(&h, &token(3, &h, DAY)).await.unwrap();
    assert!(matches!(
        store
            .rotate_refresh_token(&[3; 32], &token(4, &h, 2 * DAY), NOW)
            .await
            .unwrap(),
        Rotation::Rotated(_)
    ));
    assert_eq!(
        store
            .rotate_refresh_token(&[3; 32], &token(5, &h, 2 * DAY), expiry)
            .await
            .unwrap(),
        Rotation::Rejected
    );
    assert_eq!(
        store.refresh_token_state(&[4; 32], expiry).await.unwrap(),
        RefreshTokenState::Active(h)
    );
}

pub(crate) async fn an_expired_grant_makes_its_tokens_inactive<B: Backend>() {
    let Some((_backend, store)) = fresh::<B>().await else {
        return;
    };
    let g = grant("g1", DAY);
    store
        .create_grant(&g, &token(1, &g, 30 * DAY))
        .await
        .unwrap();
    let end = NOW.saturating_add(DAY);
    assert_eq!(
        store.refresh_token_state(&[1; 32], end).await.unwrap(),
        RefreshTokenState::Inactive
    );
    assert_eq!(
        store
            .rotate_refresh_token(&[1; 32], &token(2, &g, 30 * DAY), end)
            .await
            .unwrap(),
        Rotation::Rejected
    );
}

pub(crate) async fn an_unknown_token_is_unknown_and_rejected<B: Backend>() {
    let Some((_backend, store)) = fresh::<B>().await else {
        return;
    };
    let g = grant("g1", DAY);
    assert_eq!(
        store.refresh_token_state(&[7; 32], NOW).await.unwrap(),
        RefreshTokenState::Unknown
    );
    assert_eq!(
        store
            .rotate_refresh_token(&[7; 32], &token(8, &g, DAY), NOW)
            .await
            .unwrap(),
        Rotation::Rejected
    );
    assert_eq!(
        store.refresh_token_state(&[8; 32], NOW).await.unwrap(),
        RefreshTokenState::Unknown,
        "next not stored"
    );
}

pub(crate) async fn revoking_a_grant_deactivates_all_its_tokens<B: Backend>() {
    let Some((_backend, store)) = fresh::<B>().await else {
        return;
    };
    let g = grant("g1", 30 * DAY);
    store.create_grant(&g, &token(1, &g, DAY)).await.unwrap();
    assert!(matches!(
        store
            .rotate_refresh_token(&[1; 32], &token(2, &g, DAY), NOW)
            .await
            .unwrap(),
        Rotation::Rotated(_)
    ));
    store.revoke_grant(&g.id).await.unwrap();
    store.revoke_grant(&g.id).await.unwrap(); // twice is fine
    store
        .revoke_grant(&GrantId("no-such-grant".to_owned()))
        .await
        .unwrap();
    for hash in [[1; 32], [2; 32]] {
        assert_eq!(
            store.refresh_token_state(&hash, NOW).await.unwrap(),
            RefreshTokenState::Inactive
        );
        assert_eq!(
            store
                .rotate_refresh_token(&hash, &token(3, &g, DAY), NOW)
                .await
                .unwrap(),
            Rotation::Rejected
        );
    }
}

pub(crate) async fn mismatched_or_duplicate_records_fail_without_leaking_hashes_or_changing_anything<
    B: Backend,
>() {
    let Some((_backend, store)) = fresh::<B>().await else {
        return;
    };
    let g = grant("g1", 30 * DAY);
    let other = grant("g2", 30 * DAY);
    // The first token must belong to the grant.
    let err = store
        .create_grant(&g, &token(1, &other, DAY))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)));
    assert_eq!(
        store.refresh_token_state(&[1; 32], NOW).await.unwrap(),
        RefreshTokenState::Unknown
    );

    store.create_grant(&g, &token(1, &g, DAY)).await.unwrap();
    // A duplicate grant id, or a duplicate token hash, fails atomically.
    let StoreError::Unavailable(message) = store
        .create_grant(&g, &token(2, &g, DAY))
        .await
        .unwrap_err()
    else {
        panic!()
    };
    assert!(!message.contains("0202"), "{message}");
    assert_eq!(
        store.refresh_token_state(&[2; 32], NOW).await.unwrap(),
        RefreshTokenState::Unknown,
        "all or nothing"
    );
    let dup = RefreshTokenRecord {
        token_hash: [1; 32],
        grant_id: other.id.clone(),
        expires_at: NOW.saturating_add(DAY),
    };
    let StoreError::Unavailable(message) = store.create_grant(&other, &dup).await.unwrap_err()
    else {
        panic!()
    };
    assert!(
        !message.contains("0101") && !message.contains("[1, 1"),
        "{message}"
    );
    // The failed attempt left no grant behind: creating it now works.
    store
        .create_grant(&other, &token(9, &other, DAY))
        .await
        .unwrap();

    // A `next` for another grant, or one that already exists, fails and consumes nothing.
    assert!(
        store
            .rotate_refresh_token(&[1; 32], &token(2, &other, DAY), NOW)
            .await
            .is_err()
    );
    assert!(
        store
            .rotate_refresh_token(&[1; 32], &token(1, &g, DAY), NOW)
            .await
            .is_err()
    );
    assert_eq!(
        store.refresh_token_state(&[1; 32], NOW).await.unwrap(),
        RefreshTokenState::Active(g)
    );
}

pub(crate) async fn access_token_revocations_last_until_expiry<B: Backend>() {
    let Some((_backend, store)) = fresh::<B>().await else {
        return;
    };
    let expiry = NOW.saturating_add(300);
    assert!(!store.is_access_token_revoked("jti-1", NOW).await.unwrap());
    store.revoke_access_token("jti-1", expiry).await.unwrap();
    assert!(store.is_access_token_revoked("jti-1", NOW).await.unwrap());
    assert!(
        store
            .is_access_token_revoked("jti-1", expiry.saturating_sub(1))
            .await
            .unwrap()
    );
    assert!(
        !store
            .is_access_token_revoked("jti-1", expiry)
            .await
            .unwrap(),
        "expired tokens are not listed"
    );
    assert!(!store.is_access_token_revoked("jti-2", NOW).await.unwrap());
    // Revoking again is an upsert, and never shortens the entry.
    store
        .revoke_access_token("jti-1", NOW.saturating_add(600))
        .await
        .unwrap();
    assert!(
        store
            .is_access_token_revoked("jti-1", expiry)
            .await
            .unwrap()
    );
    store
        .revoke_access_token("jti-1", NOW.saturating_add(10))
        .await
        .unwrap();
    assert!(
        store
            .is_access_token_revoked("jti-1", NOW.saturating_add(599))
            .await
            .unwrap()
    );
}

pub(crate) async fn purge_removes_expired_rows_only<B: Backend>() {
    let Some((_backend, store)) = fresh::<B>().await else {
        return;
    };
    // A long grant with an expired (used) token and a live one.
    let long = grant("long", 30 * DAY);
    store
        .create_grant(&long, &token(1, &long, DAY))
        .await
        .unwrap();
    assert!(matches!(
        store
            .rotate_refresh_token(&[1; 32], &token(2, &long, 10 * DAY), NOW)
            .await
            .unwrap(),
        Rotation::Rotated(_)
    ));
    // A short grant whose token outlives it.
    let short = grant("short", 2 * DAY);
    store
        .create_grant(&short, &token(3, &short, 10 * DAY))
        .await
        .unwrap();
    store
        .revoke_access_token("old", NOW.saturating_add(DAY))
        .await
        .unwrap();
    store
        .revoke_access_token("new", NOW.saturating_add(10 * DAY))
        .await
        .unwrap();

    assert_eq!(
        store.purge_expired(NOW).await.unwrap(),
        0,
        "nothing expired yet"
    );
    let later = NOW.saturating_add(5 * DAY);
    // Token 1 (expired), grant `short` and its token 3, revocation `old`.
    assert_eq!(store.purge_expired(later).await.unwrap(), 4);
    assert_eq!(store.purge_expired(later).await.unwrap(), 0);
    assert_eq!(
        store.refresh_token_state(&[1; 32], later).await.unwrap(),
        RefreshTokenState::Unknown
    );
    assert_eq!(
        store.refresh_token_state(&[3; 32], later).await.unwrap(),
        RefreshTokenState::Unknown
    );
    assert_eq!(
        store.refresh_token_state(&[2; 32], later).await.unwrap(),
        RefreshTokenState::Active(long)
    );
    assert!(store.is_access_token_revoked("new", later).await.unwrap());
    // The revocation entry is gone, but it had expired anyway.
    assert!(!store.is_access_token_revoked("old", NOW).await.unwrap());
}

pub(crate) async fn purge_keeps_used_tokens_until_they_expire<B: Backend>() {
    let Some((_backend, store)) = fresh::<B>().await else {
        return;
    };
    let g = grant("g1", 30 * DAY);
    store.create_grant(&g, &token(1, &g, DAY)).await.unwrap();
    assert!(matches!(
        store
            .rotate_refresh_token(&[1; 32], &token(2, &g, DAY), NOW)
            .await
            .unwrap(),
        Rotation::Rotated(_)
    ));
    assert_eq!(
        store.purge_expired(NOW.saturating_add(60)).await.unwrap(),
        0
    );
    assert_eq!(
        store
            .rotate_refresh_token(&[1; 32], &token(3, &g, DAY), NOW.saturating_add(60))
            .await
            .unwrap(),
        Rotation::ReuseDetected(g.id)
    );
}

/// Presents one token from `tasks` concurrent tasks spread over `stores`; returns the outcomes
/// and checks the invariants that hold whatever the interleaving.
async fn rotate_concurrently<S: GrantStore + 'static>(
    stores: &[Arc<S>],
    tasks: u8,
) -> Vec<Rotation> {
    let g = grant("g-race", 30 * DAY);
    stores[0]
        .create_grant(&g, &token(1, &g, DAY))
        .await
        .unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(usize::from(tasks)));
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let store = Arc::clone(&stores[usize::from(task) % stores.len()]);
            let barrier = Arc::clone(&barrier);
            let next = token(100 + task, &g, DAY);
            tokio::spawn(async move {
                barrier.wait().await;
                (
                    task,
                    store
                        .rotate_refresh_token(&[1; 32], &next, NOW)
                        .await
                        .unwrap(),
                )
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    let mut winners = HashSet::new();
    for handle in handles {
        let (task, outcome) = handle.await.unwrap();
        if matches!(outcome, Rotation::Rotated(_)) {
            assert!(winners.insert(task), "one request rotated twice");
        }
        outcomes.push(outcome);
    }
    let rotated = outcomes
        .iter()
        .filter(|o| matches!(o, Rotation::Rotated(_)))
        .count();
    let reuse = outcomes
        .iter()
        .filter(|o| matches!(o, Rotation::ReuseDetected(_)))
        .count();
    let rejected = outcomes
        .iter()
        .filter(|o| matches!(o, Rotation::Rejected))
        .count();
    assert_eq!(rotated, 1, "{outcomes:?}");
    // The losers ran after the winner: the first saw the token used (reuse, RFC 9700) and
    // revoked the grant, the others found the grant revoked.
    assert_eq!(
        (reuse, rejected),
        (1, usize::from(tasks) - 2),
        "{outcomes:?}"
    );
    // Only the winner's next token was ever stored, and the grant is now revoked.
    for task in 0..tasks {
        let state = stores[0]
            .refresh_token_state(&[100 + task; 32], NOW)
            .await
            .unwrap();
        if winners.contains(&task) {
            assert_eq!(state, RefreshTokenState::Inactive);
        } else {
            assert_eq!(state, RefreshTokenState::Unknown);
        }
    }
    outcomes
}

pub(crate) async fn concurrent_rotations_of_one_token_rotate_exactly_once<B: Backend>() {
    for _ in 0..5 {
        let Some((_backend, store)) = fresh::<B>().await else {
            return;
        };
        rotate_concurrently(&[Arc::new(store)], 16).await;
    }
}

pub(crate) async fn concurrent_rotations_through_two_stores_rotate_exactly_once<B: Backend>() {
    for _ in 0..5 {
        let Some(backend) = B::create().await else {
            return;
        };
        let (first, second) = (backend.open().await, backend.open().await);
        rotate_concurrently(&[Arc::new(first), Arc::new(second)], 12).await;
    }
}

pub(crate) async fn two_stores_opening_a_new_place_at_once_both_work<B: Backend>() {
    let Some(backend) = B::create().await else {
        return;
    };
    let (a, b) = tokio::join!(backend.try_open(), backend.try_open());
    let (a, b) = (a.unwrap(), b.unwrap());
    let g = grant("g1", DAY);
    a.create_grant(&g, &token(1, &g, DAY)).await.unwrap();
    assert_eq!(
        b.refresh_token_state(&[1; 32], NOW).await.unwrap(),
        RefreshTokenState::Active(g)
    );
    assert_eq!(B::schema_version(&a).await, B::LATEST_VERSION);
    assert_eq!(B::schema_version(&b).await, B::LATEST_VERSION);
}

pub(crate) async fn data_survives_a_restart<B: Backend>() {
    let Some(backend) = B::create().await else {
        return;
    };
    let g = grant("g1", 30 * DAY);
    {
        let store = backend.open().await;
        store.create_grant(&g, &token(1, &g, DAY)).await.unwrap();
        assert!(matches!(
            store
                .rotate_refresh_token(&[1; 32], &token(2, &g, DAY), NOW)
                .await
                .unwrap(),
            Rotation::Rotated(_)
        ));
        store
            .revoke_access_token("jti-1", NOW.saturating_add(600))
            .await
            .unwrap();
        B::close(&store).await;
        assert!(
            matches!(store.ping().await, Err(StoreError::Unavailable(_))),
            "closed"
        );
        assert!(
            matches!(
                store
                    .rotate_refresh_token(&[2; 32], &token(3, &g, DAY), NOW)
                    .await,
                Err(StoreError::Unavailable(_))
            ),
            "closed"
        );
    }
    let store = backend.open().await;
    assert_eq!(
        B::schema_version(&store).await,
        B::LATEST_VERSION,
        "not migrated twice"
    );
    assert_eq!(
        store.refresh_token_state(&[1; 32], NOW).await.unwrap(),
        RefreshTokenState::Used(g.clone())
    );
    assert_eq!(
        store.refresh_token_state(&[2; 32], NOW).await.unwrap(),
        RefreshTokenState::Active(g.clone())
    );
    assert!(store.is_access_token_revoked("jti-1", NOW).await.unwrap());
    // Reuse detection works across the restart too.
    assert_eq!(
        store
            .rotate_refresh_token(&[1; 32], &token(3, &g, DAY), NOW)
            .await
            .unwrap(),
        Rotation::ReuseDetected(g.id.clone())
    );
    assert_eq!(
        store.refresh_token_state(&[2; 32], NOW).await.unwrap(),
        RefreshTokenState::Inactive
    );
}

pub(crate) async fn a_newer_schema_is_refused<B: Backend>() {
    let Some(backend) = B::create().await else {
        return;
    };
    let store = backend.open().await;
    B::close(&store).await;
    // Simulate a database written by a later keybound.
    backend.record_schema_version(99).await;
    let StoreError::Unavailable(message) = backend.try_open().await.unwrap_err() else {
        panic!()
    };
    assert!(message.contains("99"), "{message}");
}

/// The old token (an attacker's copy) presented while the client rotates the current one, from
/// two stores at once: whichever runs first, the reuse is detected and the grant ends revoked,
/// the client's new token included.
pub(crate) async fn a_reuse_racing_a_rotation_always_revokes_the_grant<B: Backend>() {
    let Some(backend) = B::create().await else {
        return;
    };
    let stores = [
        Arc::new(backend.open().await),
        Arc::new(backend.open().await),
    ];
    for round in 0..20u8 {
        let g = grant(&format!("g-{round}"), 30 * DAY);
        let [old, current, next] = [3 * round, 3 * round + 1, 3 * round + 2];
        stores[0]
            .create_grant(&g, &token(old, &g, DAY))
            .await
            .unwrap();
        assert!(matches!(
            stores[0]
                .rotate_refresh_token(&[old; 32], &token(current, &g, DAY), NOW)
                .await
                .unwrap(),
            Rotation::Rotated(_)
        ));
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let reuse = {
            let (store, barrier) = (Arc::clone(&stores[0]), Arc::clone(&barrier));
            let attempt = token(250, &g, DAY);
            tokio::spawn(async move {
                barrier.wait().await;
                store.rotate_refresh_token(&[old; 32], &attempt, NOW).await
            })
        };
        let rotation = {
            let (store, barrier) = (Arc::clone(&stores[1]), Arc::clone(&barrier));
            let next = token(next, &g, DAY);
            tokio::spawn(async move {
                barrier.wait().await;
                store.rotate_refresh_token(&[current; 32], &next, NOW).await
            })
        };
        let (reuse, rotation) = (
            reuse.await.unwrap().unwrap(),
            rotation.await.unwrap().unwrap(),
        );
        assert_eq!(reuse, Rotation::ReuseDetected(g.id.clone()), "{rotation:?}");
        assert!(
            matches!(rotation, Rotation::Rotated(_) | Rotation::Rejected),
            "{rotation:?}"
        );
        for hash in [old, current, next] {
            let state = stores[1]
                .refresh_token_state(&[hash; 32], NOW)
                .await
                .unwrap();
            assert!(
                matches!(
                    state,
                    RefreshTokenState::Inactive | RefreshTokenState::Unknown
                ),
                "{hash}: {state:?}"
            );
        }
        // The client's next token exists exactly when its rotation won.
        assert_eq!(
            stores[1]
                .refresh_token_state(&[next; 32], NOW)
                .await
                .unwrap()
                == RefreshTokenState::Inactive,
            matches!(rotation, Rotation::Rotated(_))
        );
    }
}
