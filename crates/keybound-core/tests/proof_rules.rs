//! One named test per rule of standards.md §1.2. Each fails if its check is removed from the
//! verifier: the control case next to each rejection shows the same proof passes otherwise.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use keybound_core::binding::{Binding, BindingError, Presented};
use keybound_core::challenge::Scheme;
use keybound_core::dpop::{IatWindow, NoncePolicy, ProofError, ProofVerifier, single_dpop_header};
use keybound_core::jws::JwsError;
use keybound_core::{Algorithm, ErrorCode, NonceKeyRing, NonceSecret, UnixTime};
use serde_json::json;

fn valid_rs_proof() -> String {
    let key = p256();
    forge(&header(&key), &rs_claims(), &key)
}

#[test]
fn control_a_well_formed_proof_is_accepted() {
    let proof = verify_rs(&valid_rs_proof()).unwrap();
    assert_eq!(
        proof.thumbprint().as_str(),
        "ZjEgWN6HnCZRssL1jRQHiJi6vlWXolM5Zba8FQBYONg"
    );
}

#[test]
fn rule01_exactly_one_dpop_header_line() {
    let proof = valid_rs_proof();
    let one = [proof.as_bytes()];
    assert_eq!(single_dpop_header(one), Ok(proof.as_str()));
    let two = [proof.as_bytes(), proof.as_bytes()];
    assert_eq!(single_dpop_header(two), Err(ProofError::MultipleProofs));
    let joined = format!("{proof}, {proof}");
    assert_eq!(
        single_dpop_header([joined.as_bytes()]),
        Err(ProofError::HeaderSyntax)
    );
    assert_eq!(
        ErrorCode::from(&ProofError::MultipleProofs),
        ErrorCode::InvalidDpopProof
    );
}

#[test]
fn rule02_value_is_one_well_formed_compact_jws() {
    let proof = valid_rs_proof();
    let parts: Vec<&str> = proof.split('.').collect();
    let cases = [
        (format!("{}.{}", parts[0], parts[1]), JwsError::NotCompact),
        (format!("{proof}.x.y"), JwsError::NotCompact), // JWE shape: five parts
        (
            format!("{}.{}.", parts[0], parts[1]),
            JwsError::EmptySignature,
        ),
        (
            format!("{}.bm90IGpzb24.{}", parts[0], parts[2]),
            JwsError::Json,
        ),
        (format!("{}.WzFd.{}", parts[0], parts[2]), JwsError::Json), // payload is an array
        (
            format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
            JwsError::Base64,
        ),
    ];
    for (bad, expected) in cases {
        assert_eq!(
            verify_rs(&bad).unwrap_err(),
            ProofError::Malformed(expected),
            "{bad}"
        );
    }
    let json_serialization =
        json!({"payload": parts[1], "protected": parts[0], "signature": parts[2]});
    assert!(matches!(
        verify_rs(&json_serialization.to_string()).unwrap_err(),
        ProofError::Malformed(_)
    ));
}

#[test]
fn rule03_every_required_header_member_and_claim_is_present() {
    let key = p256();
    for member in ["typ", "alg", "jwk"] {
        let proof = forge(&without(header(&key), member), &rs_claims(), &key);
        assert_eq!(
            verify_rs(&proof).unwrap_err(),
            ProofError::MissingMember(member)
        );
    }
    for claim in ["jti", "htm", "htu", "iat"] {
        let proof = forge(&header(&key), &without(rs_claims(), claim), &key);
        assert_eq!(
            verify_rs(&proof).unwrap_err(),
            ProofError::MissingMember(claim)
        );
    }
    // At the RS, `ath` is required too.
    let proof = forge(&header(&key), &without(rs_claims(), "ath"), &key);
    assert_eq!(verify_rs(&proof).unwrap_err(), ProofError::MissingAth);
}

#[test]
fn rule03_members_have_their_json_types() {
    let key = p256();
    for (claim, value) in [
        ("iat", json!("1700000000")),
        ("jti", json!(7)),
        ("htm", json!(["GET"])),
        ("htu", json!(null)),
    ] {
        let proof = forge(&header(&key), &with(rs_claims(), claim, value), &key);
        assert_eq!(
            verify_rs(&proof).unwrap_err(),
            ProofError::WrongType(claim),
            "{claim}"
        );
    }
    for jwk in [json!("error"), json!([]), json!(null)] {
        let proof = forge(&with(header(&key), "jwk", jwk), &rs_claims(), &key);
        assert_eq!(verify_rs(&proof).unwrap_err(), ProofError::WrongType("jwk"));
    }
}

