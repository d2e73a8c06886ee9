//! Property tests: every entry point that sees untrusted bytes (proofs, DPoP header lines, JWKs,
//! JWKS documents, `WWW-Authenticate` values, client-certificate headers, URIs, nonces, access
//! tokens) returns an error instead of panicking, for arbitrary input and for structured input
//! that is signed correctly so the claim checks behind the signature are reached. And a proof's
//! signature covers every one of its bytes.

// `allow-unwrap-in-tests` covers `#[test]` bodies only; the fixtures and strategies below are
// test code too, and a failed unwrap there is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::LazyLock;

use aws_lc_rs::rand::SystemRandom;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keybound_core::cert::{decode_client_cert, decode_client_cert_chain};
use keybound_core::challenge::parse_challenges;
use keybound_core::dpop::{
    NoncePolicy, ProofBuilder, ProofError, ProofRequest, ProofVerifier, single_dpop_header,
};
use keybound_core::jws::{UntrustedJws, sign_compact};
use keybound_core::{
    AccessTokenHash, AccessTokenVerifier, Algorithm, Htu, JwkThumbprint, KeySet, Nonce,
    NonceKeyRing, NonceSecret, PublicJwk, SigningKey, UnixTime,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const NOW: u64 = 1_700_000_000;
const API_URL: &str = "https://rs.example.com/api/res";
const ACCESS_TOKEN: &str = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
const ISSUER: &str = "https://as.example.com";
const AUDIENCE: &str = "https://rs.example.com";
const AS_KID: &str = "as-key-1";

/// Keys and values shared by every case (generated once; signing keys are slow to make).
struct Fixtures {
    es256: SigningKey,
    eddsa: SigningKey,
    as_key: SigningKey,
    es256_jwk: Map<String, Value>,
    eddsa_jwk: Map<String, Value>,
    ring: NonceKeyRing,
    nonce: String,
    htu: Htu,
    access_tokens: AccessTokenVerifier,
}

static FIX: LazyLock<Fixtures> = LazyLock::new(|| {
    let rng = SystemRandom::new();
    let key = |alg| SigningKey::generate(alg, &rng).unwrap().0;
    let jwk_map = |k: &SigningKey| match serde_json::from_str(&k.public_jwk().to_json()).unwrap() {
        Value::Object(map) => map,
        _ => unreachable!(),
    };
    let (es256, eddsa, as_key) = (
        key(Algorithm::Es256),
        key(Algorithm::EdDsa),
        key(Algorithm::Es256),
    );
    let ring = NonceKeyRing::new("rs", &NonceSecret::new(&[7; 32]).unwrap(), None);
    let nonce = ring.issue(UnixTime::from_secs(NOW)).as_str().to_owned();
    let mut as_entry = jwk_map(&as_key);
    as_entry.insert("kid".into(), AS_KID.into());
    let jwks = json!({ "keys": [as_entry] }).to_string();
    let access_tokens = AccessTokenVerifier::new(
        KeySet::from_jwks_json(jwks.as_bytes()).unwrap(),
        ISSUER,
        AUDIENCE,
    );
    Fixtures {
        es256_jwk: jwk_map(&es256),
        eddsa_jwk: jwk_map(&eddsa),
        es256,
        eddsa,
        as_key,
        ring,
        nonce,
        htu: Htu::parse(API_URL).unwrap(),
        access_tokens,
    }
});

fn config(cases: u32) -> ProptestConfig {
    // No regression files: the seed of a failure is in the failure message.
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

// ---------------------------------------------------------------------------------------------
// Strategies

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,16}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z#0-9]{0,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Mostly one of `interesting`, sometimes any string, sometimes any JSON value.
fn member(interesting: Vec<String>) -> BoxedStrategy<Value> {
    prop_oneof![
        14 => prop::sample::select(interesting).prop_map(Value::from),
        1 => ".{0,24}".prop_map(Value::from),
        1 => json_value(),
    ]
    .boxed()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// A NumericDate near `NOW`, or any number, or any JSON value.
fn numeric_date() -> BoxedStrategy<Value> {
    prop_oneof![
        16 => (NOW - 100..NOW + 100).prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(Value::from),
        1 => json_value(),
    ]
    .boxed()
}

/// Present with probability `p`.
fn maybe(p: f64, s: BoxedStrategy<Value>) -> BoxedStrategy<Option<Value>> {
    prop::option::weighted(p, s).boxed()
}

/// Puts the present members into `map`.
fn fill(map: &mut Map<String, Value>, members: Vec<(&str, Option<Value>)>) {
    for (name, value) in members {
        if let Some(value) = value {
            map.insert(name.to_owned(), value);
        }
    }
}

/// Extra members with short random names (private-key names included now and then).
fn extra_members() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("[a-z]{1,3}", json_value(), 0..2)
        .prop_map(|m| m.into_iter().collect())
}

/// Unpadded base64url of random bytes, lengths chosen to hit every key-size check.
fn b64_member() -> BoxedStrategy<String> {
    let len = prop_oneof![
        Just(32usize),
        Just(48),
        Just(31),
        Just(33),
        0..8usize,
        250..260usize,
    ];
    len.prop_flat_map(|n| prop::collection::vec(any::<u8>(), n))
        .prop_map(|bytes| b64(&bytes))
        .boxed()
}

fn key_material() -> BoxedStrategy<Value> {
    prop_oneof![
        6 => b64_member().prop_map(Value::from),
        1 => Just(Value::from("AQAB")),
        1 => "[A-Za-z0-9_=+/-]{0,60}".prop_map(Value::from),
        1 => json_value(),
    ]
    .boxed()
}

/// A JSON object with `kty`/`crv`/`x`/`y`/`n`/`e`/`alg`/`use`/`kid` members of random values.
fn fuzzed_jwk() -> impl Strategy<Value = Map<String, Value>> {
    let names = (
        maybe(
            0.95,
            member(strings(&["EC", "OKP", "RSA", "EC", "OKP", "RSA", "oct"])),
        ),
        maybe(
            0.9,
            member(strings(&[
                "P-256", "P-384", "Ed25519", "P-256", "Ed25519", "X25519",
            ])),
        ),
        maybe(
            0.2,
            member(strings(&[
                "ES256", "ES384", "EdDSA", "PS256", "RS256", "none",
            ])),
        ),
        maybe(0.2, member(strings(&["sig", "enc"]))),
        maybe(0.2, member(strings(&["k1", AS_KID]))),
    );
    let material = (
        maybe(0.9, key_material()),
        maybe(0.8, key_material()),
        maybe(0.8, key_material()),
        maybe(0.8, key_material()),
        maybe(0.05, key_material()),
    );
    (names, material, extra_members()).prop_map(
        |((kty, crv, alg, usage, kid), (x, y, n, e, d), extra)| {
            let mut map = extra;
            fill(
                &mut map,
                vec![
                    ("kty", kty),
                    ("crv", crv),
                    ("alg", alg),
                    ("use", usage),
                    ("kid", kid),
                    ("x", x),
                    ("y", y),
                    ("n", n),
                    ("e", e),
                    ("d", d),
                ],
            );
            map
        },
    )
}

/// A real public key, with now and then one member replaced by something random.
fn real_jwk() -> impl Strategy<Value = Map<String, Value>> {
    (
        any::<bool>(),
        maybe(0.2, key_material()),
        maybe(0.1, key_material()),
        maybe(0.1, member(strings(&["P-256", "Ed25519", "P-384"]))),
        maybe(0.1, member(strings(&["ES256", "EdDSA", "PS256"]))),
    )
        .prop_map(|(ec, x, y, crv, alg)| {
            let mut map = if ec {
                FIX.es256_jwk.clone()
            } else {
                FIX.eddsa_jwk.clone()
            };
            fill(
                &mut map,
                vec![("x", x), ("y", y), ("crv", crv), ("alg", alg)],
            );
            map
        })
}

fn jwk_object() -> BoxedStrategy<Map<String, Value>> {
    prop_oneof![3 => fuzzed_jwk(), 1 => real_jwk()].boxed()
}

/// Which key signs a structured proof.
#[derive(Clone, Copy, Debug)]
enum Signer {
    Es256,
    EdDsa,
}

impl Signer {
    fn key(self) -> &'static SigningKey {
        match self {
            Self::Es256 => &FIX.es256,
            Self::EdDsa => &FIX.eddsa,
        }
    }
}

