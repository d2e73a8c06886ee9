//! The whole token endpoint in-process (axum router, client authentication, DPoP proof
//! verification, replay insert, access-token signing, JSON response) versus the cryptography it
//! cannot avoid: one ES256 proof-signature verification plus one ES256 token signature, measured
//! in the same run. Prints `ratio token_request/raw_crypto = X` (issue target: <= 1.3).

// Benchmarks read the clock and panic on setup failure; that is their job.
#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use axum::body::Body;
use axum::http::Request;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use criterion::{BatchSize, Criterion};
use keybound_core::dpop::ProofBuilder;
use keybound_core::{Algorithm, SigningKey, UnixTime};
use keybound_server::{AppState, Config, hash_secret, keys, router};
use keybound_store::{MemoryReplayCache, SqliteStore};
use tower::ServiceExt as _;

const ISSUER: &str = "https://as.example.com";
const TOKEN_URL: &str = "https://as.example.com/token";

struct Setup {
    app: axum::Router,
    key: SigningKey,
    now: UnixTime,
    rng: SystemRandom,
    point: Vec<u8>,
    basic: String,
}

impl Setup {
    async fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("keybound-bench-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let toml = format!(
            "issuer = \"{ISSUER}\"\ndata_dir = \"{}\"\n[[clients]]\nclient_id = \"bench\"\nauth_method = \"client_secret_basic\"\nclient_secret_sha256 = \"{}\"\ngrant_types = [\"client_credentials\"]\ndpop_bound_access_tokens = true\n",
            dir.display(),
            hash_secret("bench-secret")
        );
        let settings = Config::from_toml(&toml).unwrap().validate().unwrap();
        let ring = keys::KeyRing::ephemeral(Algorithm::Es256).unwrap();
        let store = SqliteStore::open(&dir.join("keybound.db")).await.unwrap();
        let now = UnixTime::from_secs(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        );
        let state = AppState::new(
            settings,
            ring,
            Arc::new(MemoryReplayCache::new(4 << 20)),
            Arc::new(store),
            Arc::new(move || now),
        );
        let rng = SystemRandom::new();
        let key = SigningKey::generate(Algorithm::Es256, &rng).unwrap().0;
        let jwk: serde_json::Value = serde_json::from_str(&key.public_jwk().to_json()).unwrap();
        let coord = |m: &str| URL_SAFE_NO_PAD.decode(jwk[m].as_str().unwrap()).unwrap();
        let point = [vec![4u8], coord("x"), coord("y")].concat();
        Self {
            app: router(Arc::new(state)),
            key,
            now,
            rng,
            point,
            basic: format!("Basic {}", STANDARD.encode("bench:bench-secret")),
        }
    }

    fn proof(&self) -> String {
        ProofBuilder::new("POST", TOKEN_URL, self.now)
            .sign(&self.key, &self.rng)
            .unwrap()
    }

    fn request(&self, proof: String) -> Request<Body> {
        Request::post("/token")
            .header("authorization", &self.basic)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("dpop", proof)
            .body(Body::from("grant_type=client_credentials"))
            .unwrap()
    }

    /// The cryptography a token request cannot avoid: verify the proof's ES256 signature,
    /// and sign an access token of the usual size with ES256.
    fn raw_crypto(&self, proof: &str) {
        let dot = proof.rfind('.').unwrap();
        let signature = URL_SAFE_NO_PAD.decode(&proof[dot + 1..]).unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.point)
            .verify(&proof.as_bytes()[..dot], &signature)
            .unwrap();
        black_box(self.key.sign(&proof.as_bytes()[..dot]).unwrap());
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let setup = runtime.block_on(Setup::new());
    let send = |request: Request<Body>| {
        let response = runtime
            .block_on(setup.app.clone().oneshot(request))
            .unwrap();
        assert_eq!(response.status(), 200);
    };
    send(setup.request(setup.proof()));

    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    let mut group = c.benchmark_group("token");
    let fixed = setup.proof();
    group.bench_function("raw_es256_verify_and_sign", |b| {
        b.iter(|| setup.raw_crypto(black_box(&fixed)))
    });
    group.bench_function("token_request_in_process", |b| {
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
            setup.raw_crypto(black_box(p));
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
        "ratio token_request/raw_crypto = {:.2} (request {:.1} us, raw ES256 verify + sign {:.1} us)",
        f.as_secs_f64() / r.as_secs_f64(),
        f.as_secs_f64() * 1e6,
        r.as_secs_f64() * 1e6
    );
}
