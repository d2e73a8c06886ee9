//! Harness for the resource-server tests: an axum app behind `ResourceLayer` with a key set the
//! test controls and a clock it sets, driven in-process through `tower::ServiceExt::oneshot`;
//! helpers for tokens, proofs (honest and forged), and for asserting `WWW-Authenticate`.

#![allow(dead_code, unreachable_pub)] // each test uses a different subset
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::rand::SystemRandom;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::routing::get;
use axum::{Json, Router};
use http_body_util::BodyExt as _;
use keybound_core::access_token::{Audience, Confirmation};
use keybound_core::challenge::{ParsedChallenge, Scheme, parse_challenges};
use keybound_core::dpop::ProofBuilder;
use keybound_core::jws::sign_compact;
use keybound_core::{
    AccessTokenClaims, AccessTokenHash, AccessTokenSigner, Algorithm, ErrorCode, KeySet,
    SigningKey, UnixTime,
};
use keybound_resource::{
    KeySource, ResourceConfig, ResourceLayer, ResourceVerifier, VerifiedToken,
};
use keybound_store::MemoryReplayCache;
use serde_json::{Value, json};
use tower::ServiceExt as _;

pub const ISS: &str = "https://as.example.com";
pub const AUD: &str = "https://rs.example.com";
pub const BASE: &str = "https://rs.example.com";
pub const RES: &str = "/api/res";
pub const RES_URL: &str = "https://rs.example.com/api/res";
pub const ADMIN: &str = "/api/admin";
pub const ADMIN_URL: &str = "https://rs.example.com/api/admin";
pub const NOW: u64 = 1_800_000_000;
/// The `algs` every DPoP challenge carries with the default configuration.
pub const ALGS: &str = "ES256 EdDSA PS256";

pub fn key(alg: Algorithm) -> SigningKey {
    SigningKey::generate(alg, &SystemRandom::new()).unwrap().0
}

pub fn signer(kid: &str) -> AccessTokenSigner {
    AccessTokenSigner::new(key(Algorithm::Es256), kid)
}

pub fn jwks(signers: &[&AccessTokenSigner]) -> Value {
    let keys: Vec<Value> = signers.iter().map(|s| s.jwks_entry()).collect();
    json!({ "keys": keys })
}

pub fn keyset(signers: &[&AccessTokenSigner]) -> KeySet {
    KeySet::from_jwks_json(jwks(signers).to_string().as_bytes()).unwrap()
}

/// A process-wide unique suffix (token and proof `jti`s).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}", N.fetch_add(1, Ordering::Relaxed))
}

async fn whoami(token: VerifiedToken) -> Json<Value> {
    Json(json!({
        "sub": token.claims.sub,
        "client_id": token.claims.client_id,
        "scheme": token.scheme.name(),
        "jkt": token.jkt.as_ref().map(|j| j.as_str().to_owned()),
    }))
}

/// `GET /api/res` (any valid token) and `GET /api/admin` (scope `admin`), each behind the layer.
pub fn router(verifier: &Arc<ResourceVerifier>) -> Router {
    Router::new()
        .route(RES, get(whoami).layer(ResourceLayer::new(verifier.clone())))
        .route(
            ADMIN,
            get(whoami).layer(ResourceLayer::new(verifier.clone()).require_scopes(&["admin"])),
        )
}

/// Claims for a token from `iss`, bound to `bound_to` (or unbound), scope `read`, valid 5 min.
pub fn claims(iss: &str, now: u64, bound_to: Option<&SigningKey>) -> AccessTokenClaims {
    AccessTokenClaims {
        iss: iss.to_owned(),
        sub: "alice".to_owned(),
        aud: Audience::One(AUD.to_owned()),
        exp: now + 300,
        iat: now,
        nbf: None,
        jti: unique("at"),
        client_id: "app".to_owned(),
        scope: Some("read".to_owned()),
        cnf: bound_to.map(|k| Confirmation {
            jkt: Some(k.public_jwk().thumbprint().clone()),
            x5t_s256: None,
        }),
    }
}

/// A DPoP proof by `key` for `method url` at `iat`, with `ath` for `token`.
pub fn proof_by(key: &SigningKey, method: &str, url: &str, iat: u64, token: &str) -> String {
    ProofBuilder::new(method, url, UnixTime::from_secs(iat))
        .access_token(token)
        .sign(key, &SystemRandom::new())
        .unwrap()
}

/// The header of a valid proof by `key`.
pub fn proof_header(key: &SigningKey) -> Value {
    let jwk: Value = serde_json::from_str(&key.public_jwk().to_json()).unwrap();
    json!({ "typ": "dpop+jwt", "alg": key.algorithm().name(), "jwk": jwk })
}

/// The claims of a valid proof for `GET url` at `iat` with `ath` for `token`.
pub fn proof_claims(url: &str, iat: u64, token: &str) -> Value {
    json!({
        "jti": unique("proof"),
        "htm": "GET",
        "htu": url,
        "iat": iat,
        "ath": AccessTokenHash::of(token).as_str(),
    })
}

