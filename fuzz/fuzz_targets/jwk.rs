//! `PublicJwk` parsing and RFC 7638 thumbprints, and JWKS documents (`KeySet`), on arbitrary
//! bytes. A key that parses has a 43-character thumbprint equal to the SHA-256 of an
//! independently built RFC 7638 canonical form of the members as received; it re-parses from
//! its own `to_json` to the same thumbprint; `public_half_of` agrees with `from_json`; and
//! `check_algorithm` accepts exactly the algorithms of its key type (and its own `alg`).

#![no_main]

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keybound_core::{Algorithm, JwkThumbprint, KeyKind, KeySet, PublicJwk};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

/// RFC 7638 §3.2: the required members in lexicographic order, no whitespace.
fn canonical(map: &Map<String, Value>, kind: KeyKind) -> String {
    let m = |name: &str| Value::from(map[name].as_str().unwrap()).to_string();
    let names: &[&str] = match kind {
        KeyKind::Rsa => &["e", "kty", "n"],
        KeyKind::Ed25519 => &["crv", "kty", "x"],
        _ => &["crv", "kty", "x", "y"],
    };
    let members: Vec<String> = names
        .iter()
        .map(|n| format!("{}:{}", Value::from(*n), m(n)))
        .collect();
    format!("{{{}}}", members.join(","))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(jwk) = PublicJwk::from_json(data) {
        let thumbprint = jwk.thumbprint().as_str();
        assert_eq!(thumbprint.len(), 43, "a thumbprint is 43 characters");
        assert_eq!(
            JwkThumbprint::parse(thumbprint).as_ref(),
            Some(jwk.thumbprint()),
            "a thumbprint parses as one"
        );

        let map: Map<String, Value> = serde_json::from_slice(data).expect("parsed by from_json");
        let expected = URL_SAFE_NO_PAD.encode(digest::digest(
            &digest::SHA256,
            canonical(&map, jwk.kind()).as_bytes(),
        ));
        assert_eq!(
            thumbprint, expected,
            "RFC 7638 over the members as received"
        );
        assert_eq!(jwk.kid(), map.get("kid").and_then(Value::as_str));

        let again = PublicJwk::from_json(jwk.to_json().as_bytes()).expect("to_json re-parses");
        assert_eq!(again.thumbprint(), jwk.thumbprint());
        assert_eq!(again.kind(), jwk.kind());

        let half = PublicJwk::public_half_of(data).expect("a public key is its own public half");
        assert_eq!(half.thumbprint(), jwk.thumbprint());

        for alg in Algorithm::ALL {
            let fits = alg.key_kind() == jwk.kind() && jwk.alg().is_none_or(|own| own == alg);
            assert_eq!(
                jwk.check_algorithm(alg).is_ok(),
                fits,
                "{alg:?} on {:?}",
                jwk.kind()
            );
            // Garbage signatures are refused, never a panic.
            assert!(!jwk.verify(alg, b"message", data) || fits);
        }
    }

    if let Ok(set) = KeySet::from_jwks_json(data) {
        let doc: Map<String, Value> =
            serde_json::from_slice(data).expect("parsed by from_jwks_json");
        let entries = doc["keys"].as_array().expect("keys is an array").len();
        assert!(set.len() <= entries, "every usable key came from an entry");
    }
});
