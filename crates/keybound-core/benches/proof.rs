//! DPoP proof verification and RS access-token verification, each next to the raw signature
//! verification it contains, measured in the same run (DESIGN.md "Performance model").
//!
//! Criterion reports the detailed numbers; afterwards an interleaved A/B measurement prints the
//! ratios (`ratio ... = x.xx`). Timing is printed, never asserted.
//!
//! Run: `cargo bench -p keybound-core --bench proof`

// The fixtures are built from freshly generated keys and must be valid; aborting loudly on a
// broken fixture is the right behaviour for a benchmark.
#![allow(clippy::expect_used)]
// The ratio measurement times itself with `Instant::now`; the ban in clippy.toml is for src/.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ED25519, UnparsedPublicKey, VerificationAlgorithm,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::Criterion;
use keybound_core::access_token::{Audience, Confirmation};
use keybound_core::dpop::{NoncePolicy, ProofBuilder, ProofRequest, ProofVerifier};
use keybound_core::{
    AccessTokenClaims, AccessTokenSigner, AccessTokenVerifier, Algorithm, Htu, KeySet, SigningKey,
    UnixTime,
};
use serde_json::{Value, json};

const NOW: u64 = 1_700_000_000;
const API_URL: &str = "https://rs.example.com/api/res";
const ISSUER: &str = "https://as.example.com";
const AUDIENCE: &str = "https://rs.example.com";

/// A compact JWS split into what a raw verification needs.
struct RawParts {
    signing_input: Vec<u8>,
    signature: Vec<u8>,
}

impl RawParts {
    fn of(jws: &str) -> Self {
        let (input, sig) = jws.rsplit_once('.').expect("a compact JWS");
        Self {
            signing_input: input.as_bytes().to_vec(),
            signature: URL_SAFE_NO_PAD.decode(sig).expect("base64url signature"),
        }
    }
}

/// The public key bytes aws-lc-rs takes: `04 ‖ x ‖ y` for P-256, `x` for Ed25519.
fn public_key_bytes(key: &SigningKey) -> Vec<u8> {
    let jwk: Value = serde_json::from_str(&key.public_jwk().to_json()).expect("JWK JSON");
    let member = |name: &str| {
        URL_SAFE_NO_PAD
            .decode(jwk[name].as_str().expect("JWK member"))
            .expect("base64url member")
    };
    match key.algorithm() {
        Algorithm::EdDsa => member("x"),
        _ => {
            let mut point = vec![0x04];
            point.extend(member("x"));
            point.extend(member("y"));
            point
        }
    }
}

/// One RS-style proof (GET with an access token, so `ath` is checked) and its raw parts.
struct ProofCase {
    label: &'static str,
    algorithm: &'static dyn VerificationAlgorithm,
    point: Vec<u8>,
    raw: RawParts,
    proof: String,
    htu: Htu,
    verifier: ProofVerifier,
}

impl ProofCase {
    fn new(label: &'static str, alg: Algorithm, rng: &SystemRandom) -> Self {
        let (key, _) = SigningKey::generate(alg, rng).expect("key generation");
        let proof = ProofBuilder::new("GET", API_URL, UnixTime::from_secs(NOW))
            .access_token(ACCESS_TOKEN_FOR_PROOFS)
            .sign(&key, rng)
            .expect("signing");
        let algorithm: &'static dyn VerificationAlgorithm = match alg {
            Algorithm::EdDsa => &ED25519,
            _ => &ECDSA_P256_SHA256_FIXED,
        };
        let case = Self {
            label,
            algorithm,
            point: public_key_bytes(&key),
            raw: RawParts::of(&proof),
            proof,
            htu: Htu::parse(API_URL).expect("htu"),
            verifier: ProofVerifier::default(),
        };
        assert!(
            case.raw_verify(),
            "{label}: raw verification of the fixture"
        );
        assert!(
            case.full_verify(),
            "{label}: proof verification of the fixture"
        );
        case
    }

    fn raw_verify(&self) -> bool {
        UnparsedPublicKey::new(self.algorithm, black_box(&self.point))
            .verify(
                black_box(&self.raw.signing_input),
                black_box(&self.raw.signature),
            )
            .is_ok()
    }

    fn full_verify(&self) -> bool {
        let request = ProofRequest {
            method: "GET",
            htu: &self.htu,
            now: UnixTime::from_secs(NOW),
            access_token: Some(ACCESS_TOKEN_FOR_PROOFS),
            nonce: NoncePolicy::NotUsed,
        };
        self.verifier
            .verify(black_box(&self.proof), &request)
            .is_ok()
    }
}

/// The access token the proofs are bound to (its content does not matter to the proof).
const ACCESS_TOKEN_FOR_PROOFS: &str = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";

/// An ES256-signed RFC 9068 access token and the RS's verifier for it.
struct TokenCase {
    point: Vec<u8>,
    raw: RawParts,
    token: String,
    verifier: AccessTokenVerifier,
}

