//! Standards §5 rows 21, 22, 23 and 38 over real HTTP: captured proofs replayed with another
//! body, proofs made in advance, server nonces (missing, wrong, expired, from another server)
//! and `jti` reuse across keys. `keybound serve` is the AS (its `/token`, and its own
//! `/api/whoami`); `keybound gateway --require-nonce` in front of a recording API is the RS
//! that asks for nonces. After every refusal the test checks that nothing was issued
//! (`keybound_tokens_issued_total`) or forwarded, and that the refused proof's key and `jti`
//! still work once the request is right. `docs/security.md` lists the rows and these tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::proofs::{claims, header, new_key, now, proof, resource_proof, sign};
use common::server::{Gateway, Reply, Server, Setup, Upstream, secret_clients, send};
use keybound_core::{NonceKeyRing, NonceSecret, SigningKey, UnixTime};
use serde_json::json;

/// The nonce secret given to the nonce-requiring AS and gateway (`KEYBOUND_NONCE_SECRETS`).
const NONCE_SECRET: [u8; 32] = [42; 32];

/// A well-formed nonce (43 base64url characters) that no server issued.
const NEVER_ISSUED: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn nonce_secret_env() -> String {
    URL_SAFE_NO_PAD.encode(NONCE_SECRET)
}

/// The nonce a server with [`NONCE_SECRET`] issued `ago` seconds ago for `purpose`: `"as"` at
/// the AS, the public URL at a gateway.
fn nonce_issued(purpose: &str, ago: i64) -> String {
    let secret = NonceSecret::new(&NONCE_SECRET).unwrap();
    let at = UnixTime::from_secs(u64::try_from(now() - ago).unwrap());
    NonceKeyRing::new(purpose, &secret, None)
        .issue(at)
        .as_str()
        .to_owned()
}

/// An AS that requires a nonce in every proof, with [`NONCE_SECRET`].
fn nonce_server(name: &str) -> Server {
    Setup::new(name)
        .env("KEYBOUND_NONCE_SECRETS", &nonce_secret_env())
        .start(&format!(
            "[dpop]\nrequire_nonce = true\n{}",
            secret_clients()
        ))
}

/// A proof by `key` for `method url`: `ath` for `token`, `nonce`, and `iat` `ahead` seconds
/// from now, when given.
fn dpop(
    key: &SigningKey,
    method: &str,
    url: &str,
    jti: &str,
    token: Option<&str>,
    nonce: Option<&str>,
    ahead: i64,
) -> String {
    let mut c = claims(method, url, jti);
    c["iat"] = json!(now() + ahead);
    if let Some(token) = token {
        c["ath"] = json!(keybound_core::AccessTokenHash::of(token).as_str());
    }
    if let Some(nonce) = nonce {
        c["nonce"] = json!(nonce);
    }
    sign(&header(key), &c, key)
}

/// Asserts a nonce challenge (AS: 400 `use_dpop_nonce`; RS: 401 with it in the `DPoP`
/// challenge) offering a new nonce, not the one that was sent.
fn assert_nonce_challenge(reply: &Reply, at_resource: bool, sent: Option<&str>, what: &str) {
    if at_resource {
        reply.assert_challenge(401, "DPoP", "use_dpop_nonce", what);
    } else {
        reply.assert_error(400, "use_dpop_nonce", what);
    }
    let fresh = reply
        .nonce
        .as_deref()
        .unwrap_or_else(|| panic!("{what}: no DPoP-Nonce"));
    assert_eq!(fresh.len(), 43, "{what}: {fresh}");
    assert_ne!(
        Some(fresh),
        sent,
        "{what}: the nonce offered is the one refused"
    );
}

#[tokio::test]
async fn attack21_a_captured_proof_and_token_replayed_with_another_body_is_refused_as_a_replay() {
    let server = Server::start();
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&server, &upstream, &[], &[]);
    let key = new_key();

    // The token request a client made (scope read) is captured and replayed asking for write.
    let captured = proof(
        &key,
        "POST",
        &server.url("/token"),
        "captured-token-request",
    );
    let read = [("grant_type", "client_credentials"), ("scope", "read")];
    let first = server
        .post("/token", Some("app"), &[&captured], &read)
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["scope"], "read");
    let issued = server.tokens_issued().await;
    let write = [("grant_type", "client_credentials"), ("scope", "write")];
    server
        .post("/token", Some("app"), &[&captured], &write)
        .await
        .assert_error(400, "invalid_dpop_proof", "#21 replay at /token");
    assert_eq!(server.tokens_issued().await, issued, "#21: nothing issued");

    // A POST to the API is captured (token and proof) and replayed with another body.
    let token = first.access_token();
    let orders = gateway.url("/api/orders");
    let auth = format!("DPoP {token}");
    let captured = resource_proof(&key, "POST", &orders, &token, "captured-api-request");
    let headers = [
        ("authorization", auth.as_str()),
        ("dpop", captured.as_str()),
        ("content-type", "application/json"),
    ];
    let ok = send(
        &gateway.http,
        "POST",
        &orders,
        &headers,
        Some(r#"{"pay":10}"#),
    )
    .await;
    assert_eq!(ok.status, 200, "{:?}", ok.challenges);
    let replay = send(
        &gateway.http,
        "POST",
        &orders,
        &headers,
        Some(r#"{"pay":10000}"#),
    )
    .await;
    replay.assert_challenge(401, "DPoP", "invalid_dpop_proof", "#21 replay at the API");
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1, "#21: the replay never reached the API");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].body.as_str()),
        ("POST", r#"{"pay":10}"#)
    );
}

