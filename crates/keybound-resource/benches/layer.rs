//! A full protected request through `ResourceLayer` (axum router, cached access token, fresh
//! ES256 proof, replay insert, handler) versus one raw ES256 signature verification of a proof,
//! measured in the same run. Prints `ratio rs_request/raw_verify = X` (design target: <= 1.25).

// Benchmarks read the clock and panic on setup failure; that is their job.
#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use base64::Engine as _;
use criterion::{BatchSize, Criterion};
use keybound_core::access_token::{Audience, Confirmation};
use keybound_core::dpop::ProofBuilder;
use keybound_core::{
    AccessTokenClaims, AccessTokenSigner, Algorithm, KeySet, SigningKey, UnixTime,
};
use keybound_resource::{
    KeySource, ResourceConfig, ResourceLayer, ResourceVerifier, VerifiedToken,
};
use keybound_store::MemoryReplayCache;
use tower::ServiceExt as _;

const URL: &str = "https://rs.example.com/api/res";

struct Setup {
    app: axum::Router,
    token: String,
    key: SigningKey,
    now: UnixTime,
    rng: SystemRandom,
    point: Vec<u8>,
}

impl Setup {
    fn new() -> Self {
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
        let key = SigningKey::generate(Algorithm::Es256, &rng).unwrap().0;
        let claims = AccessTokenClaims {
            iss: "https://as.example.com".into(),
            sub: "alice".into(),
            aud: Audience::One("https://rs.example.com".into()),
            exp: now.as_secs() + 3600,
            iat: now.as_secs(),
            nbf: None,
            jti: "t".into(),
            client_id: "c".into(),
            scope: Some("read".into()),
            cnf: Some(Confirmation {
                jkt: Some(key.public_jwk().thumbprint().clone()),
                x5t_s256: None,
            }),
        };
        let token = signer.sign(&claims).unwrap();
        let jwks = serde_json::json!({"keys": [signer.jwks_entry()]}).to_string();
        let keys = KeySource::Static(Arc::new(KeySet::from_jwks_json(jwks.as_bytes()).unwrap()));
        let config = ResourceConfig::new(
            "https://as.example.com",
            "https://rs.example.com",
            "https://rs.example.com",
        );
        let verifier =
            ResourceVerifier::new(config, keys, Arc::new(MemoryReplayCache::new(4 << 20))).unwrap();
        async fn handler(token: VerifiedToken) -> String {
            token.claims.sub.clone()
        }
        let app = axum::Router::new()
            .route("/api/res", get(handler))
            .layer(ResourceLayer::new(Arc::new(verifier)));
        let jwk: serde_json::Value = serde_json::from_str(&key.public_jwk().to_json()).unwrap();
        let coord = |m: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(jwk[m].as_str().unwrap())
                .unwrap()
        };
        let point = [vec![4u8], coord("x"), coord("y")].concat();
        Self {
            app,
            token,
            key,
            now,
            rng,
            point,
        }
    }

    fn proof(&self) -> String {
        ProofBuilder::new("GET", URL, self.now)
            .access_token(&self.token)
            .sign(&self.key, &self.rng)
            .unwrap()
    }

    fn request(&self, proof: String) -> Request<Body> {
        Request::get(URL)
            .header("authorization", format!("DPoP {}", self.token))
            .header("dpop", proof)
            .body(Body::empty())
            .unwrap()
    }

    /// The raw check the request cannot avoid: the proof's ES256 signature.
    fn raw_verify(&self, proof: &str) {
        let dot = proof.rfind('.').unwrap();
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&proof[dot + 1..])
            .unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.point)
            .verify(&proof.as_bytes()[..dot], &signature)
            .unwrap();
    }
}

fn main() {
    let setup = Setup::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let send = |request: Request<Body>| {
        let response = runtime
            .block_on(setup.app.clone().oneshot(request))
            .unwrap();
        assert_eq!(response.status(), 200);
    };
    // Warm the verified-token cache: from here on the token costs no signature check.
    send(setup.request(setup.proof()));

    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    let mut group = c.benchmark_group("resource");
    let fixed = setup.proof();
    group.bench_function("raw_es256_verify", |b| {
        b.iter(|| setup.raw_verify(black_box(&fixed)))
    });
    group.bench_function("request_through_layer", |b| {
        b.iter_batched(
            || setup.request(setup.proof()),
            |r| send(black_box(r)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
    c.final_summary();

    if !std::env::args().any(|a| a == "--bench") {
        return; // `cargo test --benches` runs each benchmark once; skip the ratio there.
    }
    // Interleaved blocks with pre-minted proofs, so both sides see the same machine state.
    let (blocks, per_block) = (30, 100);
    let mut raw = Vec::new();
    let mut full = Vec::new();
    for _ in 0..blocks {
        let requests: Vec<_> = (0..per_block)
            .map(|_| setup.request(setup.proof()))
            .collect();
        let proofs: Vec<String> = (0..per_block).map(|_| setup.proof()).collect();
        let t = Instant::now();
        for p in &proofs {
            setup.raw_verify(black_box(p));
        }
        raw.push(t.elapsed() / per_block);
        let t = Instant::now();
        for r in requests {
            send(r);
        }
        full.push(t.elapsed() / per_block);
    }
    raw.sort();
    full.sort();
    let (r, f) = (raw[blocks / 2], full[blocks / 2]);
    println!(
        "ratio rs_request/raw_verify = {:.2} (request {:.1} us, raw ES256 verify {:.1} us)",
        f.as_secs_f64() / r.as_secs_f64(),
        f.as_secs_f64() * 1e6,
        r.as_secs_f64() * 1e6
    );
}
