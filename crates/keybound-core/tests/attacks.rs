//! The rows of standards.md §5 that the protocol core decides, one named test each.
//! Rows decided over HTTP or by the AS's grant logic (#28, #29, #31-#35, #40, #42-#44) are tested
//! with the server crates; #21 is a documented limit of DPoP and has nothing to assert here.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use common::*;
use keybound_core::access_token::{AccessTokenError, Audience, Confirmation};
use keybound_core::binding::{Binding, BindingError, Presented};
use keybound_core::challenge::Scheme;
use keybound_core::dpop::{IatWindow, NoncePolicy, ProofError, ProofVerifier};
use keybound_core::jws::JwsError;
use keybound_core::{
    AccessTokenClaims, AccessTokenSigner, AccessTokenVerifier, Algorithm, CertThumbprint, JwkError,
    KeySet, NonceKeyRing, NonceSecret, PublicJwk, UnixTime,
};
use serde_json::json;

fn b64(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
}

fn parts(header: &serde_json::Value, claims: &serde_json::Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

#[test]
fn attack01_alg_none_is_rejected() {
    let key = p256();
    let h = with(header(&key), "alg", json!("none"));
    let unsigned = format!("{}.", parts(&h, &rs_claims()));
    assert_eq!(
        verify_rs(&unsigned).unwrap_err(),
        ProofError::Malformed(JwsError::EmptySignature)
    );
    let with_junk = format!("{}.AAAA", parts(&h, &rs_claims()));
    assert_eq!(
        verify_rs(&with_junk).unwrap_err(),
        ProofError::UnsupportedAlgorithm
    );
    let no_jwk = format!("{}.AAAA", parts(&without(h, "jwk"), &rs_claims()));
    assert_eq!(
        verify_rs(&no_jwk).unwrap_err(),
        ProofError::UnsupportedAlgorithm
    );
}

#[test]
fn attack02_hmac_with_the_public_key_as_secret_is_rejected() {
    let key = p256();
    let h = with(header(&key), "alg", json!("HS256"));
    let input = parts(&h, &rs_claims());
    let secret = aws_lc_rs::hmac::Key::new(
        aws_lc_rs::hmac::HMAC_SHA256,
        key.public_jwk().to_json().as_bytes(),
    );
    let tag = aws_lc_rs::hmac::sign(&secret, input.as_bytes());
    let proof = format!("{input}.{}", b64(tag.as_ref()));
    assert_eq!(
        verify_rs(&proof).unwrap_err(),
        ProofError::UnsupportedAlgorithm
    );
}

#[test]
fn attack03_private_key_material_in_jwk_is_rejected() {
    let key = p256();
    let mut h = header(&key);
    h["jwk"]["d"] = json!("IHFCcQXeUew9o_7jAIj2t6GEoJpgrOC9L_pQGlvRpto");
    assert_eq!(
        verify_rs(&forge(&h, &rs_claims(), &key)).unwrap_err(),
        ProofError::PrivateKey
    );
}

#[test]
fn attack04_alg_key_mismatch_is_rejected() {
    let ed = ed25519();
    let mut h = header(&ed);
    h["jwk"]["crv"] = json!("Ed448");
    assert!(matches!(
        verify_rs(&forge(&h, &rs_claims(), &ed)).unwrap_err(),
        ProofError::InvalidJwk(JwkError::UnsupportedCurve)
    ));
    let ec = p256();
    let h = with(header(&ec), "alg", json!("PS256"));
    assert_eq!(
        verify_rs(&forge(&h, &rs_claims(), &ec)).unwrap_err(),
        ProofError::AlgorithmKeyMismatch
    );
}

#[test]
fn attack05_weak_keys_are_rejected() {
    let key = p256();
    let rsa_1024 = json!({"kty": "RSA", "e": "AQAB", "n": b64(&[0xC5; 128])});
    let h = with(with(header(&key), "alg", json!("PS256")), "jwk", rsa_1024);
    assert_eq!(
        verify_rs(&forge(&h, &rs_claims(), &key)).unwrap_err(),
        ProofError::InvalidJwk(JwkError::RsaKeySize(1024))
    );
    let mut off_curve = header(&key);
    off_curve["jwk"]["y"] = json!(b64(&[1; 32]));
    assert_eq!(
        verify_rs(&forge(&off_curve, &rs_claims(), &key)).unwrap_err(),
        ProofError::InvalidJwk(JwkError::InvalidKey)
    );
    let mut short = header(&key);
    short["jwk"]["x"] = json!(b64(&[7; 31]));
    assert_eq!(
        verify_rs(&forge(&short, &rs_claims(), &key)).unwrap_err(),
        ProofError::InvalidJwk(JwkError::NonCanonical("x"))
    );
}

#[test]
fn attack06_der_and_zero_ecdsa_signatures_are_rejected() {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let der_signer =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
    let fixed = keybound_core::SigningKey::from_pkcs8(Algorithm::Es256, pkcs8.as_ref()).unwrap();
    let input = parts(&header(&fixed), &rs_claims());
    let der = der_signer.sign(&rng, input.as_bytes()).unwrap();
    let proof = format!("{input}.{}", b64(der.as_ref()));
    assert_eq!(verify_rs(&proof).unwrap_err(), ProofError::InvalidSignature);
    let psychic = format!("{input}.{}", b64(&[0; 64]));
    assert_eq!(
        verify_rs(&psychic).unwrap_err(),
        ProofError::InvalidSignature
    );
    // Control: the same input signed in the fixed r||s form verifies.
    let good = format!("{input}.{}", b64(&fixed.sign(input.as_bytes()).unwrap()));
    assert!(verify_rs(&good).is_ok());
}

#[test]
fn attack07_crit_header_is_rejected() {
    let key = p256();
    for crit in [json!(["b64"]), json!([]), json!("exp")] {
        let h = with(header(&key), "crit", crit);
        assert_eq!(
            verify_rs(&forge(&h, &rs_claims(), &key)).unwrap_err(),
            ProofError::CriticalHeader
        );
    }
}

#[test]
fn attack08_kid_jku_x5u_x5c_are_ignored() {
    let key = p256();
    let mut h = header(&key);
    h["kid"] = json!("1");
    h["jku"] = json!("http://169.254.169.254/latest/meta-data");
    h["x5u"] = json!("http://169.254.169.254/");
    h["x5c"] = json!(["MIIB"]);
    // Verified with `jwk`, and nothing is fetched: the core has no network to fetch with.
    assert_eq!(
        verify_rs(&forge(&h, &rs_claims(), &key))
            .unwrap()
            .thumbprint(),
        key.public_jwk().thumbprint()
    );
}

#[test]
fn attack10_token_type_confusion_is_rejected() {
    let key = p256();
    for typ in ["JWT", "at+jwt", "secevent+jwt"] {
        let h = with(header(&key), "typ", json!(typ));
        assert_eq!(
            verify_rs(&forge(&h, &rs_claims(), &key)).unwrap_err(),
            ProofError::InvalidTyp
        );
    }
}

#[test]
fn attack13_oversized_proofs_and_jti_are_rejected() {
    let key = p256();
    let h = with(header(&key), "pad", json!("x".repeat(9000)));
    assert_eq!(
        verify_rs(&forge(&h, &rs_claims(), &key)).unwrap_err(),
        ProofError::TooLarge
    );
    let c = with(rs_claims(), "jti", json!("j".repeat(257)));
    assert_eq!(
        verify_rs(&forge(&header(&key), &c, &key)).unwrap_err(),
        ProofError::InvalidJti
    );
}

#[test]
fn attack14_duplicate_json_members_are_rejected() {
    let key = p256();
    let h = header(&key).to_string();
    let dup_header = h.replacen("{", r#"{"typ":"JWT","#, 1);
    let claims = rs_claims().to_string();
    let dup_claims = claims.replacen("{", r#"{"htm":"POST","#, 1);
    for (h, c) in [
        (dup_header.as_str(), claims.as_str()),
        (h.as_str(), dup_claims.as_str()),
    ] {
        let proof = keybound_core::jws::sign_compact(h, c, &key).unwrap();
        assert_eq!(
            verify_rs(&proof).unwrap_err(),
            ProofError::Malformed(JwsError::Json)
        );
    }
}

#[test]
fn attack15_16_proof_for_another_uri_or_method_is_rejected() {
    let key = p256();
    let c = with(
        rs_claims(),
        "htu",
        json!("https://rs.example.com/api/other"),
    );
    assert_eq!(
        verify_rs(&forge(&header(&key), &c, &key)).unwrap_err(),
        ProofError::HtuMismatch
    );
    let c = with(rs_claims(), "htm", json!("PUT"));
    assert_eq!(
        verify_rs(&forge(&header(&key), &c, &key)).unwrap_err(),
        ProofError::HtmMismatch
    );
}

#[test]
fn attack17_htu_with_query_uppercase_host_and_default_port_is_accepted() {
    let key = p256();
    let c = with(
        rs_claims(),
        "htu",
        json!("https://RS.example.com:443/api/res?q=1#frag"),
    );
    assert!(verify_rs(&forge(&header(&key), &c, &key)).is_ok());
}

#[test]
fn attack18_19_iat_an_hour_off_is_rejected_ten_seconds_off_is_accepted() {
    let key = p256();
    let at = |iat: u64| forge(&header(&key), &with(rs_claims(), "iat", json!(iat)), &key);
    assert_eq!(
        verify_rs(&at(NOW + 3600)).unwrap_err(),
        ProofError::IatInFuture
    );
    assert_eq!(
        verify_rs(&at(NOW - 3600)).unwrap_err(),
        ProofError::IatTooOld
    );
    assert!(verify_rs(&at(NOW + 10)).is_ok());
    assert!(verify_rs(&at(NOW - 10)).is_ok());
}

#[test]
fn attack20_38_replay_key_is_stable_and_qualified_by_key() {
    let a = p256();
    let b = fresh(Algorithm::Es256);
    let proof_a = forge(&header(&a), &rs_claims(), &a);
    let proof_b = forge(&header(&b), &rs_claims(), &b); // same jti, another client
    let first = verify_rs(&proof_a).unwrap().replay_key();
    assert_eq!(
        verify_rs(&proof_a).unwrap().replay_key(),
        first,
        "a replay maps to the same record"
    );
    assert_ne!(
        verify_rs(&proof_b).unwrap().replay_key(),
        first,
        "B cannot burn A's jti"
    );
}

#[test]
fn attack22_pre_generated_future_proofs_are_bounded() {
    let key = p256();
    let c = with(rs_claims(), "iat", json!(NOW + 31));
    assert_eq!(
        verify_rs(&forge(&header(&key), &c, &key)).unwrap_err(),
        ProofError::IatInFuture
    );
    assert!(
        IatWindow::new(60, 60).is_none(),
        "leeway of 60 s or more cannot be configured"
    );
}

#[test]
fn attack23_nonce_downgrade_and_foreign_nonces_are_rejected() {
    let key = p256();
    let secret = NonceSecret::new(&[3; 32]).unwrap();
    let rs_ring = NonceKeyRing::new("https://rs.example.com", &secret, None);
    let as_nonce = NonceKeyRing::new("as", &secret, None).issue(UnixTime::from_secs(NOW));
    let verifier = ProofVerifier::default();
    let no_nonce = forge(&header(&key), &rs_claims(), &key);
    assert_eq!(
        verify_rs_with(&verifier, &no_nonce, NoncePolicy::Required(&rs_ring)).unwrap_err(),
        ProofError::NonceRequired
    );
    let c = with(rs_claims(), "nonce", json!(as_nonce.as_str()));
    assert_eq!(
        verify_rs_with(
            &verifier,
            &forge(&header(&key), &c, &key),
            NoncePolicy::Required(&rs_ring)
        )
        .unwrap_err(),
        ProofError::NonceRejected
    );
}

#[test]
fn attack24_nonce_of_the_wrong_type_or_syntax_is_invalid_proof() {
    let key = p256();
    for nonce in [
        json!(12),
        json!(["a"]),
        json!("with space"),
        json!("quote\"d"),
        json!(""),
    ] {
        let c = with(rs_claims(), "nonce", nonce.clone());
        assert_eq!(
            verify_rs(&forge(&header(&key), &c, &key)).unwrap_err(),
            ProofError::NonceMalformed,
            "{nonce}"
        );
    }
}

#[test]
fn attack25_stolen_token_with_attacker_key_is_invalid_token() {
    let victim = p256();
    let attacker = fresh(Algorithm::EdDsa);
    let binding = Binding::Dpop(victim.public_jwk().thumbprint().clone());
    let proof = verify_rs(&forge(&header(&attacker), &rs_claims(), &attacker)).unwrap();
    let presented = Presented {
        scheme: Scheme::DPoP,
        proof_key: Some(proof.thumbprint()),
        certificate: None,
        accept_unbound: false,
    };
    assert_eq!(binding.check(&presented), Err(BindingError::KeyMismatch));
}

#[test]
fn attack26_ath_for_another_token_is_rejected() {
    let key = p256();
    let c = with(
        rs_claims(),
        "ath",
        json!(keybound_core::AccessTokenHash::of("AT2").as_str()),
    );
    assert_eq!(
        verify_rs(&forge(&header(&key), &c, &key)).unwrap_err(),
        ProofError::AthMismatch
    );
}

#[test]
fn attack27_30_scheme_downgrades_are_rejected() {
    let jkt = p256().public_jwk().thumbprint().clone();
    let bearer = Presented {
        scheme: Scheme::Bearer,
        proof_key: None,
        certificate: None,
        accept_unbound: true,
    };
    assert_eq!(
        Binding::Dpop(jkt.clone()).check(&bearer),
        Err(BindingError::DpopTokenAsBearer)
    );
    let dpop = Presented {
        scheme: Scheme::DPoP,
        proof_key: Some(&jkt),
        certificate: None,
        accept_unbound: true,
    };
    assert_eq!(
        Binding::Unbound.check(&dpop),
        Err(BindingError::NotDpopBound)
    );
    assert_eq!(
        Binding::Unbound.check(&Presented {
            accept_unbound: false,
            ..bearer
        }),
        Err(BindingError::UnboundNotAccepted)
    );
    assert_eq!(Binding::Unbound.check(&bearer), Ok(()));
}

#[test]
fn attack36_37_scheme_case_and_extra_members_are_accepted() {
    assert_eq!(Scheme::from_name("dpop"), Some(Scheme::DPoP));
    assert_eq!(Scheme::from_name("DPOP"), Some(Scheme::DPoP));
    assert_eq!(Scheme::from_name("bEARER"), Some(Scheme::Bearer));
    let key = p256();
    let h = with(header(&key), "tx_id", json!("abc"));
    let mut c = with(rs_claims(), "tx_id_key", json!("k"));
    c["nbf"] = json!(NOW);
    c["exp"] = json!(NOW + 300);
    assert!(verify_rs(&forge(&h, &c, &key)).is_ok());
}

#[test]
fn attack39_non_canonical_jwk_encodings_are_rejected() {
    let key = p256();
    let padded = format!("{}=", header(&key)["jwk"]["x"].as_str().unwrap());
    let mut h = header(&key);
    h["jwk"]["x"] = json!(padded);
    assert_eq!(
        verify_rs(&forge(&h, &rs_claims(), &key)).unwrap_err(),
        ProofError::InvalidJwk(JwkError::NonCanonical("x"))
    );
    let mut n = vec![0u8];
    n.extend([0xC5; 256]);
    let rsa = json!({"kty": "RSA", "e": "AQAB", "n": b64(&n)});
    assert_eq!(
        PublicJwk::from_json(rsa.to_string().as_bytes()).unwrap_err(),
        JwkError::NonCanonical("n")
    );
}

#[test]
fn attack41_certificate_bound_token_needs_the_same_certificate() {
    let bound = CertThumbprint::of_der(b"certificate A");
    let other = CertThumbprint::of_der(b"certificate B");
    let binding = Binding::Certificate(bound.clone());
    let with_cert = |certificate| Presented {
        scheme: Scheme::Bearer,
        proof_key: None,
        certificate,
        accept_unbound: false,
    };
    assert_eq!(
        binding.check(&with_cert(Some(&other))),
        Err(BindingError::CertificateMismatch)
    );
    assert_eq!(
        binding.check(&with_cert(None)),
        Err(BindingError::CertificateMissing)
    );
    assert_eq!(binding.check(&with_cert(Some(&bound))), Ok(()));
}

fn claims_with_cnf(cnf: Option<Confirmation>) -> AccessTokenClaims {
    AccessTokenClaims {
        iss: "https://as.example.com".into(),
        sub: "alice".into(),
        aud: Audience::One("https://rs.example.com".into()),
        exp: NOW + 300,
        iat: NOW,
        nbf: None,
        jti: "t1".into(),
        client_id: "c1".into(),
        scope: Some("read".into()),
        cnf,
    }
}

#[test]
fn attack45_token_with_both_jkt_and_x5t_is_rejected() {
    let signer = AccessTokenSigner::new(fresh(Algorithm::Es256), "k1");
    let jwks = json!({"keys": [signer.jwks_entry()]}).to_string();
    let verifier = AccessTokenVerifier::new(
        KeySet::from_jwks_json(jwks.as_bytes()).unwrap(),
        "https://as.example.com",
        "https://rs.example.com",
    );
    let both = Confirmation {
        jkt: Some(p256().public_jwk().thumbprint().clone()),
        x5t_s256: Some(CertThumbprint::of_der(b"cert")),
    };
    let token = signer.sign(&claims_with_cnf(Some(both))).unwrap();
    assert_eq!(
        verifier
            .verify(&token, UnixTime::from_secs(NOW))
            .unwrap_err(),
        AccessTokenError::AmbiguousConfirmation
    );
    let one = Confirmation {
        jkt: Some(p256().public_jwk().thumbprint().clone()),
        x5t_s256: None,
    };
    let token = signer.sign(&claims_with_cnf(Some(one))).unwrap();
    assert!(matches!(
        verifier
            .verify(&token, UnixTime::from_secs(NOW))
            .unwrap()
            .binding(),
        Binding::Dpop(_)
    ));
}
