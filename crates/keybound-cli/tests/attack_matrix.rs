//! The attacks of standards §5 over real HTTP against a `keybound serve` process: each row is a
//! named case with the exact status, error code and (at the resource) `WWW-Authenticate`
//! challenge. After every refusal the test proves nothing was consumed or issued: the
//! `keybound_tokens_issued_total` counter did not move, and a valid proof reusing the refused
//! proof's key and `jti` is still accepted. `docs/security.md` lists the rows and these tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::proofs::{claims, header, jwk, new_key, now, resource_proof, sign, with_signature};
use common::server::Server;
use keybound_core::SigningKey;
use serde_json::{Value, json};

/// One §5 row at the token endpoint: what is sent and what must come back.
struct TokenCase {
    row: &'static str,
    proofs: Vec<String>,
    status: u16,
    error: &'static str,
}

/// Runs refusals at the token endpoint; after each, the counter of issued tokens is unchanged
/// and the refused proof's key and `jti` still work in a valid proof.
async fn refuse_at_token_endpoint(server: &Server, key: &SigningKey, cases: Vec<TokenCase>) {
    let token_url = server.url("/token");
    for (n, case) in cases.into_iter().enumerate() {
        let issued = server.tokens_issued().await;
        let proofs: Vec<&str> = case.proofs.iter().map(String::as_str).collect();
        let reply = server.token("app", &proofs).await;
        assert_eq!(
            (reply.status, reply.body["error"].as_str().unwrap_or("")),
            (case.status, case.error),
            "{}: {}",
            case.row,
            reply.body
        );
        assert_eq!(server.tokens_issued().await, issued, "{}: issued", case.row);
        let good = sign(
            &header(key),
            &claims("POST", &token_url, &format!("j{n}")),
            key,
        );
        let after = server.token("app", &[&good]).await;
        assert_eq!(
            after.status, 200,
            "{}: consumed the jti: {}",
            case.row, after.body
        );
    }
}

#[tokio::test]
async fn proof_attacks_at_the_token_endpoint_are_refused_and_consume_nothing() {
    let server = Server::start();
    let key = new_key();
    let url = server.url("/token");
    let c = |jti: &str| claims("POST", &url, jti);
    let h = || header(&key);
    let with = |mut value: Value, name: &str, member: Value| {
        value[name] = member;
        value
    };
    let refused = |row, proofs: Vec<String>| TokenCase {
        row,
        proofs,
        status: 400,
        error: "invalid_dpop_proof",
    };
    let mut private_jwk = jwk(&key);
    private_jwk["d"] = json!(URL_SAFE_NO_PAD.encode([7u8; 32]));
    let mut off_curve = jwk(&key);
    off_curve["x"] = json!(URL_SAFE_NO_PAD.encode([1u8; 32]));
    let mut padded = jwk(&key);
    padded["x"] = json!(format!("{}=", padded["x"].as_str().unwrap()));
    let big = "x".repeat(9 * 1024);
    let duplicate = format!(
        r#"{{"jti":"j4","jti":"other","htm":"POST","htu":"{url}","iat":{}}}"#,
        now()
    );
    let duplicate_members = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(h().to_string()),
        URL_SAFE_NO_PAD.encode(&duplicate),
        URL_SAFE_NO_PAD.encode(key.sign(b"not this message").unwrap())
    );
    let three_parts = sign(&h(), &c("j12"), &key);
    let cases = vec![
        refused(
            "#1 alg none",
            vec![with_signature(
                &with(h(), "alg", json!("none")),
                &c("j0"),
                &[],
            )],
        ),
        refused(
            "#2 HS256",
            vec![sign(&with(h(), "alg", json!("HS256")), &c("j1"), &key)],
        ),
        refused(
            "#3 private key in jwk",
            vec![sign(&with(h(), "jwk", private_jwk), &c("j2"), &key)],
        ),
        refused(
            "#4 PS256 with an EC key",
            vec![sign(&with(h(), "alg", json!("PS256")), &c("j3"), &key)],
        ),
        refused(
            "#5 EC point not on the curve",
            vec![sign(&with(h(), "jwk", off_curve), &c("j4"), &key)],
        ),
        refused(
            "#6 all-zero ECDSA signature",
            vec![with_signature(&h(), &c("j5"), &[0u8; 64])],
        ),
        refused(
            "#7 crit header",
            vec![sign(&with(h(), "crit", json!(["b64"])), &c("j6"), &key)],
        ),
        refused(
            "#9 iat as a string",
            vec![sign(&h(), &with(c("j7"), "iat", json!("now")), &key)],
        ),
        refused(
            "#10 typ JWT (token swapping)",
            vec![sign(&with(h(), "typ", json!("JWT")), &c("j8"), &key)],
        ),
        TokenCase {
            row: "#11 two DPoP headers",
            proofs: vec![
                sign(&h(), &c("j9"), &key),
                sign(&h(), &c("j9-second"), &key),
            ],
            status: 400,
            error: "invalid_dpop_proof",
        },
        refused(
            "#12 not a three-part JWS",
            vec![three_parts[..three_parts.rfind('.').unwrap()].to_owned()],
        ),
        refused(
            "#13 header over 8 KiB",
            vec![sign(&with(h(), "pad", json!(big)), &c("j13"), &key)],
        ),
        refused("#14 duplicate members", vec![duplicate_members]),
        refused(
            "#15 htu of another URL",
            vec![sign(
                &h(),
                &claims("POST", &server.url("/other"), "j15"),
                &key,
            )],
        ),
        refused(
            "#16 htm GET",
            vec![sign(&h(), &claims("GET", &url, "j16"), &key)],
        ),
        refused(
            "#18 iat an hour ahead",
            vec![sign(
                &h(),
                &with(c("j18"), "iat", json!(now() + 3600)),
                &key,
            )],
        ),
        refused(
            "#18 iat an hour old",
            vec![sign(
                &h(),
                &with(c("j18b"), "iat", json!(now() - 3600)),
                &key,
            )],
        ),
        refused(
            "#24 nonce not a string",
            vec![sign(&h(), &with(c("j24"), "nonce", json!(42)), &key)],
        ),
        refused(
            "#39 non-canonical JWK (padded coordinate)",
            vec![sign(&with(h(), "jwk", padded), &c("j39"), &key)],
        ),
        TokenCase {
            row: "#34 no proof from a client that requires DPoP",
            proofs: vec![],
            status: 400,
            error: "invalid_request",
        },
    ];
    refuse_at_token_endpoint(&server, &key, cases).await;
}

