//! Introspection, revocation, restarts, key rotation, configuration errors, store failures,
//! size limits, and the server over a real loopback socket.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use keybound_core::{Algorithm, UnixTime};
use keybound_server::{AppState, Config, keys, router};
use keybound_store::{
    GrantId, GrantStore, RefreshTokenRecord, RefreshTokenState, ReplayCache, Rotation, StoreError,
};

async fn introspect(h: &Harness, token: &str) -> Reply {
    h.post(
        "/introspect",
        Some(("basic", SECRET)),
        &[],
        &[("token", token)],
    )
    .await
}

#[tokio::test]
async fn introspection_shows_binding_and_honours_revocation() {
    let h = Harness::new().await;
    let k = key(Algorithm::Es256);
    let reply = h.basic_token(Some(&k)).await;
    let at = reply.body["access_token"].as_str().unwrap().to_owned();
    let rt = reply.body["refresh_token"].as_str().unwrap().to_owned();
    let info = introspect(&h, &at).await.body;
    assert_eq!(info["active"], true);
    assert_eq!(info["token_type"], "DPoP");
    assert_eq!(info["cnf"]["jkt"], k.public_jwk().thumbprint().as_str());
    assert_eq!(
        (info["client_id"].as_str(), info["scope"].as_str()),
        (Some("basic"), Some("read write"))
    );
    assert_eq!(introspect(&h, &rt).await.body["active"], true);
    assert_eq!(introspect(&h, "garbage").await.body["active"], false);
    // Another client cannot revoke it; the owner can, and introspection then says inactive.
    let other = h
        .post(
            "/revoke",
            Some(("dpop-only", SECRET)),
            &[],
            &[("token", &at)],
        )
        .await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(introspect(&h, &at).await.body["active"], true);
    assert_eq!(
        h.post("/revoke", Some(("basic", SECRET)), &[], &[("token", &at)])
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(introspect(&h, &at).await.body["active"], false);
    assert_eq!(
        h.post("/revoke", Some(("basic", SECRET)), &[], &[("token", &rt)])
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(introspect(&h, &rt).await.body["active"], false);
    // Expired access tokens are inactive.
    let at2 = h.basic_token(None).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    h.advance(400);
    assert_eq!(introspect(&h, &at2).await.body["active"], false);
}

#[tokio::test]
async fn introspection_requires_a_confidential_client() {
    let h = Harness::new().await;
    let reply = h.post("/introspect", None, &[], &[("token", "x")]).await;
    reply.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    let reply = h
        .post(
            "/introspect",
            None,
            &[],
            &[("token", "x"), ("client_id", "public")],
        )
        .await;
    reply.assert_error(StatusCode::BAD_REQUEST, "unauthorized_client");
    let reply = h
        .post(
            "/introspect",
            Some(("basic", "wrong")),
            &[],
            &[("token", "x")],
        )
        .await;
    reply.assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
}

#[tokio::test]
async fn a_restart_keeps_keys_and_refresh_tokens() {
    let dir = temp_dir("restart");
    let first = Harness::in_dir(dir.clone(), "").await;
    let jwks = first.get("/jwks").await.body;
    let rt = first.basic_token(None).await.body["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    first.store.close().await;
    drop(first);
    let second = Harness::in_dir(dir.clone(), "").await;
    assert_eq!(
        second.get("/jwks").await.body,
        jwks,
        "same keys after restart"
    );
    let reply = second
        .post(
            "/token",
            Some(("basic", SECRET)),
            &[],
            &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    for entry in std::fs::read_dir(dir.join("keys")).unwrap() {
        let mode = entry.unwrap().metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

/// Servers starting together on one data directory (a shared volume) race to create the key
/// files: every one of them must end up with the same keys, none with an error.
#[test]
fn servers_starting_together_on_one_key_directory_get_the_same_keys() {
    for round in 0..5 {
        let dir = temp_dir(&format!("race-{round}"));
        let jwks: Vec<String> = std::thread::scope(|scope| {
            let starts: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        keys::load_or_create(&dir, Algorithm::Es256)
                            .unwrap()
                            .jwks()
                            .to_string()
                    })
                })
                .collect();
            starts.into_iter().map(|s| s.join().unwrap()).collect()
        });
        assert!(jwks.iter().all(|j| *j == jwks[0]), "round {round}");
        let leftovers: Vec<_> = std::fs::read_dir(dir.join("keys"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| !name.ends_with(".p8"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }
}

#[tokio::test]
async fn key_rotation_moves_next_to_current_and_keeps_previous_published() {
    let dir = temp_dir("rotate");
    let before = keys::load_or_create(&dir, Algorithm::Es256).unwrap();
    let kids = |ring: &keys::KeyRing| -> Vec<String> {
        ring.jwks()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    let [cur, next, _prev] = <[String; 3]>::try_from(kids(&before)).unwrap();
    let after = keys::rotate(&dir, Algorithm::Es256).unwrap();
    let rotated = kids(&after);
    assert_eq!(rotated[0], next, "next became current");
    assert_eq!(rotated[2], cur, "current became previous");
    assert!(!rotated.contains(&_prev), "the old previous key is gone");
    // A key file others can read is refused at start.
    let file = std::fs::read_dir(dir.join("keys"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        keys::load_or_create(&dir, Algorithm::Es256),
        Err(keys::KeyError::Permissions(_))
    ));
}

#[test]
fn configuration_errors_name_the_key() {
    let cases = [
        ("issuer = \"not a url\"", "issuer"),
        (
            "issuer = \"https://a\"\n[tokens]\nsigning_alg = \"HS256\"",
            "tokens.signing_alg",
        ),
        (
            "issuer = \"https://a\"\n[dpop]\nfuture_leeway_secs = 90",
            "dpop.max_age_secs",
        ),
        (
            "issuer = \"https://a\"\n[dpop]\nalgorithms = [\"none\"]",
            "dpop.algorithms[0]",
        ),
        (
            "issuer = \"https://a\"\n[dpop]\nnonce_secrets = [\"c2hvcnQ\"]",
            "dpop.nonce_secrets[0]",
        ),
        (
            "issuer = \"https://a\"\n[[clients]]\nclient_id = \"c\"\nauth_method = \"client_secret_basic\"",
            "clients[0].client_secret_sha256",
        ),
        (
            "issuer = \"https://a\"\n[[clients]]\nclient_id = \"c\"\nauth_method = \"private_key_jwt\"",
            "clients[0].jwks",
        ),
        (
            "issuer = \"https://a\"\n[[clients]]\nclient_id = \"c\"\nauth_method = \"none\"\ngrant_types = [\"client_credentials\"]",
            "clients[0].grant_types[0]",
        ),
        (
            "issuer = \"https://a\"\n[[clients]]\nclient_id = \"c\"\nauth_method = \"none\"\ngrant_types = [\"authorization_code\"]\nredirect_uris = [\"https://app/cb\"]\nscopes = [\"read\", \"a b\"]",
            "clients[0].scopes[1]",
        ),
        (
            "issuer = \"https://a\"\n[tokens]\ngrant_lifetime_secs = 18446744073709551615",
            "tokens.grant_lifetime_secs",
        ),
        (
            "issuer = \"https://a\"\n[mtls]\nclient_ca_files = [\"/dev/zero\"]",
            "mtls.client_ca_files[0]",
        ),
    ];
    for (text, key) in cases {
        let err = Config::from_toml(text)
            .and_then(Config::validate)
            .unwrap_err();
        assert_eq!(err.key, key, "{text}: {err}");
    }
    let err = Config::from_toml("issuer = \"https://a\"\nsurprise = 1").unwrap_err();
    assert!(err.to_string().contains("surprise"), "{err}");
}

/// A store that is down: every call fails.
#[derive(Debug)]
struct Down;

#[async_trait::async_trait]
impl GrantStore for Down {
    async fn create_grant(
        &self,
        _: &keybound_store::Grant,
        _: &RefreshTokenRecord,
    ) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn refresh_token_state(
        &self,
        _: &[u8; 32],
        _: UnixTime,
    ) -> Result<RefreshTokenState, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn rotate_refresh_token(
        &self,
        _: &[u8; 32],
        _: &RefreshTokenRecord,
        _: UnixTime,
    ) -> Result<Rotation, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn revoke_grant(&self, _: &GrantId) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn revoke_access_token(&self, _: &str, _: UnixTime) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn is_access_token_revoked(&self, _: &str, _: UnixTime) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn purge_expired(&self, _: UnixTime) -> Result<u64, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
}

#[async_trait::async_trait]
impl ReplayCache for Down {
    async fn insert_once(&self, _: [u8; 32], _: UnixTime, _: UnixTime) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
}

#[tokio::test]
async fn when_a_store_is_down_the_answer_is_503_and_nothing_is_issued() {
    let dir = temp_dir("down");
    let key = SigningKeyFile::load(&dir);
    let settings = Config::from_toml(&config_text(&dir, &key, ""))
        .unwrap()
        .validate()
        .unwrap();
    let ring = keys::KeyRing::ephemeral(Algorithm::Es256).unwrap();
    let live = Harness::new().await;
    // The replay cache is down: a DPoP request cannot be checked for replay.
    let state = AppState::new(
        settings,
        ring,
        Arc::new(Down),
        live.store.clone(),
        keybound_server::system_clock(),
    );
    let down = Harness {
        router: router(Arc::new(state)),
        ..live
    };
    let k = common::key(Algorithm::Es256);
    let proof = keybound_core::dpop::ProofBuilder::new(
        "POST",
        TOKEN_URL,
        keybound_server::system_clock()(),
    )
    .sign(&k, &aws_lc_rs::rand::SystemRandom::new())
    .unwrap();
    let reply = down
        .post(
            "/token",
            Some(("basic", SECRET)),
            &[&proof],
            &[("grant_type", "client_credentials")],
        )
        .await;
    reply.assert_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable");
    // Readiness says so, naming the store; liveness does not.
    let ready = down.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        ready.body["failures"].to_string().contains("replay cache"),
        "{:?}",
        ready.body
    );
    assert_eq!(down.get("/healthz").await.status, StatusCode::OK);
    // The grant store is down: refresh and client_credentials-with-refresh refuse too.
    let settings = Config::from_toml(&config_text(&dir, &key, ""))
        .unwrap()
        .validate()
        .unwrap();
    let ring = keys::KeyRing::ephemeral(Algorithm::Es256).unwrap();
    let state = AppState::new(
        settings,
        ring,
        Arc::new(keybound_store::MemoryReplayCache::new(10)),
        Arc::new(Down),
        keybound_server::system_clock(),
    );
    let down = Harness {
        router: router(Arc::new(state)),
        ..down
    };
    let reply = down
        .post(
            "/token",
            Some(("basic", SECRET)),
            &[],
            &[("grant_type", "client_credentials")],
        )
        .await;
    reply.assert_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable");
    let reply = down
        .post(
            "/token",
            Some(("basic", SECRET)),
            &[],
            &[("grant_type", "refresh_token"), ("refresh_token", "x")],
        )
        .await;
    reply.assert_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable");
    let ready = down.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        ready.body["failures"].to_string().contains("grant store"),
        "{:?}",
        ready.body
    );
    assert_eq!(
        Harness::new().await.get("/readyz").await.status,
        StatusCode::OK
    );
}

/// The assertion key of a data dir (as the harness writes it).
struct SigningKeyFile;

impl SigningKeyFile {
    fn load(dir: &std::path::Path) -> keybound_core::SigningKey {
        let (key, pkcs8) = keybound_core::SigningKey::generate(
            Algorithm::Es256,
            &aws_lc_rs::rand::SystemRandom::new(),
        )
        .unwrap();
        std::fs::write(dir.join("assertion-key.p8"), pkcs8.as_slice()).unwrap();
        key
    }
}

#[tokio::test]
async fn oversized_and_malformed_requests_get_clear_errors() {
    let h = Harness::new().await;
    let big = "x".repeat(20 * 1024);
    let reply = h
        .post(
            "/token",
            Some(("basic", SECRET)),
            &[],
            &[("grant_type", "client_credentials"), ("pad", &big)],
        )
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    let reply = h
        .post(
            "/token",
            Some(("basic", SECRET)),
            &[],
            &[
                ("grant_type", "client_credentials"),
                ("grant_type", "client_credentials"),
            ],
        )
        .await;
    reply.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    let request = Request::post("/token")
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .unwrap();
    h.send(request)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    let huge_proof = "a".repeat(9000);
    let reply = h
        .post(
            "/token",
            Some(("basic", SECRET)),
            &[&huge_proof],
            &[("grant_type", "client_credentials")],
        )
        .await;
    reply.assert_error(StatusCode::BAD_REQUEST, "invalid_dpop_proof");
}

#[tokio::test]
async fn over_a_real_loopback_socket() {
    let h = Harness::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = h.router.clone();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let k = key(Algorithm::EdDsa);
    let client = reqwest::Client::new();
    let response = client
        .post(format!("http://{addr}/token"))
        .basic_auth("basic", Some(SECRET))
        .header("DPoP", h.proof(&k))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("dpop-nonce").is_none());
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "DPoP");
    let metrics = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("keybound_tokens_issued_total{token_type=\"DPoP\"} 1"),
        "{metrics}"
    );
    server.abort();
}

#[test]
fn the_example_configuration_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../keybound.example.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let settings = Config::from_toml(&text).unwrap().validate().unwrap();
    assert_eq!(settings.config.clients.len(), 3);
}

/// Guessing a client's secret: past the limit even the right secret gets 429 with
/// `Retry-After` until the window ends, before anything is checked; other clients and the next
/// window are unaffected, and a malformed request does not count.
#[tokio::test]
async fn repeated_wrong_secrets_lock_the_client_out_until_the_window_ends() {
    let h =
        Harness::with_extra("[client_authentication]\nmax_failures = 3\nwindow_secs = 60").await;
    let form = [("grant_type", "client_credentials")];
    let token = |secret: &'static str| h.post("/token", Some(("basic", secret)), &[], &form);
    for _ in 0..3 {
        token("wrong")
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    h.advance(20);
    let locked = token(SECRET).await;
    locked.assert_error(StatusCode::TOO_MANY_REQUESTS, "invalid_client");
    assert_eq!(locked.header("retry-after"), Some("40"));
    let post_form = [
        ("grant_type", "client_credentials"),
        ("client_id", "post"),
        ("client_secret", SECRET),
    ];
    let other = h.post("/token", None, &[], &post_form).await;
    assert_eq!(other.status, StatusCode::OK, "another client is not locked");
    h.advance(40);
    assert_eq!(
        token(SECRET).await.status,
        StatusCode::OK,
        "the window ended"
    );
}
