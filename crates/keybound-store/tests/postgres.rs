//! The PostgreSQL grant store on a real server: the shared store suite, plus migrations by
//! replicas starting together, schemas, timeouts and failing closed when the database is away.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "postgres")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use common::{Backend, DAY, NOW, grant, token};
use keybound_store::{
    GrantStore, PostgresOptions, PostgresStore, RefreshTokenState, Rotation, StoreError,
};
use sqlx::Connection as _;
use tokio::net::TcpListener;

/// The server to test against, from `KEYBOUND_POSTGRES_URL`. Unset: the test is skipped with a
/// message, except under CI (`CI=true`), where that is a failure.
fn database_url() -> Option<String> {
    match std::env::var("KEYBOUND_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!(
                "KEYBOUND_POSTGRES_URL must be set under CI (e.g. postgres://postgres@127.0.0.1:5432/test)"
            )
        }
        _ => {
            eprintln!(
                "skipped: set KEYBOUND_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run the PostgreSQL tests"
            );
            None
        }
    }
}

/// A schema name no other test (in this process or another) uses.
fn unique_schema() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "kbtest_{}_{nanos}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh schema on the test server, dropped (best effort, even after a panic) with this.
struct PgBackend {
    url: String,
    schema: String,
}

impl PgBackend {
    fn options(&self) -> PostgresOptions {
        PostgresOptions::default().with_schema(self.schema.clone())
    }

    /// A plain connection to the server, in this backend's schema.
    async fn raw(&self) -> sqlx::PgConnection {
        let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SET search_path = \"{}\"",
            self.schema
        )))
        .execute(&mut conn)
        .await
        .unwrap();
        conn
    }
}

impl Backend for PgBackend {
    type Store = PostgresStore;
    const LATEST_VERSION: u32 = 3;

    async fn create() -> Option<Self> {
        Some(Self {
            url: database_url()?,
            schema: unique_schema(),
        })
    }

    async fn try_open(&self) -> Result<PostgresStore, StoreError> {
        PostgresStore::connect(&self.url, &self.options()).await
    }

    async fn schema_version(store: &PostgresStore) -> u32 {
        store.schema_version().await.unwrap()
    }

    async fn close(store: &PostgresStore) {
        store.close().await;
    }

    async fn record_schema_version(&self, version: i64) {
        let mut conn = self.raw().await;
        sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
            .bind(version)
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
}

impl Drop for PgBackend {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        // Drop runs inside the test's runtime: do the async work on a thread of its own.
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                let drop_schema = async {
                    let mut conn = sqlx::PgConnection::connect(&url).await.ok()?;
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
                    )))
                    .execute(&mut conn)
                    .await
                    .ok()?;
                    conn.close().await.ok()
                };
                if tokio::time::timeout(Duration::from_secs(10), drop_schema)
                    .await
                    .ok()
                    .flatten()
                    .is_none()
                {
                    eprintln!("could not drop the test schema {schema}");
                }
            });
        });
        let _ = cleanup.join();
    }
}

common::store_suite!(PgBackend);

/// Many replicas starting at once on a new schema: one migrates, the others wait on the
/// advisory lock and find nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_starting_together_migrate_once() {
    let Some(backend) = PgBackend::create().await else {
        return;
    };
    let backend = Arc::new(backend);
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let backend = Arc::clone(&backend);
            tokio::spawn(async move { backend.try_open().await })
        })
        .collect();
    for task in tasks {
        let store = task.await.unwrap().unwrap();
        assert_eq!(store.schema_version().await.unwrap(), 3);
        store.close().await;
    }
    let mut conn = backend.raw().await;
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM schema_version ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(versions, [1, 2, 3]);
    let mut tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
    )
    .bind(&backend.schema)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    tables.sort();
    assert_eq!(
        tables,
        [
            "authorization_codes",
            "grants",
            "pushed_requests",
            "refresh_tokens",
            "revoked_access_tokens",
            "schema_version",
            "signing_key_ring",
            "signing_keys"
        ]
    );
    conn.close().await.unwrap();
}