#[tokio::test]
async fn proof_variations_the_standard_allows_are_accepted_at_the_token_endpoint() {
    let server = Server::start();
    let key = new_key();
    let url = server.url("/token");
    let upper = url.replace("http://127.0.0.1", "HTTP://127.0.0.1");
    let accepted: Vec<(&str, Value, Value)> = vec![
        (
            "#8 jku and x5u are ignored, the jwk is used",
            json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": jwk(&key),
                    "jku": "http://169.254.169.254/keys", "x5u": "http://169.254.169.254/x" }),
            claims("POST", &url, "a8"),
        ),
        (
            "#17 htu with a query, a fragment and an uppercase scheme",
            header(&key),
            claims("POST", &format!("{upper}?x=1#frag"), "a17"),
        ),
        (
            "#19 iat 10 s ahead",
            header(&key),
            json!({ "jti": "a19", "htm": "POST", "htu": url, "iat": now() + 10 }),
        ),
        (
            "#19 iat 10 s old",
            header(&key),
            json!({ "jti": "a19b", "htm": "POST", "htu": url, "iat": now() - 10 }),
        ),
        (
            "#37 extra claims",
            header(&key),
            json!({ "jti": "a37", "htm": "POST", "htu": url, "iat": now(),
                    "nbf": now(), "exp": now() + 60, "tx_id": "t" }),
        ),
    ];
    for (row, header, claims) in accepted {
        let reply = server.token("app", &[&sign(&header, &claims, &key)]).await;
        assert_eq!(reply.status, 200, "{row}: {}", reply.body);
        assert_eq!(reply.body["token_type"], "DPoP", "{row}");
    }
    // #20: the same proof twice; the second is a replay.
    let proof = sign(&header(&key), &claims("POST", &url, "a20"), &key);
    assert_eq!(server.token("app", &[&proof]).await.status, 200);
    let replay = server.token("app", &[&proof]).await;
    assert_eq!(
        (replay.status, replay.body["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "#20 replay"
    );
}

/// A DPoP-bound token for `key`, and a bearer token from the client without DPoP.
async fn tokens(server: &Server, key: &SigningKey, jti: &str) -> (String, String) {
    let proof = sign(
        &header(key),
        &claims("POST", &server.url("/token"), jti),
        key,
    );
    let bound = server.token("app", &[&proof]).await;
    assert_eq!(bound.status, 200, "{}", bound.body);
    let plain = server.token("plain", &[]).await;
    assert_eq!(plain.body["token_type"], "Bearer", "{}", plain.body);
    (
        bound.body["access_token"].as_str().unwrap().to_owned(),
        plain.body["access_token"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn attacks_at_the_protected_resource_get_the_exact_status_and_challenge() {
    let server = Server::start();
    let key = new_key();
    let (token, bearer) = tokens(&server, &key, "t1").await;
    let (other_token, _) = tokens(&server, &key, "t2").await;
    let api = server.url("/api/whoami");
    let dpop = format!("DPoP {token}");
    let proof = |jti: &str| resource_proof(&key, "GET", &api, &token, jti);
    let attacker = new_key();
    let in_query = format!("/api/whoami?access_token={token}");
    struct Case<'a> {
        row: &'a str,
        path: &'a str,
        headers: Vec<(&'a str, String)>,
        status: u16,
        challenge: &'a str,
    }
    let cases = vec![
        Case {
            row: "#25 stolen token with the attacker's own key",
            path: "/api/whoami",
            headers: vec![
                ("authorization", dpop.clone()),
                (
                    "dpop",
                    resource_proof(&attacker, "GET", &api, &token, "r25"),
                ),
            ],
            status: 401,
            challenge: "error=\"invalid_token\"",
        },
        Case {
            row: "#26 ath of another token",
            path: "/api/whoami",
            headers: vec![
                ("authorization", dpop.clone()),
                (
                    "dpop",
                    resource_proof(&key, "GET", &api, &other_token, "r26"),
                ),
            ],
            status: 401,
            challenge: "error=\"invalid_dpop_proof\"",
        },
        Case {
            row: "#27 DPoP-bound token sent as Bearer",
            path: "/api/whoami",
            headers: vec![("authorization", format!("Bearer {token}"))],
            status: 401,
            challenge: "error=\"invalid_token\"",
        },
        Case {
            row: "#28 DPoP scheme without a DPoP header",
            path: "/api/whoami",
            headers: vec![("authorization", dpop.clone())],
            status: 400,
            challenge: "error=\"invalid_request\"",
        },
        Case {
            row: "#29 token in the query",
            path: &in_query,
            headers: vec![("dpop", proof("r29"))],
            status: 400,
            challenge: "error=\"invalid_request\"",
        },
        Case {
            row: "#30 unbound token with the DPoP scheme",
            path: "/api/whoami",
            headers: vec![
                ("authorization", format!("DPoP {bearer}")),
                ("dpop", resource_proof(&key, "GET", &api, &bearer, "r30")),
            ],
            status: 401,
            challenge: "error=\"invalid_token\"",
        },
        Case {
            row: "#15 proof for another URL",
            path: "/api/whoami",
            headers: vec![
                ("authorization", dpop.clone()),
                (
                    "dpop",
                    resource_proof(&key, "GET", &server.url("/api/other"), &token, "r15"),
                ),
            ],
            status: 401,
            challenge: "error=\"invalid_dpop_proof\"",
        },
        Case {
            row: "#16 proof for another method",
            path: "/api/whoami",
            headers: vec![
                ("authorization", dpop.clone()),
                ("dpop", resource_proof(&key, "PUT", &api, &token, "r16")),
            ],
            status: 401,
            challenge: "error=\"invalid_dpop_proof\"",
        },
    ];
    for case in cases {
        let headers: Vec<(&str, &str)> =
            case.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let reply = server.api(case.path, &headers).await;
        assert_eq!(
            reply.status, case.status,
            "{}: {}",
            case.row, reply.challenge
        );
        assert!(
            reply.challenge.contains(case.challenge) && reply.challenge.contains("DPoP"),
            "{}: {}",
            case.row,
            reply.challenge
        );
        assert!(
            reply.challenge.contains("algs="),
            "{}: the DPoP challenge names the algorithms: {}",
            case.row,
            reply.challenge
        );
    }
    // Nothing above consumed a jti the real client may use: its proof with jti "r26" (refused
    // for the wrong ath) works now.
    let fresh = resource_proof(&key, "GET", &api, &token, "r26");
    let ok = server
        .api("/api/whoami", &[("authorization", &dpop), ("dpop", &fresh)])
        .await;
    assert_eq!(ok.status, 200, "{}", ok.challenge);
    assert_eq!(ok.body["client_id"], "app");
    // #36: header name and scheme in any case.
    let lower = format!("dpop {token}");
    let ok = server
        .api(
            "/api/whoami",
            &[("Authorization", &lower), ("DPOP", &proof("r36"))],
        )
        .await;
    assert_eq!(ok.status, 200, "#36: {}", ok.challenge);
    // #20: a replay of that proof.
    let replay = server
        .api("/api/whoami", &[("authorization", &dpop), ("dpop", &fresh)])
        .await;
    assert_eq!(replay.status, 401, "#20 replay at the resource");
    assert!(
        replay.challenge.contains("invalid_dpop_proof"),
        "{}",
        replay.challenge
    );
}