#[test]
fn rule04_typ_is_dpop_jwt() {
    let key = p256();
    for typ in [
        "JWT",
        "at+jwt",
        "secevent+jwt",
        "dpop+jwt+wrongyousee",
        "application/jwt",
        "",
    ] {
        let proof = forge(&with(header(&key), "typ", json!(typ)), &rs_claims(), &key);
        assert_eq!(
            verify_rs(&proof).unwrap_err(),
            ProofError::InvalidTyp,
            "{typ}"
        );
    }
    for typ in ["application/dpop+jwt", "DPOP+JWT"] {
        let proof = forge(&with(header(&key), "typ", json!(typ)), &rs_claims(), &key);
        assert!(verify_rs(&proof).is_ok(), "{typ}");
    }
}

#[test]
fn rule05_alg_is_asymmetric_and_allow_listed() {
    let key = p256();
    for alg in ["none", "HS256", "HS512", "ES512", "RS384", "foo"] {
        let proof = forge(&with(header(&key), "alg", json!(alg)), &rs_claims(), &key);
        assert_eq!(
            verify_rs(&proof).unwrap_err(),
            ProofError::UnsupportedAlgorithm,
            "{alg}"
        );
    }
    // Registered and implemented, but outside the configured allow-list.
    let rsa = fresh(Algorithm::Rs256);
    let proof = forge(&header(&rsa), &rs_claims(), &rsa);
    assert_eq!(
        verify_rs(&proof).unwrap_err(),
        ProofError::UnsupportedAlgorithm
    );
    let all = ProofVerifier::new(&Algorithm::ALL, IatWindow::default());
    assert!(verify_rs_with(&all, &proof, NoncePolicy::NotUsed).is_ok());
}

#[test]
fn rule05_alg_is_consistent_with_the_jwk() {
    let ec = p256();
    let ed = ed25519();
    let rsa = fresh(Algorithm::Ps256);
    let p384 = fresh(Algorithm::Es384);
    // (alg named in the header, key in jwk): each signed by the jwk's own key.
    let cases: [(&str, &keybound_core::SigningKey); 4] = [
        ("ES256", &ed),
        ("EdDSA", &ec),
        ("PS256", &ec),
        ("ES256", &rsa),
    ];
    for (alg, key) in cases {
        let proof = forge(&with(header(key), "alg", json!(alg)), &rs_claims(), key);
        assert_eq!(
            verify_rs(&proof).unwrap_err(),
            ProofError::AlgorithmKeyMismatch,
            "{alg}"
        );
    }
    let all = ProofVerifier::new(&Algorithm::ALL, IatWindow::default());
    let proof = forge(
        &with(header(&p384), "alg", json!("ES256")),
        &rs_claims(),
        &p384,
    );
    assert_eq!(
        verify_rs_with(&all, &proof, NoncePolicy::NotUsed).unwrap_err(),
        ProofError::AlgorithmKeyMismatch
    );
}

#[test]
fn rule06_signature_verifies_with_the_jwk_only() {
    let signer = p256();
    let other = ed25519();
    // Signed by `signer`, but `jwk` names another P-256 key; kid/jku/x5u point nowhere useful.
    let victim = fresh(Algorithm::Es256);
    let mut h = header(&victim);
    h["kid"] = json!("attacker-key");
    h["jku"] = json!("https://attacker.example/jwks");
    h["x5u"] = json!("https://attacker.example/cert");
    let proof = forge(&h, &rs_claims(), &signer);
    assert_eq!(verify_rs(&proof).unwrap_err(), ProofError::InvalidSignature);
    // A flipped signature byte.
    let good = forge(&header(&other), &rs_claims(), &other);
    let mut bytes = good.into_bytes();
    let last = bytes.len() - 5;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(bytes).unwrap();
    assert_eq!(
        verify_rs(&flipped).unwrap_err(),
        ProofError::InvalidSignature
    );
}

