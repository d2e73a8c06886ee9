//! The Resource Server layer end to end, one named test per rule: standards.md §1.2 (every proof
//! check at the RS), §1.3 (RS response forms), §2.8 (downgrades) and the RS rows of §5, plus the
//! verified-token cache, `htu` from configuration, and JWKS discovery and rotation over HTTP.
//! Every rejection is checked for its status, its `WWW-Authenticate` schemes and error codes,
//! `algs` on DPoP challenges, and CORS exposure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use keybound_core::challenge::Scheme;
use keybound_core::{Algorithm, ErrorCode, NonceKeyRing, NonceSecret};
use keybound_resource::{JwksSource, KeySource, ResourceConfig, ResourceVerifier};
use keybound_store::MemoryReplayCache;
use serde_json::json;

const BAD_REQUEST_BOTH: [(Scheme, Option<ErrorCode>); 2] = [
    (Scheme::DPoP, Some(ErrorCode::InvalidRequest)),
    (Scheme::Bearer, Some(ErrorCode::InvalidRequest)),
];

fn secret() -> NonceSecret {
    NonceSecret::new(&[7; 32]).unwrap()
}

fn rs_nonce_ring() -> NonceKeyRing {
    NonceKeyRing::new("https://rs.example.com", &secret(), None)
}

// ---------------------------------------------------------------------------------------------
// Success

#[tokio::test]
async fn rs_dpop_scheme_in_any_case_is_accepted_and_handler_sees_claims() {
    let rs = Rs::new();
    let token = rs.bound_token();
    // §5 #36: the scheme in any case; the header name in any case too.
    for (scheme, dpop_header) in [("DPoP", "DPoP"), ("dpop", "dpop"), ("DPOP", "DPOP")] {
        let proof = rs.proof(RES_URL, &token);
        let authorization = format!("{scheme} {token}");
        let reply = rs
            .get(
                RES,
                &[("authorization", &authorization), (dpop_header, &proof)],
            )
            .await;
        let body = reply.assert_ok();
        assert_eq!(body["sub"], "alice");
        assert_eq!(body["client_id"], "app");
        assert_eq!(body["scheme"], "DPoP");
        assert_eq!(body["jkt"], rs.client.public_jwk().thumbprint().as_str());
    }
}

#[tokio::test]
async fn rs_cors_exposes_www_authenticate_and_dpop_nonce_on_success_and_rejection() {
    let rs = Rs::new();
    let token = rs.bound_token();
    let ok = rs.dpop(RES, &token, &rs.proof(RES_URL, &token)).await;
    ok.assert_ok();
    assert_eq!(
        ok.header("access-control-expose-headers"),
        Some("WWW-Authenticate, DPoP-Nonce")
    );
    let refused = rs.get(RES, &[]).await;
    refused.assert_rejected(StatusCode::UNAUTHORIZED, &[(Scheme::DPoP, None)]);
    assert_eq!(
        refused.header("access-control-expose-headers"),
        Some("WWW-Authenticate, DPoP-Nonce")
    );
}

#[tokio::test]
async fn rs_extra_header_params_and_claims_are_accepted() {
    // §5 #37: tx_id in the header, tx_id_key / nbf / exp in the claims.
    let rs = Rs::new();
    let token = rs.bound_token();
    let now = rs.now();
    let header = with(proof_header(&rs.client), "tx_id", json!("abc"));
    let claims = with(
        with(
            with(proof_claims(RES_URL, now, &token), "tx_id_key", json!("k")),
            "nbf",
            json!(now),
        ),
        "exp",
        json!(now + 300),
    );
    rs.dpop(RES, &token, &forge(&header, &claims, &rs.client))
        .await
        .assert_ok();
}

// ---------------------------------------------------------------------------------------------
// Credentials (§1.3)

#[tokio::test]
async fn rs_no_credentials_gets_bare_challenges_with_algs() {
    let rs = Rs::new();
    let reply = rs.get(RES, &[]).await;
    reply.assert_rejected(StatusCode::UNAUTHORIZED, &[(Scheme::DPoP, None)]);
    assert_eq!(
        reply.www_authenticate(),
        vec![format!("DPoP algs=\"{ALGS}\"")]
    );

    // An unknown scheme is no credential we understand: the same bare challenge.
    let reply = rs
        .get(RES, &[("authorization", "Basic YWxpY2U6c2VjcmV0")])
        .await;
    reply.assert_rejected(StatusCode::UNAUTHORIZED, &[(Scheme::DPoP, None)]);
}

#[tokio::test]
async fn rs_no_credentials_offers_bearer_only_when_unbound_bearer_is_accepted() {
    let rs = Rs::with(|c| c.accept_unbound_bearer(true));
    rs.get(RES, &[]).await.assert_rejected(
        StatusCode::UNAUTHORIZED,
        &[(Scheme::DPoP, None), (Scheme::Bearer, None)],
    );
}

#[tokio::test]
async fn rs_dpop_scheme_without_dpop_header_is_invalid_request() {
    // §1.3 / §5 #28.
    let rs = Rs::new();
    let token = rs.bound_token();
    let authorization = format!("DPoP {token}");
    rs.get(RES, &[("authorization", &authorization)])
        .await
        .assert_rejected(
            StatusCode::BAD_REQUEST,
            &[(Scheme::DPoP, Some(ErrorCode::InvalidRequest))],
        );
}

