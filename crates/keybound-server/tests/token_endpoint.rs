//! `/token`: every grant, every client authentication method, the DPoP rejections that apply to
//! an AS (standards §1.2, §5) with their exact errors, nonces, and refresh-token rotation.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use axum::http::StatusCode;
use common::*;
use keybound_core::{AccessTokenVerifier, Algorithm};
use keybound_store::{Grant, GrantId, GrantStore as _, RefreshTokenRecord, RefreshTokenState};
use serde_json::json;

fn b64(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
}

#[tokio::test]
async fn metadata_and_jwks() {
    let h = Harness::new().await;
    let m = h.get("/.well-known/oauth-authorization-server").await.body;
    assert_eq!(m["issuer"], ISSUER);
    assert_eq!(m["token_endpoint"], TOKEN_URL);
    assert_eq!(
        m["dpop_signing_alg_values_supported"],
        json!(["ES256", "EdDSA", "PS256"])
    );
    assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
    assert!(
        m["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("private_key_jwt"))
    );
    assert_eq!(h.get("/.well-known/openid-configuration").await.body, m);
    let jwks = h.get("/jwks").await.body;
    assert_eq!(
        jwks["keys"].as_array().unwrap().len(),
        3,
        "current, next, previous"
    );
    assert!(
        jwks.to_string().find("\"d\"").is_none(),
        "no private members"
    );
}

#[tokio::test]
async fn dpop_bound_token_carries_cnf_jkt_and_token_type_dpop() {
    let h = Harness::new().await;
    let client_key = key(Algorithm::Es256);
    let reply = h.basic_token(Some(&client_key)).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["token_type"], "DPoP");
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert!(
        reply.header("dpop-nonce").is_none(),
        "no nonce for a client that neither needs nor uses one"
    );
    let verifier = AccessTokenVerifier::new(h.key_set().await, ISSUER, format!("{ISSUER}/api"));
    let claims = verifier
        .verify(reply.body["access_token"].as_str().unwrap(), h.now())
        .unwrap();
    assert_eq!(
        claims.cnf.unwrap().jkt.unwrap(),
        *client_key.public_jwk().thumbprint()
    );
    assert_eq!(claims.client_id, "basic");
    assert_eq!(claims.scope.as_deref(), Some("read write"));
}