#[tokio::test]
async fn attack22_proofs_made_in_advance_are_bounded_by_the_future_leeway_and_by_nonces() {
    // Without nonces: iat at most 30 s ahead (the default future leeway) is all a stolen
    // batch of proofs can buy.
    let server = Server::start();
    let key = new_key();
    let token_url = server.url("/token");
    for (what, offset) in [("an hour ahead", 3600), ("90 s ahead", 90)] {
        let issued = server.tokens_issued().await;
        let early = dpop(&key, "POST", &token_url, "made-early", None, None, offset);
        server.token("app", &[&early]).await.assert_error(
            400,
            "invalid_dpop_proof",
            &format!("#22 iat {what}"),
        );
        assert_eq!(server.tokens_issued().await, issued, "#22: nothing issued");
    }
    let inside = dpop(&key, "POST", &token_url, "made-early", None, None, 20);
    let ok = server.token("app", &[&inside]).await;
    assert_eq!(
        ok.status, 200,
        "#22: 20 s ahead is inside the leeway: {}",
        ok.body
    );

    // With nonces the same proof is useless: it lacks the server's current nonce, and a nonce
    // the server gave out an hour ago (when the proofs were made) has expired.
    let server = nonce_server("nonce-22");
    let token_url = server.url("/token");
    let fresh = nonce_issued("as", 0);
    let ok = server
        .token(
            "app",
            &[&dpop(
                &key,
                "POST",
                &token_url,
                "control",
                None,
                Some(&fresh),
                0,
            )],
        )
        .await;
    assert_eq!(ok.status, 200, "a nonce of the current step: {}", ok.body);
    let issued = server.tokens_issued().await;
    let old = nonce_issued("as", 3600);
    let mut offered = None;
    for (what, nonce) in [
        ("no nonce", None),
        ("an hour-old nonce", Some(old.as_str())),
    ] {
        let early = dpop(&key, "POST", &token_url, "made-early", None, nonce, 20);
        let reply = server.token("app", &[&early]).await;
        assert_nonce_challenge(&reply, false, nonce, &format!("#22 {what}"));
        assert_eq!(server.tokens_issued().await, issued, "#22: nothing issued");
        offered = reply.nonce;
    }
    let now_with_nonce = dpop(
        &key,
        "POST",
        &token_url,
        "made-early",
        None,
        offered.as_deref(),
        0,
    );
    let retry = server.token("app", &[&now_with_nonce]).await;
    assert_eq!(
        retry.status, 200,
        "#22: the jti is still free: {}",
        retry.body
    );

    // The same at a resource server that requires nonces.
    let upstream = Upstream::start().await;
    let env = nonce_secret_env();
    let gateway = Gateway::start(
        &server,
        &upstream,
        &["--require-nonce"],
        &[("KEYBOUND_NONCE_SECRETS", &env)],
    );
    let token = ok.access_token();
    let api = gateway.url("/api/hello");
    let old = nonce_issued(&gateway.base, 3600);
    for (what, nonce) in [
        ("no nonce", None),
        ("an hour-old nonce", Some(old.as_str())),
    ] {
        let early = dpop(&key, "GET", &api, "made-early", Some(&token), nonce, 0);
        let reply = gateway.get_dpop(&api, &token, &early).await;
        assert_nonce_challenge(&reply, true, nonce, &format!("#22 at the API, {what}"));
        offered = reply.nonce;
    }
    assert!(upstream.requests().is_empty(), "#22: nothing forwarded");
    let now_with_nonce = dpop(
        &key,
        "GET",
        &api,
        "made-early",
        Some(&token),
        offered.as_deref(),
        0,
    );
    let retry = gateway.get_dpop(&api, &token, &now_with_nonce).await;
    assert_eq!(retry.status, 200, "#22 at the API: {:?}", retry.challenges);
}

