//! The client side of `WWW-Authenticate` (RFC 9110 §11.6.1, RFC 9449 §7.1) and `DPoP-Nonce`:
//! `keybound_core::challenge::parse_challenges`, which `keybound-client` calls to decide on its
//! one nonce retry, and `Nonce::parse`, which decides whether a `DPoP-Nonce` is remembered.
//!
//! Invariants: whatever parses has well-formed scheme names and token68s and at most 16
//! challenges; two values that parse alone parse joined by a comma into the concatenation (the
//! list syntax of RFC 9110 §5.6.1); a challenge built by `Challenge` (what the RS sends) from
//! arbitrary text is a valid header value and parses back to its sanitised parameters.

#![no_main]

use keybound_core::challenge::{
    Challenge, ParsedChallenge, Scheme, is_error_text_char, is_token68, parse_challenges,
};
use keybound_core::{Algorithm, ErrorCode, Nonce};
use libfuzzer_sys::fuzz_target;

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn sanitized(text: &str) -> String {
    text.chars()
        .map(|c| if is_error_text_char(c) { c } else { ' ' })
        .collect()
}

fn check_parsed(all: &[ParsedChallenge]) {
    assert!(all.len() <= 16);
    for c in all {
        assert!(!c.scheme_name().is_empty() && c.scheme_name().chars().all(is_tchar));
        if let Some(token68) = c.token68() {
            assert!(is_token68(token68), "{token68:?}");
        }
        // What the client asks of a challenge: is it DPoP with use_dpop_nonce, which algs.
        let _ = (c.scheme(), c.error(), c.algs(), c.param("realm"));
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    // A received value, and the same split in two list members.
    if let Ok(all) = parse_challenges(text) {
        check_parsed(&all);
    }
    if let Some((a, b)) = text.split_once('\n')
        && let (Ok(first), Ok(second)) = (parse_challenges(a), parse_challenges(b))
        && first.len() + second.len() <= 16
        && a.len() + b.len() + 2 <= keybound_core::challenge::MAX_CHALLENGE_LEN
    {
        let joined = parse_challenges(&format!("{a}, {b}"))
            .unwrap_or_else(|e| panic!("{a:?}, {b:?} parse alone but not joined: {e}"));
        let expected: Vec<ParsedChallenge> = first.into_iter().chain(second).collect();
        assert_eq!(
            joined, expected,
            "joining two values concatenates their challenges"
        );
    }

    // A received DPoP-Nonce.
    if let Some(nonce) = Nonce::parse(text) {
        assert_eq!(nonce.as_str(), text);
        assert!(
            reqwest_like_header_value(text),
            "a nonce is a valid header value"
        );
    }

    // A challenge as the resource server builds it, from arbitrary parameter text.
    let mut parts = text.splitn(4, '\n');
    let (realm, code, description, scope) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let code = ErrorCode::parse(code);
    for scheme in [Scheme::DPoP, Scheme::Bearer] {
        let built = Challenge::new(scheme)
            .realm(realm)
            .error(code.clone())
            .description(description)
            .scope(scope)
            .algs(&Algorithm::FAPI2);
        let rendered = built.to_string();
        assert!(reqwest_like_header_value(&rendered), "{rendered:?}");
        if rendered.len() > keybound_core::challenge::MAX_CHALLENGE_LEN {
            continue;
        }
        let parsed = parse_challenges(&rendered)
            .unwrap_or_else(|e| panic!("built challenge {rendered:?} does not parse: {e}"));
        assert_eq!(parsed.len(), 1, "{rendered:?}");
        let c = &parsed[0];
        assert_eq!(c.scheme(), Some(scheme));
        assert_eq!(c.param("realm"), Some(sanitized(realm).as_str()));
        assert_eq!(c.param("error"), Some(sanitized(code.as_str()).as_str()));
        assert_eq!(
            c.param("error_description"),
            Some(sanitized(description).as_str())
        );
        assert_eq!(c.param("scope"), Some(sanitized(scope).as_str()));
        let algs = if scheme == Scheme::DPoP {
            Algorithm::FAPI2.to_vec()
        } else {
            Vec::new()
        };
        assert_eq!(c.algs(), algs);
    }
});

/// `http::HeaderValue`'s rule: visible ASCII, space and tab (no obs-text from keybound).
fn reqwest_like_header_value(text: &str) -> bool {
    axum::http::HeaderValue::from_str(text).is_ok()
}