#[tokio::test]
async fn rs_missing_proof_is_reported_before_the_token_is_checked() {
    // The DPoP scheme without a proof is a malformed request whatever the token: no key
    // lookup or signature check is spent on it.
    let rs = Rs::new();
    rs.get(RES, &[("authorization", "DPoP not-a-valid-token")])
        .await
        .assert_rejected(
            StatusCode::BAD_REQUEST,
            &[(Scheme::DPoP, Some(ErrorCode::InvalidRequest))],
        );
}

#[tokio::test]
async fn rs_two_authorization_headers_are_invalid_request() {
    let rs = Rs::new();
    let token = rs.bound_token();
    let proof = rs.proof(RES_URL, &token);
    let dpop = format!("DPoP {token}");
    let bearer = format!("Bearer {token}");
    rs.get(
        RES,
        &[
            ("authorization", &dpop),
            ("authorization", &bearer),
            ("dpop", &proof),
        ],
    )
    .await
    .assert_rejected(StatusCode::BAD_REQUEST, &BAD_REQUEST_BOTH);
    rs.get(
        RES,
        &[
            ("authorization", &dpop),
            ("authorization", &dpop),
            ("dpop", &proof),
        ],
    )
    .await
    .assert_rejected(StatusCode::BAD_REQUEST, &BAD_REQUEST_BOTH);
}

#[tokio::test]
async fn rs_bearer_scheme_with_dpop_header_is_invalid_request() {
    // §1.3 "two auth methods" and §5 #27 with a DPoP header.
    let rs = Rs::with(|c| c.accept_unbound_bearer(true));
    for token in [rs.bound_token(), rs.unbound_token()] {
        let proof = rs.proof(RES_URL, &token);
        let bearer = format!("Bearer {token}");
        rs.get(RES, &[("authorization", &bearer), ("dpop", &proof)])
            .await
            .assert_rejected(StatusCode::BAD_REQUEST, &BAD_REQUEST_BOTH);
    }
}

#[tokio::test]
async fn rs_token_in_query_is_invalid_request() {
    // §5 #29: alone, and together with the header.
    let rs = Rs::new();
    let token = rs.bound_token();
    let in_query = format!("{RES}?access_token={token}");
    rs.get(&in_query, &[])
        .await
        .assert_rejected(StatusCode::BAD_REQUEST, &BAD_REQUEST_BOTH);
    let also_query = format!("{RES}?x=1&access_token={token}");
    rs.dpop(&also_query, &token, &rs.proof(RES_URL, &token))
        .await
        .assert_rejected(StatusCode::BAD_REQUEST, &BAD_REQUEST_BOTH);
    // Control: another query parameter is fine.
    rs.dpop(&format!("{RES}?x=1"), &token, &rs.proof(RES_URL, &token))
        .await
        .assert_ok();
}

// ---------------------------------------------------------------------------------------------
// Every rule of §1.2 at the RS

#[tokio::test]
async fn rule01_two_dpop_lines_or_comma_joined_are_invalid_dpop_proof() {
    let rs = Rs::new();
    let token = rs.bound_token();
    let authorization = format!("DPoP {token}");
    let (p1, p2) = (rs.proof(RES_URL, &token), rs.proof(RES_URL, &token));
    rs.get(
        RES,
        &[
            ("authorization", &authorization),
            ("dpop", &p1),
            ("dpop", &p2),
        ],
    )
    .await
    .assert_dpop_error(ErrorCode::InvalidDpopProof);
    let joined = format!("{p1}, {p2}");
    rs.get(RES, &[("authorization", &authorization), ("dpop", &joined)])
        .await
        .assert_dpop_error(ErrorCode::InvalidDpopProof);
    // Neither attempt burnt p1.
    rs.dpop(RES, &token, &p1).await.assert_ok();
}

#[tokio::test]
async fn rule02_malformed_proof_is_invalid_dpop_proof() {
    let rs = Rs::new();
    let token = rs.bound_token();
    let proof = rs.proof(RES_URL, &token);
    let parts: Vec<&str> = proof.split('.').collect();
    for bad in [
        format!("{}.{}", parts[0], parts[1]),
        format!("{proof}.x.y"),
        format!("{}.{}.", parts[0], parts[1]),
        format!("{}.bm90IGpzb24.{}", parts[0], parts[2]),
        "junk".to_owned(),
    ] {
        rs.dpop(RES, &token, &bad)
            .await
            .assert_dpop_error(ErrorCode::InvalidDpopProof);
    }
}

#[tokio::test]
async fn rule03_missing_members_and_missing_ath_are_invalid_dpop_proof() {
    let rs = Rs::new();
    let token = rs.bound_token();
    let now = rs.now();
    for member in ["typ", "alg", "jwk"] {
        let proof = forge(
            &without(proof_header(&rs.client), member),
            &proof_claims(RES_URL, now, &token),
            &rs.client,
        );
        rs.dpop(RES, &token, &proof)
            .await
            .assert_dpop_error(ErrorCode::InvalidDpopProof);
    }
    // `ath` is required at the RS.
    for claim in ["jti", "htm", "htu", "iat", "ath"] {
        let proof = forge(
            &proof_header(&rs.client),
            &without(proof_claims(RES_URL, now, &token), claim),
            &rs.client,
        );
        rs.dpop(RES, &token, &proof)
            .await
            .assert_dpop_error(ErrorCode::InvalidDpopProof);
    }
    let wrong_type = forge(
        &proof_header(&rs.client),
        &with(
            proof_claims(RES_URL, now, &token),
            "iat",
            json!(now.to_string()),
        ),
        &rs.client,
    );
    rs.dpop(RES, &token, &wrong_type)
        .await
        .assert_dpop_error(ErrorCode::InvalidDpopProof);
}

