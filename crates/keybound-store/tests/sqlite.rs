//! The SQLite grant store on real files: lifecycle, rotation and reuse, concurrency, restarts,
//! revocations, purging and failures to open.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use keybound_core::UnixTime;
use keybound_store::{
    Grant, GrantId, GrantStore, RefreshTokenRecord, RefreshTokenState, Rotation, SqliteStore,
    StoreError,
};

const NOW: UnixTime = UnixTime::from_secs(1_700_000_000);
const DAY: u64 = 86_400;

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("keybound.db")
}

async fn open_new() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&db_path(&dir)).await.unwrap();
    (dir, store)
}

fn grant(id: &str, lifetime: u64) -> Grant {
    Grant {
        id: GrantId(id.to_owned()),
        client_id: "client-1".to_owned(),
        subject: "alice".to_owned(),
        scope: "read write".to_owned(),
        created_at: NOW,
        expires_at: NOW.saturating_add(lifetime),
        dpop_jkt: Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".to_owned()),
        cert_x5t: None,
    }
}

fn token(byte: u8, grant: &Grant, lifetime: u64) -> RefreshTokenRecord {
    RefreshTokenRecord {
        token_hash: [byte; 32],
        grant_id: grant.id.clone(),
        expires_at: NOW.saturating_add(lifetime),
    }
}

#[tokio::test]
async fn a_new_grant_has_an_active_first_token() {
    let (_dir, store) = open_new().await;
    let g = grant("g1", 30 * DAY);
    store.create_grant(&g, &token(1, &g, DAY)).await.unwrap();
    assert_eq!(
        store.refresh_token_state(&[1; 32], NOW).await.unwrap(),
        RefreshTokenState::Active(g.clone())
    );
    assert_eq!(store.schema_version().await.unwrap(), 2);
    store.ping().await.unwrap();
}

#[tokio::test]
async fn all_grant_fields_round_trip() {
    let (_dir, store) = open_new().await;
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

#[tokio::test]
async fn rotation_uses_the_old_token_and_activates_the_next() {
    let (_dir, store) = open_new().await;
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

#[tokio::test]
async fn reuse_of_a_rotated_token_revokes_the_grant() {
    let (_dir, store) = open_new().await;
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

#[tokio::test]
async fn an_expired_token_is_rejected_and_inactive() {
    let (_dir, store) = open_new().await;
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

#[tokio::test]
async fn an_expired_grant_makes_its_tokens_inactive() {
    let (_dir, store) = open_new().await;
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

#[tokio::test]
async fn an_unknown_token_is_unknown_and_rejected() {
    let (_dir, store) = open_new().await;
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

#[tokio::test]
async fn revoking_a_grant_deactivates_all_its_tokens() {
    let (_dir, store) = open_new().await;
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

#[tokio::test]
async fn mismatched_or_duplicate_records_fail_without_leaking_hashes_or_changing_anything() {
    let (_dir, store) = open_new().await;
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

/// Presents one token from `tasks` concurrent tasks spread over `stores`; returns the outcomes
/// and checks the invariants that hold whatever the interleaving.
async fn rotate_concurrently(stores: &[Arc<SqliteStore>], tasks: u8) -> Vec<Rotation> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rotations_of_one_token_rotate_exactly_once() {
    for _ in 0..5 {
        let (_dir, store) = open_new().await;
        rotate_concurrently(&[Arc::new(store)], 12).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rotations_through_two_stores_on_one_file_rotate_exactly_once() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let first = SqliteStore::open(&db_path(&dir)).await.unwrap();
        let second = SqliteStore::open(&db_path(&dir)).await.unwrap();
        rotate_concurrently(&[Arc::new(first), Arc::new(second)], 8).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_opening_a_new_file_at_once_both_work() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let (a, b) = tokio::join!(SqliteStore::open(&path), SqliteStore::open(&path));
    let (a, b) = (a.unwrap(), b.unwrap());
    let g = grant("g1", DAY);
    a.create_grant(&g, &token(1, &g, DAY)).await.unwrap();
    assert_eq!(
        b.refresh_token_state(&[1; 32], NOW).await.unwrap(),
        RefreshTokenState::Active(g)
    );
    assert_eq!(b.schema_version().await.unwrap(), 2);
}

#[tokio::test]
async fn data_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let g = grant("g1", 30 * DAY);
    {
        let store = SqliteStore::open(&path).await.unwrap();
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
        store.close().await;
        assert!(
            matches!(store.ping().await, Err(StoreError::Unavailable(_))),
            "closed"
        );
    }
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        store.schema_version().await.unwrap(),
        2,
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

#[cfg(unix)]
#[tokio::test]
async fn a_new_database_file_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let (dir, _store) = open_new().await;
    let mode = std::fs::metadata(db_path(&dir))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
}

#[tokio::test]
async fn access_token_revocations_last_until_expiry() {
    let (_dir, store) = open_new().await;
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

#[tokio::test]
async fn purge_removes_expired_rows_only() {
    let (_dir, store) = open_new().await;
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

#[tokio::test]
async fn purge_keeps_used_tokens_until_they_expire() {
    let (_dir, store) = open_new().await;
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

#[tokio::test]
async fn opening_in_a_missing_directory_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir
        .path()
        .join("no")
        .join("such")
        .join("dir")
        .join("keybound.db");
    assert!(matches!(
        SqliteStore::open(&path).await,
        Err(StoreError::Unavailable(_))
    ));
}

#[tokio::test]
async fn opening_a_file_that_is_not_a_database_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    std::fs::write(
        &path,
        b"this is certainly not an SQLite database, just some text that is long enough\n"
            .repeat(100),
    )
    .unwrap();
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    // A directory where the file should be.
    let err = SqliteStore::open(dir.path()).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = SqliteStore::open(&path).await.unwrap();
    store.close().await;
    {
        // Simulate a database written by a later keybound.
        use sqlx::Connection as _;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        sqlx::query("INSERT INTO schema_version (version) VALUES (99)")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
    let StoreError::Unavailable(message) = SqliteStore::open(&path).await.unwrap_err() else {
        panic!()
    };
    assert!(message.contains("99"), "{message}");
}
