//! Gateway mode: verified requests reach the upstream with trustworthy `X-Keybound-*` headers;
//! refused ones never reach it; clients cannot spoof the claim headers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::BodyExt as _;
use keybound_core::access_token::{Audience, Confirmation};
use keybound_core::dpop::ProofBuilder;
use keybound_core::{
    AccessTokenClaims, AccessTokenSigner, Algorithm, KeySet, SigningKey, UnixTime,
};
use keybound_resource::{
    GatewayConfig, KeySource, ResourceConfig, ResourceVerifier, gateway_router,
};
use keybound_store::MemoryReplayCache;
use serde_json::{Value, json};
use tower::ServiceExt as _;

const PUBLIC: &str = "https://api.example.com";

/// An upstream that echoes what it received and counts calls.
async fn upstream(calls: Arc<AtomicUsize>) -> String {
    let app = axum::Router::new().fallback(move |headers: HeaderMap, uri: Uri, body: String| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let headers: serde_json::Map<String, Value> = headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), json!(v.to_str().unwrap_or(""))))
                .collect();
            axum::Json(json!({ "path": uri.to_string(), "headers": headers, "body": body }))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn verified_requests_are_forwarded_with_claims_and_refused_ones_never_arrive() {
    let rng = SystemRandom::new();
    let now = UnixTime::from_secs(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    );
    let signer = AccessTokenSigner::new(
        SigningKey::generate(Algorithm::Es256, &rng).unwrap().0,
        "k1",
    );
    let client = SigningKey::generate(Algorithm::EdDsa, &rng).unwrap().0;
    let claims = AccessTokenClaims {
        iss: "https://as.example.com".into(),
        sub: "alice".into(),
        aud: Audience::One(PUBLIC.into()),
        exp: now.as_secs() + 300,
        iat: now.as_secs(),
        nbf: None,
        jti: "t1".into(),
        client_id: "billing".into(),
        scope: Some("read".into()),
        cnf: Some(Confirmation {
            jkt: Some(client.public_jwk().thumbprint().clone()),
            x5t_s256: None,
        }),
    };
    let token = signer.sign(&claims).unwrap();
    let keys = KeySet::from_jwks_json(
        json!({"keys": [signer.jwks_entry()]})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let verifier = ResourceVerifier::new(
        ResourceConfig::new("https://as.example.com", PUBLIC, PUBLIC),
        KeySource::Static(Arc::new(keys)),
        Arc::new(MemoryReplayCache::new(1000)),
    )
    .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let base = upstream(calls.clone()).await;
    let app = gateway_router(Arc::new(verifier), GatewayConfig::new(&base)).unwrap();

    let url = format!("{PUBLIC}/orders/7?expand=items");
    let proof = ProofBuilder::new("POST", &url, now)
        .access_token(&token)
        .sign(&client, &rng)
        .unwrap();
    let request = Request::post("/orders/7?expand=items")
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", &proof)
        .header("x-keybound-subject", "mallory")
        .header("x-keybound-scope", "admin")
        .header("x-keybound-role", "admin")
        .header("content-type", "text/plain")
        .body(Body::from("hello"))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let echoed: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let h = &echoed["headers"];
    assert_eq!(echoed["path"], "/orders/7?expand=items");
    assert_eq!(echoed["body"], "hello");
    assert_eq!(
        h["x-keybound-subject"], "alice",
        "the verified subject, not the spoofed one"
    );
    assert_eq!(h["x-keybound-scope"], "read");
    assert_eq!(h["x-keybound-client-id"], "billing");
    assert_eq!(h["x-keybound-token-type"], "DPoP");
    assert_eq!(
        h["x-keybound-jkt"],
        client.public_jwk().thumbprint().as_str()
    );
    assert!(
        h.get("x-keybound-role").is_none(),
        "a claim header the gateway does not set is still stripped"
    );
    assert!(
        h.get("authorization").is_none() && h.get("dpop").is_none(),
        "credentials stay at the gateway"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A replay, a stolen token with another key, and no credentials: none reaches the upstream.
    let replay = Request::post("/orders/7?expand=items")
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", &proof)
        .body(Body::from("hello"))
        .unwrap();
    assert_eq!(
        app.clone().oneshot(replay).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let thief = SigningKey::generate(Algorithm::Es256, &rng).unwrap().0;
    let stolen = ProofBuilder::new("GET", &format!("{PUBLIC}/orders"), now)
        .access_token(&token)
        .sign(&thief, &rng)
        .unwrap();
    let request = Request::get("/orders")
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", stolen)
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        app.clone().oneshot(request).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let request = Request::get("/orders").body(Body::empty()).unwrap();
    assert_eq!(
        app.clone().oneshot(request).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "refused requests never reach the upstream"
    );
}