#[tokio::test]
async fn attack23_missing_wrong_expired_and_foreign_nonces_get_use_dpop_nonce_and_the_retry_works()
{
    let server = nonce_server("nonce-23");
    // Another instance (its own random secret), and a gateway sharing this AS's secret.
    let other = Setup::new("nonce-23-other").start(&format!(
        "[dpop]\nrequire_nonce = true\n{}",
        secret_clients()
    ));
    let upstream = Upstream::start().await;
    let env = nonce_secret_env();
    let gateway = Gateway::start(
        &server,
        &upstream,
        &["--require-nonce"],
        &[("KEYBOUND_NONCE_SECRETS", &env)],
    );
    let key = new_key();
    let token_url = server.url("/token");
    let other_nonce = other
        .token("app", &[&proof(&key, "POST", &other.url("/token"), "o")])
        .await
        .nonce
        .unwrap();

    // At the AS. Every refused proof uses the same key and jti as the successful retry.
    let mut offered = None;
    let expired = nonce_issued("as", 3600);
    let rs_nonce = nonce_issued(&gateway.base, 0);
    let issued = server.tokens_issued().await;
    for (what, nonce) in [
        ("no nonce", None),
        ("a nonce never issued", Some(NEVER_ISSUED)),
        ("an expired nonce", Some(expired.as_str())),
        ("another instance's nonce", Some(other_nonce.as_str())),
        ("the resource server's nonce", Some(rs_nonce.as_str())),
    ] {
        let reply = server
            .token(
                "app",
                &[&dpop(&key, "POST", &token_url, "as-23", None, nonce, 0)],
            )
            .await;
        assert_nonce_challenge(&reply, false, nonce, &format!("#23 AS, {what}"));
        assert_eq!(server.tokens_issued().await, issued, "#23 AS, {what}");
        offered = reply.nonce;
    }
    let as_nonce = offered.unwrap();
    let retry = server
        .token(
            "app",
            &[&dpop(
                &key,
                "POST",
                &token_url,
                "as-23",
                None,
                Some(&as_nonce),
                0,
            )],
        )
        .await;
    assert_eq!(
        retry.status, 200,
        "#23: the retry with the new nonce: {}",
        retry.body
    );
    assert_eq!(retry.body["token_type"], "DPoP");

    // At the resource server, which shares the AS's nonce secret but not its nonces.
    let token = retry.access_token();
    let api = gateway.url("/api/hello");
    let call = |nonce: Option<&str>| {
        let proof = dpop(&key, "GET", &api, "rs-23", Some(&token), nonce, 0);
        let (gateway, api, token) = (&gateway, &api, &token);
        async move { gateway.get_dpop(api, token, &proof).await }
    };
    let expired = nonce_issued(&gateway.base, 3600);
    let mut offered = None;
    for (what, nonce) in [
        ("no nonce", None),
        ("a nonce never issued", Some(NEVER_ISSUED)),
        ("an expired nonce", Some(expired.as_str())),
        ("the AS's nonce", Some(as_nonce.as_str())),
    ] {
        let reply = call(nonce).await;
        assert_nonce_challenge(&reply, true, nonce, &format!("#23 RS, {what}"));
        offered = reply.nonce;
    }
    assert!(upstream.requests().is_empty(), "#23: nothing forwarded");
    let retry = call(offered.as_deref()).await;
    assert_eq!(
        retry.status, 200,
        "#23: the retry at the API: {:?}",
        retry.challenges
    );
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn attack38_a_jti_used_by_another_key_is_still_free_but_not_for_the_same_key() {
    let server = Server::start();
    let (a, b) = (new_key(), new_key());
    let token_url = server.url("/token");
    // Client A and client B both pick the jti "shared", A first: B is not refused.
    let first = server
        .token("app", &[&proof(&a, "POST", &token_url, "shared")])
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let second = server
        .token("plain", &[&proof(&b, "POST", &token_url, "shared")])
        .await;
    assert_eq!(
        second.status, 200,
        "#38: B's jti burnt by A: {}",
        second.body
    );
    assert_eq!(second.body["token_type"], "DPoP");
    // The same key reusing it is a replay, even in a new proof.
    let issued = server.tokens_issued().await;
    server
        .token("app", &[&proof(&a, "POST", &token_url, "shared")])
        .await
        .assert_error(400, "invalid_dpop_proof", "#38 A reuses its jti");
    server
        .token("plain", &[&proof(&b, "POST", &token_url, "shared")])
        .await
        .assert_error(400, "invalid_dpop_proof", "#38 B reuses its jti");
    assert_eq!(server.tokens_issued().await, issued);

    // At the resource: A's and B's proofs with the same jti, each with its own token.
    let call = |key, token| server.whoami_dpop(key, token, "shared-at-api");
    let (token_a, token_b) = (first.access_token(), second.access_token());
    let ok = call(&a, &token_a).await;
    assert_eq!(
        (ok.status, ok.body["client_id"].as_str()),
        (200, Some("app"))
    );
    let ok = call(&b, &token_b).await;
    assert_eq!(
        (ok.status, ok.body["client_id"].as_str()),
        (200, Some("plain")),
        "#38 at the API: {:?}",
        ok.challenges
    );
    call(&a, &token_a).await.assert_challenge(
        401,
        "DPoP",
        "invalid_dpop_proof",
        "#38 A reuses its jti at the API",
    );
}