/// `base` with fewer than `edits` edits, each setting one of `names` to a value from `values`
/// or removing it: some cases stay valid, the others fail one or two checks.
fn edited(
    base: Map<String, Value>,
    names: &'static [&'static str],
    values: BoxedStrategy<Value>,
    edits: usize,
) -> BoxedStrategy<Map<String, Value>> {
    let edit = (
        prop::sample::select(names),
        prop::option::weighted(0.85, values),
    );
    (prop::collection::vec(edit, 0..edits), extra_members())
        .prop_map(move |(edits, extra)| {
            let mut map = base.clone();
            for (name, value) in edits {
                match value {
                    Some(value) => map.insert(name.to_owned(), value),
                    None => map.remove(name),
                };
            }
            for (name, value) in extra {
                map.entry(name).or_insert(value);
            }
            map
        })
        .boxed()
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("an object literal"),
    }
}

/// A proof header: right for the signer, or with one of its members changed.
fn proof_header(signer: Signer) -> BoxedStrategy<Map<String, Value>> {
    let key = signer.key();
    let valid = object(json!({
        "typ": "dpop+jwt",
        "alg": key.algorithm().name(),
        "jwk": serde_json::from_str::<Value>(&key.public_jwk().to_json()).unwrap(),
    }));
    let values = prop_oneof![
        3 => member(strings(&[
            "application/dpop+jwt",
            "DPOP+JWT",
            "JWT",
            "application/",
            "ES256",
            "EdDSA",
            "PS256",
            "none",
            "HS256",
        ])),
        2 => jwk_object().prop_map(Value::Object),
    ]
    .boxed();
    edited(valid, &["typ", "alg", "jwk", "crit"], values, 2)
}