#[test]
fn rule07_jwk_has_no_private_members() {
    let key = p256();
    for member in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        let mut h = header(&key);
        h["jwk"][member] = json!("IHFCcQXeUew9o_7jAIj2t6GEoJpgrOC9L_pQGlvRpto");
        let proof = forge(&h, &rs_claims(), &key);
        assert_eq!(
            verify_rs(&proof).unwrap_err(),
            ProofError::PrivateKey,
            "{member}"
        );
    }
    let oct = json!({"kty": "oct", "k": "FdFYFzERwC2uCBB46pZQi4GG85LujR8obt-KWRBICVQ"});
    let proof = forge(&with(header(&key), "jwk", oct), &rs_claims(), &key);
    assert_eq!(verify_rs(&proof).unwrap_err(), ProofError::PrivateKey);
}

#[test]
fn rule08_htm_matches_the_method_case_sensitively() {
    let key = p256();
    for htm in ["get", "PUT", "POST", "GET "] {
        let proof = forge(&header(&key), &with(rs_claims(), "htm", json!(htm)), &key);
        assert_eq!(
            verify_rs(&proof).unwrap_err(),
            ProofError::HtmMismatch,
            "{htm}"
        );
    }
}

#[test]
fn rule09_htu_matches_the_request_uri_after_normalisation() {
    let key = p256();
    let rejected = [
        "https://rs.example.com/API/res",
        "https://rs.example.com/api/res/",
        "http://rs.example.com/api/res",
        "https://rs.example.com:8443/api/res",
        "https://rs.example.com/api/resohnonotagain",
        "https://other.example.com/api/res",
    ];
    for htu in rejected {
        let proof = forge(&header(&key), &with(rs_claims(), "htu", json!(htu)), &key);
        assert_eq!(
            verify_rs(&proof).unwrap_err(),
            ProofError::HtuMismatch,
            "{htu}"
        );
    }
    for htu in [
        "/api/res",
        "ftp://rs.example.com/api/res",
        "https://rs.example.com/a b",
    ] {
        let proof = forge(&header(&key), &with(rs_claims(), "htu", json!(htu)), &key);
        assert_eq!(
            verify_rs(&proof).unwrap_err(),
            ProofError::InvalidHtu,
            "{htu}"
        );
    }
    let accepted = [
        "https://rs.example.com/api/res?x=1#f",
        "HTTPS://RS.EXAMPLE.COM/api/res",
        "https://rs.example.com:443/api/./x/../res",
        "https://rs.example.com/api/%72es",
    ];
    for htu in accepted {
        let proof = forge(&header(&key), &with(rs_claims(), "htu", json!(htu)), &key);
        assert!(verify_rs(&proof).is_ok(), "{htu}");
    }
}

fn ring(purpose: &str) -> NonceKeyRing {
    NonceKeyRing::new(purpose, &NonceSecret::new(&[42; 32]).unwrap(), None)
}

#[test]
fn rule10_nonce_required_once_issued() {
    let key = p256();
    let as_ring = ring("as");
    let now = UnixTime::from_secs(NOW);
    // Missing.
    let proof = forge(&header(&key), &as_claims(), &key);
    let err = verify_as(&proof, NoncePolicy::Required(&as_ring)).unwrap_err();
    assert_eq!(err, ProofError::NonceRequired);
    assert_eq!(ErrorCode::from(&err), ErrorCode::UseDpopNonce);
    // Valid.
    let nonce = as_ring.issue(now);
    let claims = with(as_claims(), "nonce", json!(nonce.as_str()));
    let proof = forge(&header(&key), &claims, &key);
    assert_eq!(
        verify_as(&proof, NoncePolicy::Required(&as_ring))
            .unwrap()
            .nonce(),
        Some(&nonce)
    );
    // Wrong, expired, or issued by another server (an RS nonce at the AS).
    let expired = as_ring.issue(now.saturating_sub(10 * 60));
    let foreign = ring("https://rs.example.com").issue(now);
    for bad in [
        "eyJ7S_zG.eyJH0-Z.HX4w-7v",
        expired.as_str(),
        foreign.as_str(),
    ] {
        let proof = forge(&header(&key), &with(as_claims(), "nonce", json!(bad)), &key);
        let err = verify_as(&proof, NoncePolicy::Required(&as_ring)).unwrap_err();
        assert_eq!(err, ProofError::NonceRejected, "{bad}");
        assert_eq!(ErrorCode::from(&err), ErrorCode::UseDpopNonce);
    }
    // IfPresent: absent is fine, present-but-wrong is not.
    let proof = forge(&header(&key), &as_claims(), &key);
    assert!(verify_as(&proof, NoncePolicy::IfPresent(&as_ring)).is_ok());
    let proof = forge(
        &header(&key),
        &with(as_claims(), "nonce", json!("stale")),
        &key,
    );
    assert_eq!(
        verify_as(&proof, NoncePolicy::IfPresent(&as_ring)).unwrap_err(),
        ProofError::NonceRejected
    );
}

