//! Writes the seed corpora under `fuzz/seeds/<target>/` and the fixture CA `fuzz/fixtures/ca.pem`:
//! the repository's test vectors (`crates/keybound-core/testdata`, `keybound.example.toml`)
//! and valid requests made with the fixtures of `keybound_fuzz`, plus a few near misses.
//!
//!   cargo run --manifest-path fuzz/Cargo.toml --example seeds
//!
//! Proofs, tokens and Basic credentials appear in the HTTP seeds as placeholders (`$AT`,
//! `$RSPROOF`, ...) so the fuzzer can move and repeat them; some seeds carry them literally.
//! Running it again rewrites everything; the PKI (and so `fixtures/ca.pem` and the rfc9440
//! seeds) is new each time.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a generator: fail loudly"
)]

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use keybound_core::cert::{encode_client_cert, encode_client_cert_chain};
use keybound_core::dpop::ProofBuilder;
use keybound_core::jws::UntrustedJws;
use keybound_core::{Algorithm, SigningKey};
use keybound_fuzz::{NOW, TOKEN_URL, as_config_toml, as_key, client_key, credentials};
use keybound_tls::test_pki::{ClientSpec, TestCa, self_signed};
use serde_json::{Value, json};

struct Corpus {
    dir: PathBuf,
    n: usize,
}

impl Corpus {
    fn new(root: &Path, target: &str) -> Self {
        let dir = root.join(target);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Self { dir, n: 0 }
    }

    fn add(&mut self, name: &str, bytes: impl AsRef<[u8]>) {
        self.n += 1;
        fs::write(self.dir.join(format!("{:03}-{name}", self.n)), bytes).unwrap();
    }
}

fn with_option(option: u8, text: &str) -> Vec<u8> {
    let mut out = vec![option];
    out.extend_from_slice(text.as_bytes());
    out
}