/// Proof claims for a GET of `API_URL` with `ACCESS_TOKEN` at `NOW`, or with one or two of
/// them changed.
fn proof_claims() -> BoxedStrategy<Map<String, Value>> {
    let ath = AccessTokenHash::of(ACCESS_TOKEN).as_str().to_owned();
    let valid = object(json!({
        "jti": "e1j3V_bKic8-LAEB",
        "htm": "GET",
        "htu": API_URL,
        "iat": NOW,
        "ath": ath,
    }));
    let values = prop_oneof![
        3 => member(vec![
            String::new(),
            "j".repeat(256),
            "j".repeat(257),
            "POST".into(),
            "get".into(),
            "https://RS.example.com:443/api/./res?q#f".into(),
            "https://rs.example.com/api/other".into(),
            "http://rs.example.com/api/res".into(),
            "rs.example.com/api/res".into(),
            "https://[::1]:8443/%7e/../a".into(),
            "AAAA".into(),
            FIX.nonce.clone(),
            FIX.nonce.clone(),
            "has\"quote".into(),
            "x".repeat(43),
        ]),
        1 => numeric_date(),
    ]
    .boxed();
    edited(
        valid,
        &["jti", "htm", "htu", "iat", "ath", "nonce", "nonce"],
        values,
        3,
    )
}