#[test]
fn rule11_iat_window_is_inclusive_at_both_ends() {
    let key = p256();
    let at = |iat: u64| forge(&header(&key), &with(rs_claims(), "iat", json!(iat)), &key);
    assert!(verify_rs(&at(NOW - 60)).is_ok());
    assert_eq!(verify_rs(&at(NOW - 61)).unwrap_err(), ProofError::IatTooOld);
    assert!(verify_rs(&at(NOW + 30)).is_ok());
    assert_eq!(
        verify_rs(&at(NOW + 31)).unwrap_err(),
        ProofError::IatInFuture
    );
    let wide = ProofVerifier::new(&Algorithm::FAPI2, IatWindow::new(300, 59).unwrap());
    assert!(verify_rs_with(&wide, &at(NOW - 300), NoncePolicy::NotUsed).is_ok());
    assert!(verify_rs_with(&wide, &at(NOW + 59), NoncePolicy::NotUsed).is_ok());
    assert!(IatWindow::new(301, 30).is_none() && IatWindow::new(60, 9).is_none());
}

#[test]
fn rule11_jti_is_bounded_and_keys_the_replay_record() {
    let key = p256();
    let with_jti = |jti: &str| forge(&header(&key), &with(rs_claims(), "jti", json!(jti)), &key);
    assert!(verify_rs(&with_jti(&"j".repeat(256))).is_ok());
    assert_eq!(
        verify_rs(&with_jti(&"j".repeat(257))).unwrap_err(),
        ProofError::InvalidJti
    );
    assert_eq!(
        verify_rs(&with_jti("")).unwrap_err(),
        ProofError::InvalidJti
    );

    // The same proof twice yields the same replay key; the record lives until iat + max age.
    let a = verify_rs(&with_jti("one")).unwrap().replay_key();
    let again = verify_rs(&with_jti("one")).unwrap().replay_key();
    let b = verify_rs(&with_jti("two")).unwrap().replay_key();
    assert_eq!(a, again);
    assert_ne!(a.digest(), b.digest());
    assert_eq!(a.expires_at(), UnixTime::from_secs(NOW + 60));
    // A future-dated proof's record outlives now + max age (standards §2.3).
    let future = forge(
        &header(&key),
        &with(rs_claims(), "iat", json!(NOW + 30)),
        &key,
    );
    assert_eq!(
        verify_rs(&future).unwrap().replay_key().expires_at(),
        UnixTime::from_secs(NOW + 90)
    );
    assert_eq!(
        ErrorCode::from(&ProofError::Replayed),
        ErrorCode::InvalidDpopProof
    );
}

#[test]
fn rule12a_ath_is_the_hash_of_the_presented_token() {
    let key = p256();
    let other = keybound_core::AccessTokenHash::of("another-token");
    let proof = forge(
        &header(&key),
        &with(rs_claims(), "ath", json!(other.as_str())),
        &key,
    );
    assert_eq!(verify_rs(&proof).unwrap_err(), ProofError::AthMismatch);
    let proof = forge(&header(&key), &with(rs_claims(), "ath", json!(1)), &key);
    assert_eq!(verify_rs(&proof).unwrap_err(), ProofError::WrongType("ath"));
}

#[test]
fn rule12b_proof_key_matches_cnf_jkt() {
    let holder = p256();
    let thief = fresh(Algorithm::Es256);
    let binding = Binding::Dpop(holder.public_jwk().thumbprint().clone());
    let thief_proof = verify_rs(&forge(&header(&thief), &rs_claims(), &thief)).unwrap();
    let presented = |proof_key| Presented {
        scheme: Scheme::DPoP,
        proof_key,
        certificate: None,
        accept_unbound: false,
    };
    let err = binding
        .check(&presented(Some(thief_proof.thumbprint())))
        .unwrap_err();
    assert_eq!(err, BindingError::KeyMismatch);
    assert_eq!(ErrorCode::from(&err), ErrorCode::InvalidToken);
    let holder_proof = verify_rs(&forge(&header(&holder), &rs_claims(), &holder)).unwrap();
    assert_eq!(
        binding.check(&presented(Some(holder_proof.thumbprint()))),
        Ok(())
    );
}