#[tokio::test]
async fn without_a_proof_the_token_is_bearer_unless_the_client_requires_dpop() {
    let h = Harness::new().await;
    let reply = h.basic_token(None).await;
    assert_eq!(
        (reply.status, reply.body["token_type"].as_str()),
        (StatusCode::OK, Some("Bearer"))
    );
    let verifier = AccessTokenVerifier::new(h.key_set().await, ISSUER, format!("{ISSUER}/api"));
    assert!(
        verifier
            .verify(reply.body["access_token"].as_str().unwrap(), h.now())
            .unwrap()
            .cnf
            .is_none()
    );
    // RFC 9449 §5.2 / standards §5 #34.
    let reply = h
        .post(
            "/token",
            Some(("dpop-only", SECRET)),
            &[],
            &[("grant_type", "client_credentials")],
        )
        .await;
    reply.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn every_client_authentication_method() {
    let h = Harness::new().await;
    let cc = ("grant_type", "client_credentials");
    assert_eq!(
        h.post("/token", Some(("basic", SECRET)), &[], &[cc])
            .await
            .status,
        StatusCode::OK
    );
    let post = h
        .post(
            "/token",
            None,
            &[],
            &[cc, ("client_id", "post"), ("client_secret", SECRET)],
        )
        .await;
    assert_eq!(post.status, StatusCode::OK, "{:?}", post.body);
    let assertion = h.assertion("a-1", TOKEN_URL, 60);
    let jwt_form = [
        cc,
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", &assertion),
    ];
    let reply = h.post("/token", None, &[], &jwt_form).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    // The issuer is also an accepted audience.
    let assertion = h.assertion("a-2", ISSUER, 60);
    let jwt_form = [
        cc,
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", &assertion),
    ];
    assert_eq!(
        h.post("/token", None, &[], &jwt_form).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn client_authentication_failures() {
    let h = Harness::new().await;
    let cc = ("grant_type", "client_credentials");
    let reply = h.post("/token", Some(("basic", "wrong")), &[], &[cc]).await;
    reply.assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Basic realm=\"keybound\"")
    );
    h.post("/token", Some(("nobody", SECRET)), &[], &[cc])
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    // A basic client using client_secret_post is using the wrong method.
    h.post(
        "/token",
        None,
        &[],
        &[cc, ("client_id", "basic"), ("client_secret", SECRET)],
    )
    .await
    .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    // Two methods at once.
    h.post(
        "/token",
        Some(("basic", SECRET)),
        &[],
        &[cc, ("client_secret", SECRET)],
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    // Nothing at all.
    h.post("/token", None, &[], &[cc])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    // A confidential client cannot pose as public.
    h.post("/token", None, &[], &[cc, ("client_id", "basic")])
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    // A public client may not use client_credentials.
    h.post("/token", None, &[], &[cc, ("client_id", "public")])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "unauthorized_client");
    let m = h.get("/metrics").await.body.as_str().unwrap().to_owned();
    assert!(
        m.contains("keybound_client_auth_failures_total{reason=\"bad_secret\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn private_key_jwt_assertions_are_single_use_and_checked() {
    let h = Harness::new().await;
    let form = |a: &str| {
        vec![
            ("grant_type".to_owned(), "client_credentials".to_owned()),
            (
                "client_assertion_type".to_owned(),
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
            ),
            ("client_assertion".to_owned(), a.to_owned()),
        ]
    };
    let send = |a: String| {
        let h = &h;
        async move {
            let f = form(&a);
            let pairs: Vec<(&str, &str)> =
                f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            h.post("/token", None, &[], &pairs).await
        }
    };
    let once = h.assertion("same-jti", TOKEN_URL, 60);
    assert_eq!(send(once.clone()).await.status, StatusCode::OK);
    send(once)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    send(h.assertion("aud", "https://other.example/token", 60))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    send(h.assertion("long", TOKEN_URL, 3600))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    send(tamper(&h.assertion("forged", TOKEN_URL, 60)))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
}

/// Builds a proof for the token endpoint from raw header and claims, signed by `key`.
fn forge(
    key: &keybound_core::SigningKey,
    header: serde_json::Value,
    claims: serde_json::Value,
) -> String {
    keybound_core::jws::sign_compact(&header.to_string(), &claims.to_string(), key).unwrap()
}

#[tokio::test]
async fn every_proof_rejection_applicable_at_the_token_endpoint() {
    let h = Harness::new().await;
    let k = key(Algorithm::Es256);
    let jwk: serde_json::Value = serde_json::from_str(&k.public_jwk().to_json()).unwrap();
    let now = h.now().as_secs();
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
    let claims = json!({"jti": "j", "htm": "POST", "htu": TOKEN_URL, "iat": now});
    let with = |mut v: serde_json::Value, name: &str, value: serde_json::Value| {
        v[name] = value;
        v
    };
    let without = |mut v: serde_json::Value, name: &str| {
        v.as_object_mut().unwrap().remove(name);
        v
    };
    let good = h.proof(&k);
    let mut private = jwk.clone();
    private["d"] = json!("AAAA");
    let unsigned = format!(
        "{}.{}.",
        b64(header.to_string().as_bytes()),
        b64(with(claims.clone(), "jti", json!("n"))
            .to_string()
            .as_bytes())
    );
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "rule 1: two DPoP header lines",
            vec![good.clone(), h.proof(&k)],
        ),
        ("rule 1: comma-joined", vec![format!("{good}, {good}")]),
        ("rule 2: not a JWS", vec!["not-a-jws".into()]),
        ("§5 #1: alg none, empty signature", vec![unsigned]),
        (
            "rule 3: no jti",
            vec![forge(&k, header.clone(), without(claims.clone(), "jti"))],
        ),
        (
            "rule 3: iat a string",
            vec![forge(
                &k,
                header.clone(),
                with(claims.clone(), "iat", json!("now")),
            )],
        ),
        (
            "rule 4: typ JWT",
            vec![forge(
                &k,
                with(header.clone(), "typ", json!("JWT")),
                with(claims.clone(), "jti", json!("t")),
            )],
        ),
        (
            "rule 5: HS256",
            vec![forge(
                &k,
                with(header.clone(), "alg", json!("HS256")),
                with(claims.clone(), "jti", json!("h")),
            )],
        ),
        (
            "rule 5: alg/key mismatch",
            vec![forge(
                &k,
                with(header.clone(), "alg", json!("EdDSA")),
                with(claims.clone(), "jti", json!("m")),
            )],
        ),
        (
            "rule 6: signature by another key",
            vec![forge(
                &key(Algorithm::Es256),
                header.clone(),
                with(claims.clone(), "jti", json!("s")),
            )],
        ),
        (
            "rule 7: private key in jwk",
            vec![forge(
                &k,
                with(header.clone(), "jwk", private),
                with(claims.clone(), "jti", json!("p")),
            )],
        ),
        (
            "rule 8: htm GET",
            vec![forge(
                &k,
                header.clone(),
                with(with(claims.clone(), "htm", json!("GET")), "jti", json!("g")),
            )],
        ),
        (
            "rule 9: htu of another endpoint",
            vec![forge(
                &k,
                header.clone(),
                with(
                    with(claims.clone(), "htu", json!(format!("{ISSUER}/par"))),
                    "jti",
                    json!("u"),
                ),
            )],
        ),
        (
            "rule 11: iat 61 s old",
            vec![forge(
                &k,
                header.clone(),
                with(
                    with(claims.clone(), "iat", json!(now - 61)),
                    "jti",
                    json!("o"),
                ),
            )],
        ),
        (
            "rule 11: iat 31 s ahead",
            vec![forge(
                &k,
                header.clone(),
                with(
                    with(claims.clone(), "iat", json!(now + 31)),
                    "jti",
                    json!("f"),
                ),
            )],
        ),
        (
            "§5 #7: crit",
            vec![forge(
                &k,
                with(header.clone(), "crit", json!(["b64"])),
                with(claims.clone(), "jti", json!("c")),
            )],
        ),
        (
            "§5 #13: jti over 256 bytes",
            vec![forge(
                &k,
                header.clone(),
                with(claims.clone(), "jti", json!("j".repeat(257))),
            )],
        ),
    ];
    for (name, dpop) in cases {
        let lines: Vec<&str> = dpop.iter().map(String::as_str).collect();
        let reply = h
            .post(
                "/token",
                Some(("basic", SECRET)),
                &lines,
                &[("grant_type", "client_credentials")],
            )
            .await;
        assert_eq!(
            (reply.status, reply.error()),
            (StatusCode::BAD_REQUEST, "invalid_dpop_proof"),
            "{name}: {:?}",
            reply.body
        );
        assert!(reply.body.get("access_token").is_none(), "{name}");
    }
    // The control: the first proof was never consumed by the failed requests above.
    let reply = h
        .post(
            "/token",
            Some(("basic", SECRET)),
            &[&good],
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    // §5 #20: the same proof again is a replay.
    let reply = h
        .post(
            "/token",
            Some(("basic", SECRET)),
            &[&good],
            &[("grant_type", "client_credentials")],
        )
        .await;
    reply.assert_error(StatusCode::BAD_REQUEST, "invalid_dpop_proof");
    let m = h.get("/metrics").await.body.as_str().unwrap().to_owned();
    assert!(m.contains("keybound_dpop_replays_total 1"), "{m}");
    assert!(m.contains("reason=\"htu_mismatch\"} 1"), "{m}");
}

#[tokio::test]
async fn nonce_challenge_then_success() {
    let h = Harness::new().await;
    let k = key(Algorithm::EdDsa);
    let first = h
        .post(
            "/token",
            Some(("nonce", SECRET)),
            &[&h.proof(&k)],
            &[("grant_type", "client_credentials")],
        )
        .await;
    first.assert_error(StatusCode::BAD_REQUEST, "use_dpop_nonce");
    let nonce = first
        .header("dpop-nonce")
        .expect("DPoP-Nonce on the challenge")
        .to_owned();
    let second = h
        .post(
            "/token",
            Some(("nonce", SECRET)),
            &[&h.proof_with_nonce(&k, &nonce)],
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(second.status, StatusCode::OK, "{:?}", second.body);
    assert!(second.header("dpop-nonce").is_some());
    // A made-up nonce is refused with a fresh one; a nonce from 10 minutes ago too.
    let bad = h
        .post(
            "/token",
            Some(("nonce", SECRET)),
            &[&h.proof_with_nonce(&k, "made-up")],
            &[("grant_type", "client_credentials")],
        )
        .await;
    bad.assert_error(StatusCode::BAD_REQUEST, "use_dpop_nonce");
    h.advance(600);
    let stale = h
        .post(
            "/token",
            Some(("nonce", SECRET)),
            &[&h.proof_with_nonce(&k, &nonce)],
            &[("grant_type", "client_credentials")],
        )
        .await;
    stale.assert_error(StatusCode::BAD_REQUEST, "use_dpop_nonce");
    assert_ne!(stale.header("dpop-nonce"), Some(nonce.as_str()));
}

#[tokio::test]
async fn global_nonce_policy_applies_to_every_client() {
    let h = Harness::with_extra("[dpop]\nrequire_nonce = true").await;
    let k = key(Algorithm::Es256);
    h.basic_token(Some(&k))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "use_dpop_nonce");
}

async fn refresh(h: &Harness, client: (&str, &str), token: &str, dpop: &[&str]) -> Reply {
    let basic = (!client.1.is_empty()).then_some(client);
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    if basic.is_none() {
        form.push(("client_id", client.0));
    }
    h.post("/token", basic, dpop, &form).await
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_grant() {
    let h = Harness::new().await;
    let k = key(Algorithm::Es256);
    let first = h.basic_token(Some(&k)).await.body["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = refresh(&h, ("basic", SECRET), &first, &[&h.proof(&k)]).await;
    assert_eq!(second.status, StatusCode::OK, "{:?}", second.body);
    assert_eq!(second.body["token_type"], "DPoP");
    let second_rt = second.body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second_rt, first);
    // Reuse of the rotated token: refused, and the whole grant goes.
    refresh(&h, ("basic", SECRET), &first, &[&h.proof(&k)])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
    refresh(&h, ("basic", SECRET), &second_rt, &[&h.proof(&k)])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
    // Scope narrowing on refresh is allowed, widening is not.
    let rt = h.basic_token(None).await.body["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let narrowed = h
        .post(
            "/token",
            Some(("basic", SECRET)),
            &[],
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &rt),
                ("scope", "read"),
            ],
        )
        .await;
    assert_eq!(narrowed.body["scope"], "read");
    let rt = narrowed.body["refresh_token"].as_str().unwrap();
    let wider = h
        .post(
            "/token",
            Some(("basic", SECRET)),
            &[],
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", rt),
                ("scope", "admin"),
            ],
        )
        .await;
    wider.assert_error(StatusCode::BAD_REQUEST, "invalid_scope");
}

#[tokio::test]
async fn a_failed_request_consumes_nothing() {
    let h = Harness::new().await;
    let k = key(Algorithm::Es256);
    let rt = h.basic_token(Some(&k)).await.body["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Bad proof, bad client secret, another client, unknown grant type: each fails ...
    let bad_proof = tamper(&h.proof(&k));
    refresh(&h, ("basic", SECRET), &rt, &[&bad_proof])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_dpop_proof");
    refresh(&h, ("basic", "wrong"), &rt, &[&h.proof(&k)])
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    refresh(&h, ("dpop-only", SECRET), &rt, &[&h.proof(&k)])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
    // ... and the refresh token is still the current one.
    let state = h
        .store
        .refresh_token_state(&sha256(&rt), h.now())
        .await
        .unwrap();
    assert!(matches!(state, RefreshTokenState::Active(_)), "{state:?}");
    assert_eq!(
        refresh(&h, ("basic", SECRET), &rt, &[&h.proof(&k)])
            .await
            .status,
        StatusCode::OK
    );
}

fn sha256(text: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes()).as_ref(),
    );
    out
}