#[tokio::test]
async fn stores_on_different_schemas_do_not_see_each_other() {
    let (Some(first), Some(second)) = (PgBackend::create().await, PgBackend::create().await) else {
        return;
    };
    let (a, b) = (first.open().await, second.open().await);
    assert_eq!(a.schema(), Some(first.schema.as_str()));
    let g = grant("g1", DAY);
    a.create_grant(&g, &token(1, &g, DAY)).await.unwrap();
    assert_eq!(
        b.refresh_token_state(&[1; 32], NOW).await.unwrap(),
        RefreshTokenState::Unknown
    );
    // The same ids in the other schema are no conflict.
    b.create_grant(&g, &token(1, &g, DAY)).await.unwrap();
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn invalid_schema_names_are_refused_before_connecting() {
    for schema in [
        "",
        "Keybound",
        "key bound",
        "kb\"; DROP SCHEMA public; --",
        "1kb",
        "pg_kb",
        "kb-test",
        &"k".repeat(64),
    ] {
        let started = Instant::now();
        let err = PostgresStore::connect(
            "postgres://nobody@127.0.0.1:1/none",
            &PostgresOptions::default().with_schema(schema),
        )
        .await
        .unwrap_err();
        let StoreError::Unavailable(message) = err else {
            panic!()
        };
        assert!(message.contains("schema name"), "{schema:?}: {message}");
        assert!(started.elapsed() < Duration::from_millis(100), "{schema:?}");
    }
    // The longest and oddest valid name is fine as far as the name goes (the port is closed).
    let StoreError::Unavailable(message) = PostgresStore::connect(
        "postgres://nobody@127.0.0.1:1/none",
        &PostgresOptions::default()
            .with_schema(format!("_{}", "k9_".repeat(20)) + "zz")
            .with_acquire_timeout(Duration::from_millis(300)),
    )
    .await
    .unwrap_err() else {
        panic!()
    };
    assert!(!message.contains("schema name"), "{message}");
}

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    port
}

#[tokio::test]
async fn a_closed_port_is_unavailable_quickly_and_never_leaks_the_password() {
    let port = closed_port().await;
    let url = format!("postgres://keybound:s3cret-pw@127.0.0.1:{port}/keybound");
    let started = Instant::now();
    let err = PostgresStore::connect(&url, &PostgresOptions::default())
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    let StoreError::Unavailable(message) = &err else {
        panic!("{err:?}")
    };
    assert!(!message.contains("s3cret"), "{message}");
    assert!(!format!("{err:?}").contains("s3cret"));
}

#[tokio::test]
async fn a_server_that_never_answers_is_unavailable_after_the_acquire_timeout() {
    // Accepts TCP connections (the kernel does, into the backlog) but never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let started = Instant::now();
    let err = PostgresStore::connect(
        &format!("postgres://keybound@127.0.0.1:{port}/keybound"),
        &PostgresOptions::default().with_acquire_timeout(Duration::from_millis(500)),
    )
    .await
    .unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    drop(silent);
}

