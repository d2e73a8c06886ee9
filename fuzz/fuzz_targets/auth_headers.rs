//! `Authorization` and `DPoP` request headers as the Resource Server and the Authorization
//! Server read them: `keybound_resource::ResourceLayer` (one credential, scheme `DPoP` or
//! `Bearer` in any case, token68 syntax, the single `DPoP` header, no token in the query, then
//! the token, proof, binding, scope and replay checks) and the AS's `POST /token` (HTTP Basic
//! client authentication, the `DPoP` header, nonces), both in-process at a fixed time.
//!
//! Input (see `keybound_fuzz`): a request line for the RS (`GET /orders?x=1`) and header lines,
//! with placeholders for valid tokens, proofs and Basic credentials. The AS gets the same
//! headers on a fixed client-credentials form.
//!
//! Invariants, RS: only 200, 400, 401 or 403; a request gets through only with exactly one
//! `Authorization` header of a known scheme, no token in the query, and, for DPoP, exactly one
//! `DPoP` header whose key is the token's `cnf.jkt`; every refusal carries `WWW-Authenticate`
//! challenges that parse, DPoP first with the configured `algs`, with known error codes; the
//! same accepted DPoP request sent again is refused as a replay.
//! AS: only 200, 400 or 401, always `Cache-Control: no-store`, a JSON body with a known
//! error code (401 only for `invalid_client`, with a Basic challenge if Basic was tried) or a
//! token that verifies under the AS's keys, DPoP-bound to the proof's key exactly when one
//! `DPoP` header was sent; `use_dpop_nonce` comes with a valid `DPoP-Nonce`; a successful
//! DPoP request sent again is refused.

#![no_main]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, Response, StatusCode, header};
use keybound_core::challenge::{Scheme, parse_challenges};
use keybound_core::jws::UntrustedJws;
use keybound_core::{AccessTokenVerifier, Algorithm, ErrorCode, PublicJwk};
use keybound_fuzz::{
    API, ISSUER, NOW, as_key_set, as_nonce_ring, authorization_server, client_key, header_block,
    method_and_target, send,
};
use keybound_resource::{
    KeySource, ResourceConfig, ResourceLayer, ResourceVerifier, VerifiedToken,
};
use keybound_store::MemoryReplayCache;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tower::Layer as _;

const FORM: &str = "grant_type=client_credentials&scope=read";

fn request(
    method: &str,
    target: &str,
    headers: &HeaderMap,
    body: &'static str,
) -> Option<Request<Body>> {
    let mut request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).ok()?)
        .uri(target)
        .body(Body::from(body))
        .ok()?;
    *request.headers_mut() = headers.clone();
    Some(request)
}

fn known_code(code: &str) -> bool {
    !matches!(ErrorCode::parse(code), ErrorCode::Extension(_))
}

fn is_known_scheme(value: &str) -> Option<Scheme> {
    Scheme::from_name(value.split_once(' ').map_or(value, |(s, _)| s))
}

fn check_resource_response(
    response: &Response<()>,
    headers: &HeaderMap,
    query: Option<&str>,
    token: Option<&VerifiedToken>,
) {
    let status = response.status();
    if status == StatusCode::OK {
        let token = token.expect("a 200 from the inner service");
        let authorizations: Vec<_> = headers.get_all(header::AUTHORIZATION).iter().collect();
        assert_eq!(authorizations.len(), 1, "one credential");
        let scheme = is_known_scheme(authorizations[0].to_str().expect("text"));
        assert_eq!(scheme, Some(token.scheme));
        assert!(
            !query
                .unwrap_or_default()
                .split('&')
                .any(|p| p.split('=').next() == Some("access_token")),
            "no token in the query"
        );
        let proofs = headers.get_all("dpop").iter().count();
        match token.scheme {
            Scheme::DPoP => {
                assert_eq!(proofs, 1);
                let jkt = token.jkt.as_ref().expect("a DPoP token has a proof key");
                assert_eq!(jkt, client_key().public_jwk().thumbprint());
                let cnf = token.claims.cnf.as_ref().and_then(|c| c.jkt.as_ref());
                assert_eq!(cnf, Some(jkt), "the proof key is the token's cnf.jkt");
            }
            _ => assert_eq!(proofs, 0, "no proof with Bearer"),
        }
        assert!(token.has_scope("read"));
        return;
    }
    assert!(
        matches!(
            status,
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ),
        "RS answered {status}"
    );
    let challenges: Vec<_> = response
        .headers()
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .collect();
    assert!(!challenges.is_empty(), "a refusal carries challenges");
    for (i, value) in challenges.iter().enumerate() {
        let text = value.to_str().expect("an ASCII challenge");
        let parsed = parse_challenges(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(parsed.len(), 1, "{text:?}");
        let c = &parsed[0];
        if i == 0 {
            assert_eq!(c.scheme(), Some(Scheme::DPoP), "DPoP first");
            assert_eq!(c.algs(), Algorithm::FAPI2.to_vec());
        }
        if let Some(code) = c.param("error") {
            assert!(known_code(code), "{code:?}");
        }
    }
}

fn resource(block_headers: &HeaderMap, line: &[u8]) {
    let (method, target) = method_and_target(line).unwrap_or(("GET", "/orders"));
    let Some(first) = request(method, target, block_headers, "") else {
        return;
    };
    let query = first.uri().query().map(str::to_owned);
    let config = ResourceConfig::new(ISSUER, API, API);
    let keys = KeySource::Static(Arc::new(as_key_set()));
    let verifier = ResourceVerifier::new(config, keys, Arc::new(MemoryReplayCache::new(64)))
        .expect("a valid base URL")
        .with_clock(Arc::new(|| NOW));
    let layer = ResourceLayer::new(Arc::new(verifier)).require_scopes(&["read"]);
    let inner = tower::service_fn(|request: Request<Body>| async move {
        let token = request.extensions().get::<VerifiedToken>().cloned();
        let mut response = Response::new(Body::empty());
        response
            .extensions_mut()
            .insert(token.expect("only verified requests get through"));
        Ok::<_, std::convert::Infallible>(response)
    });
    let service = layer.layer(inner);

    let (response, _) = send(service.clone(), first);
    let token = response.extensions().get::<VerifiedToken>().cloned();
    keybound_fuzz::trace!(
        "RS {} {:?}",
        response.status(),
        response.headers().get(header::WWW_AUTHENTICATE)
    );
    check_resource_response(&response, block_headers, query.as_deref(), token.as_ref());
    if token.as_ref().is_some_and(|t| t.scheme == Scheme::DPoP) {
        let again = request(method, target, block_headers, "").expect("built once");
        let (response, _) = send(service, again);
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "a replayed proof is refused"
        );
    }
}

