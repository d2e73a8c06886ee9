//! Signing keys kept in PostgreSQL for replicas: every replica publishes the same JWKS, one
//! rotation reaches them all, tokens signed before it stay verifiable, and the stored keys
//! open only with the right key-encryption key and only in their own row. Needs
//! `KEYBOUND_POSTGRES_URL` (skipped without it, except under CI).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};

use axum::http::StatusCode;
use common::{Harness, SECRET, key, temp_dir};
use keybound_core::{Algorithm, UnixTime};
use keybound_server::keys::{self, KeyEncryptionKeys, KeyError};
use keybound_store::{PostgresOptions, PostgresStore};
use serde_json::Value;
use sqlx::Connection as _;

const KEK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
const OTHER_KEK: &str = "HxwdHh8QERITFBUWFxgZGhsAAQIDBAUGBwgJCgsMDQ4";

fn database_url() -> Option<String> {
    match std::env::var("KEYBOUND_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("KEYBOUND_POSTGRES_URL must be set under CI")
        }
        _ => {
            eprintln!("skipped: set KEYBOUND_POSTGRES_URL to run the shared-key tests");
            None
        }
    }
}

/// A schema of its own on the test server, dropped at the end (even after a failure).
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    fn create() -> Option<Self> {
        static N: AtomicU32 = AtomicU32::new(0);
        Some(Self {
            url: database_url()?,
            name: format!(
                "kb_keys_{}_{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ),
        })
    }

    /// A replica's store: its own pool on the shared schema.
    async fn store(&self) -> PostgresStore {
        let options = PostgresOptions::default().with_schema(self.name.clone());
        PostgresStore::connect(&self.url, &options).await.unwrap()
    }

    /// Runs one statement behind the stores' backs.
    async fn execute(&self, sql: &str) {
        let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
        let sql = format!("SET search_path = \"{}\"; {sql}", self.name);
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&url).await {
                    let sql = format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

fn kek(text: &str) -> KeyEncryptionKeys {
    KeyEncryptionKeys::from_base64url_list(text).unwrap()
}

fn now() -> UnixTime {
    UnixTime::from_secs(common::START)
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

fn header_kid(token: &str) -> String {
    use base64::Engine as _;
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

async fn introspect(h: &Harness, token: &str) -> Value {
    let reply = h
        .post(
            "/introspect",
            Some(("basic", SECRET)),
            &[],
            &[("token", token)],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    reply.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_publish_one_jwks_and_all_follow_one_rotation() {
    let Some(schema) = Schema::create() else {
        return;
    };
    let (store_a, store_b) = (schema.store().await, schema.store().await);
    let kek = kek(KEK);
    // Both replicas start on an empty database at the same moment.
    let (ring_a, ring_b) = tokio::join!(
        keys::load_or_create_in(&store_a, &kek, Algorithm::Es256, now()),
        keys::load_or_create_in(&store_b, &kek, Algorithm::Es256, now()),
    );
    let a = Harness::with_keys(temp_dir("keys-a"), "", ring_a.unwrap()).await;
    let b = Harness::with_keys(temp_dir("keys-b"), "", ring_b.unwrap()).await;
    let before = a.get("/jwks").await.body;
    assert_eq!(kids(&before).len(), 3);
    assert_eq!(b.get("/jwks").await.body, before, "one JWKS");
    assert_eq!(a.state.key_generation(), Some(1));

    let client_key = key(Algorithm::Es256);
    let old_token = b.basic_token(Some(&client_key)).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        header_kid(&old_token),
        kids(&before)[0],
        "signed with current"
    );

    // `keybound keys rotate` against the database, from anywhere.
    let rotated = keys::rotate_in(&store_a, &kek, Algorithm::Es256, now())
        .await
        .unwrap();
    assert_eq!(rotated.generation(), Some(2));
    for h in [&a, &b] {
        let fresh = keys::reload_from(&store_b, &kek, h.state.key_generation())
            .await
            .unwrap()
            .expect("a newer generation");
        h.state.replace_keys(fresh);
        let again = keys::reload_from(&store_b, &kek, h.state.key_generation()).await;
        assert!(again.unwrap().is_none(), "nothing newer");
    }
    let after = a.get("/jwks").await.body;
    assert_eq!(b.get("/jwks").await.body, after, "still one JWKS");
    let (old, new) = (kids(&before), kids(&after));
    assert_eq!(new[0], old[1], "next became current");
    assert_eq!(new[2], old[0], "current became previous");
    assert!(!new.contains(&old[2]), "previous dropped");

    let new_token = a.basic_token(Some(&client_key)).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        header_kid(&new_token),
        new[0],
        "signed with the new current key"
    );
    assert_eq!(introspect(&b, &new_token).await["active"], true);
    assert_eq!(
        introspect(&a, &old_token).await["active"],
        true,
        "a token signed before the rotation verifies with the previous key"
    );
    store_a.close().await;
    store_b.close().await;
}

#[tokio::test]
async fn stored_keys_open_only_with_the_right_key_and_in_their_own_row() {
    let Some(schema) = Schema::create() else {
        return;
    };
    let store = schema.store().await;
    let ring = keys::load_or_create_in(&store, &kek(KEK), Algorithm::Es256, now())
        .await
        .unwrap();
    let current = kids(ring.jwks())[0].clone();

    let wrong = keys::load_or_create_in(&store, &kek(OTHER_KEK), Algorithm::Es256, now()).await;
    assert!(matches!(wrong, Err(KeyError::Sealed { .. })), "{wrong:?}");
    // Retiring the old key-encryption key: `new,old` still opens what `old` sealed.
    let both = kek(&format!("{OTHER_KEK},{KEK}"));
    let reopened = keys::load_or_create_in(&store, &both, Algorithm::Es256, now())
        .await
        .unwrap();
    assert_eq!(reopened.jwks(), ring.jwks());

    // A sealed key copied into another row does not open there.
    schema
        .execute(
            "UPDATE signing_keys SET sealed = (SELECT sealed FROM signing_keys WHERE slot = 'next')
             WHERE slot = 'current'",
        )
        .await;
    match keys::load_or_create_in(&store, &kek(KEK), Algorithm::Es256, now()).await {
        Err(KeyError::Sealed { kid }) => assert_eq!(kid, current),
        other => panic!("{other:?}"),
    }
    store.close().await;
}

#[tokio::test]
async fn an_unreachable_key_store_is_an_error_not_new_keys() {
    let Some(schema) = Schema::create() else {
        return;
    };
    let store = schema.store().await;
    let ring = keys::load_or_create_in(&store, &kek(KEK), Algorithm::Es256, now())
        .await
        .unwrap();
    store.close().await;
    let reload = keys::reload_from(&store, &kek(KEK), ring.generation()).await;
    assert!(matches!(reload, Err(KeyError::Store(_))), "{reload:?}");
    let load = keys::load_or_create_in(&store, &kek(KEK), Algorithm::Es256, now()).await;
    assert!(matches!(load, Err(KeyError::Store(_))), "{load:?}");
}
