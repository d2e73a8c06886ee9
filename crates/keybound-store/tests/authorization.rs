//! Authorization codes and pushed requests in the SQLite store: single use under concurrency,
//! a second use revoking what the first issued, expiry, and PAR request URIs used once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use keybound_core::UnixTime;
use keybound_store::{
    AuthorizationCode, AuthorizationStore, CodeState, Grant, GrantId, GrantStore, IssuedFromCode,
    Redemption, RefreshTokenRecord, RefreshTokenState, SqliteStore,
};

const NOW: UnixTime = UnixTime::from_secs(1_700_000_000);

async fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("keybound.db"))
        .await
        .unwrap();
    (dir, store)
}

fn code(hash: u8) -> AuthorizationCode {
    AuthorizationCode {
        code_hash: [hash; 32],
        client_id: "spa".into(),
        subject: "alice".into(),
        scope: "profile".into(),
        redirect_uri: "https://app.example/cb".into(),
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        dpop_jkt: Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into()),
        expires_at: NOW.saturating_add(60),
    }
}

fn issued(grant: &str, refresh: u8) -> IssuedFromCode {
    let grant = Grant {
        id: GrantId(grant.into()),
        client_id: "spa".into(),
        subject: "alice".into(),
        scope: "profile".into(),
        created_at: NOW,
        expires_at: NOW.saturating_add(86_400),
        dpop_jkt: None,
        cert_x5t: None,
    };
    IssuedFromCode {
        refresh: Some(RefreshTokenRecord {
            token_hash: [refresh; 32],
            grant_id: grant.id.clone(),
            expires_at: grant.expires_at,
        }),
        grant,
        access_token_jti: format!("at-{refresh}"),
        access_token_expires_at: NOW.saturating_add(300),
    }
}

#[tokio::test]
async fn a_code_is_read_without_being_consumed_then_redeemed_once() {
    let (_dir, store) = open().await;
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

#[tokio::test]
async fn a_second_use_revokes_the_grant_and_the_access_token_of_the_first() {
    let (_dir, store) = open().await;
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

#[tokio::test]
async fn of_concurrent_redemptions_exactly_one_wins() {
    let (_dir, store) = open().await;
    let store = Arc::new(store);
    store.put_code(&code(3)).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..12u8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .redeem_code(&[3; 32], &issued(&format!("g3-{i}"), 100 + i), NOW)
                .await
                .unwrap()
        }));
    }
    let mut redeemed = 0;
    for task in tasks {
        if task.await.unwrap() == Redemption::Redeemed {
            redeemed += 1;
        }
    }
    assert_eq!(redeemed, 1);
}

#[tokio::test]
async fn an_expired_or_unknown_code_is_rejected() {
    let (_dir, store) = open().await;
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

#[tokio::test]
async fn a_pushed_request_is_taken_once_by_its_client_before_it_expires() {
    let (_dir, store) = open().await;
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
