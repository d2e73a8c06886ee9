//! The resource layer against a real keybound Authorization Server on loopback: a DPoP-bound
//! token obtained over HTTP is accepted through JWKS discovery and through introspection, and a
//! revoked token stops working in introspection mode.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use keybound_core::dpop::ProofBuilder;
use keybound_core::{Algorithm, SigningKey, UnixTime};
use keybound_resource::{
    IntrospectionSource, JwksSource, KeySource, ResourceConfig, ResourceLayer, ResourceVerifier,
    VerifiedToken,
};
use keybound_server::{AppState, Config, hash_secret, keys, router, system_clock};
use keybound_store::{MemoryReplayCache, SqliteStore};
use tower::ServiceExt as _;

const API: &str = "https://api.example.com";

fn now() -> UnixTime {
    UnixTime::from_secs(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
}

/// Starts an AS on 127.0.0.1:0; returns its issuer URL.
async fn start_as() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let dir = std::env::temp_dir().join(format!(
        "keybound-rs-as-{}-{}",
        std::process::id(),
        listener.local_addr().unwrap().port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let toml = format!(
        r#"issuer = "{issuer}"
data_dir = "{dir}"
[tokens]
audience = "{API}"
[[clients]]
client_id = "app"
auth_method = "client_secret_basic"
client_secret_sha256 = "{hash}"
dpop_bound_access_tokens = true
[[clients]]
client_id = "api"
auth_method = "client_secret_basic"
client_secret_sha256 = "{hash}"
"#,
        dir = dir.display(),
        hash = hash_secret("s3cret")
    );
    let settings = Config::from_toml(&toml).unwrap().validate().unwrap();
    let ring = keys::load_or_create(&dir, settings.signing_alg).unwrap();
    let store = SqliteStore::open(&dir.join("keybound.db")).await.unwrap();
    let state = AppState::new(
        settings,
        ring,
        Arc::new(MemoryReplayCache::new(1000)),
        Arc::new(store),
        system_clock(),
    );
    tokio::spawn(async move { axum::serve(listener, router(Arc::new(state))).await });
    issuer
}

async fn whoami(token: VerifiedToken) -> String {
    token.claims.client_id.clone()
}

fn app(keys: KeySource, issuer: &str) -> axum::Router {
    let config = ResourceConfig::new(issuer, API, API);
    let verifier =
        ResourceVerifier::new(config, keys, Arc::new(MemoryReplayCache::new(1000))).unwrap();
    axum::Router::new()
        .route("/whoami", axum::routing::get(whoami))
        .layer(ResourceLayer::new(Arc::new(verifier)))
}

async fn call(app: &axum::Router, token: &str, key: &SigningKey) -> StatusCode {
    let proof = ProofBuilder::new("GET", &format!("{API}/whoami"), now())
        .access_token(token)
        .sign(key, &SystemRandom::new())
        .unwrap();
    let request = Request::get("/whoami")
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", proof)
        .body(Body::empty())
        .unwrap();
    app.clone().oneshot(request).await.unwrap().status()
}

#[tokio::test]
async fn tokens_from_a_real_as_work_through_jwks_and_introspection() {
    let issuer = start_as().await;
    let http = reqwest::Client::new();
    let key = SigningKey::generate(Algorithm::Es256, &SystemRandom::new())
        .unwrap()
        .0;
    let proof = ProofBuilder::new("POST", &format!("{issuer}/token"), now())
        .sign(&key, &SystemRandom::new())
        .unwrap();
    let reply: serde_json::Value = http
        .post(format!("{issuer}/token"))
        .basic_auth("app", Some("s3cret"))
        .header("DPoP", proof)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["token_type"], "DPoP", "{reply}");
    let token = reply["access_token"].as_str().unwrap().to_owned();

    let jwks = app(
        KeySource::Jwks(Box::new(JwksSource::new(&issuer).unwrap())),
        &issuer,
    );
    assert_eq!(call(&jwks, &token, &key).await, StatusCode::OK);
    let introspecting = IntrospectionSource::new(&format!("{issuer}/introspect"), "api", "s3cret")
        .unwrap()
        .with_cache_ttl(Duration::ZERO);
    let introspected = app(KeySource::Introspection(Box::new(introspecting)), &issuer);
    assert_eq!(call(&introspected, &token, &key).await, StatusCode::OK);
    // The binding holds in both modes: another key is refused.
    let thief = SigningKey::generate(Algorithm::Es256, &SystemRandom::new())
        .unwrap()
        .0;
    assert_eq!(call(&jwks, &token, &thief).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        call(&introspected, &token, &thief).await,
        StatusCode::UNAUTHORIZED
    );

    // Revoked at the AS: introspection mode refuses at once (TTL 0); a self-contained JWT is
    // still valid to a JWKS-only resource until it expires (that is what JWTs are).
    let revoked = http
        .post(format!("{issuer}/revoke"))
        .basic_auth("app", Some("s3cret"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    assert_eq!(
        call(&introspected, &token, &key).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(call(&jwks, &token, &key).await, StatusCode::OK);
}