#[tokio::test]
async fn rule04_typ_must_be_dpop_jwt() {
    let rs = Rs::new();
    let token = rs.bound_token();
    let now = rs.now();
    for typ in ["JWT", "at+jwt", "dpop+jwt+wrongyousee"] {
        let proof = forge(
            &with(proof_header(&rs.client), "typ", json!(typ)),
            &proof_claims(RES_URL, now, &token),
            &rs.client,
        );
        rs.dpop(RES, &token, &proof)
            .await
            .assert_dpop_error(ErrorCode::InvalidDpopProof);
    }
    // Note a: the media-type spellings are accepted.
    for typ in ["application/dpop+jwt", "DPOP+JWT"] {
        let proof = forge(
            &with(proof_header(&rs.client), "typ", json!(typ)),
            &proof_claims(RES_URL, now, &token),
            &rs.client,
        );
        rs.dpop(RES, &token, &proof).await.assert_ok();
    }
}

#[tokio::test]
async fn rule05_alg_none_symmetric_non_fapi_and_mismatched_algs_are_rejected() {
    let rs = Rs::new();
    let token = rs.bound_token();
    let claims = || proof_claims(RES_URL, rs.now(), &token);
    // §5 #1: alg none, unsigned and signed.
    let none_header = with(proof_header(&rs.client), "alg", json!("none"));
    let signed = forge(&none_header, &claims(), &rs.client);
    let unsigned = format!("{}.", &signed[..signed.rfind('.').unwrap()]);
    // §5 #2, FAPI: HS256 and RS256.
    let hs256 = forge(
        &with(proof_header(&rs.client), "alg", json!("HS256")),
        &claims(),
        &rs.client,
    );
    let rs256 = forge(
        &with(proof_header(&rs.client), "alg", json!("RS256")),
        &claims(),
        &rs.client,
    );
    // §5 #4: ES256 with an Ed25519 key.
    let ed = key(Algorithm::EdDsa);
    let mismatched = forge(
        &with(proof_header(&ed), "alg", json!("ES256")),
        &claims(),
        &ed,
    );
    for proof in [signed, unsigned, hs256, rs256, mismatched] {
        rs.dpop(RES, &token, &proof)
            .await
            .assert_dpop_error(ErrorCode::InvalidDpopProof);
    }
}

#[tokio::test]
async fn rule06_bad_signature_is_invalid_dpop_proof() {
    let rs = Rs::new();
    let token = rs.bound_token();
    let other = key(Algorithm::Es256);
    // Signed by another key than the one in `jwk`.
    let wrong_key = forge(
        &proof_header(&rs.client),
        &proof_claims(RES_URL, rs.now(), &token),
        &other,
    );
    // A valid proof with the signature of another proof.
    let good = rs.proof(RES_URL, &token);
    let donor = rs.proof(RES_URL, &token);
    let swapped = format!(
        "{}.{}",
        &good[..good.rfind('.').unwrap()],
        &donor[donor.rfind('.').unwrap() + 1..]
    );
    for proof in [wrong_key, swapped] {
        rs.dpop(RES, &token, &proof)
            .await
            .assert_dpop_error(ErrorCode::InvalidDpopProof);
    }
    rs.dpop(RES, &token, &good).await.assert_ok();
}

#[tokio::test]
async fn rule07_private_key_in_jwk_is_invalid_dpop_proof() {
    let rs = Rs::new();
    let token = rs.bound_token();
    let mut header = proof_header(&rs.client);
    header["jwk"]["d"] = json!("870MB6gfuTJ4HtUnUvYMyJpr5eUZNP4Bk43bVdj3eAE");
    let proof = forge(
        &header,
        &proof_claims(RES_URL, rs.now(), &token),
        &rs.client,
    );
    rs.dpop(RES, &token, &proof)
        .await
        .assert_dpop_error(ErrorCode::InvalidDpopProof);
}

#[tokio::test]
async fn rule08_htm_mismatch_is_invalid_dpop_proof() {
    // §5 #16: another method, or the right one in another case.
    let rs = Rs::new();
    let token = rs.bound_token();
    for htm in ["POST", "get"] {
        let proof = proof_by(&rs.client, htm, RES_URL, rs.now(), &token);
        rs.dpop(RES, &token, &proof)
            .await
            .assert_dpop_error(ErrorCode::InvalidDpopProof);
    }
}

#[tokio::test]
async fn rule09_htu_for_another_path_or_host_is_invalid_dpop_proof() {
    // §5 #15 and the reject rows of the §2.1 table.
    let rs = Rs::new();
    let token = rs.bound_token();
    for htu in [
        "https://rs.example.com/api/other",
        "https://evil.example/api/res",
        "https://rs.example.com:8443/api/res",
        "http://rs.example.com/api/res",
        "https://rs.example.com/API/res",
        "https://rs.example.com/api/res/",
        "https://rs.example.com/api/resohnonotagain",
        "/api/res",
    ] {
        let proof = forge(
            &proof_header(&rs.client),
            &proof_claims(htu, rs.now(), &token),
            &rs.client,
        );
        rs.dpop(RES, &token, &proof)
            .await
            .assert_dpop_error(ErrorCode::InvalidDpopProof);
    }
    // A proof for /api/res is not one for /api/admin either.
    let proof = rs.proof(RES_URL, &token);
    rs.dpop(ADMIN, &token, &proof)
        .await
        .assert_dpop_error(ErrorCode::InvalidDpopProof);
}