fn proof_key(headers: &HeaderMap) -> Option<PublicJwk> {
    let proof = headers.get("dpop")?.to_str().ok()?;
    let jws = UntrustedJws::parse(proof.trim(), 8192).ok()?;
    let Some(Value::Object(jwk)) = jws.header().get("jwk") else {
        return None;
    };
    PublicJwk::from_map(jwk).ok()
}

/// Checks one token-endpoint answer; `Some(true)` if it issued a DPoP-bound token.
fn check_token_response(
    response: &Response<()>,
    body: &[u8],
    headers: &HeaderMap,
    keys: &keybound_core::KeySet,
) -> bool {
    let status = response.status();
    assert!(
        matches!(
            status,
            StatusCode::OK | StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED
        ),
        "AS answered {status}: {}",
        String::from_utf8_lossy(body)
    );
    assert_eq!(
        response
            .headers()
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let json: Value = serde_json::from_slice(body).expect("a JSON body");
    if status != StatusCode::OK {
        let code = json["error"].as_str().expect("an error code");
        assert!(known_code(code), "{code:?}");
        let description = json["error_description"].as_str().unwrap_or_default();
        assert!(
            description
                .chars()
                .all(keybound_core::challenge::is_error_text_char),
            "{description:?}"
        );
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(code, "invalid_client");
            let tried_basic = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.get(..6).is_some_and(|s| s.eq_ignore_ascii_case("basic ")));
            if tried_basic && headers.get_all(header::AUTHORIZATION).iter().count() == 1 {
                assert!(
                    response.headers().contains_key(header::WWW_AUTHENTICATE),
                    "Basic challenge"
                );
            }
        }
        if code == "use_dpop_nonce" {
            let nonce = response
                .headers()
                .get("dpop-nonce")
                .expect("a nonce to retry with");
            assert!(
                as_nonce_ring()
                    .check(nonce.to_str().expect("text"), NOW)
                    .is_ok()
            );
        }
        return false;
    }
    let token = json["access_token"].as_str().expect("an access token");
    let token_type = json["token_type"].as_str().expect("a token type");
    let claims = AccessTokenVerifier::new(keys.clone(), ISSUER, API)
        .verify(token, NOW)
        .expect("the AS's own token verifies");
    let proofs = headers.get_all("dpop").iter().count();
    let jkt = claims.cnf.as_ref().and_then(|c| c.jkt.as_ref());
    match token_type {
        "DPoP" => {
            assert_eq!(proofs, 1, "a DPoP token needs exactly one proof");
            let key = proof_key(headers).expect("the accepted proof has a key");
            assert_eq!(jkt, Some(key.thumbprint()), "bound to the proof's key");
            true
        }
        "Bearer" => {
            assert_eq!(
                proofs, 0,
                "a proof was sent, so the token must be DPoP-bound"
            );
            assert!(jkt.is_none());
            false
        }
        other => panic!("token_type {other:?}"),
    }
}

fn authorization(block_headers: &HeaderMap) {
    let mut headers = block_headers.clone();
    if !headers.contains_key(header::CONTENT_TYPE) {
        headers.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded"
                .parse()
                .expect("a header value"),
        );
    }
    let (app, keys) = authorization_server();
    let first = request("POST", "/token", &headers, FORM).expect("a request");
    let (response, body) = send(app.clone(), first);
    keybound_fuzz::trace!(
        "AS {} {}",
        response.status(),
        String::from_utf8_lossy(&body)
    );
    if check_token_response(&response, &body, &headers, &keys) {
        let again = request("POST", "/token", &headers, FORM).expect("a request");
        let (response, body) = send(app, again);
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "a replayed proof is refused"
        );
        let json: Value = serde_json::from_slice(&body).expect("a JSON body");
        assert_eq!(json["error"], "invalid_dpop_proof");
    }
}

fuzz_target!(|data: &[u8]| {
    let block = header_block(data);
    resource(&block.headers, block.request_line);
    authorization(&block.headers);
});
