//! The SQLite grant store on real files: the shared store suite (lifecycle, rotation and reuse,
//! concurrency, restarts, revocations, purging, codes and pushed requests), file permissions and
//! failures to open.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::Backend;
use keybound_store::{SqliteStore, StoreError};

/// A temporary directory holding `keybound.db`.
struct SqliteBackend {
    dir: tempfile::TempDir,
}

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("keybound.db")
}

impl Backend for SqliteBackend {
    type Store = SqliteStore;
    const LATEST_VERSION: u32 = 2;

    async fn create() -> Option<Self> {
        Some(Self {
            dir: tempfile::tempdir().unwrap(),
        })
    }

    async fn try_open(&self) -> Result<SqliteStore, StoreError> {
        SqliteStore::open(&db_path(&self.dir)).await
    }

    async fn schema_version(store: &SqliteStore) -> u32 {
        store.schema_version().await.unwrap()
    }

    async fn close(store: &SqliteStore) {
        store.close().await;
    }

    async fn record_schema_version(&self, version: i64) {
        use sqlx::Connection as _;
        let path = db_path(&self.dir);
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        sqlx::query("INSERT INTO schema_version (version) VALUES (?)")
            .bind(version)
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
}

common::store_suite!(SqliteBackend);

#[cfg(unix)]
#[tokio::test]
async fn a_new_database_file_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let backend = SqliteBackend::create().await.unwrap();
    let _store = backend.open().await;
    let dir = &backend.dir;
    let mode = std::fs::metadata(db_path(dir))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
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
