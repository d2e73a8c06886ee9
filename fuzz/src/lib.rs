//! Fixtures shared by the fuzz targets and the seed generator (`seeds.rs`): fixed keys, a fixed
//! clock, the Authorization Server and Resource Server under test, the valid credentials the
//! inputs refer to by placeholder, and a small header-block format.
//!
//! Everything is deterministic: the clock is [`NOW`], the keys are published test keys, proofs
//! are Ed25519 (deterministic signatures) with fixed `jti`s, and every request gets a fresh
//! server state, so a crashing input replays the same way.
//!
//! ## Input format of the HTTP targets
//!
//! Lines separated by `\n`. The first line is a request line (`GET /orders?x=1`), the others
//! are header fields `name: value` (optional whitespace around the value is dropped, as an HTTP
//! parser would). Lines that no HTTP parser would produce (a bad name, a value with CR or NUL)
//! are skipped. In values (and in form bodies) these placeholders stand for valid credentials,
//! so mutations can move, repeat and combine them without having to forge signatures:
//! `$AT` `$BT` `$RSPROOF` `$ASPROOF` `$ASNPROOF` `$BASIC` `$NBASIC` `$ASSERTION` `$NONCE`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "fixtures: a failure is a bug"
)]

use std::sync::{Arc, OnceLock};

use aws_lc_rs::rand::SystemRandom;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use keybound_core::access_token::{AccessTokenClaims, Audience, Confirmation};
use keybound_core::dpop::ProofBuilder;
use keybound_core::jws::sign_compact;
use keybound_core::{
    AccessTokenSigner, Algorithm, KeySet, NonceKeyRing, NonceSecret, PublicJwk, SigningKey,
    UnixTime,
};
use keybound_store::{
    Grant, GrantId, GrantStore, MemoryReplayCache, RefreshTokenRecord, RefreshTokenState, Rotation,
    StoreError,
};

/// The fixed "now" of every server and proof.
pub const NOW: UnixTime = UnixTime::from_secs(1_700_000_000);
/// The Authorization Server's issuer.
pub const ISSUER: &str = "https://as.example";
/// The token endpoint.
pub const TOKEN_URL: &str = "https://as.example/token";
/// The Resource Server's public base URL, also the tokens' audience.
pub const API: &str = "https://api.example";
/// The protected resource the seeds call.
pub const API_URL: &str = "https://api.example/orders";
/// The secret of client `app` (client_secret_basic) and `post` (client_secret_post).
pub const APP_SECRET: &str = "app-secret";
/// The secret of client `nonce` (client_secret_basic, DPoP with a required nonce).
pub const NONCE_SECRET: &str = "nonce-secret";
/// The AS's nonce secret (fixed, so nonces are deterministic).
pub const AS_NONCE_SECRET: [u8; 32] = [7; 32];
/// `kid` of the AS key in the RS's static key set, and of the `jwt` client's assertion key.
pub const KID: &str = "as-1";

/// RFC 8037 App. A.1: the client's DPoP key (Ed25519, deterministic signatures).
const CLIENT_JWK: &str = r#"{"kty":"OKP","crv":"Ed25519","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
/// node-oidc-provider's DPoP test key (P-256): the AS key the RS trusts, and the `jwt`
/// client's assertion key.
const AS_JWK: &str = r#"{"kty":"EC","crv":"P-256","x":"1_Dz3o3_V5CpuzQ78gImNb2QIKjBfREXwBQxjyO0xig","y":"YMSWnnBjNeMvfL9nZtYSyxGKZtPFG28jJwjjk06716o","d":"IHFCcQXeUew9o_7jAIj2t6GEoJpgrOC9L_pQGlvRpto"}"#;

/// The client's DPoP key.
pub fn client_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| {
        SigningKey::from_private_jwk(Algorithm::EdDsa, CLIENT_JWK.as_bytes()).unwrap()
    })
}

/// The AS's (and the `jwt` client's) P-256 key.
pub fn as_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::from_private_jwk(Algorithm::Es256, AS_JWK.as_bytes()).unwrap())
}

/// The public JWK of [`as_key`] with `kid` [`KID`] (a key set member).
pub fn as_public_jwk_with_kid() -> String {
    let mut jwk: serde_json::Value =
        serde_json::from_str(&as_key().public_jwk().to_json()).unwrap();
    jwk["kid"] = KID.into();
    jwk.to_string()
}

/// The key set the Resource Server verifies access tokens with.
pub fn as_key_set() -> KeySet {
    let jwk = PublicJwk::from_json(as_public_jwk_with_kid().as_bytes()).unwrap();
    KeySet::new(vec![jwk])
}

/// The AS nonce ring of [`as_config_toml`].
pub fn as_nonce_ring() -> NonceKeyRing {
    NonceKeyRing::new("as", &NonceSecret::new(&AS_NONCE_SECRET).unwrap(), None)
}