#[tokio::test]
async fn rule09_htu_with_query_fragment_uppercase_host_or_default_port_is_accepted() {
    // §5 #17 and the accept rows of the §2.1 table, for a request with a query.
    let rs = Rs::new();
    let token = rs.bound_token();
    for htu in [
        "https://rs.example.com/api/res",
        "https://rs.example.com/api/res?x=1#f",
        "https://rs.example.com/api/res?allthedoorsonthisspaceshiphavebeen#programmed",
        "HTTPS://RS.EXAMPLE.COM/api/res",
        "https://rs.example.com:443/api/res",
        "https://rs.example.com/api/./x/../res",
        "https://rs.example.com/api/%72es",
    ] {
        let proof = forge(
            &proof_header(&rs.client),
            &proof_claims(htu, rs.now(), &token),
            &rs.client,
        );
        let reply = rs.dpop(&format!("{RES}?x=1"), &token, &proof).await;
        assert_eq!(reply.status, StatusCode::OK, "{htu}");
        reply.assert_ok();
    }
}

#[tokio::test]
async fn rule10_nonce_required_then_retry_with_the_issued_nonce_succeeds() {
    let rs = Rs::with(|c| c.nonces(rs_nonce_ring(), true));
    let token = rs.bound_token();
    let first = rs.dpop(RES, &token, &rs.proof(RES_URL, &token)).await;
    first.assert_dpop_error(ErrorCode::UseDpopNonce);
    let nonce = first.header("dpop-nonce").expect("DPoP-Nonce").to_owned();
    assert_eq!(first.header("cache-control"), Some("no-store"));
    assert_eq!(first.headers.get_all("dpop-nonce").iter().count(), 1);

    let retry = keybound_core::dpop::ProofBuilder::new(
        "GET",
        RES_URL,
        keybound_core::UnixTime::from_secs(rs.now()),
    )
    .access_token(&token)
    .nonce(&nonce)
    .sign(&rs.client, &aws_lc_rs::rand::SystemRandom::new())
    .unwrap();
    rs.dpop(RES, &token, &retry).await.assert_ok();
}

#[tokio::test]
async fn rule10_optional_nonces_accept_proofs_without_one() {
    let rs = Rs::with(|c| c.nonces(rs_nonce_ring(), false));
    let token = rs.bound_token();
    rs.dpop(RES, &token, &rs.proof(RES_URL, &token))
        .await
        .assert_ok();
}

fn proof_with_nonce(rs: &Rs, token: &str, nonce: serde_json::Value) -> String {
    forge(
        &proof_header(&rs.client),
        &with(proof_claims(RES_URL, rs.now(), token), "nonce", nonce),
        &rs.client,
    )
}

#[tokio::test]
async fn rule10_as_nonce_or_unknown_nonce_gets_use_dpop_nonce() {
    // §5 #23: a nonce from the AS (purpose "as", same secret) is not the RS's.
    let rs = Rs::with(|c| c.nonces(rs_nonce_ring(), true));
    let token = rs.bound_token();
    let now = keybound_core::UnixTime::from_secs(rs.now());
    let as_nonce = NonceKeyRing::new("as", &secret(), None).issue(now);
    let well_formed_but_unknown = "A".repeat(43);
    for nonce in [as_nonce.as_str(), well_formed_but_unknown.as_str()] {
        let reply = rs
            .dpop(RES, &token, &proof_with_nonce(&rs, &token, json!(nonce)))
            .await;
        reply.assert_dpop_error(ErrorCode::UseDpopNonce);
        let fresh = reply.header("dpop-nonce").expect("a fresh DPoP-Nonce");
        assert_ne!(fresh, nonce);
        assert_eq!(reply.header("cache-control"), Some("no-store"));
    }
}

#[tokio::test]
async fn rule10_expired_nonce_gets_use_dpop_nonce() {
    let rs = Rs::with(|c| c.nonces(rs_nonce_ring(), true));
    let old = rs_nonce_ring().issue(keybound_core::UnixTime::from_secs(rs.now()));
    rs.advance(600);
    let token = rs.bound_token();
    let reply = rs
        .dpop(
            RES,
            &token,
            &proof_with_nonce(&rs, &token, json!(old.as_str())),
        )
        .await;
    reply.assert_dpop_error(ErrorCode::UseDpopNonce);
    assert!(reply.header("dpop-nonce").is_some());
}

#[tokio::test]
async fn rule10_nonce_not_nqchar_is_invalid_dpop_proof() {
    // §5 #24: not NQCHAR, empty, or not a string.
    let rs = Rs::with(|c| c.nonces(rs_nonce_ring(), true));
    let token = rs.bound_token();
    for nonce in [json!("has space"), json!("quote\""), json!(""), json!(42)] {
        rs.dpop(RES, &token, &proof_with_nonce(&rs, &token, nonce))
            .await
            .assert_dpop_error(ErrorCode::InvalidDpopProof);
    }
}

