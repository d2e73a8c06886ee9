//! Every published test vector of standards.md §4, read from `testdata/`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::testdata;
use keybound_core::cert::decode_client_cert;
use keybound_core::dpop::{
    IatWindow, NoncePolicy, ProofBuilder, ProofError, ProofRequest, ProofVerifier,
};
use keybound_core::{AccessTokenHash, Algorithm, CertThumbprint, Htu, PublicJwk, UnixTime};

fn vectors(file: &str) -> Vec<serde_json::Value> {
    testdata(file)["vectors"].as_array().unwrap().clone()
}

#[test]
fn rfc7638_and_published_thumbprints() {
    let all = vectors("thumbprints.json");
    assert!(all.len() >= 7);
    for v in all {
        let jwk = PublicJwk::from_json(v["jwk"].to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{}: {e}", v["name"]));
        assert_eq!(jwk.thumbprint().as_str(), v["thumbprint"], "{}", v["name"]);
    }
}

#[test]
fn leading_zero_coordinate_is_hashed_as_received() {
    let all = vectors("thumbprints.json");
    let v = all
        .iter()
        .find(|v| v["jwk"]["x"].as_str().is_some_and(|x| x.starts_with("AB")))
        .expect("the leading-zero vector");
    let jwk = PublicJwk::from_json(v["jwk"].to_string().as_bytes()).unwrap();
    assert_eq!(
        jwk.thumbprint().as_str(),
        "MEhdRysfC6YMBxMtlBzyLwTWHmLLusOkEh_ofH9GPjs"
    );
}

fn expected_error(rule: &str, err: &ProofError) -> bool {
    match rule {
        "signature" => *err == ProofError::InvalidSignature,
        "typ" => matches!(
            err,
            ProofError::InvalidTyp | ProofError::MissingMember("typ")
        ),
        "alg" => *err == ProofError::UnsupportedAlgorithm,
        "jwk" => matches!(
            err,
            ProofError::MissingMember("jwk")
                | ProofError::WrongType("jwk")
                | ProofError::InvalidJwk(_)
        ),
        "private_key" => *err == ProofError::PrivateKey,
        "iat_future" => *err == ProofError::IatInFuture,
        "iat_past" => *err == ProofError::IatTooOld,
        other => panic!("unknown rule {other}"),
    }
}

#[test]
fn rfc9449_and_go_dpop_proofs() {
    // The core supports every algorithm in its table; the server's allow-list narrows it.
    let verifier = ProofVerifier::new(&Algorithm::ALL, IatWindow::default());
    let all = vectors("proofs.json");
    assert!(all.len() >= 18);
    for v in all {
        let name = v["name"].as_str().unwrap();
        let htu = Htu::parse(v["uri"].as_str().unwrap()).unwrap();
        let request = ProofRequest {
            method: v["method"].as_str().unwrap(),
            htu: &htu,
            now: UnixTime::from_secs(v["now"].as_u64().unwrap()),
            access_token: v["access_token"].as_str(),
            nonce: NoncePolicy::NotUsed,
        };
        let result = verifier.verify(v["proof"].as_str().unwrap(), &request);
        match v["expect"].as_str().unwrap() {
            "accept" => {
                let proof = result.unwrap_or_else(|e| panic!("{name}: {e:?}"));
                assert_eq!(proof.thumbprint().as_str(), v["jkt"], "{name}");
            }
            _ => {
                let err = result.expect_err(name);
                assert!(
                    expected_error(v["rule"].as_str().unwrap(), &err),
                    "{name}: {err:?}"
                );
            }
        }
    }
}

#[test]
fn fapi_default_allow_list_refuses_rs256_and_es384_vectors() {
    for v in vectors("proofs.json") {
        let name = v["name"].as_str().unwrap();
        if !name.contains("RS256") && !name.contains("ES384") {
            continue;
        }
        let htu = Htu::parse(v["uri"].as_str().unwrap()).unwrap();
        let request = ProofRequest {
            method: "POST",
            htu: &htu,
            now: UnixTime::from_secs(v["now"].as_u64().unwrap()),
            access_token: None,
            nonce: NoncePolicy::NotUsed,
        };
        let err = ProofVerifier::default().verify(v["proof"].as_str().unwrap(), &request);
        assert_eq!(err.unwrap_err(), ProofError::UnsupportedAlgorithm, "{name}");
    }
}

#[test]
fn ed25519_proofs_are_reproduced_byte_for_byte() {
    let key = common::ed25519();
    let all = vectors("proofs.json");
    for name in ["ed25519_token_request", "ed25519_resource_request"] {
        let v = all.iter().find(|v| v["name"] == name).unwrap();
        let expected = v["proof"].as_str().unwrap();
        let payload = expected.split('.').nth(1).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .unwrap(),
        )
        .unwrap();
        let iat = UnixTime::from_secs(claims["iat"].as_u64().unwrap());
        let mut builder = ProofBuilder::new(
            claims["htm"].as_str().unwrap(),
            claims["htu"].as_str().unwrap(),
            iat,
        )
        .jti(claims["jti"].as_str().unwrap());
        if let Some(token) = v["access_token"].as_str() {
            builder = builder.access_token(token);
        }
        let proof = builder
            .sign(&key, &aws_lc_rs::rand::SystemRandom::new())
            .unwrap();
        assert_eq!(proof, expected, "{name}");
    }
}

#[test]
fn ath_vector() {
    for v in vectors("ath.json") {
        let ath = AccessTokenHash::of(v["access_token"].as_str().unwrap());
        assert_eq!(ath.as_str(), v["ath"]);
    }
}

#[test]
fn x5t_s256_and_client_cert_header_vectors() {
    use base64::Engine as _;
    for v in vectors("certificates.json") {
        let der = base64::engine::general_purpose::STANDARD
            .decode(v["der_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            CertThumbprint::of_der(&der).as_str(),
            v["x5t_s256"],
            "{}",
            v["name"]
        );
        if let Some(header) = v["client_cert_header"].as_str() {
            assert_eq!(decode_client_cert(header).unwrap(), der);
            assert_eq!(keybound_core::cert::encode_client_cert(&der), header);
        }
    }
}

#[test]
fn htu_comparison_table() {
    let all = vectors("htu.json");
    assert_eq!(all.len(), 13);
    for v in all {
        let request = Htu::parse(v["request_uri"].as_str().unwrap()).unwrap();
        let claim = Htu::parse(v["htu_claim"].as_str().unwrap());
        let equal = claim.is_ok_and(|c| c == request);
        assert_eq!(
            equal,
            v["expect"] == "accept",
            "{} vs {}",
            v["request_uri"],
            v["htu_claim"]
        );
    }
}