/// A TCP forwarder to the test server that can be cut and restored: a database that goes away.
struct Proxy {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(port: u16, upstream: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            // Dropping the JoinSet (when this task is aborted) aborts every connection.
            while let Ok((mut client, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self { port, task }
    }

    /// Closes the listener and every forwarded connection.
    async fn cut(self) -> u16 {
        self.task.abort();
        let _ = self.task.await;
        self.port
    }
}

/// The test server's address, and the URL rewritten to go through `port` instead.
fn through_port(url: &str, port: u16) -> Option<(std::net::SocketAddr, String)> {
    use std::str::FromStr as _;
    let options = sqlx::postgres::PgConnectOptions::from_str(url).ok()?;
    let host = options.get_host();
    if host.starts_with('/') {
        return None; // a Unix socket: nothing to put a TCP proxy in front of
    }
    let upstream = std::net::ToSocketAddrs::to_socket_addrs(&(host, options.get_port()))
        .ok()?
        .next()?;
    let rewritten = url.replacen(
        &format!("{host}:{}", options.get_port()),
        &format!("127.0.0.1:{port}"),
        1,
    );
    (rewritten != url).then_some((upstream, rewritten))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_whose_database_goes_away_fails_closed_consumes_nothing_and_recovers() {
    let Some(backend) = PgBackend::create().await else {
        return;
    };
    let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let Some((upstream, url)) = through_port(&backend.url, port) else {
        eprintln!("skipped: KEYBOUND_POSTGRES_URL needs an explicit host:port for the proxy");
        return;
    };
    let proxy = Proxy::start(port, upstream).await;
    let options = backend
        .options()
        .with_acquire_timeout(Duration::from_millis(700));
    let store = PostgresStore::connect(&url, &options).await.unwrap();
    let g = grant("g1", 30 * DAY);
    store.create_grant(&g, &token(1, &g, DAY)).await.unwrap();
    store.ping().await.unwrap();

    let port = proxy.cut().await;
    // Every kind of call fails, within the acquire timeout, and none succeeds: the first meets
    // the dead pooled connection, the next ones cannot connect.
    for _ in 0..2 {
        let started = Instant::now();
        let rotation = store
            .rotate_refresh_token(&[1; 32], &token(2, &g, DAY), NOW)
            .await;
        assert!(
            matches!(rotation, Err(StoreError::Unavailable(_))),
            "{rotation:?}"
        );
        assert!(
            matches!(
                store.refresh_token_state(&[1; 32], NOW).await,
                Err(StoreError::Unavailable(_))
            ),
            "state"
        );
        assert!(
            matches!(
                store.is_access_token_revoked("jti", NOW).await,
                Err(StoreError::Unavailable(_))
            ),
            "revocation check"
        );
        assert!(matches!(
            store.ping().await,
            Err(StoreError::Unavailable(_))
        ));
        assert!(
            started.elapsed() < Duration::from_secs(4), // 4 calls, 0.7 s each at most
            "{:?}",
            started.elapsed()
        );
    }

    // Back again: the store reconnects, and the failed rotations consumed nothing.
    let proxy = Proxy::start(port, upstream).await;
    store.ping().await.unwrap();
    assert_eq!(
        store.refresh_token_state(&[1; 32], NOW).await.unwrap(),
        RefreshTokenState::Active(g.clone())
    );
    assert_eq!(
        store
            .rotate_refresh_token(&[1; 32], &token(2, &g, DAY), NOW)
            .await
            .unwrap(),
        Rotation::Rotated(g)
    );
    store.close().await;
    proxy.cut().await;
}

#[tokio::test]
async fn a_row_lock_held_past_the_statement_timeout_is_unavailable() {
    let Some(backend) = PgBackend::create().await else {
        return;
    };
    let store = PostgresStore::connect(
        &backend.url,
        &backend
            .options()
            .with_statement_timeout(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let g = grant("g1", 30 * DAY);
    store.create_grant(&g, &token(1, &g, DAY)).await.unwrap();

    // Another session holds the token's row lock (a stuck replica).
    let mut other = backend.raw().await;
    let mut tx = other.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE")
        .bind(&[1u8; 32][..])
        .execute(&mut *tx)
        .await
        .unwrap();
    let started = Instant::now();
    let rotation = store
        .rotate_refresh_token(&[1; 32], &token(2, &g, DAY), NOW)
        .await;
    let StoreError::Unavailable(message) = rotation.unwrap_err() else {
        panic!()
    };
    assert!(message.contains("statement timeout"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    tx.rollback().await.unwrap();
    other.close().await.unwrap();

    // Nothing was consumed.
    assert_eq!(
        store
            .rotate_refresh_token(&[1; 32], &token(2, &g, DAY), NOW)
            .await
            .unwrap(),
        Rotation::Rotated(g)
    );
    store.close().await;
}

#[tokio::test]
async fn debug_output_names_the_server_but_never_the_password() {
    let Some(backend) = PgBackend::create().await else {
        return;
    };
    // Trust authentication ignores a password, so one can be added to the URL to see where it
    // ends up.
    let with_password = match backend.url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((user, host)) if !user.contains(':') => {
                format!("{scheme}://{user}:s3cret-pw@{host}")
            }
            _ => backend.url.clone(),
        },
        None => backend.url.clone(),
    };
    let Ok(store) = PostgresStore::connect(&with_password, &backend.options()).await else {
        eprintln!("skipped: the server wants a real password");
        return;
    };
    let debug = format!("{store:?}");
    assert!(!debug.contains("s3cret"), "{debug}");
    assert!(debug.contains("postgres://"), "{debug}");
    assert!(debug.contains(&backend.schema), "{debug}");
    store.close().await;
}

fn stored_key(kid: &str) -> keybound_store::StoredSigningKey {
    keybound_store::StoredSigningKey {
        kid: kid.to_owned(),
        alg: "ES256".to_owned(),
        sealed: kid.as_bytes().repeat(3),
        created_at: NOW,
    }
}

fn kids(ring: &keybound_store::StoredKeyRing) -> [&str; 3] {
    [
        ring.current.kid.as_str(),
        ring.next.kid.as_str(),
        ring.previous.kid.as_str(),
    ]
}

/// Replicas starting together on an empty database each generate keys; exactly one set is
/// stored and every replica ends up with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_initialising_keys_together_all_get_the_same_ring() {
    use keybound_store::SigningKeyStore as _;
    let Some(backend) = PgBackend::create().await else {
        return;
    };
    let first = backend.open().await;
    assert_eq!(first.key_ring().await.unwrap(), None, "nothing stored yet");
    let mut stores = vec![first];
    for _ in 0..3 {
        stores.push(backend.open().await);
    }
    let stores: Vec<_> = stores.into_iter().map(Arc::new).collect();
    let tasks: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(i, store)| {
            let store = Arc::clone(store);
            tokio::spawn(async move {
                store
                    .initialize_key_ring(
                        stored_key(&format!("c{i}")),
                        stored_key(&format!("n{i}")),
                        stored_key(&format!("p{i}")),
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut rings = Vec::new();
    for task in tasks {
        rings.push(task.await.unwrap());
    }
    let winner = rings[0].clone();
    assert_eq!(winner.generation, 1);
    let i = &winner.current.kid[1..];
    assert_eq!(
        kids(&winner),
        [format!("c{i}"), format!("n{i}"), format!("p{i}")]
    );
    assert_eq!(
        winner.current.sealed,
        winner.current.kid.as_bytes().repeat(3)
    );
    assert!(rings.iter().all(|ring| *ring == winner), "{rings:#?}");
    assert_eq!(stores[1].key_ring().await.unwrap(), Some(winner));
    for store in &stores {
        store.close().await;
    }
}

/// A rotation shifts every slot and counts a generation; a second rotation from the same
/// generation (another replica's scheduler firing too) changes nothing.
#[tokio::test]
async fn a_key_rotation_shifts_the_slots_once_per_generation() {
    use keybound_store::{KeyRingRotation, SigningKeyStore as _};
    let Some(backend) = PgBackend::create().await else {
        return;
    };
    let store = backend.open().await;
    let later = NOW.saturating_add(DAY);
    let ring = store
        .initialize_key_ring(stored_key("a"), stored_key("b"), stored_key("z"))
        .await
        .unwrap();
    let KeyRingRotation::Rotated(rotated) = store
        .rotate_key_ring(ring.generation, stored_key("c"), later)
        .await
        .unwrap()
    else {
        panic!("the first rotation from generation 1 rotates");
    };
    assert_eq!(rotated.generation, 2);
    assert_eq!(kids(&rotated), ["b", "c", "a"]);
    let again = store
        .rotate_key_ring(ring.generation, stored_key("d"), later)
        .await
        .unwrap();
    assert_eq!(again, KeyRingRotation::Stale(rotated.clone()));
    let other = backend.open().await;
    assert_eq!(other.key_ring().await.unwrap(), Some(rotated));
    store.close().await;
    other.close().await;
}

/// Two replicas rotating from the same generation at the same moment: exactly one rotates.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_key_rotations_on_two_pools_rotate_exactly_once() {
    use keybound_store::{KeyRingRotation, SigningKeyStore as _};
    let Some(backend) = PgBackend::create().await else {
        return;
    };
    let (a, b) = (
        Arc::new(backend.open().await),
        Arc::new(backend.open().await),
    );
    let mut ring = a
        .initialize_key_ring(stored_key("k0"), stored_key("k1"), stored_key("k-1"))
        .await
        .unwrap();
    for round in 0..10u64 {
        let tasks: Vec<_> = [&a, &b]
            .into_iter()
            .enumerate()
            .map(|(i, store)| {
                let store = Arc::clone(store);
                let generation = ring.generation;
                tokio::spawn(async move {
                    let new = stored_key(&format!("r{round}-{i}"));
                    store.rotate_key_ring(generation, new, NOW).await.unwrap()
                })
            })
            .collect();
        let mut rotated = 0;
        for task in tasks {
            match task.await.unwrap() {
                KeyRingRotation::Rotated(_) => rotated += 1,
                KeyRingRotation::Stale(_) => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(rotated, 1, "round {round}");
        let now = a.key_ring().await.unwrap().unwrap();
        assert_eq!(now.generation, ring.generation + 1);
        assert_eq!(now.current.kid, ring.next.kid);
        assert_eq!(now.previous.kid, ring.current.kid);
        ring = now;
    }
    a.close().await;
    b.close().await;
}