impl TokenCase {
    fn new(rng: &SystemRandom) -> Self {
        let (as_key, _) = SigningKey::generate(Algorithm::Es256, rng).expect("key generation");
        let (client_key, _) = SigningKey::generate(Algorithm::Es256, rng).expect("key generation");
        let point = public_key_bytes(&as_key);
        let signer = AccessTokenSigner::new(as_key, "as-key-1");
        let jwks = json!({ "keys": [signer.jwks_entry()] }).to_string();
        let keys = KeySet::from_jwks_json(jwks.as_bytes()).expect("JWKS");
        let claims = AccessTokenClaims {
            iss: ISSUER.into(),
            sub: "alice".into(),
            aud: Audience::One(AUDIENCE.into()),
            exp: NOW + 300,
            iat: NOW,
            nbf: None,
            jti: "t-1".into(),
            client_id: "client-1".into(),
            scope: Some("read write".into()),
            cnf: Some(Confirmation {
                jkt: Some(client_key.public_jwk().thumbprint().clone()),
                x5t_s256: None,
            }),
        };
        let token = signer.sign(&claims).expect("signing");
        let case = Self {
            point,
            raw: RawParts::of(&token),
            token,
            verifier: AccessTokenVerifier::new(keys, ISSUER, AUDIENCE),
        };
        assert!(case.raw_verify(), "token: raw verification of the fixture");
        assert!(case.full_verify(), "token: verification of the fixture");
        case
    }

    fn raw_verify(&self) -> bool {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, black_box(&self.point))
            .verify(
                black_box(&self.raw.signing_input),
                black_box(&self.raw.signature),
            )
            .is_ok()
    }

    fn full_verify(&self) -> bool {
        self.verifier
            .verify(black_box(&self.token), UnixTime::from_secs(NOW))
            .is_ok()
    }
}

fn criterion_benches(c: &mut Criterion, proofs: &[ProofCase], token: &TokenCase) {
    for case in proofs {
        let mut group = c.benchmark_group(case.label);
        group.bench_function("raw_verify", |b| b.iter(|| case.raw_verify()));
        group.bench_function("proof_verify", |b| b.iter(|| case.full_verify()));
        group.finish();
    }
    let mut group = c.benchmark_group("access_token_es256");
    group.bench_function("raw_verify", |b| b.iter(|| token.raw_verify()));
    group.bench_function("token_verify", |b| b.iter(|| token.full_verify()));
    group.finish();
}

const BLOCKS: usize = 40;
const ITERS_PER_BLOCK: u32 = 200;

fn block(f: &mut impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    for _ in 0..ITERS_PER_BLOCK {
        black_box(f());
    }
    start.elapsed() / ITERS_PER_BLOCK
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    let mid = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2
    } else {
        v[mid]
    }
}

/// Alternates blocks of `a` and `b` (swapping which goes first every block, so slow drift hits
/// both alike) and returns the median per-iteration time of each.
fn interleaved(mut a: impl FnMut() -> bool, mut b: impl FnMut() -> bool) -> (Duration, Duration) {
    block(&mut a);
    block(&mut b);
    let (mut ta, mut tb) = (Vec::with_capacity(BLOCKS), Vec::with_capacity(BLOCKS));
    for i in 0..BLOCKS {
        if i.is_multiple_of(2) {
            ta.push(block(&mut a));
            tb.push(block(&mut b));
        } else {
            tb.push(block(&mut b));
            ta.push(block(&mut a));
        }
    }
    (median(ta), median(tb))
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn print_ratio(label: &str, what: &str, short: &str, full: Duration, raw: Duration) {
    println!(
        "ratio {label} {what}/raw_verify = {:.2} ({short} {:.1} us, raw {:.1} us)",
        full.as_secs_f64() / raw.as_secs_f64(),
        us(full),
        us(raw)
    );
}

fn main() {
    let rng = SystemRandom::new();
    let proofs = [
        ProofCase::new("es256", Algorithm::Es256, &rng),
        ProofCase::new("eddsa", Algorithm::EdDsa, &rng),
    ];
    let token = TokenCase::new(&rng);

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
        .configure_from_args();
    criterion_benches(&mut criterion, &proofs, &token);
    criterion.final_summary();

    // `cargo test --benches` runs this binary without `--bench`: criterion then only checks that
    // each benchmark runs once, and the ratio measurement is skipped too.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    println!(
        "\ninterleaved: {BLOCKS} blocks of {ITERS_PER_BLOCK} iterations each side, median per iteration"
    );
    for case in &proofs {
        let (full, raw) = interleaved(|| case.full_verify(), || case.raw_verify());
        print_ratio(case.label, "proof_verify", "proof", full, raw);
    }
    let (full, raw) = interleaved(|| token.full_verify(), || token.raw_verify());
    print_ratio("es256", "token_verify", "token", full, raw);
}