/// RFC 9068 claims the verifier accepts at `NOW`, or with one or two of them changed.
fn access_token_claims() -> BoxedStrategy<Map<String, Value>> {
    let jkt = FIX.es256.public_jwk().thumbprint().as_str().to_owned();
    let valid = object(json!({
        "iss": ISSUER,
        "sub": "alice",
        "aud": AUDIENCE,
        "exp": NOW + 300,
        "iat": NOW,
        "jti": "t-1",
        "client_id": "client-1",
        "scope": "read write",
        "cnf": { "jkt": jkt },
    }));
    let values = prop_oneof![
        3 => member(strings(&["https://evil.example", "other", "", "  ", AUDIENCE, ISSUER])),
        2 => numeric_date(),
        1 => Just(json!([AUDIENCE, "other"])),
        1 => Just(json!([])),
        1 => Just(json!({ "x5t#S256": jkt })),
        1 => Just(json!({ "jkt": jkt, "x5t#S256": jkt })),
        1 => Just(json!({})),
        1 => Just(json!({ "jkt": jkt, "jwk": {} })),
        1 => Just(json!({ "jkt": "short" })),
    ]
    .boxed();
    edited(
        valid,
        &[
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "nbf",
            "jti",
            "client_id",
            "scope",
            "cnf",
        ],
        values,
        3,
    )
}

/// An access-token header naming the AS key, or with one of its members changed.
fn access_token_header() -> BoxedStrategy<Map<String, Value>> {
    let valid = object(json!({ "typ": "at+jwt", "alg": "ES256", "kid": AS_KID }));
    let values = member(strings(&[
        "application/at+jwt",
        "JWT",
        "dpop+jwt",
        "EdDSA",
        "PS256",
        "none",
        "other",
        "",
    ]));
    edited(valid, &["typ", "alg", "kid", "crit"], values, 2)
}

/// Mostly the signer's real signature, sometimes random bytes or an arbitrary last part.
#[derive(Clone, Debug)]
enum SignaturePart {
    Real,
    Bytes(Vec<u8>),
    Text(String),
}

fn signature_part() -> impl Strategy<Value = SignaturePart> {
    prop_oneof![
        8 => Just(SignaturePart::Real),
        1 => prop::collection::vec(any::<u8>(), 0..80).prop_map(SignaturePart::Bytes),
        1 => ".{0,20}".prop_map(SignaturePart::Text),
    ]
}

/// `header.payload.signature` with the JSON texts base64url-encoded.
fn compact(
    header: &Map<String, Value>,
    payload: &Map<String, Value>,
    key: &SigningKey,
    sig: &SignaturePart,
) -> String {
    let header = Value::Object(header.clone()).to_string();
    let payload = Value::Object(payload.clone()).to_string();
    let signed = sign_compact(&header, &payload, key).unwrap();
    let (input, _) = signed.rsplit_once('.').unwrap();
    match sig {
        SignaturePart::Real => signed,
        SignaturePart::Bytes(bytes) => format!("{input}.{}", b64(bytes)),
        SignaturePart::Text(text) => format!("{input}.{text}"),
    }
}

/// The request side: method, whether an access token accompanies, the nonce policy, the clock.
fn proof_request_parts() -> impl Strategy<Value = (&'static str, bool, u8, u64)> {
    (
        prop::sample::select(vec!["GET", "GET", "GET", "POST"]),
        prop::bool::weighted(0.8),
        0u8..3,
        prop_oneof![8 => NOW - 40..NOW + 70, 1 => any::<u64>()],
    )
}

fn verify_proof(proof: &str, (method, with_token, nonce, now): (&str, bool, u8, u64)) {
    let policy = match nonce {
        0 => NoncePolicy::NotUsed,
        1 => NoncePolicy::IfPresent(&FIX.ring),
        _ => NoncePolicy::Required(&FIX.ring),
    };
    let request = ProofRequest {
        method,
        htu: &FIX.htu,
        now: UnixTime::from_secs(now),
        access_token: with_token.then_some(ACCESS_TOKEN),
        nonce: policy,
    };
    let _ = ProofVerifier::default().verify(proof, &request);
}

