//! The Authorization Server's form bodies (`application/x-www-form-urlencoded`, RFC 6749
//! §3.2: no repeated parameter, at most 32, at most `MAX_FORM_BODY` bytes) at `POST /token`,
//! `/introspect` and `/revoke`, through the whole in-process router at a fixed time: the form
//! rules, then client authentication (Basic, `client_secret_post`, `private_key_jwt`, public
//! clients), the grant, the DPoP proof.
//!
//! Input: option byte 0 (endpoint, `Content-Type` variant, padding past the body limit, the
//! `Authorization` header), option byte 1 (a `DPoP` proof, with or without the nonce), then
//! the body, in which the placeholders of `keybound_fuzz` stand for valid credentials.
//!
//! Invariants: a body over the limit is 413; a body that is not declared as a form, repeats a
//! parameter or has more than 32 is `400 invalid_request` (an oracle parses the form with
//! `form_urlencoded`, as RFC 6749 reads it); anything else is 200, 400 or 401, never 5xx; every
//! error is JSON with a known code and an RFC 6749 §5.2 description; every token response is
//! `no-store`, and a token issued verifies under the AS's keys, DPoP-bound exactly when a
//! proof was sent.

#![no_main]

use std::collections::HashSet;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use keybound_core::{AccessTokenVerifier, ErrorCode};
use keybound_fuzz::{API, ISSUER, NOW, authorization_server, credentials, send, substitute};
use keybound_server::MAX_FORM_BODY;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const FORM: &str = "application/x-www-form-urlencoded";

/// RFC 6749's reading of a form: whether it repeats a name or has more than 32 parameters.
fn form_is_refused(body: &[u8]) -> bool {
    let mut names = HashSet::new();
    let mut pairs = 0usize;
    for (name, _) in form_urlencoded::parse(body) {
        pairs += 1;
        if !names.insert(name.into_owned()) {
            return true;
        }
    }
    pairs > 32
}

fuzz_target!(|data: &[u8]| {
    let [options, dpop, body @ ..] = data else {
        return;
    };
    let path = match options & 0b11 {
        1 => "/introspect",
        2 => "/revoke",
        _ => "/token",
    };
    let content_type = match (options >> 2) & 0b111 {
        0 => Some(FORM),
        1 => Some("application/x-www-form-urlencoded; charset=utf-8"),
        2 => Some(" Application/X-WWW-Form-Urlencoded "),
        3 => None,
        4 => Some("text/plain"),
        5 => Some("application/json"),
        6 => Some("multipart/form-data; boundary=x"),
        _ => Some("application/x-www-form-urlencoded, text/plain"),
    };
    let credentials = credentials();
    let authorization = match options >> 6 {
        0 => None,
        1 => Some(credentials.get("$BASIC")),
        2 => Some(credentials.get("$NBASIC")),
        _ => Some("Basic YXBwOndyb25n"), // app:wrong
    };
    let proof = match dpop & 0b11 {
        1 => Some(credentials.get("$ASPROOF")),
        2 => Some(credentials.get("$ASNPROOF")),
        _ => None,
    };
    let mut body = substitute(body);
    if options & 0b10_0000 != 0 {
        body.resize(body.len().max(MAX_FORM_BODY + 1), b'&');
    }

    let mut request = Request::post(path);
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    if let Some(authorization) = authorization {
        request = request.header(header::AUTHORIZATION, authorization);
    }
    if let Some(proof) = proof {
        request = request.header("dpop", proof);
    }
    let request = request.body(Body::from(body.clone())).expect("a request");
    let (app, keys) = authorization_server();
    let (response, response_body) = send(app, request);
    let status = response.status();
    keybound_fuzz::trace!(
        "{path} {status} {}",
        String::from_utf8_lossy(&response_body)
    );

    if body.len() > MAX_FORM_BODY {
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        return;
    }
    let is_form = content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|ct| ct.trim().eq_ignore_ascii_case(FORM));
    // Revocation answers 200 with an empty body (RFC 7009 §2.2); everything else is JSON.
    let json: Value = serde_json::from_slice(&response_body).unwrap_or(Value::Null);
    assert!(
        json.is_object() || (status == StatusCode::OK && path == "/revoke"),
        "{path} answered {status} without a JSON object: {}",
        String::from_utf8_lossy(&response_body)
    );
    if !is_form || form_is_refused(&body) {
        assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
        assert_eq!(json["error"], "invalid_request");
        return;
    }
    assert!(
        matches!(
            status,
            StatusCode::OK | StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED
        ),
        "{path} answered {status}: {json}"
    );
    if status != StatusCode::OK {
        let code = json["error"].as_str().expect("an error code");
        assert!(
            !matches!(ErrorCode::parse(code), ErrorCode::Extension(_)),
            "{code:?}"
        );
        let description = json["error_description"].as_str().unwrap_or_default();
        assert!(
            description
                .chars()
                .all(keybound_core::challenge::is_error_text_char)
        );
        assert_eq!(
            status == StatusCode::UNAUTHORIZED,
            code == "invalid_client",
            "{json}"
        );
    }
    if path != "/token" {
        return;
    }
    assert_eq!(
        response
            .headers()
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    if status == StatusCode::OK {
        let token = json["access_token"].as_str().expect("an access token");
        let claims = AccessTokenVerifier::new((*keys).clone(), ISSUER, API)
            .verify(token, NOW)
            .expect("the AS's own token verifies");
        let bound = claims.cnf.as_ref().is_some_and(|c| c.jkt.is_some());
        assert_eq!(
            bound,
            proof.is_some(),
            "DPoP-bound exactly when a proof was sent"
        );
        assert_eq!(json["token_type"], if bound { "DPoP" } else { "Bearer" });
    }
});