fn testdata(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/keybound-core/testdata")
        .join(name);
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// The decoded header and claims of a compact JWS, as the `dpop_proof` target's signed mode
/// takes them (it signs them with the client key).
fn signed_mode(option: u8, header: &Value, claims: &Value) -> Vec<u8> {
    with_option(0x80 | option, &format!("{header}\n{claims}"))
}

fn dpop_proof(root: &Path) {
    let mut c = Corpus::new(root, "dpop_proof");
    let proofs = testdata("proofs.json");
    for vector in proofs["vectors"].as_array().unwrap() {
        let option = if vector["access_token"].is_null() {
            0
        } else {
            0b100
        };
        c.add(
            vector["name"].as_str().unwrap(),
            with_option(option, vector["proof"].as_str().unwrap()),
        );
    }
    let creds = credentials();
    for option in 0..4 {
        c.add("as-proof", with_option(option, creds.get("$ASPROOF")));
        c.add(
            "as-nonce-proof",
            with_option(option, creds.get("$ASNPROOF")),
        );
    }
    c.add("rs-proof", with_option(0b100, creds.get("$RSPROOF")));
    c.add(
        "rs-proof-eddsa-only",
        with_option(0b1_0100, creds.get("$RSPROOF")),
    );
    let rng = SystemRandom::new();
    c.add(
        "es256",
        with_option(
            0,
            &ProofBuilder::new("POST", TOKEN_URL, NOW)
                .jti("es")
                .sign(as_key(), &rng)
                .unwrap(),
        ),
    );
    let (rsa, _) = SigningKey::generate(Algorithm::Ps256, &rng).unwrap();
    c.add(
        "ps256",
        with_option(
            0,
            &ProofBuilder::new("POST", TOKEN_URL, NOW)
                .jti("ps")
                .sign(&rsa, &rng)
                .unwrap(),
        ),
    );

    // Signed mode: header and claims of valid proofs, then near misses of each rule.
    let parts = |proof: &str| {
        let jws = UntrustedJws::parse(proof, 8192).unwrap();
        (
            Value::Object(jws.header().clone()),
            Value::Object(jws.payload().clone()),
        )
    };
    let (header, claims) = parts(creds.get("$ASPROOF"));
    c.add("signed-as", signed_mode(0, &header, &claims));
    let (rs_header, rs_claims) = parts(creds.get("$RSPROOF"));
    c.add("signed-rs", signed_mode(0b100, &rs_header, &rs_claims));
    let (_, nonce_claims) = parts(creds.get("$ASNPROOF"));
    c.add("signed-nonce", signed_mode(0b10, &header, &nonce_claims));
    c.add(
        "signed-exact-nonce",
        signed_mode(0b11, &header, &nonce_claims),
    );
    let variant = |c: &mut Corpus, name: &str, edit: &dyn Fn(&mut Value, &mut Value)| {
        let (mut h, mut cl) = (header.clone(), claims.clone());
        edit(&mut h, &mut cl);
        c.add(name, signed_mode(0, &h, &cl));
    };
    variant(&mut c, "typ-media-type", &|h, _| {
        h["typ"] = "application/DPoP+JWT".into()
    });
    variant(&mut c, "crit", &|h, _| h["crit"] = json!(["exp"]));
    variant(&mut c, "private-jwk", &|h, _| {
        h["jwk"]["d"] = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A".into()
    });
    variant(&mut c, "jwk-alg-mismatch", &|h, _| {
        h["jwk"]["alg"] = "ES256".into()
    });
    variant(&mut c, "alg-none", &|h, _| h["alg"] = "none".into());
    variant(&mut c, "iat-float", &|_, cl| {
        cl["iat"] = json!(NOW.as_secs() as f64 + 0.5)
    });
    variant(&mut c, "iat-negative", &|_, cl| cl["iat"] = json!(-1));
    variant(&mut c, "iat-huge", &|_, cl| cl["iat"] = json!(1.0e300));
    variant(&mut c, "iat-string", &|_, cl| {
        cl["iat"] = json!("1700000000")
    });
    variant(&mut c, "iat-old", &|_, cl| {
        cl["iat"] = json!(NOW.as_secs() - 61)
    });
    variant(&mut c, "iat-future", &|_, cl| {
        cl["iat"] = json!(NOW.as_secs() + 31)
    });
    variant(&mut c, "htm-lowercase", &|_, cl| cl["htm"] = "post".into());
    variant(&mut c, "jti-long", &|_, cl| {
        cl["jti"] = "j".repeat(257).into()
    });
    variant(&mut c, "jti-empty", &|_, cl| cl["jti"] = "".into());
    variant(&mut c, "nonce-malformed", &|_, cl| {
        cl["nonce"] = "a\"b".into()
    });
    variant(&mut c, "ath-without-token", &|_, cl| cl["ath"] = "x".into());
    for vector in testdata("htu.json")["vectors"].as_array().unwrap() {
        let claim = vector["htu_claim"]
            .as_str()
            .unwrap()
            .replace("rs.example.com/api/res", "as.example/token");
        variant(&mut c, "htu", &|_, cl| cl["htu"] = claim.clone().into());
    }
}

fn jwk(root: &Path) {
    let mut c = Corpus::new(root, "jwk");
    for vector in testdata("thumbprints.json")["vectors"].as_array().unwrap() {
        c.add(vector["name"].as_str().unwrap(), vector["jwk"].to_string());
    }
    for key in testdata("keys.json")["keys"].as_array().unwrap() {
        c.add(key["name"].as_str().unwrap(), key["jwk"].to_string());
    }
    c.add("client", client_key().public_jwk().to_json());
    c.add("as", keybound_fuzz::as_public_jwk_with_kid());
    let rng = SystemRandom::new();
    let (p384, _) = SigningKey::generate(Algorithm::Es384, &rng).unwrap();
    c.add("p384", p384.public_jwk().to_json());
    let (rsa, _) = SigningKey::generate(Algorithm::Ps256, &rng).unwrap();
    let mut rsa_jwk: Value = serde_json::from_str(&rsa.public_jwk().to_json()).unwrap();
    c.add("rsa", rsa_jwk.to_string());
    rsa_jwk["alg"] = "PS256".into();
    rsa_jwk["use"] = "sig".into();
    rsa_jwk["kid"] = "r".into();
    c.add("rsa-alg-use-kid", rsa_jwk.to_string());
    let jwks = json!({"keys": [
        serde_json::from_str::<Value>(&keybound_fuzz::as_public_jwk_with_kid()).unwrap(),
        rsa_jwk,
        {"kty": "oct", "k": "AAAA", "kid": "s"},
        {"kty": "OKP", "crv": "X25519", "x": "AAAA"},
    ]});
    c.add("jwks", jwks.to_string());
    c.add("ec-padded", r#"{"kty":"EC","crv":"P-256","x":"1_Dz3o3_V5CpuzQ78gImNb2QIKjBfREXwBQxjyO0xig=","y":"YMSWnnBjNeMvfL9nZtYSyxGKZtPFG28jJwjjk06716o"}"#);
    c.add("duplicate-member", r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","x":"AAAA"}"#);
}

fn www_authenticate(root: &Path) {
    let mut c = Corpus::new(root, "www_authenticate");
    for (name, text) in [
        (
            "dpop-error",
            r#"DPoP error="invalid_dpop_proof", error_description="bad  htu ", algs="ES256 EdDSA PS256""#,
        ),
        (
            "nonce",
            r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#,
        ),
        (
            "two",
            r#"DPoP algs="ES256 EdDSA PS256", Bearer realm="api", error="invalid_token""#,
        ),
        ("bare", "DPoP, Bearer"),
        ("token68", "Negotiate abc==, DPoP"),
        ("escapes", r#"Basic realm="a\"b\\c", charset="UTF-8""#),
        ("case", r#"dpop ERROR=use_dpop_nonce ,  bearer"#),
        (
            "joined",
            "DPoP error=\"use_dpop_nonce\"\nBearer realm=\"x\"",
        ),
        ("joined-token68", "Negotiate abc==\nDPoP algs=\"ES256\""),
        (
            "builder",
            "api\ninsufficient_scope\nthe token lacks \"read\"\nread write",
        ),
        ("nonce-value", "eyJ7S_zG.eyJH0-Z.HX4w-7v"),
    ] {
        c.add(name, text);
    }
}

fn auth_headers(root: &Path) {
    let mut c = Corpus::new(root, "auth_headers");
    let creds = credentials();
    for (name, text) in [
        (
            "rs-dpop",
            "GET /orders\nAuthorization: DPoP $AT\nDPoP: $RSPROOF",
        ),
        (
            "rs-dpop-case",
            "GET /orders?x=1\nauthorization: dpop   $AT\ndpop:  $RSPROOF ",
        ),
        (
            "rs-two-authorizations",
            "GET /orders\nAuthorization: DPoP $AT\nAuthorization: DPoP $AT\nDPoP: $RSPROOF",
        ),
        (
            "rs-two-proofs",
            "GET /orders\nAuthorization: DPoP $AT\nDPoP: $RSPROOF\nDPoP: $RSPROOF",
        ),
        (
            "rs-joined-proofs",
            "GET /orders\nAuthorization: DPoP $AT\nDPoP: $RSPROOF, $RSPROOF",
        ),
        (
            "rs-query-token",
            "GET /orders?access_token=$AT\nAuthorization: DPoP $AT\nDPoP: $RSPROOF",
        ),
        ("rs-bearer-bound", "GET /orders\nAuthorization: Bearer $AT"),
        (
            "rs-bearer-with-proof",
            "GET /orders\nAuthorization: Bearer $BT\nDPoP: $RSPROOF",
        ),
        ("rs-unbound", "GET /orders\nAuthorization: Bearer $BT"),
        (
            "rs-wrong-method",
            "POST /orders\nAuthorization: DPoP $AT\nDPoP: $RSPROOF",
        ),
        (
            "rs-path",
            "GET /./orders/../orders\nAuthorization: DPoP $AT\nDPoP: $RSPROOF",
        ),
        ("rs-no-proof", "GET /orders\nAuthorization: DPoP $AT"),
        (
            "rs-basic",
            "GET /orders\nAuthorization: Basic YXBwOmFwcC1zZWNyZXQ=",
        ),
        ("as-basic", "GET /orders\nAuthorization: $BASIC"),
        (
            "as-basic-dpop",
            "GET /orders\nAuthorization: $BASIC\nDPoP: $ASPROOF",
        ),
        (
            "as-nonce",
            "GET /orders\nAuthorization: $NBASIC\nDPoP: $ASNPROOF",
        ),
        (
            "as-nonce-missing",
            "GET /orders\nAuthorization: $NBASIC\nDPoP: $ASPROOF",
        ),
        ("as-empty-basic", "GET /orders\nAuthorization: Basic Og=="),
        (
            "as-basic-percent",
            "GET /orders\nAuthorization: Basic YSUyMDpiJTNB",
        ),
        (
            "as-json",
            "GET /orders\nAuthorization: $BASIC\nContent-Type: application/json",
        ),
    ] {
        c.add(name, text);
    }
    // Literal credentials, for mutations inside them.
    c.add(
        "rs-literal",
        format!(
            "GET /orders\nAuthorization: DPoP {}\nDPoP: {}",
            creds.get("$AT"),
            creds.get("$RSPROOF")
        ),
    );
    c.add(
        "as-literal",
        format!(
            "GET /orders\nAuthorization: {}\nDPoP: {}",
            creds.get("$BASIC"),
            creds.get("$ASPROOF")
        ),
    );
}

fn token_form(root: &Path) {
    let mut c = Corpus::new(root, "token_form");
    let assertion_type = "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer";
    let token = 0; // endpoint bits
    let basic = 1 << 6;
    let nbasic = 2 << 6;
    let wrong = 3 << 6;
    let bodies: Vec<(&str, u8, u8, String)> = vec![
        (
            "cc",
            basic | token,
            0,
            "grant_type=client_credentials&scope=read".into(),
        ),
        (
            "cc-dpop",
            basic | token,
            1,
            "grant_type=client_credentials&scope=read+write".into(),
        ),
        (
            "cc-nonce",
            nbasic | token,
            2,
            "grant_type=client_credentials".into(),
        ),
        (
            "cc-nonce-missing",
            nbasic | token,
            1,
            "grant_type=client_credentials".into(),
        ),
        (
            "cc-wrong-secret",
            wrong | token,
            0,
            "grant_type=client_credentials".into(),
        ),
        (
            "post",
            token,
            1,
            "grant_type=client_credentials&client_id=post&client_secret=app-secret".into(),
        ),
        (
            "post-bound-no-proof",
            token,
            0,
            "grant_type=client_credentials&client_id=post&client_secret=app-secret".into(),
        ),
        (
            "jwt",
            token,
            1,
            format!(
                "grant_type=client_credentials&client_id=jwt&client_assertion_type={assertion_type}&client_assertion=$ASSERTION"
            ),
        ),
        (
            "refresh-public",
            token,
            1,
            "grant_type=refresh_token&refresh_token=abc&client_id=native".into(),
        ),
        (
            "refresh",
            basic | token,
            0,
            "grant_type=refresh_token&refresh_token=abc".into(),
        ),
        (
            "code",
            basic | token,
            0,
            "grant_type=authorization_code&code=x&redirect_uri=https%3A%2F%2Fapp".into(),
        ),
        (
            "repeated",
            basic | token,
            0,
            "grant_type=client_credentials&grant_type=client_credentials".into(),
        ),
        (
            "repeated-empty",
            basic | token,
            0,
            "scope=&scope=&grant_type=client_credentials".into(),
        ),
        (
            "percent",
            basic | token,
            0,
            "grant%5Ftype=client%5Fcredentials&sc%6Fpe=read%20write".into(),
        ),
        (
            "plus-and-bad-percent",
            basic | token,
            0,
            "grant_type=client+credentials&scope=%zz%".into(),
        ),
        (
            "too-many",
            basic | token,
            0,
            (0..33)
                .map(|i| format!("p{i}=v"))
                .collect::<Vec<_>>()
                .join("&"),
        ),
        ("introspect", basic | 1, 0, "token=$AT".into()),
        (
            "introspect-hint",
            basic | 1,
            0,
            "token=$BT&token_type_hint=access_token".into(),
        ),
        (
            "revoke",
            basic | 2,
            0,
            "token=$AT&token_type_hint=access_token".into(),
        ),
        (
            "revoke-refresh",
            basic | 2,
            0,
            "token=abc&token_type_hint=refresh_token".into(),
        ),
        (
            "padded",
            basic | token | 0b10_0000,
            0,
            "grant_type=client_credentials".into(),
        ),
        (
            "charset",
            basic | token | (1 << 2),
            0,
            "grant_type=client_credentials".into(),
        ),
        (
            "json",
            basic | token | (5 << 2),
            0,
            r#"{"grant_type":"client_credentials"}"#.into(),
        ),
    ];
    for (name, options, dpop, body) in bodies {
        let mut bytes = vec![options, dpop];
        bytes.extend_from_slice(body.as_bytes());
        c.add(name, bytes);
    }
}

fn escaped(pem: &str) -> String {
    pem.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn rfc9440(root: &Path, fixtures: &Path) {
    let mut c = Corpus::new(root, "rfc9440");
    let ca = TestCa::new("keybound fuzz CA");
    fs::create_dir_all(fixtures).unwrap();
    fs::write(fixtures.join("ca.pem"), &ca.pem).unwrap();
    let leaf = ca.client(&ClientSpec {
        dns: vec!["client.example".into()],
        uris: vec!["spiffe://example/client".into()],
        ips: vec!["10.0.0.1".parse::<IpAddr>().unwrap()],
        emails: vec!["client@example.com".into()],
        ..ClientSpec::common_name("client.example")
    });
    let own = self_signed(&ClientSpec::common_name("self"));
    let trusted = 0b10;
    let escaped_pem = 0b1;
    let header = encode_client_cert(&leaf.der);
    let chain = encode_client_cert_chain([ca.der.as_ref()]);
    c.add(
        "leaf",
        with_option(trusted, &format!("Client-Cert: {header}")),
    );
    c.add(
        "leaf-chain",
        with_option(
            trusted,
            &format!("Client-Cert: {header}\nClient-Cert-Chain: {chain}"),
        ),
    );
    c.add(
        "leaf-untrusted",
        with_option(0, &format!("Client-Cert: {header}")),
    );
    c.add(
        "leaf-tls-peer",
        with_option(trusted | 0b100, &format!("Client-Cert: {header}")),
    );
    c.add(
        "chain-only",
        with_option(trusted, &format!("Client-Cert-Chain: {chain}")),
    );
    c.add(
        "repeated",
        with_option(
            trusted,
            &format!("Client-Cert: {header}\nClient-Cert: {header}"),
        ),
    );
    c.add(
        "chain-lines",
        with_option(trusted, &format!("Client-Cert: {header}\nClient-Cert-Chain: {chain}\nClient-Cert-Chain: {chain}, {chain}")),
    );
    c.add(
        "self-signed",
        with_option(
            trusted,
            &format!("Client-Cert: {}", encode_client_cert(&own.der)),
        ),
    );
    c.add(
        "escaped-pem",
        with_option(
            trusted | escaped_pem,
            &format!("X-SSL-Client-Cert: {}", escaped(&leaf.cert_pem)),
        ),
    );
    c.add(
        "escaped-pem-empty",
        with_option(trusted | escaped_pem, "X-SSL-Client-Cert: -"),
    );
    c.add(
        "escaped-pem-two",
        with_option(
            trusted | escaped_pem,
            &format!(
                "X-SSL-Client-Cert: {}",
                escaped(&format!("{}{}", leaf.cert_pem, ca.pem))
            ),
        ),
    );
    c.add(
        "escaped-pem-raw",
        with_option(
            trusted | escaped_pem,
            &format!("X-SSL-Client-Cert: {}", own.cert_pem.replace('\n', " ")),
        ),
    );
    for vector in testdata("certificates.json")["vectors"].as_array().unwrap() {
        let der = STANDARD
            .decode(vector["der_base64"].as_str().unwrap())
            .unwrap();
        let value = vector["client_cert_header"]
            .as_str()
            .map_or_else(|| encode_client_cert(&der), str::to_owned);
        c.add(
            vector["name"].as_str().unwrap(),
            with_option(trusted, &format!("Client-Cert: {value}")),
        );
    }
}

fn config(root: &Path) {
    let mut c = Corpus::new(root, "config");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../keybound.example.toml");
    c.add("example", fs::read(example).unwrap());
    c.add("fuzz-as", as_config_toml());
    c.add("minimal", "issuer = \"http://127.0.0.1:8080/\"\n");
    let own = self_signed(&ClientSpec::common_name("self"));
    let jwks = own.jwks_with_x5c().replace('\'', "");
    c.add(
        "mtls",
        format!(
            r#"issuer = "https://as.example"

[mtls]
base_url = "https://mtls.as.example/"
client_ca_files = ["ca.pem"]
trusted_proxies = ["10.0.0.0/8", "::1", "fd00::/8"]
forwarded_cert_format = "escaped-pem"
forwarded_cert_header = "X-SSL-Client-Cert"

[[clients]]
client_id = "pki"
auth_method = "tls_client_auth"
tls_client_auth_subject_dn = "CN=client.example, O=Example\\, Inc."
tls_client_certificate_bound_access_tokens = true

[[clients]]
client_id = "ip"
auth_method = "tls_client_auth"
tls_client_auth_san_ip = "::ffff:10.0.0.1"
tls_client_auth_ca_file = "own-ca.pem"

[[clients]]
client_id = "self"
auth_method = "self_signed_tls_client_auth"
jwks = '{jwks}'
"#
        ),
    );
    c.add(
        "code-flow",
        r#"issuer = "https://as.example"

[authorize]
require_pushed_authorization_requests = true
code_lifetime_secs = 600

[store]
url = "postgres://keybound@db/keybound"
replay_url = "rediss://cache:6380"
key_reload_secs = 10

[dpop]
algorithms = ["ES256", "RS256"]
max_age_secs = 300
future_leeway_secs = 59
require_nonce = true

[client_authentication]
max_failures = 0
window_secs = 86400

[[clients]]
client_id = "spa"
auth_method = "none"
grant_types = ["authorization_code", "refresh_token"]
redirect_uris = ["https://app.example/cb", "http://127.0.0.1/cb", "com.example.app:/cb"]
dpop_nonce = "optional"

[[users]]
username = "alice"
password_argon2 = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$y8dPxqMqcE1n7uXFBHbQvH1lBIZlSB2TpC4fjJdTr0M"
"#,
    );
}

fn main() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = fuzz.join("seeds");
    dpop_proof(&root);
    jwk(&root);
    www_authenticate(&root);
    auth_headers(&root);
    token_form(&root);
    rfc9440(&root, &fuzz.join("fixtures"));
    config(&root);
    println!("seeds written to {}", root.display());
}