#[tokio::test]
async fn rule11_iat_window_edges_are_inclusive() {
    // §2.2: now-60 ≤ iat ≤ now+30; §5 #18 and #19.
    let rs = Rs::new();
    let token = rs.bound_token();
    let now = rs.now();
    for iat in [now - 60, now - 10, now, now + 10, now + 30] {
        let proof = proof_by(&rs.client, "GET", RES_URL, iat, &token);
        let reply = rs.dpop(RES, &token, &proof).await;
        assert_eq!(reply.status, StatusCode::OK, "iat = now{:+}", iat - now);
        reply.assert_ok();
    }
    for iat in [now - 61, now + 31, now - 3600, now + 3600] {
        let proof = proof_by(&rs.client, "GET", RES_URL, iat, &token);
        rs.dpop(RES, &token, &proof)
            .await
            .assert_dpop_error(ErrorCode::InvalidDpopProof);
    }
}

#[tokio::test]
async fn rule11_same_proof_twice_is_replay() {
    // §5 #20.
    let rs = Rs::new();
    let token = rs.bound_token();
    let proof = rs.proof(RES_URL, &token);
    rs.dpop(RES, &token, &proof).await.assert_ok();
    rs.dpop(RES, &token, &proof)
        .await
        .assert_dpop_error(ErrorCode::InvalidDpopProof);
    // Ten seconds later, still inside the window: still a replay.
    rs.advance(10);
    rs.dpop(RES, &token, &proof)
        .await
        .assert_dpop_error(ErrorCode::InvalidDpopProof);
}

#[tokio::test]
async fn rule11_a_request_refused_before_the_replay_record_does_not_burn_the_jti() {
    let rs = Rs::new();
    // Refused for the scheme mix (400) before any proof work, then accepted.
    let token = rs.bound_token();
    let proof = rs.proof(RES_URL, &token);
    let bearer = format!("Bearer {token}");
    rs.get(RES, &[("authorization", &bearer), ("dpop", &proof)])
        .await
        .assert_rejected(StatusCode::BAD_REQUEST, &BAD_REQUEST_BOTH);
    rs.dpop(RES, &token, &proof).await.assert_ok();

    // Refused for the token (not valid for another 10 s), then accepted once it is.
    let mut claims = rs.claims();
    claims.iat = rs.now() + 10;
    let early = rs.sign(&claims);
    let proof = rs.proof(RES_URL, &early);
    rs.dpop(RES, &early, &proof)
        .await
        .assert_dpop_error(ErrorCode::InvalidToken);
    rs.advance(10);
    rs.dpop(RES, &early, &proof).await.assert_ok();
}

#[tokio::test]
async fn rule11_insufficient_scope_is_checked_before_the_replay_record_so_a_403_burns_nothing() {
    // Scopes are checked before the jti is recorded (lib.rs: 5. scopes, 6. jti): the same
    // proof sent again is refused for scope again, not as a replay.
    let rs = Rs::new();
    let token = rs.bound_token();
    let proof = rs.proof(ADMIN_URL, &token);
    for _ in 0..2 {
        let reply = rs.dpop(ADMIN, &token, &proof).await;
        reply.assert_rejected(
            StatusCode::FORBIDDEN,
            &[(Scheme::DPoP, Some(ErrorCode::InsufficientScope))],
        );
        assert_eq!(reply.challenge(Scheme::DPoP).param("scope"), Some("admin"));
    }
}

#[tokio::test]
async fn rule12a_ath_for_another_token_is_invalid_dpop_proof() {
    // §5 #26: a token swap between two tokens bound to the same key.
    let rs = Rs::new();
    let (t1, t2) = (rs.bound_token(), rs.bound_token());
    let proof_for_t2 = rs.proof(RES_URL, &t2);
    rs.dpop(RES, &t1, &proof_for_t2)
        .await
        .assert_dpop_error(ErrorCode::InvalidDpopProof);
    // Wrong type for ath.
    let proof = forge(
        &proof_header(&rs.client),
        &with(proof_claims(RES_URL, rs.now(), &t1), "ath", json!(1)),
        &rs.client,
    );
    rs.dpop(RES, &t1, &proof)
        .await
        .assert_dpop_error(ErrorCode::InvalidDpopProof);
    // The proof for t2 was not burnt.
    rs.dpop(RES, &t2, &proof_for_t2).await.assert_ok();
}

#[tokio::test]
async fn rule12b_valid_proof_by_another_key_is_invalid_token() {
    // §5 #25: a stolen token with the attacker's own key, correct ath.
    let rs = Rs::new();
    let token = rs.bound_token();
    let attacker = key(Algorithm::Es256);
    let proof = proof_by(&attacker, "GET", RES_URL, rs.now(), &token);
    rs.dpop(RES, &token, &proof)
        .await
        .assert_dpop_error(ErrorCode::InvalidToken);
    // With an Ed25519 attacker key too.
    let attacker = key(Algorithm::EdDsa);
    let proof = proof_by(&attacker, "GET", RES_URL, rs.now(), &token);
    rs.dpop(RES, &token, &proof)
        .await
        .assert_dpop_error(ErrorCode::InvalidToken);
}

// ---------------------------------------------------------------------------------------------
// Downgrades (§2.8)

#[tokio::test]
async fn rs_dpop_bound_token_as_bearer_is_invalid_token() {
    // §5 #27, with and without unbound bearer tokens accepted.
    for accept in [false, true] {
        let rs = Rs::with(|c| c.accept_unbound_bearer(accept));
        let token = rs.bound_token();
        for scheme in ["Bearer", "bEARER"] {
            let bearer = format!("{scheme} {token}");
            let reply = rs.get(RES, &[("authorization", &bearer)]).await;
            reply.assert_rejected(
                StatusCode::UNAUTHORIZED,
                &[
                    (Scheme::DPoP, None),
                    (Scheme::Bearer, Some(ErrorCode::InvalidToken)),
                ],
            );
        }
    }
}