/// Signs any header and claims with `key` (whatever the header says).
pub fn forge(header: &Value, claims: &Value, key: &SigningKey) -> String {
    sign_compact(&header.to_string(), &claims.to_string(), key).unwrap()
}

pub fn with(mut value: Value, name: &str, member: Value) -> Value {
    value[name] = member;
    value
}

pub fn without(mut value: Value, name: &str) -> Value {
    value.as_object_mut().unwrap().remove(name);
    value
}

/// A request with the given header lines (repeated names give repeated lines).
pub fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::empty()).unwrap()
}

pub async fn send(router: &Router, request: Request<Body>) -> Reply {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
    }
}

/// A protected resource with a static key set holding the signer `k1`, a clock at [`NOW`]
/// the test may move, and one honest client key.
pub struct Rs {
    pub verifier: Arc<ResourceVerifier>,
    pub router: Router,
    pub clock: Arc<AtomicU64>,
    pub signer: AccessTokenSigner,
    pub client: SigningKey,
    pub issuer: String,
}

impl Rs {
    pub fn new() -> Self {
        Self::with(|c| c)
    }

    /// Default configuration changed by `configure`.
    pub fn with(configure: impl FnOnce(ResourceConfig) -> ResourceConfig) -> Self {
        Self::for_issuer(ISS, configure)
    }

    /// A resource accepting tokens from `issuer`, which also signs the harness's tokens.
    pub fn for_issuer(
        issuer: &str,
        configure: impl FnOnce(ResourceConfig) -> ResourceConfig,
    ) -> Self {
        let signer = signer("k1");
        let keys = KeySource::Static(Arc::new(keyset(&[&signer])));
        let clock = Arc::new(AtomicU64::new(NOW));
        let c = clock.clone();
        let verifier = ResourceVerifier::new(
            configure(ResourceConfig::new(issuer, AUD, BASE)),
            keys,
            Arc::new(MemoryReplayCache::new(10_000)),
        )
        .unwrap()
        .with_clock(Arc::new(move || {
            UnixTime::from_secs(c.load(Ordering::SeqCst))
        }));
        let verifier = Arc::new(verifier);
        Self {
            router: router(&verifier),
            verifier,
            clock,
            signer,
            client: key(Algorithm::Es256),
            issuer: issuer.to_owned(),
        }
    }

    pub fn now(&self) -> u64 {
        self.clock.load(Ordering::SeqCst)
    }

    pub fn advance(&self, secs: u64) {
        self.clock.fetch_add(secs, Ordering::SeqCst);
    }

    /// Claims for a token bound to the client key.
    pub fn claims(&self) -> AccessTokenClaims {
        claims(&self.issuer, self.now(), Some(&self.client))
    }

    pub fn sign(&self, claims: &AccessTokenClaims) -> String {
        self.signer.sign(claims).unwrap()
    }

    /// A fresh token bound to the client key.
    pub fn bound_token(&self) -> String {
        self.sign(&self.claims())
    }

    /// A fresh token with no `cnf`.
    pub fn unbound_token(&self) -> String {
        self.sign(&claims(&self.issuer, self.now(), None))
    }

    /// An honest proof by the client key for `GET url`, now.
    pub fn proof(&self, url: &str, token: &str) -> String {
        proof_by(&self.client, "GET", url, self.now(), token)
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        send(&self.router, request).await
    }

    pub async fn get(&self, uri: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(request("GET", uri, headers)).await
    }

    /// `GET uri` with `Authorization: DPoP token` and one `DPoP: proof` line.
    pub async fn dpop(&self, uri: &str, token: &str, proof: &str) -> Reply {
        let authorization = format!("DPoP {token}");
        self.get(uri, &[("authorization", &authorization), ("dpop", proof)])
            .await
    }

