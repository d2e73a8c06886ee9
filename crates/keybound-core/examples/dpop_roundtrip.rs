//! A client mints a DPoP proof for a protected request; the resource server verifies it, checks
//! the token's `cnf.jkt`, and gets the replay key it must record. Then a thief with a stolen
//! token and its own key is refused.
//!
//! Run: `cargo run -p keybound-core --example dpop_roundtrip`

// The example is the caller: it reads the clock and passes the time to the sans-IO core.
#![allow(clippy::disallowed_methods)]

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use keybound_core::access_token::{Audience, Confirmation};
use keybound_core::binding::Presented;
use keybound_core::challenge::{Challenge, Scheme};
use keybound_core::dpop::{NoncePolicy, ProofBuilder, ProofRequest, ProofVerifier};
use keybound_core::{
    AccessTokenClaims, AccessTokenSigner, AccessTokenVerifier, Algorithm, ErrorCode, Htu, KeySet,
    PublicJwk, SigningKey, UnixTime,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rng = SystemRandom::new();
    let now = UnixTime::from_secs(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs());

    // The authorization server's signing key and a token bound to the client's DPoP key.
    let (as_key, _) = SigningKey::generate(Algorithm::EdDsa, &rng)?;
    let signer = AccessTokenSigner::new(as_key, "as-key-1");
    let (client_key, _) = SigningKey::generate(Algorithm::Es256, &rng)?;
    let claims = AccessTokenClaims {
        iss: "https://as.example".into(),
        sub: "alice".into(),
        aud: Audience::One("https://api.example".into()),
        exp: now.as_secs() + 300,
        iat: now.as_secs(),
        nbf: None,
        jti: "at-1".into(),
        client_id: "demo-client".into(),
        scope: Some("read".into()),
        cnf: Some(Confirmation {
            jkt: Some(client_key.public_jwk().thumbprint().clone()),
            x5t_s256: None,
        }),
    };
    let token = signer.sign(&claims)?;
    println!(
        "access token bound to jkt {}",
        client_key.public_jwk().thumbprint()
    );

    // The resource server: its JWKS, its public URL, and the shared proof verifier.
    let jwks = serde_json::json!({ "keys": [signer.jwks_entry()] }).to_string();
    let tokens = AccessTokenVerifier::new(
        KeySet::from_jwks_json(jwks.as_bytes())?,
        "https://as.example",
        "https://api.example",
    );
    let proofs = ProofVerifier::default();
    let htu = Htu::parse("https://api.example/orders")?;

    let check = |proof: &str| -> Result<String, String> {
        let claims = tokens.verify(&token, now).map_err(|e| e.to_string())?;
        let request = ProofRequest {
            method: "GET",
            htu: &htu,
            now,
            access_token: Some(&token),
            nonce: NoncePolicy::NotUsed,
        };
        let verified = proofs.verify(proof, &request).map_err(|e| {
            let challenge = Challenge::new(Scheme::DPoP)
                .error(ErrorCode::from(&e))
                .algs(proofs.algorithms());
            format!("{e}; WWW-Authenticate: {challenge}")
        })?;
        let presented = Presented {
            scheme: Scheme::DPoP,
            proof_key: Some(verified.thumbprint()),
            certificate: None,
            accept_unbound: false,
        };
        claims.binding().check(&presented).map_err(|e| {
            let challenge = Challenge::new(Scheme::DPoP)
                .error(ErrorCode::from(&e))
                .description(&e.to_string());
            format!("{e}; WWW-Authenticate: {challenge}")
        })?;
        Ok(format!(
            "accepted {} for {}; record replay key until {}",
            claims.sub,
            claims.client_id,
            verified.replay_key().expires_at()
        ))
    };

    let proof = ProofBuilder::new("GET", "https://api.example/orders?page=2", now)
        .access_token(&token)
        .sign(&client_key, &rng)?;
    let outcome = check(&proof)?;
    println!("legitimate client: {outcome}");

    let (thief_key, _) = SigningKey::generate(Algorithm::Es256, &rng)?;
    let stolen = ProofBuilder::new("GET", "https://api.example/orders", now)
        .access_token(&token)
        .sign(&thief_key, &rng)?;
    let refused = check(&stolen)
        .err()
        .ok_or("the thief's request was accepted")?;
    println!("thief with the stolen token: refused: {refused}");

    let jwk = PublicJwk::from_json(client_key.public_jwk().to_json().as_bytes())?;
    assert_eq!(jwk.thumbprint(), client_key.public_jwk().thumbprint());
    Ok(())
}
