//! DPoP proof verification (RFC 9449 §4.3), the function both the AS and the RS call, on
//! arbitrary compact-JWS text against a fixed request and time.
//!
//! Input: one option byte, then either the proof text or (option bit 0x80) a JOSE header and a
//! claims set separated by `\n`, which the target signs with the fixed Ed25519 client key so
//! that mutated headers and claims get past the signature check.
//!
//! Invariants: `diagnose` (the per-check report of `keybound inspect`) agrees with `verify`: an
//! accepted proof has no failed check, a refused one has a failed check with the verdict's
//! reason; an accepted proof satisfies every rule it was checked for (method, URI, time window,
//! `ath`, nonce policy, allow-listed algorithm, `jti` length, the key in `jwk`); a proof signed
//! by the key in its header with an accepted algorithm never fails on its signature; and
//! verification is deterministic (same replay key twice).

#![no_main]

use keybound_core::diagnose::Status;
use keybound_core::dpop::{IatWindow, NoncePolicy, ProofError, ProofRequest, ProofVerifier};
use keybound_core::jws::sign_compact;
use keybound_core::{AccessTokenHash, Algorithm, Htu, PublicJwk};
use keybound_fuzz::{API_URL, NOW, TOKEN_URL, as_nonce_ring, client_key, credentials};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some((&options, rest)) = data.split_first() else {
        return;
    };
    let Ok(rest) = std::str::from_utf8(rest) else {
        return;
    };
    let signed;
    let proof = if options & 0x80 != 0 {
        let (header, claims) = rest.split_once('\n').unwrap_or((rest, "{}"));
        signed = sign_compact(header, claims, client_key()).expect("Ed25519 signs");
        signed.as_str()
    } else {
        rest
    };

    let credentials = credentials();
    let ring = as_nonce_ring();
    let nonce = match options & 0b11 {
        0 => NoncePolicy::NotUsed,
        1 => NoncePolicy::IfPresent(&ring),
        2 => NoncePolicy::Required(&ring),
        _ => NoncePolicy::Exactly(credentials.get("$NONCE")),
    };
    // At the RS (GET with an access token) or at the AS's token endpoint.
    let at_rs = options & 0b100 != 0;
    let (method, url, access_token) = if at_rs {
        ("GET", API_URL, Some(credentials.get("$AT")))
    } else {
        ("POST", TOKEN_URL, None)
    };
    let htu = Htu::parse(url).expect("fixed URL");
    let request = ProofRequest {
        method,
        htu: &htu,
        now: NOW,
        access_token,
        nonce,
    };
    let verifier = match (options >> 3) & 0b11 {
        0 => ProofVerifier::default(),
        1 => ProofVerifier::new(&Algorithm::ALL, IatWindow::default()),
        2 => ProofVerifier::new(
            &[Algorithm::EdDsa],
            IatWindow::new(300, 59).expect("bounds"),
        ),
        _ => ProofVerifier::new(&[Algorithm::Es256], IatWindow::new(1, 10).expect("bounds")),
    };

    let diagnosis = verifier.diagnose(proof, &request);
    let (last, checks) = diagnosis.checks.split_last().expect("at least the verdict");
    assert_eq!(last.name, "proof.verified");
    match &diagnosis.verdict {
        Ok(verified) => {
            assert_eq!(last.status, Status::Pass);
            if let Some(failed) = checks.iter().find(|c| c.status == Status::Fail) {
                panic!(
                    "verify accepted a proof whose {} check fails: {failed:?}",
                    failed.name
                );
            }
            let header = diagnosis.header.as_ref().expect("a JWS");
            let claims = diagnosis.claims.as_ref().expect("a JWS");
            let Some(Value::Object(jwk)) = header.get("jwk") else {
                panic!("accepted without a jwk object");
            };
            let jwk = PublicJwk::from_map(jwk).expect("accepted with an unusable jwk");
            assert_eq!(
                verified.thumbprint(),
                jwk.thumbprint(),
                "the key is the one in jwk"
            );
            assert_eq!(verified.thumbprint().as_str().len(), 43);
            assert!(verifier.algorithms().contains(&verified.algorithm()));
            assert_eq!(
                header.get("alg").and_then(Value::as_str),
                Some(verified.algorithm().name())
            );
            assert!(!header.contains_key("crit"));
            assert_eq!(claims.get("htm").and_then(Value::as_str), Some(method));
            let claimed = claims.get("htu").and_then(Value::as_str).expect("htu");
            assert_eq!(Htu::parse(claimed).ok().as_ref(), Some(&htu));
            assert!(!verified.jti().is_empty() && verified.jti().len() <= 256);
            let window = verifier.window();
            let iat = verified.issued_at().as_secs();
            assert!(iat + window.max_age() >= NOW.as_secs());
            assert!(iat <= NOW.as_secs() + window.future_leeway());
            assert_eq!(
                verified.replay_key().expires_at().as_secs(),
                iat + window.max_age()
            );
            if let Some(token) = access_token {
                let ath = claims.get("ath").and_then(Value::as_str).expect("ath");
                assert!(AccessTokenHash::of(token).matches(ath));
            }
            match nonce {
                NoncePolicy::Required(ring) => {
                    let n = verified.nonce().expect("a required nonce");
                    assert!(ring.check(n.as_str(), NOW).is_ok());
                }
                NoncePolicy::Exactly(expected) => {
                    assert_eq!(verified.nonce().map(|n| n.as_str()), Some(expected));
                }
                _ => {}
            }
            let again = verifier.verify(proof, &request).expect("deterministic");
            assert_eq!(again.replay_key(), verified.replay_key());
        }
        Err(error) => {
            assert_eq!(last.status, Status::Fail);
            assert!(
                checks
                    .iter()
                    .any(|c| c.status == Status::Fail && c.reason == Some(error.reason())),
                "verify refused with {error:?} but no check says so: {:?}",
                diagnosis.checks
            );
            // Signed by the key in its own header, with an algorithm the verifier accepts for
            // it: the signature check must pass.
            if options & 0x80 != 0
                && let Some(jwk) = &diagnosis.jwk
                && jwk.thumbprint() == client_key().public_jwk().thumbprint()
                && diagnosis.header.as_ref().and_then(|h| h.get("alg"))
                    == Some(&Value::from("EdDSA"))
                && verifier.algorithms().contains(&Algorithm::EdDsa)
                && jwk.check_algorithm(Algorithm::EdDsa).is_ok()
            {
                assert_ne!(
                    *error,
                    ProofError::InvalidSignature,
                    "a correctly signed proof"
                );
            }
        }
    }
});
