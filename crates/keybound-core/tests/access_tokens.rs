//! RFC 9068 access-token verification at the resource server (standards §2.10): every check
//! has a rejection case beside a passing control.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{NOW, fresh, p256};
use keybound_core::access_token::{AccessTokenError, Audience, Confirmation};
use keybound_core::jws::sign_compact;
use keybound_core::{
    AccessTokenClaims, AccessTokenSigner, AccessTokenVerifier, Algorithm, JwkError, KeySet,
    SigningKey, UnixTime,
};
use serde_json::json;

const ISS: &str = "https://as.example.com";
const AUD: &str = "https://rs.example.com";

fn claims() -> AccessTokenClaims {
    AccessTokenClaims {
        iss: ISS.into(),
        sub: "alice".into(),
        aud: Audience::Many(vec!["other".into(), AUD.into()]),
        exp: NOW + 300,
        iat: NOW,
        nbf: None,
        jti: "t1".into(),
        client_id: "c1".into(),
        scope: Some("read write".into()),
        cnf: Some(Confirmation {
            jkt: Some(p256().public_jwk().thumbprint().clone()),
            x5t_s256: None,
        }),
    }
}

fn setup() -> (AccessTokenSigner, AccessTokenVerifier) {
    let signer = AccessTokenSigner::new(fresh(Algorithm::Es256), "k1");
    let jwks = json!({"keys": [signer.jwks_entry()]}).to_string();
    let verifier =
        AccessTokenVerifier::new(KeySet::from_jwks_json(jwks.as_bytes()).unwrap(), ISS, AUD);
    (signer, verifier)
}

fn at(secs: u64) -> UnixTime {
    UnixTime::from_secs(secs)
}

/// Signs arbitrary header and claims with `key`.
fn raw(header: serde_json::Value, claims: serde_json::Value, key: &SigningKey) -> String {
    sign_compact(&header.to_string(), &claims.to_string(), key).unwrap()
}

#[test]
fn control_a_valid_token_verifies_with_its_claims() {
    let (signer, verifier) = setup();
    let verified = verifier
        .verify(&signer.sign(&claims()).unwrap(), at(NOW))
        .unwrap();
    assert_eq!(verified, claims());
    assert_eq!(verified.scopes().collect::<Vec<_>>(), ["read", "write"]);
}

#[test]
fn issuer_audience_and_times_are_checked() {
    let (signer, verifier) = setup();
    let token = |c: AccessTokenClaims| signer.sign(&c).unwrap();
    let check = |t: &str, now| verifier.verify(t, at(now)).unwrap_err();
    assert_eq!(
        check(
            &token(AccessTokenClaims {
                iss: "https://evil".into(),
                ..claims()
            }),
            NOW
        ),
        AccessTokenError::WrongIssuer
    );
    assert_eq!(
        check(
            &token(AccessTokenClaims {
                aud: Audience::One("x".into()),
                ..claims()
            }),
            NOW
        ),
        AccessTokenError::WrongAudience
    );
    // exp + 5 s leeway: accepted at exp + 4, refused at exp + 5.
    assert!(verifier.verify(&token(claims()), at(NOW + 304)).is_ok());
    assert_eq!(
        check(&token(claims()), NOW + 305),
        AccessTokenError::Expired
    );
    assert_eq!(
        check(
            &token(AccessTokenClaims {
                nbf: Some(NOW + 60),
                ..claims()
            }),
            NOW
        ),
        AccessTokenError::NotYetValid
    );
    assert_eq!(
        check(
            &token(AccessTokenClaims {
                iat: NOW + 60,
                ..claims()
            }),
            NOW
        ),
        AccessTokenError::NotYetValid
    );
}