    /// The verified-token cache hits so far, from the metrics text.
    pub fn cache_hits(&self) -> u64 {
        self.verifier
            .metrics()
            .render()
            .lines()
            .find_map(|l| l.strip_prefix("keybound_resource_token_cache_hits_total "))
            .map(|n| n.trim().parse().unwrap())
            .unwrap()
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// Every `WWW-Authenticate` field value, as received.
    pub fn www_authenticate(&self) -> Vec<String> {
        self.headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    /// The challenges of every `WWW-Authenticate` field value, in order.
    pub fn challenges(&self) -> Vec<ParsedChallenge> {
        self.www_authenticate()
            .iter()
            .flat_map(|v| parse_challenges(v).unwrap())
            .collect()
    }

    /// The challenge for `scheme`.
    pub fn challenge(&self, scheme: Scheme) -> ParsedChallenge {
        self.challenges()
            .into_iter()
            .find(|c| c.scheme() == Some(scheme))
            .unwrap_or_else(|| panic!("no {scheme:?} challenge in {:?}", self.www_authenticate()))
    }

    #[track_caller]
    fn assert_exposed(&self) {
        let exposed = self
            .header("access-control-expose-headers")
            .expect("Access-Control-Expose-Headers");
        let names: Vec<String> = exposed
            .split(',')
            .map(|n| n.trim().to_ascii_lowercase())
            .collect();
        assert!(
            names.iter().any(|n| n == "www-authenticate")
                && names.iter().any(|n| n == "dpop-nonce"),
            "Access-Control-Expose-Headers: {exposed}"
        );
    }

    /// 200, no challenge, CORS exposure; the handler's JSON.
    #[track_caller]
    pub fn assert_ok(&self) -> &Value {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "challenges: {:?}",
            self.www_authenticate()
        );
        assert!(self.www_authenticate().is_empty());
        self.assert_exposed();
        &self.body
    }

    /// `status`, exactly the challenges `expected` (scheme and error, in order), `algs` on
    /// every DPoP challenge and on no other, no error details on error-free challenges, no
    /// `DPoP-Nonce` unless a nonce is asked for, and CORS exposure.
    #[track_caller]
    pub fn assert_rejected(&self, status: StatusCode, expected: &[(Scheme, Option<ErrorCode>)]) {
        let raw = self.www_authenticate();
        assert_eq!(self.status, status, "challenges: {raw:?}");
        let challenges = self.challenges();
        let got: Vec<(Option<Scheme>, Option<ErrorCode>)> =
            challenges.iter().map(|c| (c.scheme(), c.error())).collect();
        let want: Vec<(Option<Scheme>, Option<ErrorCode>)> = expected
            .iter()
            .map(|(s, e)| (Some(*s), e.clone()))
            .collect();
        assert_eq!(got, want, "challenges: {raw:?}");
        for c in &challenges {
            if c.scheme() == Some(Scheme::DPoP) {
                assert_eq!(c.param("algs"), Some(ALGS), "challenges: {raw:?}");
            } else {
                assert_eq!(c.param("algs"), None, "challenges: {raw:?}");
            }
            if c.error().is_none() {
                assert_eq!(c.param("error_description"), None, "challenges: {raw:?}");
                assert_eq!(c.param("scope"), None, "challenges: {raw:?}");
            }
        }
        let asks_for_nonce = expected
            .iter()
            .any(|(_, e)| e.as_ref() == Some(&ErrorCode::UseDpopNonce));
        if !asks_for_nonce {
            assert_eq!(self.header("dpop-nonce"), None);
        }
        self.assert_exposed();
    }

    /// 401 with one `DPoP` challenge carrying `code`.
    #[track_caller]
    pub fn assert_dpop_error(&self, code: ErrorCode) {
        self.assert_rejected(StatusCode::UNAUTHORIZED, &[(Scheme::DPoP, Some(code))]);
    }
}

/// A stand-in Authorization Server on 127.0.0.1 serving RFC 8414 metadata and a JWKS the test
/// can swap, counting JWKS fetches.
pub struct FakeAs {
    pub issuer: String,
    pub jwks: Arc<Mutex<Value>>,
    pub jwks_fetches: Arc<AtomicUsize>,
    pub metadata_fetches: Arc<AtomicUsize>,
}

impl FakeAs {
    /// Serves metadata naming `metadata_issuer` (the real issuer when `None`) at
    /// `metadata_path` (relative to the origin) and the JWKS at `/jwks`. `issuer_path` is
    /// appended to the origin to form the issuer identifier.
    pub async fn start_at(
        initial: Value,
        issuer_path: &str,
        metadata_path: &str,
        metadata_issuer: Option<&str>,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let issuer = format!("{origin}{issuer_path}");
        let jwks = Arc::new(Mutex::new(initial));
        let jwks_fetches = Arc::new(AtomicUsize::new(0));
        let metadata_fetches = Arc::new(AtomicUsize::new(0));
        let metadata = json!({
            "issuer": metadata_issuer.unwrap_or(&issuer),
            "jwks_uri": format!("{origin}/jwks"),
        });
        let (doc, fetches, meta_fetches) =
            (jwks.clone(), jwks_fetches.clone(), metadata_fetches.clone());
        let app = Router::new()
            .route(
                metadata_path,
                get(move || {
                    meta_fetches.fetch_add(1, Ordering::SeqCst);
                    let metadata = metadata.clone();
                    async move { Json(metadata) }
                }),
            )
            .route(
                "/jwks",
                get(move || {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    let doc = doc.lock().unwrap().clone();
                    async move { Json(doc) }
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            issuer,
            jwks,
            jwks_fetches,
            metadata_fetches,
        }
    }

    /// Issuer = the origin; metadata at `/.well-known/oauth-authorization-server`.
    pub async fn start(initial: Value) -> Self {
        Self::start_at(initial, "", "/.well-known/oauth-authorization-server", None).await
    }

    pub fn fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }

    pub fn set_jwks(&self, doc: Value) {
        *self.jwks.lock().unwrap() = doc;
    }
}