#[tokio::test]
async fn rs_unbound_token_with_dpop_scheme_is_invalid_token() {
    // §5 #30, whether or not unbound bearer tokens are accepted.
    for accept in [false, true] {
        let rs = Rs::with(|c| c.accept_unbound_bearer(accept));
        let token = rs.unbound_token();
        let reply = rs.dpop(RES, &token, &rs.proof(RES_URL, &token)).await;
        let mut expected = vec![(Scheme::DPoP, Some(ErrorCode::InvalidToken))];
        if accept {
            expected.push((Scheme::Bearer, None));
        }
        reply.assert_rejected(StatusCode::UNAUTHORIZED, &expected);
    }
}

#[tokio::test]
async fn rs_unbound_token_as_bearer_is_refused_unless_accept_unbound() {
    let strict = Rs::new();
    let token = strict.unbound_token();
    let bearer = format!("Bearer {token}");
    strict
        .get(RES, &[("authorization", &bearer)])
        .await
        .assert_rejected(
            StatusCode::UNAUTHORIZED,
            &[
                (Scheme::DPoP, None),
                (Scheme::Bearer, Some(ErrorCode::InvalidToken)),
            ],
        );

    let lenient = Rs::with(|c| c.accept_unbound_bearer(true));
    let token = lenient.unbound_token();
    let bearer = format!("bearer {token}");
    let reply = lenient.get(RES, &[("authorization", &bearer)]).await;
    let body = reply.assert_ok();
    assert_eq!(body["scheme"], "Bearer");
    assert_eq!(body["jkt"], serde_json::Value::Null);
}

// ---------------------------------------------------------------------------------------------
// Scope and the access token itself

#[tokio::test]
async fn rs_insufficient_scope_is_403_with_scope() {
    let rs = Rs::new();
    let token = rs.bound_token();
    let reply = rs.dpop(ADMIN, &token, &rs.proof(ADMIN_URL, &token)).await;
    reply.assert_rejected(
        StatusCode::FORBIDDEN,
        &[(Scheme::DPoP, Some(ErrorCode::InsufficientScope))],
    );
    assert_eq!(reply.challenge(Scheme::DPoP).param("scope"), Some("admin"));

    let mut claims = rs.claims();
    claims.scope = Some("read admin".to_owned());
    let admin = rs.sign(&claims);
    rs.dpop(ADMIN, &admin, &rs.proof(ADMIN_URL, &admin))
        .await
        .assert_ok();
}

#[tokio::test]
async fn rs_expired_wrong_audience_wrong_issuer_or_unknown_key_is_invalid_token() {
    let rs = Rs::new();
    let now = rs.now();
    let mut expired = rs.claims();
    expired.iat = now - 600;
    expired.exp = now - 6; // beyond the 5 s leeway
    let mut audience = rs.claims();
    audience.aud = keybound_core::access_token::Audience::One("https://other.example".into());
    let mut issuer = rs.claims();
    issuer.iss = "https://evil.example".into();
    let mut tokens = vec![
        ("expired", rs.sign(&expired)),
        ("audience", rs.sign(&audience)),
        ("issuer", rs.sign(&issuer)),
    ];
    // Same kid, another key: the signature fails. Unknown kid: no key at all.
    tokens.push((
        "other key, same kid",
        signer("k1").sign(&rs.claims()).unwrap(),
    ));
    tokens.push(("unknown kid", signer("k9").sign(&rs.claims()).unwrap()));
    for (what, token) in tokens {
        let reply = rs.dpop(RES, &token, &rs.proof(RES_URL, &token)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}");
        reply.assert_dpop_error(ErrorCode::InvalidToken);
    }
    // A token that is not a JWT at all.
    rs.dpop(RES, "not-a-jwt", &rs.proof(RES_URL, "not-a-jwt"))
        .await
        .assert_dpop_error(ErrorCode::InvalidToken);
}

#[tokio::test]
async fn rs_issuer_with_trailing_slash_is_matched_exactly() {
    // RFC 9068 §4 / RFC 8414 §3.3: `iss` must exactly match the configured issuer. Issuers
    // ending in "/" are common (e.g. "https://tenant.auth0.com/").
    let issuer = "https://as.example.com/";
    let rs = Rs::for_issuer(issuer, |c| c);
    let token = rs.bound_token();
    assert_eq!(rs.claims().iss, issuer);
    rs.dpop(RES, &token, &rs.proof(RES_URL, &token))
        .await
        .assert_ok();
}

#[tokio::test]
async fn rs_verified_token_cache_serves_repeated_tokens() {
    let rs = Rs::new();
    let token = rs.bound_token();
    rs.dpop(RES, &token, &rs.proof(RES_URL, &token))
        .await
        .assert_ok();
    assert_eq!(rs.cache_hits(), 0);
    for _ in 0..3 {
        rs.dpop(RES, &token, &rs.proof(RES_URL, &token))
            .await
            .assert_ok();
    }
    assert_eq!(rs.cache_hits(), 3);
    // A cached token still has its proof checked in full.
    rs.dpop(
        RES,
        &token,
        &proof_by(&key(Algorithm::Es256), "GET", RES_URL, rs.now(), &token),
    )
    .await
    .assert_dpop_error(ErrorCode::InvalidToken);
    // ... and expires from the cache at its exp (+ the verifier's leeway).
    rs.advance(400);
    rs.dpop(RES, &token, &rs.proof(RES_URL, &token))
        .await
        .assert_dpop_error(ErrorCode::InvalidToken);
    assert!(
        rs.verifier
            .metrics()
            .render()
            .contains("keybound_resource_requests_accepted_total 4")
    );
}

