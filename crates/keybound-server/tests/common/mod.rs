//! Test harness: a configured AS on a fresh data directory (real SQLite, real keys), driven
//! in-process through `tower::ServiceExt::oneshot`, with a clock the test sets.

#![allow(dead_code, unreachable_pub)] // each test file uses a different subset
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::rand::SystemRandom;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use base64::Engine as _;
use http_body_util::BodyExt as _;
use keybound_core::dpop::ProofBuilder;
use keybound_core::{Algorithm, KeySet, SigningKey, UnixTime};
use keybound_server::{AppState, Config, hash_secret, keys, router};
use keybound_store::{MemoryReplayCache, ReplayCache, SqliteStore};
use serde_json::{Value, json};
use tower::ServiceExt as _;

pub const ISSUER: &str = "https://as.example.com";
pub const TOKEN_URL: &str = "https://as.example.com/token";
pub const START: u64 = 1_800_000_000;
pub const SECRET: &str = "correct horse battery staple";

pub struct Harness {
    pub state: Arc<AppState>,
    pub router: axum::Router,
    pub clock: Arc<AtomicU64>,
    pub dir: PathBuf,
    pub store: Arc<SqliteStore>,
    pub assertion_key: Arc<SigningKey>,
}

pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "keybound-server-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The assertion key is fixed per data dir so a restart keeps the same client registration.
fn assertion_key(dir: &std::path::Path) -> SigningKey {
    let path = dir.join("assertion-key.p8");
    if let Ok(bytes) = std::fs::read(&path) {
        return SigningKey::from_pkcs8(Algorithm::Es256, &bytes).unwrap();
    }
    let (key, pkcs8) = SigningKey::generate(Algorithm::Es256, &SystemRandom::new()).unwrap();
    std::fs::write(&path, pkcs8.as_slice()).unwrap();
    key
}

pub fn config_text(dir: &std::path::Path, assertion: &SigningKey, extra: &str) -> String {
    let mut jwk: Value = serde_json::from_str(&assertion.public_jwk().to_json()).unwrap();
    jwk["kid"] = json!("c1");
    let jwks = json!({ "keys": [jwk] }).to_string().replace('"', "\\\"");
    let hash = hash_secret(SECRET);
    format!(
        r#"
issuer = "{ISSUER}"
data_dir = "{dir}"
{extra}

[[clients]]
client_id = "basic"
auth_method = "client_secret_basic"
client_secret_sha256 = "{hash}"
grant_types = ["client_credentials", "refresh_token"]
scopes = ["read", "write"]

[[clients]]
client_id = "post"
auth_method = "client_secret_post"
client_secret_sha256 = "{hash}"
scopes = ["read"]

[[clients]]
client_id = "jwt"
auth_method = "private_key_jwt"
jwks = "{jwks}"
grant_types = ["client_credentials", "refresh_token"]

[[clients]]
client_id = "dpop-only"
auth_method = "client_secret_basic"
client_secret_sha256 = "{hash}"
grant_types = ["client_credentials", "refresh_token"]
dpop_bound_access_tokens = true

[[clients]]
client_id = "nonce"
auth_method = "client_secret_basic"
client_secret_sha256 = "{hash}"
dpop_nonce = "required"

[[clients]]
client_id = "public"
auth_method = "none"
grant_types = ["refresh_token"]
scopes = ["read"]
dpop_bound_access_tokens = true
"#,
        dir = dir.display()
    )
}

impl Harness {
    pub async fn new() -> Self {
        Self::with_extra("").await
    }

    pub async fn with_extra(extra: &str) -> Self {
        Self::in_dir(temp_dir("h"), extra).await
    }

    /// A server on `dir`; calling it twice on one dir is a restart.
    pub async fn in_dir(dir: PathBuf, extra: &str) -> Self {
        let ring = keys::load_or_create(&dir, Algorithm::Es256).unwrap();
        Self::with_keys(dir, extra, ring).await
    }