/// A grant for the public client bound to `jkt`, as the authorization-code flow will create.
async fn public_grant(h: &Harness, jkt: &str) -> String {
    let now = h.now();
    let token = "public-refresh-token-0123456789abcdefghijklmnop".to_owned();
    let grant = Grant {
        id: GrantId("g-public".into()),
        client_id: "public".into(),
        subject: "alice".into(),
        scope: "read".into(),
        created_at: now,
        expires_at: now.saturating_add(3600),
        dpop_jkt: Some(jkt.to_owned()),
        cert_x5t: None,
    };
    let record = RefreshTokenRecord {
        token_hash: sha256(&token),
        grant_id: grant.id.clone(),
        expires_at: now.saturating_add(600),
    };
    h.store.create_grant(&grant, &record).await.unwrap();
    token
}

#[tokio::test]
async fn public_client_refresh_tokens_are_bound_to_the_dpop_key() {
    let h = Harness::new().await;
    let holder = key(Algorithm::Es256);
    let thief = key(Algorithm::Es256);
    let rt = public_grant(&h, holder.public_jwk().thumbprint().as_str()).await;
    // §5 #31: a stolen refresh token with the attacker's key.
    refresh(&h, ("public", ""), &rt, &[&h.proof(&thief)])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
    // Without a proof at all (the client requires DPoP anyway).
    refresh(&h, ("public", ""), &rt, &[])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    // Neither attempt consumed or revoked it: the holder refreshes.
    let ok = refresh(&h, ("public", ""), &rt, &[&h.proof(&holder)]).await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    assert_eq!(ok.body["token_type"], "DPoP");
    let next = ok.body["refresh_token"].as_str().unwrap();
    // The rotated token stays bound to the same key.
    refresh(&h, ("public", ""), next, &[&h.proof(&thief)])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
    // A thief replaying the old (used) token cannot revoke the holder's grant.
    refresh(&h, ("public", ""), &rt, &[&h.proof(&thief)])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
    assert_eq!(
        refresh(&h, ("public", ""), next, &[&h.proof(&holder)])
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn expired_refresh_tokens_and_unsupported_grants() {
    let h = Harness::new().await;
    let rt = h.basic_token(None).await.body["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    h.advance(86_400);
    refresh(&h, ("basic", SECRET), &rt, &[])
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
    let reply = h
        .post(
            "/token",
            Some(("basic", SECRET)),
            &[],
            &[("grant_type", "password")],
        )
        .await;
    reply.assert_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    let reply = h
        .post(
            "/token",
            Some(("post", SECRET)),
            &[],
            &[("grant_type", "refresh_token"), ("refresh_token", "x")],
        )
        .await;
    reply.assert_error(StatusCode::UNAUTHORIZED, "invalid_client"); // post client used basic
    let reply = h
        .post(
            "/token",
            None,
            &[],
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", "x"),
                ("client_id", "post"),
                ("client_secret", SECRET),
            ],
        )
        .await;
    reply.assert_error(StatusCode::BAD_REQUEST, "unauthorized_client");
}
