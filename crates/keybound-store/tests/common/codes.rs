//! The authorization store's contract: codes read without being consumed, redeemed once
//! (also under concurrency, through two stores), a second use revoking what the first issued,
//! expiry, and pushed request URIs taken once.

use std::sync::Arc;

use keybound_store::{
    AuthorizationStore, CodeState, GrantId, GrantStore, Redemption, RefreshTokenState,
};

use super::{Backend, NOW, code, fresh, issued};

pub(crate) async fn a_code_is_read_without_being_consumed_then_redeemed_once<B: Backend>() {
    let Some((_backend, store)) = fresh::<B>().await else {
        return;
    };
    store.put_code(&code(1)).await.unwrap();
    for _ in 0..2 {
        assert!(matches!(
            store.code_state(&[1; 32], NOW).await.unwrap(),
            CodeState::Unused(c) if c == code(1)
        ));
    }
    assert_eq!(
        store
            .redeem_code(&[1; 32], &issued("g1", 10), NOW)
            .await
            .unwrap(),
        Redemption::Redeemed
    );
    assert_eq!(
        store.code_state(&[1; 32], NOW).await.unwrap(),
        CodeState::Used
    );
    assert!(matches!(
        store.refresh_token_state(&[10; 32], NOW).await.unwrap(),
        RefreshTokenState::Active(_)
    ));
}

pub(crate) async fn a_second_use_revokes_the_grant_and_the_access_token_of_the_first<B: Backend>() {
    let Some((_backend, store)) = fresh::<B>().await else {
        return;
    };
    store.put_code(&code(2)).await.unwrap();
    store
        .redeem_code(&[2; 32], &issued("g2", 20), NOW)
        .await
        .unwrap();
    assert_eq!(
        store
            .redeem_code(&[2; 32], &issued("g2-again", 21), NOW)
            .await
            .unwrap(),
        Redemption::Replayed(Some(GrantId("g2".into())))
    );
    assert!(store.is_access_token_revoked("at-20", NOW).await.unwrap());
    assert!(matches!(
        store.refresh_token_state(&[20; 32], NOW).await.unwrap(),
        RefreshTokenState::Inactive
    ));
    // Nothing was created for the second use.
    assert_eq!(
        store.refresh_token_state(&[21; 32], NOW).await.unwrap(),
        RefreshTokenState::Unknown
    );
}

pub(crate) async fn of_concurrent_redemptions_exactly_one_wins<B: Backend>() {
    let Some(backend) = B::create().await else {
        return;
    };
    // Two stores on one place, like two replicas.
    let stores = [
        Arc::new(backend.open().await),
        Arc::new(backend.open().await),
    ];
    stores[0].put_code(&code(3)).await.unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(12));
    let mut tasks = Vec::new();
    for i in 0..12u8 {
        let store = Arc::clone(&stores[usize::from(i) % 2]);
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let outcome = store
                .redeem_code(&[3; 32], &issued(&format!("g3-{i}"), 100 + i), NOW)
                .await
                .unwrap();
            (i, outcome)
        }));
    }
    let mut winners = Vec::new();
    let mut replays = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            (i, Redemption::Redeemed) => winners.push(i),
            (_, Redemption::Replayed(grant)) => replays.push(grant),
            (_, other) => panic!("{other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let winner = winners[0];
    // Every other use ran after the winner's commit, and names the winner's grant.
    let winning_grant = GrantId(format!("g3-{winner}"));
    assert!(
        replays.iter().all(|g| g.as_ref() == Some(&winning_grant)),
        "{replays:?}"
    );
    // ... which they revoked, with the winner's access token; the losers created nothing.
    assert!(matches!(
        stores[1]
            .refresh_token_state(&[100 + winner; 32], NOW)
            .await
            .unwrap(),
        RefreshTokenState::Inactive
    ));
    assert!(
        stores[1]
            .is_access_token_revoked(&format!("at-{}", 100 + winner), NOW)
            .await
            .unwrap()
    );
    for i in (0..12u8).filter(|i| *i != winner) {
        assert_eq!(
            stores[0]
                .refresh_token_state(&[100 + i; 32], NOW)
                .await
                .unwrap(),
            RefreshTokenState::Unknown
        );
    }
}

pub(crate) async fn an_expired_or_unknown_code_is_rejected<B: Backend>() {
    let Some((_backend, store)) = fresh::<B>().await else {
        return;
    };
    store.put_code(&code(4)).await.unwrap();
    let later = NOW.saturating_add(61);
    assert_eq!(
        store.code_state(&[4; 32], later).await.unwrap(),
        CodeState::Unknown
    );
    assert_eq!(
        store
            .redeem_code(&[4; 32], &issued("g4", 40), later)
            .await
            .unwrap(),
        Redemption::Rejected
    );
    assert_eq!(
        store.code_state(&[9; 32], NOW).await.unwrap(),
        CodeState::Unknown
    );
}

