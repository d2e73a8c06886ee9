//! An axum API protected by `ResourceLayer`.
//!
//! `cargo run -p keybound-resource --example protected_api` runs a self-contained demonstration
//! (an in-process issuer key, a client key, requests through the router) and exits; CI runs it.
//! `... --example protected_api -- --serve ISSUER PUBLIC_URL` serves on 127.0.0.1:3000 with the
//! keys of a real issuer (e.g. `keybound serve`), discovered from its metadata.

// The example is the caller: it reads the clock and the arguments, and ends on setup failure.
#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use axum::Json;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use keybound_core::access_token::{Audience, Confirmation};
use keybound_core::dpop::ProofBuilder;
use keybound_core::{
    AccessTokenClaims, AccessTokenSigner, Algorithm, KeySet, SigningKey, UnixTime,
};
use keybound_resource::{
    JwksSource, KeySource, ResourceConfig, ResourceLayer, ResourceVerifier, VerifiedToken,
};
use keybound_store::MemoryReplayCache;
use serde_json::{Value, json};
use tower::ServiceExt as _;

async fn orders(token: VerifiedToken) -> Json<Value> {
    Json(
        json!({ "orders": [], "for": token.claims.sub, "bound_to": token.jkt.map(|j| j.as_str().to_owned()) }),
    )
}

async fn refund(token: VerifiedToken) -> Json<Value> {
    Json(json!({ "refunded": true, "by": token.claims.client_id }))
}

/// The API: reading orders needs `orders:read`, refunds need `orders:refund`.
fn app(verifier: Arc<ResourceVerifier>) -> axum::Router {
    let read = axum::Router::new()
        .route("/orders", get(orders))
        .layer(ResourceLayer::new(verifier.clone()).require_scopes(&["orders:read"]));
    let refund = axum::Router::new()
        .route("/orders/refund", axum::routing::post(refund))
        .layer(ResourceLayer::new(verifier).require_scopes(&["orders:refund"]));
    read.merge(refund)
}

fn now() -> UnixTime {
    UnixTime::from_secs(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, issuer, public] = args.as_slice()
        && flag == "--serve"
    {
        let keys = KeySource::Jwks(Box::new(JwksSource::new(issuer).unwrap()));
        let config = ResourceConfig::new(issuer, &format!("{issuer}/api"), public);
        let verifier =
            ResourceVerifier::new(config, keys, Arc::new(MemoryReplayCache::new(1 << 20))).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:3000")
            .await
            .unwrap();
        println!("protected API on 127.0.0.1:3000 (public URL {public}, tokens from {issuer})");
        axum::serve(listener, app(Arc::new(verifier)))
            .await
            .unwrap();
        return;
    }

    // Self-contained: an issuer key, a token bound to the client's key, and three requests.
    let rng = SystemRandom::new();
    let public = "https://shop.example";
    let signer = AccessTokenSigner::new(
        SigningKey::generate(Algorithm::EdDsa, &rng).unwrap().0,
        "as-1",
    );
    let client = SigningKey::generate(Algorithm::Es256, &rng).unwrap().0;
    let claims = AccessTokenClaims {
        iss: "https://as.example".into(),
        sub: "alice".into(),
        aud: Audience::One(public.into()),
        exp: now().as_secs() + 300,
        iat: now().as_secs(),
        nbf: None,
        jti: "at-1".into(),
        client_id: "shop-frontend".into(),
        scope: Some("orders:read".into()),
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
    let config = ResourceConfig::new("https://as.example", public, public);
    let verifier = ResourceVerifier::new(
        config,
        KeySource::Static(Arc::new(keys)),
        Arc::new(MemoryReplayCache::new(1000)),
    )
    .unwrap();
    let app = app(Arc::new(verifier));

    let request = |method: &str, path: &str, key: &SigningKey| {
        let proof = ProofBuilder::new(method, &format!("{public}{path}"), now())
            .access_token(&token)
            .sign(key, &rng)
            .unwrap();
        Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", proof)
            .body(Body::empty())
            .unwrap()
    };
    let show = |label: &str, response: axum::response::Response| {
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        println!(
            "{label}: {} {}",
            response.status(),
            challenge.unwrap_or_default()
        );
        response.status()
    };
    let ok = show(
        "client reads orders",
        app.clone()
            .oneshot(request("GET", "/orders", &client))
            .await
            .unwrap(),
    );
    let thief = SigningKey::generate(Algorithm::Es256, &rng).unwrap().0;
    let stolen = show(
        "thief with the stolen token",
        app.clone()
            .oneshot(request("GET", "/orders", &thief))
            .await
            .unwrap(),
    );
    let scope = show(
        "client refunds without the scope",
        app.clone()
            .oneshot(request("POST", "/orders/refund", &client))
            .await
            .unwrap(),
    );
    assert_eq!(
        (ok.as_u16(), stolen.as_u16(), scope.as_u16()),
        (200, 401, 403)
    );
}