/// Arbitrary text, and text over the JWS alphabet with dots (which gets past the split).
fn jws_like_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,300}",
        "[A-Za-z0-9_=.-]{0,300}",
        "(eyJ[A-Za-z0-9_-]{0,60}\\.){2}[A-Za-z0-9_-]{0,90}",
    ]
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn untrusted_jws_parse_never_panics_on_arbitrary_text(text in jws_like_text(), max in 0usize..400) {
        let _ = UntrustedJws::parse(&text, max);
        let _ = UntrustedJws::parse(&text, usize::MAX);
    }

    #[test]
    fn proof_verify_never_panics_on_arbitrary_text(text in jws_like_text(), req in proof_request_parts()) {
        verify_proof(&text, req);
    }

    #[test]
    fn single_dpop_header_never_panics_on_arbitrary_field_lines(
        lines in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..120), 0..3),
        texts in prop::collection::vec("[ \t,A-Za-z0-9._~+/=-]{0,60}", 0..3),
    ) {
        let _ = single_dpop_header(lines.iter().map(Vec::as_slice));
        let _ = single_dpop_header(texts.iter().map(String::as_bytes));
    }

    #[test]
    fn public_jwk_from_json_never_panics_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        text in "\\{.{0,100}\\}",
    ) {
        let _ = PublicJwk::from_json(&bytes);
        let _ = PublicJwk::public_half_of(&bytes);
        let _ = PublicJwk::from_json(text.as_bytes());
    }

    #[test]
    fn jwks_from_json_never_panics_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        text in "\\{\"keys\":\\[.{0,100}\\]\\}",
    ) {
        let _ = KeySet::from_jwks_json(&bytes);
        let _ = KeySet::from_jwks_json(text.as_bytes());
    }

    #[test]
    fn parse_challenges_never_panics_on_arbitrary_text(
        any_text in ".{0,200}",
        challenge_like in "[A-Za-z0-9 \t,=\"\\\\._~+/!#$%&'*^`|-]{0,200}",
    ) {
        let _ = parse_challenges(&any_text);
        let _ = parse_challenges(&challenge_like);
    }

    #[test]
    fn client_cert_header_decoders_never_panic_on_arbitrary_text(
        any_text in ".{0,200}",
        sf_like in "[:A-Za-z0-9+/=, ;\t]{0,200}",
    ) {
        for text in [&any_text, &sf_like] {
            let _ = decode_client_cert(text);
            let _ = decode_client_cert_chain(text);
        }
    }

    #[test]
    fn htu_parse_never_panics_and_its_output_is_a_fixed_point(
        any_text in ".{0,120}",
        uri_like in "(https?|HTTPS|ftp|)(://)?[A-Za-z0-9.:\\[\\]@_~-]{0,24}(/[A-Za-z0-9%.~_:@!$&'()*+,;=-]{0,12}){0,5}([?#].{0,8})?",
    ) {
        for text in [&any_text, &uri_like] {
            if let Ok(htu) = Htu::parse(text) {
                let again = Htu::parse(htu.as_str());
                prop_assert_eq!(again.as_ref(), Ok(&htu), "from {:?}", text);
            }
        }
    }

    #[test]
    fn nonce_parse_and_key_ring_check_never_panic_on_arbitrary_text(
        any_text in ".{0,300}",
        nonce_like in "[A-Za-z0-9_-]{43}",
        now in prop_oneof![NOW - 1000..NOW + 1000, any::<u64>()],
    ) {
        let now = UnixTime::from_secs(now);
        for text in [&any_text, &nonce_like] {
            let _ = Nonce::parse(text);
            let _ = FIX.ring.check(text, now);
        }
        let _ = FIX.ring.check(&FIX.nonce, now);
    }

    #[test]
    fn thumbprint_parse_never_panics_on_arbitrary_text(
        any_text in ".{0,60}",
        b64_like in "[A-Za-z0-9_-]{42,44}",
    ) {
        let _ = JwkThumbprint::parse(&any_text);
        let _ = JwkThumbprint::parse(&b64_like);
    }

    #[test]
    fn access_token_verify_never_panics_on_arbitrary_text(
        text in jws_like_text(),
        now in any::<u64>(),
    ) {
        let _ = FIX.access_tokens.verify(&text, UnixTime::from_secs(now));
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn public_jwk_from_json_never_panics_on_objects_with_random_key_members(jwk in jwk_object()) {
        let bytes = Value::Object(jwk).to_string().into_bytes();
        let _ = PublicJwk::from_json(&bytes);
        let _ = PublicJwk::public_half_of(&bytes);
    }

    #[test]
    fn accepted_jwk_verify_never_panics_on_arbitrary_signatures(
        jwk in jwk_object(),
        alg in prop::sample::select(Algorithm::ALL.to_vec()),
        message in prop::collection::vec(any::<u8>(), 0..64),
        signature in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        if let Ok(key) = PublicJwk::from_json(Value::Object(jwk).to_string().as_bytes()) {
            let _ = key.verify(alg, &message, &signature);
            let _ = key.check_algorithm(alg);
            let _ = key.to_json();
        }
    }

    #[test]
    fn jwks_from_json_never_panics_on_documents_of_random_keys(
        keys in prop::collection::vec(
            prop_oneof![4 => jwk_object().prop_map(Value::Object), 1 => json_value()],
            0..5,
        ),
    ) {
        let doc = json!({ "keys": keys }).to_string();
        let _ = KeySet::from_jwks_json(doc.as_bytes());
    }

    #[test]
    fn proof_verify_never_panics_on_signed_proofs_with_random_headers_and_claims(
        (signer, header) in prop_oneof![Just(Signer::Es256), Just(Signer::EdDsa)]
            .prop_flat_map(|s| (Just(s), proof_header(s))),
        claims in proof_claims(),
        sig in signature_part(),
        req in proof_request_parts(),
    ) {
        let proof = compact(&header, &claims, signer.key(), &sig);
        verify_proof(&proof, req);
    }

    #[test]
    fn access_token_verify_never_panics_on_signed_tokens_with_random_headers_and_claims(
        header in access_token_header(),
        claims in access_token_claims(),
        sig in signature_part(),
        now in prop_oneof![8 => NOW - 10..NOW + 310, 1 => any::<u64>()],
    ) {
        let token = compact(&header, &claims, &FIX.as_key, &sig);
        let _ = FIX.access_tokens.verify(&token, UnixTime::from_secs(now));
    }
}

