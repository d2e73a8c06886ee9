//! DPoP proofs built by hand for the attack tests, so that any header member or claim can be
//! set to what an attacker would send.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keybound_core::jws::sign_compact;
use keybound_core::{AccessTokenHash, Algorithm, SigningKey};
use serde_json::{Value, json};

/// Seconds since the epoch.
pub fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_else(|e| panic!("clock before 1970: {e}"));
    i64::try_from(secs).unwrap_or_else(|e| panic!("{e}"))
}

/// A fresh ES256 key.
pub fn new_key() -> SigningKey {
    SigningKey::generate(Algorithm::Es256, &SystemRandom::new())
        .unwrap_or_else(|e| panic!("key generation: {e}"))
        .0
}

/// The key's public JWK as JSON.
pub fn jwk(key: &SigningKey) -> Value {
    serde_json::from_str(&key.public_jwk().to_json()).unwrap_or_else(|e| panic!("{e}"))
}

/// The key's RFC 7638 thumbprint (what `cnf.jkt` and `dpop_jkt` hold).
pub fn jkt(key: &SigningKey) -> String {
    key.public_jwk().thumbprint().as_str().to_owned()
}

/// A well-formed proof header for `key`.
pub fn header(key: &SigningKey) -> Value {
    json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": jwk(key) })
}

/// The required claims of a proof created now.
pub fn claims(method: &str, url: &str, jti: &str) -> Value {
    json!({ "jti": jti, "htm": method, "htu": url, "iat": now() })
}

/// Signs `header`.`claims` with `key`, whatever they say.
pub fn sign(header: &Value, claims: &Value, key: &SigningKey) -> String {
    sign_compact(&header.to_string(), &claims.to_string(), key)
        .unwrap_or_else(|e| panic!("signing: {e}"))
}

/// A valid proof for a request without an access token.
pub fn proof(key: &SigningKey, method: &str, url: &str, jti: &str) -> String {
    sign(&header(key), &claims(method, url, jti), key)
}

/// A valid proof for a request carrying `token` (with `ath`).
pub fn resource_proof(key: &SigningKey, method: &str, url: &str, token: &str, jti: &str) -> String {
    let mut claims = claims(method, url, jti);
    claims["ath"] = json!(AccessTokenHash::of(token).as_str());
    sign(&header(key), &claims, key)
}

/// A proof whose signature is `signature` instead of a real one.
pub fn with_signature(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// The payload of a compact JWS (an access token), decoded without any check.
pub fn jwt_payload(token: &str) -> Value {
    let payload = token
        .split('.')
        .nth(1)
        .unwrap_or_else(|| panic!("not a JWS: {token}"));
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap_or_else(|e| panic!("payload: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("payload JSON: {e}"))
}