/// Base64url SHA-256 of a client secret, as the configuration stores it.
pub fn secret_hash(secret: &str) -> String {
    keybound_server::hash_secret(secret)
}

/// The Authorization Server's configuration: one client per authentication method the token
/// endpoint can check without a certificate.
pub fn as_config_toml() -> String {
    format!(
        r#"issuer = "{ISSUER}"
data_dir = "/nonexistent/keybound-fuzz"

[tokens]
audience = "{API}"

[dpop]
nonce_secrets = ["{nonce}"]

[[clients]]
client_id = "app"
auth_method = "client_secret_basic"
client_secret_sha256 = "{app}"
grant_types = ["client_credentials", "refresh_token"]
scopes = ["read", "write"]

[[clients]]
client_id = "post"
auth_method = "client_secret_post"
client_secret_sha256 = "{app}"
scopes = ["read"]
dpop_bound_access_tokens = true

[[clients]]
client_id = "nonce"
auth_method = "client_secret_basic"
client_secret_sha256 = "{nonce_client}"
dpop_nonce = "required"
dpop_bound_access_tokens = true

[[clients]]
client_id = "jwt"
auth_method = "private_key_jwt"
jwks = '{{"keys":[{jwk}]}}'
scopes = ["read"]

[[clients]]
client_id = "native"
auth_method = "none"
grant_types = ["refresh_token"]
"#,
        nonce = URL_SAFE_NO_PAD.encode(AS_NONCE_SECRET),
        app = secret_hash(APP_SECRET),
        nonce_client = secret_hash(NONCE_SECRET),
        jwk = as_public_jwk_with_kid(),
    )
}

/// A grant store that knows no grant: every refresh token is unknown, creating succeeds.
/// The targets check request parsing, not grant bookkeeping.
#[derive(Debug, Default)]
pub struct NoGrants;