proptest! {
    #![proptest_config(config(32))]

    #[test]
    fn built_proof_verifies_and_flipping_any_signature_byte_gives_invalid_signature(
        alg in prop_oneof![Just(Algorithm::Es256), Just(Algorithm::EdDsa)],
        index in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let rng = SystemRandom::new();
        let (key, _) = SigningKey::generate(alg, &rng).unwrap();
        let now = UnixTime::from_secs(NOW);
        let proof = ProofBuilder::new("GET", API_URL, now)
            .access_token(ACCESS_TOKEN)
            .sign(&key, &rng)
            .unwrap();
        let request = ProofRequest {
            method: "GET",
            htu: &FIX.htu,
            now,
            access_token: Some(ACCESS_TOKEN),
            nonce: NoncePolicy::NotUsed,
        };
        let verifier = ProofVerifier::default();
        let verified = verifier.verify(&proof, &request).unwrap();
        prop_assert_eq!(verified.thumbprint(), key.public_jwk().thumbprint());

        let (input, sig) = proof.rsplit_once('.').unwrap();
        let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        let i = index.index(sig.len());
        sig[i] ^= mask;
        let tampered = format!("{input}.{}", b64(&sig));
        prop_assert_eq!(
            verifier.verify(&tampered, &request).unwrap_err(),
            ProofError::InvalidSignature
        );
    }
}
