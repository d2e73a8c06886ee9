//! The client against a keybound AS and a protected API started in the test on loopback, both
//! requiring DPoP nonces: discovery, client credentials, refresh, API calls, one nonce retry
//! each and never a loop; a Bearer answer discarded; key files private.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;

use keybound_client::{ClientAuth, ClientError, DpopClient, generate_key_file, load_key_file};
use keybound_core::{Algorithm, ErrorCode, NonceKeyRing, NonceSecret};
use keybound_resource::{
    KeySource, ResourceConfig, ResourceLayer, ResourceVerifier, VerifiedToken,
};
use keybound_server::{AppState, Config, hash_secret, keys, router, system_clock};
use keybound_store::{MemoryReplayCache, SqliteStore};
use reqwest::Method;

fn temp(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("keybound-client-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An AS (nonces required) with a protected `/api/whoami` (nonces required) on one socket.
async fn start(tag: &str) -> String {
    start_with(tag, "").await
}

/// As [`start`], with more configuration appended (e.g. another `[[clients]]`).
async fn start_with(tag: &str, extra: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let dir = temp(tag);
    let toml = format!(
        "issuer = \"{issuer}\"\ndata_dir = \"{}\"\n[dpop]\nrequire_nonce = true\n[[clients]]\nclient_id = \"app\"\nauth_method = \"client_secret_basic\"\nclient_secret_sha256 = \"{}\"\ngrant_types = [\"client_credentials\", \"refresh_token\"]\nscopes = [\"read\"]\ndpop_bound_access_tokens = true\n",
        dir.display(),
        hash_secret("s3cret")
    ) + extra;
    let settings = Config::from_toml(&toml).unwrap().validate().unwrap();
    let ring = keys::load_or_create(&dir, settings.signing_alg).unwrap();
    let store = SqliteStore::open(&dir.join("keybound.db")).await.unwrap();
    let replay = Arc::new(MemoryReplayCache::new(10_000));
    let state = AppState::new(
        settings,
        ring,
        replay.clone(),
        Arc::new(store),
        system_clock(),
    );
    let rs_ring = NonceKeyRing::new(&issuer, &NonceSecret::new(&[9; 32]).unwrap(), None);
    let config = ResourceConfig::new(&issuer, state.audience(), &issuer).nonces(rs_ring, true);
    let verifier =
        ResourceVerifier::new(config, KeySource::Static(state.key_set()), replay).unwrap();
    async fn whoami(token: VerifiedToken) -> String {
        token.claims.client_id.clone()
    }
    let api = axum::Router::new()
        .route("/api/whoami", axum::routing::get(whoami))
        .layer(ResourceLayer::new(Arc::new(verifier)));
    let app = router(Arc::new(state)).merge(api);
    tokio::spawn(async move { axum::serve(listener, app).await });
    issuer
}

fn app_auth() -> ClientAuth {
    ClientAuth::Secret {
        client_id: "app".into(),
        client_secret: "s3cret".into(),
    }
}

#[tokio::test]
async fn client_credentials_refresh_and_calls_with_one_nonce_retry_each() {
    let issuer = start("flow").await;
    let dir = temp("flow-key");
    let key_file = dir.join("client.pem");
    generate_key_file(&key_file, Algorithm::EdDsa).unwrap();
    let client = DpopClient::new(load_key_file(&key_file, None).unwrap()).unwrap();
    let metadata = client.discover(&issuer).await.unwrap();
    assert_eq!(metadata.token_endpoint, format!("{issuer}/token"));

    let token = client
        .client_credentials(&metadata, &app_auth(), Some("read"))
        .await
        .unwrap();
    assert_eq!(token.token_type, "DPoP");
    assert_eq!(client.nonce_retries(), 1, "one retry with the AS's nonce");

    let url = format!("{issuer}/api/whoami");
    let response = client
        .call(Method::GET, &url, &token.access_token, None)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "app");
    assert_eq!(
        client.nonce_retries(),
        2,
        "one retry with the resource's nonce"
    );
    // The nonces are cached per origin: no more retries.
    assert_eq!(
        client
            .call(Method::GET, &url, &token.access_token, None)
            .await
            .unwrap()
            .status(),
        200
    );
    let refreshed = client
        .refresh(
            &metadata,
            &app_auth(),
            token.refresh_token.as_deref().unwrap(),
        )
        .await
        .unwrap();
    assert_ne!(refreshed.refresh_token, token.refresh_token, "rotated");
    assert_eq!(client.nonce_retries(), 2);
    // A refused request is an error naming the server's code, not a retry loop.
    let wrong = ClientAuth::Secret {
        client_id: "app".into(),
        client_secret: "nope".into(),
    };
    match client.client_credentials(&metadata, &wrong, None).await {
        Err(ClientError::Refused {
            status: 401,
            error: ErrorCode::InvalidClient,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(
        !format!("{:?}", wrong).contains("nope"),
        "secrets are redacted in Debug"
    );
}

#[tokio::test]
async fn a_bearer_token_response_is_discarded() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let metadata =
        serde_json::json!({ "issuer": issuer, "token_endpoint": format!("{issuer}/token") });
    let app = axum::Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            axum::routing::get(move || async move { axum::Json(metadata) }),
        )
        .route(
            "/token",
            axum::routing::post(|| async {
                axum::Json(serde_json::json!({"access_token": "plain", "token_type": "Bearer"}))
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let key = keybound_core::SigningKey::generate(
        Algorithm::Es256,
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .unwrap()
    .0;
    let client = DpopClient::new(key).unwrap();
    let metadata = client.discover(&issuer).await.unwrap();
    let result = client
        .client_credentials(&metadata, &app_auth(), None)
        .await;
    assert!(
        matches!(result, Err(ClientError::NotDpopBound(t)) if t == "Bearer"),
        "standards §5 #35"
    );
}

#[test]
fn key_files_are_private_and_never_overwritten() {
    let dir = temp("keys");
    let path = dir.join("k.pem");
    let key = generate_key_file(&path, Algorithm::Es256).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(matches!(
        generate_key_file(&path, Algorithm::Es256),
        Err(ClientError::Key(_))
    ));
    let loaded = load_key_file(&path, None).unwrap();
    assert_eq!(
        loaded.public_jwk().thumbprint(),
        key.public_jwk().thumbprint()
    );
    std::fs::write(dir.join("junk"), b"not a key").unwrap();
    assert!(matches!(
        load_key_file(&dir.join("junk"), None),
        Err(ClientError::Key(_))
    ));
}

#[tokio::test]
async fn an_ordinary_reqwest_client_with_the_middleware() {
    let issuer = start("middleware").await;
    let key = keybound_core::SigningKey::generate(
        Algorithm::Es256,
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .unwrap()
    .0;
    let client = Arc::new(DpopClient::new(key).unwrap());
    let metadata = client.discover(&issuer).await.unwrap();
    let token = client
        .client_credentials(&metadata, &app_auth(), None)
        .await
        .unwrap();
    let middleware =
        keybound_client::DpopMiddleware::new(client.clone(), token.access_token.clone());
    let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(middleware.clone())
        .build();
    let url = format!("{issuer}/api/whoami");
    let before = client.nonce_retries();
    let first = http.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(
        client.nonce_retries(),
        before + 1,
        "one retry with the resource's nonce"
    );
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(client.nonce_retries(), before + 1, "the nonce is reused");
    // A token swapped in through the handle is used from the next request on.
    *middleware.token_handle().write().unwrap() = "not-a-token".into();
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn a_token_session_reuses_then_renews_before_expiry() {
    let issuer = start("session").await;
    let key = keybound_core::SigningKey::generate(
        Algorithm::Es256,
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .unwrap()
    .0;
    let client = Arc::new(DpopClient::new(key).unwrap());
    let metadata = client.discover(&issuer).await.unwrap();
    // Tokens live 300 s: with no margin the token is reused ...
    let session =
        keybound_client::TokenSession::new(client.clone(), metadata.clone(), app_auth(), None)
            .with_refresh_margin(std::time::Duration::ZERO);
    let first = session.access_token().await.unwrap();
    assert_eq!(session.access_token().await.unwrap(), first);
    // ... and with a margin as long as the lifetime it is renewed on every call.
    let eager = keybound_client::TokenSession::new(client, metadata, app_auth(), None)
        .with_refresh_margin(std::time::Duration::from_secs(300));
    let a = eager.access_token().await.unwrap();
    let b = eager.access_token().await.unwrap();
    let c = eager.access_token().await.unwrap();
    assert!(a != b && b != c, "renewed each time");
}

#[tokio::test]
async fn private_key_jwt_client_authentication() {
    let assertion_key = Arc::new(
        keybound_core::SigningKey::generate(
            Algorithm::EdDsa,
            &aws_lc_rs::rand::SystemRandom::new(),
        )
        .unwrap()
        .0,
    );
    let mut jwk: serde_json::Value =
        serde_json::from_str(&assertion_key.public_jwk().to_json()).unwrap();
    jwk["kid"] = serde_json::json!("a1");
    let jwks = serde_json::json!({ "keys": [jwk] }).to_string();
    let extra = format!(
        "[[clients]]\nclient_id = \"signed\"\nauth_method = \"private_key_jwt\"\njwks = '{jwks}'\ndpop_bound_access_tokens = true\n"
    );
    let issuer = start_with("pkjwt", &extra).await;
    let dpop_key = keybound_core::SigningKey::generate(
        Algorithm::Es256,
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .unwrap()
    .0;
    let client = DpopClient::new(dpop_key).unwrap();
    let metadata = client.discover(&issuer).await.unwrap();
    let auth = ClientAuth::PrivateKeyJwt {
        client_id: "signed".into(),
        key: assertion_key.clone(),
        kid: "a1".into(),
    };
    // The AS requires a nonce: the retry carries a fresh assertion, so its jti is not a replay.
    let token = client
        .client_credentials(&metadata, &auth, None)
        .await
        .unwrap();
    assert_eq!(token.token_type, "DPoP");
    assert_eq!(client.nonce_retries(), 1);
    assert_eq!(
        client
            .client_credentials(&metadata, &auth, None)
            .await
            .unwrap()
            .token_type,
        "DPoP"
    );
    // Another key under the same kid is refused.
    let wrong = ClientAuth::PrivateKeyJwt {
        client_id: "signed".into(),
        key: Arc::new(
            keybound_core::SigningKey::generate(
                Algorithm::EdDsa,
                &aws_lc_rs::rand::SystemRandom::new(),
            )
            .unwrap()
            .0,
        ),
        kid: "a1".into(),
    };
    assert!(matches!(
        client.client_credentials(&metadata, &wrong, None).await,
        Err(ClientError::Refused { status: 401, .. })
    ));
    assert!(!format!("{auth:?}").contains("PRIVATE"), "{auth:?}");
}

#[tokio::test]
async fn redirects_are_never_followed_with_credentials() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new()
        .route(
            "/api",
            axum::routing::get(|| async { axum::response::Redirect::temporary("/elsewhere") }),
        )
        .route(
            "/elsewhere",
            axum::routing::get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async { "the token would have leaked here" }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let key = keybound_core::SigningKey::generate(
        Algorithm::Es256,
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .unwrap()
    .0;
    let client = DpopClient::new(key).unwrap();
    let response = client
        .call(Method::GET, &format!("http://{addr}/api"), "a-token", None)
        .await
        .unwrap();
    assert_eq!(response.status(), 307);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the redirect target never saw the token"
    );
}