#[test]
fn header_typ_crit_alg_and_kid_are_checked() {
    let (signer, verifier) = setup();
    let good = signer.sign(&claims()).unwrap();
    let payload: serde_json::Value = serde_json::to_value(claims()).unwrap();
    // Hand-built headers need a private key the test holds: publish a second key as "k2".
    let key = fresh(Algorithm::Es256);
    let mut entry: serde_json::Value = serde_json::from_str(&key.public_jwk().to_json()).unwrap();
    entry["kid"] = json!("k2");
    let jwks = json!({"keys": [signer.jwks_entry(), entry]}).to_string();
    let verifier2 =
        AccessTokenVerifier::new(KeySet::from_jwks_json(jwks.as_bytes()).unwrap(), ISS, AUD);
    let h = |typ: &str| json!({"typ": typ, "alg": "ES256", "kid": "k2"});
    assert!(
        verifier2
            .verify(&raw(h("at+jwt"), payload.clone(), &key), at(NOW))
            .is_ok()
    );
    assert!(
        verifier2
            .verify(
                &raw(h("application/at+jwt"), payload.clone(), &key),
                at(NOW)
            )
            .is_ok()
    );
    for typ in ["JWT", "dpop+jwt", "jwt"] {
        assert_eq!(
            verifier2
                .verify(&raw(h(typ), payload.clone(), &key), at(NOW))
                .unwrap_err(),
            AccessTokenError::InvalidTyp
        );
    }
    let mut crit = h("at+jwt");
    crit["crit"] = json!(["exp"]);
    assert_eq!(
        verifier2
            .verify(&raw(crit, payload.clone(), &key), at(NOW))
            .unwrap_err(),
        AccessTokenError::CriticalHeader
    );
    let no_kid = json!({"typ": "at+jwt", "alg": "ES256"});
    assert_eq!(
        verifier2
            .verify(&raw(no_kid, payload.clone(), &key), at(NOW))
            .unwrap_err(),
        AccessTokenError::MissingKid
    );
    let unknown = json!({"typ": "at+jwt", "alg": "ES256", "kid": "k9"});
    assert_eq!(
        verifier2
            .verify(&raw(unknown, payload.clone(), &key), at(NOW))
            .unwrap_err(),
        AccessTokenError::UnknownKey("k9".into())
    );
    let wrong_alg = json!({"typ": "at+jwt", "alg": "EdDSA", "kid": "k2"});
    assert_eq!(
        verifier2
            .verify(&raw(wrong_alg, payload.clone(), &key), at(NOW))
            .unwrap_err(),
        AccessTokenError::AlgorithmKeyMismatch
    );
    let hs = json!({"typ": "at+jwt", "alg": "HS256", "kid": "k2"});
    assert_eq!(
        verifier2
            .verify(&raw(hs, payload, &key), at(NOW))
            .unwrap_err(),
        AccessTokenError::UnsupportedAlgorithm
    );
    assert!(verifier.verify(&good, at(NOW)).is_ok());
}

#[test]
fn a_key_carried_in_the_token_is_never_used() {
    let (_, verifier) = setup();
    let attacker = fresh(Algorithm::Es256);
    let jwk: serde_json::Value = serde_json::from_str(&attacker.public_jwk().to_json()).unwrap();
    let header = json!({"typ": "at+jwt", "alg": "ES256", "kid": "k1", "jwk": jwk, "jku": "https://evil/jwks"});
    let token = raw(header, serde_json::to_value(claims()).unwrap(), &attacker);
    assert_eq!(
        verifier.verify(&token, at(NOW)).unwrap_err(),
        AccessTokenError::InvalidSignature
    );
}

#[test]
fn claim_types_and_unknown_cnf_members_are_refused() {
    let key = fresh(Algorithm::EdDsa);
    let mut entry: serde_json::Value = serde_json::from_str(&key.public_jwk().to_json()).unwrap();
    entry["kid"] = json!("e1");
    let keys = KeySet::from_jwks_json(json!({"keys": [entry]}).to_string().as_bytes()).unwrap();
    let verifier = AccessTokenVerifier::new(keys, ISS, AUD);
    let h = json!({"typ": "at+jwt", "alg": "EdDSA", "kid": "e1"});
    let base = serde_json::to_value(claims()).unwrap();
    assert!(
        verifier
            .verify(&raw(h.clone(), base.clone(), &key), at(NOW))
            .is_ok()
    );
    let mut string_exp = base.clone();
    string_exp["exp"] = json!((NOW + 300).to_string());
    let mut missing_sub = base.clone();
    missing_sub.as_object_mut().unwrap().remove("sub");
    let mut odd_cnf = base.clone();
    odd_cnf["cnf"]["x5t#S1"] = json!("whatever");
    for c in [string_exp, missing_sub, odd_cnf] {
        assert_eq!(
            verifier
                .verify(&raw(h.clone(), c, &key), at(NOW))
                .unwrap_err(),
            AccessTokenError::InvalidClaims
        );
    }
    let mut empty_cnf = base;
    empty_cnf["cnf"] = json!({});
    assert_eq!(
        verifier
            .verify(&raw(h, empty_cnf, &key), at(NOW))
            .unwrap_err(),
        AccessTokenError::AmbiguousConfirmation
    );
}

#[test]
fn jwks_documents_are_parsed_strictly() {
    let good = fresh(Algorithm::Es256);
    let mut entry: serde_json::Value = serde_json::from_str(&good.public_jwk().to_json()).unwrap();
    entry["kid"] = json!("a");
    let unsupported = json!({"kty": "EC", "crv": "P-521", "kid": "b", "x": "AA", "y": "AA"});
    let no_kid: serde_json::Value =
        serde_json::from_str(&fresh(Algorithm::EdDsa).public_jwk().to_json()).unwrap();
    let set = KeySet::from_jwks_json(
        json!({"keys": [entry.clone(), unsupported, no_kid]})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(set.len(), 1);
    let mut leaked = entry;
    leaked["d"] = json!("AAAA");
    assert_eq!(
        KeySet::from_jwks_json(json!({"keys": [leaked]}).to_string().as_bytes()).unwrap_err(),
        JwkError::PrivateMember("d")
    );
    assert_eq!(
        KeySet::from_jwks_json(b"[]").unwrap_err(),
        JwkError::NotAnObject
    );
    let many: Vec<_> = (0..65).map(|_| json!({})).collect();
    assert_eq!(
        KeySet::from_jwks_json(json!({"keys": many}).to_string().as_bytes()).unwrap_err(),
        JwkError::TooLarge
    );
}