// ---------------------------------------------------------------------------------------------
// htu from configuration

/// `GET /api/res` with every header a proxy or attacker could use to name another origin.
async fn spoofed(rs: &Rs, authorization: &str, proof: &str) -> Reply {
    rs.get(
        RES,
        &[
            ("host", "evil.example"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-proto", "http"),
            ("forwarded", "host=evil.example;proto=http"),
            ("authorization", authorization),
            ("dpop", proof),
        ],
    )
    .await
}

#[tokio::test]
async fn rs_htu_comes_from_configuration_not_host_or_forwarded_headers() {
    let rs = Rs::new();
    let token = rs.bound_token();
    let authorization = format!("DPoP {token}");
    for url in [
        "https://evil.example/api/res",
        "http://evil.example/api/res",
    ] {
        spoofed(&rs, &authorization, &rs.proof(url, &token))
            .await
            .assert_dpop_error(ErrorCode::InvalidDpopProof);
    }
    spoofed(&rs, &authorization, &rs.proof(RES_URL, &token))
        .await
        .assert_ok();
    // An absolute-form request target naming another host changes nothing either.
    let proof = rs.proof(RES_URL, &token);
    rs.get(
        "http://evil.example/api/res",
        &[("authorization", &authorization), ("dpop", &proof)],
    )
    .await
    .assert_ok();
}

#[tokio::test]
async fn rs_nested_router_checks_htu_against_the_original_path() {
    // Behind Router::nest the handler sees "/res"; htu is still built from "/api/res".
    let rs = Rs::new();
    let inner = axum::Router::new().route(
        "/res",
        axum::routing::get(|| async { "ok" })
            .layer(keybound_resource::ResourceLayer::new(rs.verifier.clone())),
    );
    let app = axum::Router::new().nest("/api", inner);
    let token = rs.bound_token();
    let authorization = format!("DPoP {token}");
    let proof = rs.proof(RES_URL, &token);
    let reply = send(
        &app,
        request(
            "GET",
            RES,
            &[("authorization", &authorization), ("dpop", &proof)],
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let stripped = rs.proof("https://rs.example.com/res", &token);
    send(
        &app,
        request(
            "GET",
            RES,
            &[("authorization", &authorization), ("dpop", &stripped)],
        ),
    )
    .await
    .assert_dpop_error(ErrorCode::InvalidDpopProof);
}

// ---------------------------------------------------------------------------------------------
// JWKS discovery and rotation over HTTP

fn jwks_verifier(issuer: &str, min_refresh: Duration) -> Arc<ResourceVerifier> {
    let source = JwksSource::new(issuer)
        .unwrap()
        .with_intervals(min_refresh, Duration::from_secs(300));
    let verifier = ResourceVerifier::new(
        ResourceConfig::new(issuer, AUD, BASE),
        KeySource::Jwks(Box::new(source)),
        Arc::new(MemoryReplayCache::new(10_000)),
    )
    .unwrap()
    .with_clock(Arc::new(|| keybound_core::UnixTime::from_secs(NOW)));
    Arc::new(verifier)
}

fn dpop_request(client: &keybound_core::SigningKey, token: &str) -> Request<Body> {
    let authorization = format!("DPoP {token}");
    let proof = proof_by(client, "GET", RES_URL, NOW, token);
    request(
        "GET",
        RES,
        &[("authorization", &authorization), ("dpop", &proof)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs_jwks_discovery_rotation_and_refetch_rate_limit() {
    let (k1, k2) = (signer("k1"), signer("k2"));
    let fake = FakeAs::start(jwks(&[&k1])).await;
    let verifier = jwks_verifier(&fake.issuer, Duration::from_millis(200));
    let app = router(&verifier);
    let client = key(Algorithm::Es256);
    let token_by = |signer: &keybound_core::AccessTokenSigner| {
        signer
            .sign(&claims(&fake.issuer, NOW, Some(&client)))
            .unwrap()
    };

    // Discovery, then one JWKS fetch; k1's token verifies.
    let t1 = token_by(&k1);
    send(&app, dpop_request(&client, &t1)).await.assert_ok();
    assert_eq!(fake.fetches(), 1);
    assert_eq!(
        fake.metadata_fetches
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    // Known kid, cached token: no fetch.
    send(&app, dpop_request(&client, &t1)).await.assert_ok();
    assert_eq!(fake.fetches(), 1);

    // The storm's tokens name random unknown kids; built now so the storm is quick.
    let storm: Vec<_> = (0..50)
        .map(|i| {
            let kid = format!("bogus-{i}-{}", unique("kid"));
            dpop_request(&client, &token_by(&signer(&kid)))
        })
        .collect();

    // Rotation: the AS now publishes only k2. k2's unknown kid triggers one refetch.
    fake.set_jwks(jwks(&[&k2]));
    tokio::time::sleep(Duration::from_millis(250)).await;
    let t2 = token_by(&k2);
    send(&app, dpop_request(&client, &t2)).await.assert_ok();
    assert_eq!(fake.fetches(), 2);
    assert_eq!(
        fake.metadata_fetches
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    // k1 is gone: its token (verified and cached before) is refused now.
    send(&app, dpop_request(&client, &t1))
        .await
        .assert_dpop_error(ErrorCode::InvalidToken);

    // 50 concurrent requests with unknown kids: at most 1-2 more fetches, all refused.
    let mut tasks = tokio::task::JoinSet::new();
    for request in storm {
        let app = app.clone();
        tasks.spawn(async move { send(&app, request).await });
    }
    let mut refused = 0;
    while let Some(reply) = tasks.join_next().await {
        reply.unwrap().assert_dpop_error(ErrorCode::InvalidToken);
        refused += 1;
    }
    assert_eq!(refused, 50);
    let after_storm = fake.fetches();
    assert!(
        (2..=4).contains(&after_storm),
        "{after_storm} JWKS fetches after the storm"
    );

    // Past the minimum interval, one unknown kid costs exactly one fetch.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let unknown = token_by(&signer("k3"));
    send(&app, dpop_request(&client, &unknown))
        .await
        .assert_dpop_error(ErrorCode::InvalidToken);
    assert_eq!(fake.fetches(), after_storm + 1);
    // k2 still works, from the keys already held.
    send(&app, dpop_request(&client, &t2)).await.assert_ok();
    assert_eq!(fake.fetches(), after_storm + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs_jwks_metadata_naming_another_issuer_is_refused() {
    // RFC 8414 §3.3: the metadata's issuer must be the configured one; no JWKS is fetched.
    let k1 = signer("k1");
    let fake = FakeAs::start_at(
        jwks(&[&k1]),
        "",
        "/.well-known/oauth-authorization-server",
        Some("https://evil.example"),
    )
    .await;
    let verifier = jwks_verifier(&fake.issuer, Duration::from_millis(200));
    let app = router(&verifier);
    let client = key(Algorithm::Es256);
    let token = k1.sign(&claims(&fake.issuer, NOW, Some(&client))).unwrap();
    send(&app, dpop_request(&client, &token))
        .await
        .assert_rejected(
            StatusCode::SERVICE_UNAVAILABLE,
            &[(Scheme::DPoP, Some(ErrorCode::TemporarilyUnavailable))],
        );
    assert_eq!(fake.fetches(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs_jwks_discovery_for_an_issuer_with_a_path_uses_the_rfc8414_location() {
    // RFC 8414 §3.1: for issuer https://host/tenant the metadata lives at
    // https://host/.well-known/oauth-authorization-server/tenant (inserted, not appended).
    let k1 = signer("k1");
    let fake = FakeAs::start_at(
        jwks(&[&k1]),
        "/tenant",
        "/.well-known/oauth-authorization-server/tenant",
        None,
    )
    .await;
    let verifier = jwks_verifier(&fake.issuer, Duration::from_millis(200));
    let app = router(&verifier);
    let client = key(Algorithm::Es256);
    let token = k1.sign(&claims(&fake.issuer, NOW, Some(&client))).unwrap();
    send(&app, dpop_request(&client, &token)).await.assert_ok();
    assert_eq!(fake.fetches(), 1);
}

/// A flood of proofs that fail a check never reaches the replay cache, so it cannot grow it;
/// a flood of valid, unique proofs fills the cache only up to its bound, after which requests
/// are refused with 503: no live record is evicted and nothing is accepted unchecked.
#[tokio::test]
async fn floods_of_proofs_never_grow_the_replay_cache_past_its_bound() {
    const BOUND: usize = 64;
    let signer = signer("k1");
    let cache = Arc::new(MemoryReplayCache::new(BOUND));
    let verifier = ResourceVerifier::new(
        ResourceConfig::new(ISS, AUD, BASE),
        KeySource::Static(Arc::new(keyset(&[&signer]))),
        cache.clone(),
    )
    .unwrap()
    .with_clock(Arc::new(|| keybound_core::UnixTime::from_secs(NOW)));
    let router = router(&Arc::new(verifier));
    let client = key(Algorithm::Es256);
    let token = signer.sign(&claims(ISS, NOW, Some(&client))).unwrap();
    let authorization = format!("DPoP {token}");
    let thief = key(Algorithm::Es256);
    for _ in 0..500 {
        let forged = forge(
            &proof_header(&client),
            &proof_claims(RES_URL, NOW, &token),
            &thief,
        );
        let reply = send(
            &router,
            request(
                "GET",
                RES,
                &[("authorization", &authorization), ("dpop", &forged)],
            ),
        )
        .await;
        reply.assert_dpop_error(ErrorCode::InvalidDpopProof);
    }
    assert_eq!(cache.len(), 0, "refused proofs are never recorded");
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..(BOUND * 3) {
        let proof = proof_by(&client, "GET", RES_URL, NOW, &token);
        let reply = send(
            &router,
            request(
                "GET",
                RES,
                &[("authorization", &authorization), ("dpop", &proof)],
            ),
        )
        .await;
        match reply.status {
            StatusCode::OK => accepted += 1,
            StatusCode::SERVICE_UNAVAILABLE => refused += 1,
            other => panic!("{other}"),
        }
    }
    assert!(cache.len() <= BOUND, "{} records", cache.len());
    assert_eq!(accepted, cache.len(), "every acceptance is recorded");
    assert!(
        refused >= BOUND,
        "past the bound: 503, not accepted ({refused})"
    );
}
