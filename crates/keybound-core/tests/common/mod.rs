//! Shared fixtures for the integration tests: the fixed clock, the published test keys, and a
//! forger that signs any header and payload (to build hostile proofs).

#![allow(dead_code)]
// each test file uses a different subset
// Fixtures read testdata/ from disk (the sans-IO rule is for the library, not its tests), and a
// failed unwrap is a failed test.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

use std::path::PathBuf;

use aws_lc_rs::rand::SystemRandom;
use keybound_core::dpop::{NoncePolicy, ProofError, ProofRequest, ProofVerifier, VerifiedProof};
use keybound_core::jws::sign_compact;
use keybound_core::{Algorithm, Htu, SigningKey, UnixTime};
use serde_json::{Value, json};

pub(crate) const NOW: u64 = 1_700_000_000;
pub(crate) const TOKEN_URL: &str = "https://as.example.com/token";
pub(crate) const API_URL: &str = "https://rs.example.com/api/res";
pub(crate) const ACCESS_TOKEN: &str = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";

pub(crate) fn testdata(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// A published private key from testdata/keys.json.
pub(crate) fn published_key(name: &str, alg: Algorithm) -> SigningKey {
    let keys = testdata("keys.json");
    let entry = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == name)
        .unwrap();
    SigningKey::from_private_jwk(alg, entry["jwk"].to_string().as_bytes()).unwrap()
}

pub(crate) fn p256() -> SigningKey {
    published_key("node_oidc_provider_dpop_p256", Algorithm::Es256)
}

pub(crate) fn ed25519() -> SigningKey {
    published_key("rfc8037_ed25519", Algorithm::EdDsa)
}

pub(crate) fn fresh(alg: Algorithm) -> SigningKey {
    SigningKey::generate(alg, &SystemRandom::new()).unwrap().0
}

pub(crate) fn jwk_of(key: &SigningKey) -> Value {
    serde_json::from_str(&key.public_jwk().to_json()).unwrap()
}

/// A valid header for `key`.
pub(crate) fn header(key: &SigningKey) -> Value {
    json!({"typ": "dpop+jwt", "alg": key.algorithm().name(), "jwk": jwk_of(key)})
}

/// Valid claims for a resource request at `API_URL` with `ACCESS_TOKEN`.
pub(crate) fn rs_claims() -> Value {
    json!({
        "jti": "e1j3V_bKic8-LAEB",
        "htm": "GET",
        "htu": API_URL,
        "iat": NOW,
        "ath": keybound_core::AccessTokenHash::of(ACCESS_TOKEN).as_str(),
    })
}

/// Valid claims for a token request at `TOKEN_URL`.
pub(crate) fn as_claims() -> Value {
    json!({"jti": "-BwC3ESc6acc2lTc", "htm": "POST", "htu": TOKEN_URL, "iat": NOW})
}

/// Signs `header` and `claims` as given, with `key`.
pub(crate) fn forge(header: &Value, claims: &Value, key: &SigningKey) -> String {
    sign_compact(&header.to_string(), &claims.to_string(), key).unwrap()
}

pub(crate) fn htu(uri: &str) -> Htu {
    Htu::parse(uri).unwrap()
}

/// Verifies at the RS: GET `API_URL` with `ACCESS_TOKEN`, no nonce, at `NOW`.
pub(crate) fn verify_rs(proof: &str) -> Result<VerifiedProof, ProofError> {
    verify_rs_with(&ProofVerifier::default(), proof, NoncePolicy::NotUsed)
}

pub(crate) fn verify_rs_with(
    verifier: &ProofVerifier,
    proof: &str,
    nonce: NoncePolicy<'_>,
) -> Result<VerifiedProof, ProofError> {
    let htu = htu(API_URL);
    let request = ProofRequest {
        method: "GET",
        htu: &htu,
        now: UnixTime::from_secs(NOW),
        access_token: Some(ACCESS_TOKEN),
        nonce,
    };
    verifier.verify(proof, &request)
}

/// Verifies at the AS: POST `TOKEN_URL`, no access token, at `NOW`.
pub(crate) fn verify_as(proof: &str, nonce: NoncePolicy<'_>) -> Result<VerifiedProof, ProofError> {
    let htu = htu(TOKEN_URL);
    let request = ProofRequest {
        method: "POST",
        htu: &htu,
        now: UnixTime::from_secs(NOW),
        access_token: None,
        nonce,
    };
    ProofVerifier::default().verify(proof, &request)
}

/// Replaces (or with `Value::Null` as `value` and `remove`, deletes) one member.
pub(crate) fn with(mut object: Value, name: &str, value: Value) -> Value {
    object[name] = value;
    object
}

pub(crate) fn without(mut object: Value, name: &str) -> Value {
    object.as_object_mut().unwrap().remove(name);
    object
}