#[async_trait::async_trait]
impl GrantStore for NoGrants {
    async fn create_grant(&self, _: &Grant, _: &RefreshTokenRecord) -> Result<(), StoreError> {
        Ok(())
    }
    async fn refresh_token_state(
        &self,
        _: &[u8; 32],
        _: UnixTime,
    ) -> Result<RefreshTokenState, StoreError> {
        Ok(RefreshTokenState::Unknown)
    }
    async fn rotate_refresh_token(
        &self,
        _: &[u8; 32],
        _: &RefreshTokenRecord,
        _: UnixTime,
    ) -> Result<Rotation, StoreError> {
        Ok(Rotation::Rejected)
    }
    async fn revoke_grant(&self, _: &GrantId) -> Result<(), StoreError> {
        Ok(())
    }
    async fn revoke_access_token(&self, _: &str, _: UnixTime) -> Result<(), StoreError> {
        Ok(())
    }
    async fn is_access_token_revoked(&self, _: &str, _: UnixTime) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn purge_expired(&self, _: UnixTime) -> Result<u64, StoreError> {
        Ok(0)
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A fresh Authorization Server (new replay cache, new failure counters) at [`NOW`], and the
/// key set that verifies its tokens.
pub fn authorization_server() -> (axum::Router, Arc<KeySet>) {
    static CONFIG: OnceLock<String> = OnceLock::new();
    let config = CONFIG.get_or_init(as_config_toml);
    let settings = keybound_server::Config::from_toml(config)
        .unwrap()
        .validate()
        .unwrap();
    let ring = keybound_server::keys::KeyRing::ephemeral(Algorithm::Es256).unwrap();
    let state = keybound_server::AppState::new(
        settings,
        ring,
        Arc::new(MemoryReplayCache::new(1024)),
        Arc::new(NoGrants),
        Arc::new(|| NOW),
    );
    let keys = state.key_set();
    (keybound_server::router(Arc::new(state)), keys)
}

/// Runs a future to completion on this thread's runtime.
pub fn block_on<F: Future>(future: F) -> F::Output {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
    }
    RUNTIME.with(|rt| rt.block_on(future))
}

/// Sends `request` to `service` and returns the response with its body read.
pub fn send<S>(service: S, request: Request<Body>) -> (Response<()>, Vec<u8>)
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = std::convert::Infallible>,
{
    use tower::ServiceExt as _;
    block_on(async move {
        let response = service.oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = http_body_util::BodyExt::collect(body)
            .await
            .map(|c| c.to_bytes().to_vec())
            .unwrap_or_default();
        (Response::from_parts(parts, ()), bytes)
    })
}

fn access_token(cnf: Option<Confirmation>) -> String {
    let claims = AccessTokenClaims {
        iss: ISSUER.into(),
        sub: "app".into(),
        aud: Audience::One(API.into()),
        exp: NOW.as_secs() + 3600,
        iat: NOW.as_secs(),
        nbf: None,
        jti: "at-1".into(),
        client_id: "app".into(),
        scope: Some("read write".into()),
        cnf,
    };
    AccessTokenSigner::new(
        SigningKey::from_private_jwk(Algorithm::Es256, AS_JWK.as_bytes()).unwrap(),
        KID,
    )
    .sign(&claims)
    .unwrap()
}

/// The valid credentials the placeholders stand for.
#[derive(Debug)]
pub struct Credentials {
    /// `(placeholder, value)`, longest placeholder first.
    pub table: Vec<(&'static str, String)>,
}

impl Credentials {
    /// The value of a placeholder.
    pub fn get(&self, name: &str) -> &str {
        &self.table.iter().find(|(n, _)| *n == name).unwrap().1
    }
}

/// The credentials, built once.
pub fn credentials() -> &'static Credentials {
    static CREDENTIALS: OnceLock<Credentials> = OnceLock::new();
    CREDENTIALS.get_or_init(|| {
        let rng = SystemRandom::new();
        let key = client_key();
        let jkt = key.public_jwk().thumbprint().clone();
        let at = access_token(Some(Confirmation {
            jkt: Some(jkt),
            x5t_s256: None,
        }));
        let bt = access_token(None);
        let nonce = as_nonce_ring().issue(NOW).as_str().to_owned();
        let rs_proof = ProofBuilder::new("GET", API_URL, NOW)
            .jti("rs-1")
            .access_token(&at)
            .sign(key, &rng)
            .unwrap();
        let as_proof = ProofBuilder::new("POST", TOKEN_URL, NOW)
            .jti("as-1")
            .sign(key, &rng)
            .unwrap();
        let as_nonce_proof = ProofBuilder::new("POST", TOKEN_URL, NOW)
            .jti("as-2")
            .nonce(&nonce)
            .sign(key, &rng)
            .unwrap();
        let assertion_claims = serde_json::json!({
            "iss": "jwt", "sub": "jwt", "aud": ISSUER, "jti": "ca-1",
            "iat": NOW.as_secs(), "exp": NOW.as_secs() + 60,
        });
        let assertion = sign_compact(
            &serde_json::json!({"alg": "ES256", "kid": KID, "typ": "JWT"}).to_string(),
            &assertion_claims.to_string(),
            as_key(),
        )
        .unwrap();
        let basic =
            |id: &str, secret: &str| format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")));
        Credentials {
            table: vec![
                ("$ASSERTION", assertion),
                ("$ASNPROOF", as_nonce_proof),
                ("$RSPROOF", rs_proof),
                ("$ASPROOF", as_proof),
                ("$NBASIC", basic("nonce", NONCE_SECRET)),
                ("$BASIC", basic("app", APP_SECRET)),
                ("$NONCE", nonce),
                ("$AT", at),
                ("$BT", bt),
            ],
        }
    })
}

/// Replaces every placeholder in `text` with its credential.
pub fn substitute(text: &[u8]) -> Vec<u8> {
    if !text.contains(&b'$') {
        return text.to_vec();
    }
    let table = &credentials().table;
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    'outer: while i < text.len() {
        if text[i] == b'$' {
            for (name, value) in table {
                if text[i..].starts_with(name.as_bytes()) {
                    out.extend_from_slice(value.as_bytes());
                    i += name.len();
                    continue 'outer;
                }
            }
        }
        out.push(text[i]);
        i += 1;
    }
    out
}

/// An input of the HTTP targets: its request line and header block.
#[derive(Debug)]
pub struct HeaderBlock<'a> {
    /// The first line.
    pub request_line: &'a [u8],
    /// The header fields, placeholders substituted, in order (repeats kept).
    pub headers: HeaderMap,
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Splits an input into its request line and headers (see the crate docs).
pub fn header_block(data: &[u8]) -> HeaderBlock<'_> {
    let (request_line, rest) = match data.iter().position(|b| *b == b'\n') {
        Some(end) => (&data[..end], &data[end + 1..]),
        None => (data, &[][..]),
    };
    HeaderBlock {
        request_line,
        headers: header_lines(rest),
    }
}

/// Header fields, one `name: value` a line, placeholders substituted; other lines skipped.
pub fn header_lines(data: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(&substitute(trim_ows(&line[colon + 1..]))),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    headers
}

/// Splits a request line into its method and target, if it has both.
pub fn method_and_target(line: &[u8]) -> Option<(&str, &str)> {
    let line = std::str::from_utf8(line).ok()?;
    let (method, target) = line.split_once(' ')?;
    Some((method, target.trim_end_matches(' ')))
}

/// Whether `KEYBOUND_FUZZ_TRACE` is set: the HTTP targets then print what each input got, to
/// check by hand that the seeds reach the paths they were written for
/// (`KEYBOUND_FUZZ_TRACE=1 cargo fuzz run token_form --sanitizer none fuzz/seeds/token_form -- -runs=0`).
pub fn tracing_enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var_os("KEYBOUND_FUZZ_TRACE").is_some())
}

/// Prints one line when [`tracing_enabled`].
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => {
        if $crate::tracing_enabled() {
            eprintln!($($arg)*);
        }
    };
}