pub(crate) async fn a_pushed_request_is_taken_once_by_its_client_before_it_expires<B: Backend>() {
    let Some((_backend, store)) = fresh::<B>().await else {
        return;
    };
    let expires = NOW.saturating_add(60);
    store
        .put_pushed_request(&[5; 32], "spa", "{\"a\":1}", expires)
        .await
        .unwrap();
    assert_eq!(
        store
            .take_pushed_request(&[5; 32], "other", NOW)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .take_pushed_request(&[5; 32], "spa", NOW)
            .await
            .unwrap()
            .as_deref(),
        Some("{\"a\":1}")
    );
    assert_eq!(
        store
            .take_pushed_request(&[5; 32], "spa", NOW)
            .await
            .unwrap(),
        None
    );
    store
        .put_pushed_request(&[6; 32], "spa", "{}", expires)
        .await
        .unwrap();
    assert_eq!(
        store
            .take_pushed_request(&[6; 32], "spa", expires)
            .await
            .unwrap(),
        None
    );
}

pub(crate) async fn revoke_code_issuance_revokes_only_what_a_used_code_issued<B: Backend>() {
    let Some((_backend, store)) = fresh::<B>().await else {
        return;
    };
    // Unknown and unused codes: nothing to revoke, and the unused code stays redeemable.
    assert_eq!(
        store.revoke_code_issuance(&[7; 32], NOW).await.unwrap(),
        None
    );
    store.put_code(&code(7)).await.unwrap();
    assert_eq!(
        store.revoke_code_issuance(&[7; 32], NOW).await.unwrap(),
        None
    );
    assert!(matches!(
        store.code_state(&[7; 32], NOW).await.unwrap(),
        CodeState::Unused(_)
    ));
    store
        .redeem_code(&[7; 32], &issued("g7", 70), NOW)
        .await
        .unwrap();
    assert!(matches!(
        store.refresh_token_state(&[70; 32], NOW).await.unwrap(),
        RefreshTokenState::Active(_)
    ));
    // The used code again: its grant and its access token go, and it can be said twice.
    for _ in 0..2 {
        assert_eq!(
            store.revoke_code_issuance(&[7; 32], NOW).await.unwrap(),
            Some(GrantId("g7".into()))
        );
    }
    assert!(matches!(
        store.refresh_token_state(&[70; 32], NOW).await.unwrap(),
        RefreshTokenState::Inactive
    ));
    assert!(store.is_access_token_revoked("at-70", NOW).await.unwrap());
    assert_eq!(
        store.code_state(&[7; 32], NOW).await.unwrap(),
        CodeState::Used
    );
}

pub(crate) async fn purge_keeps_used_codes_an_hour_and_pushed_requests_until_expiry<B: Backend>() {
    let Some((_backend, store)) = fresh::<B>().await else {
        return;
    };
    store.put_code(&code(8)).await.unwrap();
    store
        .redeem_code(&[8; 32], &issued("g8", 80), NOW)
        .await
        .unwrap();
    store.put_code(&code(9)).await.unwrap(); // never redeemed
    store
        .put_pushed_request(&[5; 32], "spa", "{}", NOW.saturating_add(60))
        .await
        .unwrap();
    let expiry = NOW.saturating_add(60);
    // The pushed request goes at its expiry; the codes stay an hour longer.
    assert_eq!(store.purge_expired(expiry).await.unwrap(), 1);
    assert_eq!(
        store
            .redeem_code(
                &[8; 32],
                &issued("g8-again", 81),
                expiry.saturating_add(3599)
            )
            .await
            .unwrap(),
        Redemption::Replayed(Some(GrantId("g8".into()))),
        "a late second use still revokes"
    );
    // Only the revocation of the first use's access token, which expired at NOW + 300.
    assert_eq!(
        store
            .purge_expired(expiry.saturating_add(3599))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .purge_expired(expiry.saturating_add(3600))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .code_state(&[8; 32], expiry.saturating_add(3600))
            .await
            .unwrap(),
        CodeState::Unknown
    );
}

pub(crate) async fn of_concurrent_takes_of_a_pushed_request_exactly_one_gets_it<B: Backend>() {
    let Some(backend) = B::create().await else {
        return;
    };
    let stores = [
        Arc::new(backend.open().await),
        Arc::new(backend.open().await),
    ];
    for round in 0..5u8 {
        stores[0]
            .put_pushed_request(&[round; 32], "spa", "{\"r\":1}", NOW.saturating_add(60))
            .await
            .unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(12));
        let tasks: Vec<_> = (0..12usize)
            .map(|i| {
                let store = Arc::clone(&stores[i % 2]);
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    store
                        .take_pushed_request(&[round; 32], "spa", NOW)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut taken = 0;
        for task in tasks {
            if let Some(request) = task.await.unwrap() {
                assert_eq!(request, "{\"r\":1}");
                taken += 1;
            }
        }
        assert_eq!(taken, 1);
    }
}