    /// A server on `dir` signing with `ring`.
    pub async fn with_keys(dir: PathBuf, extra: &str, ring: keys::KeyRing) -> Self {
        let key = assertion_key(&dir);
        let settings = Config::from_toml(&config_text(&dir, &key, extra))
            .unwrap()
            .validate()
            .unwrap();
        let store = Arc::new(SqliteStore::open(&dir.join("keybound.db")).await.unwrap());
        let clock = Arc::new(AtomicU64::new(START));
        let c = clock.clone();
        let state = Arc::new(
            AppState::new(
                settings,
                ring,
                Arc::new(MemoryReplayCache::new(100_000)) as Arc<dyn ReplayCache>,
                store.clone(),
                Arc::new(move || UnixTime::from_secs(c.load(Ordering::SeqCst))),
            )
            .with_authorization_store(store.clone()),
        );
        Self {
            router: router(state.clone()),
            state,
            clock,
            dir,
            store,
            assertion_key: Arc::new(key),
        }
    }

    pub fn now(&self) -> UnixTime {
        UnixTime::from_secs(self.clock.load(Ordering::SeqCst))
    }

    pub fn advance(&self, secs: u64) {
        self.clock.fetch_add(secs, Ordering::SeqCst);
    }

    /// A DPoP proof for the token endpoint, created now.
    pub fn proof(&self, key: &SigningKey) -> String {
        ProofBuilder::new("POST", TOKEN_URL, self.now())
            .sign(key, &SystemRandom::new())
            .unwrap()
    }

    pub fn proof_with_nonce(&self, key: &SigningKey, nonce: &str) -> String {
        ProofBuilder::new("POST", TOKEN_URL, self.now())
            .nonce(nonce)
            .sign(key, &SystemRandom::new())
            .unwrap()
    }

    /// A `private_key_jwt` client assertion for client "jwt".
    pub fn assertion(&self, jti: &str, aud: &str, exp_in: u64) -> String {
        let now = self.now().as_secs();
        let claims = json!({"iss": "jwt", "sub": "jwt", "aud": aud, "jti": jti, "iat": now, "exp": now + exp_in});
        let header = json!({"alg": "ES256", "kid": "c1", "typ": "JWT"});
        keybound_core::jws::sign_compact(
            &header.to_string(),
            &claims.to_string(),
            &self.assertion_key,
        )
        .unwrap()
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Reply {
            status,
            headers,
            body,
        }
    }

    /// POST a form to `path` with optional Basic credentials and DPoP header lines.
    pub async fn post(
        &self,
        path: &str,
        basic: Option<(&str, &str)>,
        dpop: &[&str],
        form: &[(&str, &str)],
    ) -> Reply {
        self.post_with_cert(path, None, basic, dpop, form).await
    }

    /// Like [`Harness::post`], over a connection that presented `certificate` (what the TLS
    /// listener reports as `Peer` connection info).
    pub async fn post_with_cert(
        &self,
        path: &str,
        certificate: Option<&keybound_tls::ClientCertificate>,
        basic: Option<(&str, &str)>,
        dpop: &[&str],
        form: &[(&str, &str)],
    ) -> Reply {
        let mut request =
            Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some((id, secret)) = basic {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
            request = request.header(header::AUTHORIZATION, format!("Basic {encoded}"));
        }
        for proof in dpop {
            request = request.header("DPoP", *proof);
        }
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut request = request.body(Body::from(body)).unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(keybound_tls::Peer {
                remote: "127.0.0.1:40000".parse().unwrap(),
                certificate: certificate.cloned(),
            }));
        self.send(request).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    /// client_credentials for "basic" with a proof by `key`; returns the reply.
    pub async fn basic_token(&self, key: Option<&SigningKey>) -> Reply {
        let proof = key.map(|k| self.proof(k));
        let dpop: Vec<&str> = proof.iter().map(String::as_str).collect();
        self.post(
            "/token",
            Some(("basic", SECRET)),
            &dpop,
            &[("grant_type", "client_credentials")],
        )
        .await
    }

    /// The AS's published keys.
    pub async fn key_set(&self) -> KeySet {
        let jwks = self.get("/jwks").await.body;
        KeySet::from_jwks_json(jwks.to_string().as_bytes()).unwrap()
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }

    /// Asserts an OAuth error response: status, code, no-store, and no token in the body.
    pub fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(
            (self.status, self.error()),
            (status, code),
            "{:?}",
            self.body
        );
        assert_eq!(self.headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
        assert!(self.body.get("access_token").is_none());
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub fn key(alg: Algorithm) -> SigningKey {
    SigningKey::generate(alg, &SystemRandom::new()).unwrap().0
}

/// Changes one character in the middle of a JWS signature (still canonical base64url), so the
/// signature no longer verifies.
pub fn tamper(jws: &str) -> String {
    let at = jws.rfind('.').unwrap() + 10;
    let mut bytes = jws.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}
