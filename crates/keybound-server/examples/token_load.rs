//! A short load run of `/token` with DPoP: the AS on a loopback socket in this process, proofs
//! minted before the timed phase, N requests at concurrency C through a keep-alive client.
//! Prints tokens/s, p50/p90/p99/max latency, and the raw cryptography floor measured in the
//! same run (one ES256 proof verification + one ES256 signature per token).
//!
//! Run: `cargo run --release -p keybound-server --example token_load -- [requests] [concurrency]`
//! The client shares the machine's cores with the server, so this understates the server.

// The example is the caller: it reads the clock and the environment, and a failed unwrap ends it.
#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use keybound_core::dpop::ProofBuilder;
use keybound_core::{Algorithm, SigningKey, UnixTime};
use keybound_server::{AppState, Config, hash_secret, keys, router, system_clock};
use keybound_store::{MemoryReplayCache, SqliteStore};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

/// Median per-operation time of `f` over `rounds` blocks of `n`.
fn time_per_op(rounds: usize, n: usize, mut f: impl FnMut()) -> Duration {
    let mut samples: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..n {
                f();
            }
            start.elapsed() / n as u32
        })
        .collect();
    samples.sort();
    samples[rounds / 2]
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let requests = args.first().copied().unwrap_or(5_000);
    let concurrency = args.get(1).copied().unwrap_or(32);

    let dir = std::env::temp_dir().join(format!("keybound-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml = format!(
        "issuer = \"http://127.0.0.1\"\ndata_dir = \"{}\"\n[[clients]]\nclient_id = \"load\"\nauth_method = \"client_secret_basic\"\nclient_secret_sha256 = \"{}\"\ndpop_bound_access_tokens = true\n",
        dir.display(),
        hash_secret("load-secret")
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let toml = toml.replace("http://127.0.0.1", &format!("http://{addr}"));
    let settings = Config::from_toml(&toml).unwrap().validate().unwrap();
    let ring = keys::KeyRing::ephemeral(Algorithm::Es256).unwrap();
    let store = SqliteStore::open(&dir.join("keybound.db")).await.unwrap();
    let state = AppState::new(
        settings,
        ring,
        Arc::new(MemoryReplayCache::new(1 << 20)),
        Arc::new(store),
        system_clock(),
    );
    tokio::spawn(async move { axum::serve(listener, router(Arc::new(state))).await });

    // Proofs are minted before the clock starts, so the generator is not the bottleneck.
    let rng = SystemRandom::new();
    let (key, _) = SigningKey::generate(Algorithm::Es256, &rng).unwrap();
    let url = format!("http://{addr}/token");
    let now = UnixTime::from_secs(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    );
    let proofs: Vec<String> = (0..requests)
        .map(|_| {
            ProofBuilder::new("POST", &url, now)
                .sign(&key, &rng)
                .unwrap()
        })
        .collect();

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let queue = Arc::new(std::sync::Mutex::new(proofs));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, queue, url) = (client.clone(), queue.clone(), url.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            loop {
                let Some(proof) = queue.lock().unwrap().pop() else {
                    break;
                };
                let t = Instant::now();
                let response = client
                    .post(&url)
                    .basic_auth("load", Some("load-secret"))
                    .header("DPoP", proof)
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.bytes().await;
                        latencies.push(t.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.await.unwrap();
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    latencies.sort();

    // The cryptographic floor, measured now: verify one ES256 proof signature, sign one token.
    let message = b"header.payload-of-a-typical-size-for-a-dpop-proof-or-an-access-token";
    let signature = key.sign(message).unwrap();
    let point = {
        let jwk: serde_json::Value = serde_json::from_str(&key.public_jwk().to_json()).unwrap();
        let d = |m: &str| {
            base64::Engine::decode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                jwk[m].as_str().unwrap(),
            )
            .unwrap()
        };
        [vec![4u8], d("x"), d("y")].concat()
    };
    let verify = time_per_op(21, 200, || {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(message, &signature)
            .unwrap();
    });
    let sign = time_per_op(21, 200, || {
        std::hint::black_box(key.sign(message).unwrap());
    });
    let floor = verify + sign;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let rate = latencies.len() as f64 / elapsed.as_secs_f64();
    let ceiling = cores as f64 / floor.as_secs_f64();
    println!(
        "token endpoint, DPoP (ES256 proofs, ES256 tokens), {requests} requests, concurrency {concurrency}, {cores} cores shared by client and server"
    );
    println!(
        "  ok {} errors {errors} in {:.2} s: {rate:.0} tokens/s",
        latencies.len(),
        elapsed.as_secs_f64()
    );
    println!(
        "  latency p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.90).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    println!(
        "  crypto floor per token: verify {:.1} us + sign {:.1} us = {:.1} us -> {ceiling:.0} tokens/s on {cores} cores if crypto were all; measured {:.0}% of that",
        verify.as_secs_f64() * 1e6,
        sign.as_secs_f64() * 1e6,
        floor.as_secs_f64() * 1e6,
        100.0 * rate / ceiling
    );
    let _ = std::fs::remove_dir_all(&dir);
}
