//! # keybound-client
//!
//! Obtain DPoP-bound tokens and call protected APIs without writing proof plumbing: a key file,
//! a proof per request (`htm`, `htu` without query and fragment, `ath` when a token is sent,
//! `nonce` when the server gave one), a per-origin nonce cache filled from every `DPoP-Nonce`
//! header, and exactly one retry on `use_dpop_nonce` (a 400 at a token endpoint, a 401 with a
//! `DPoP` challenge at a resource), never a loop. Redirects are never followed.
//!
//! ```no_run
//! # async fn run() -> Result<(), keybound_client::ClientError> {
//! use keybound_client::{ClientAuth, DpopClient, load_key_file};
//! let client = DpopClient::new(load_key_file("client.p8".as_ref(), None)?)?;
//! let issuer = client.discover("https://as.example.com").await?;
//! let auth = ClientAuth::Secret { client_id: "billing".into(), client_secret: "...".into() };
//! let token = client.client_credentials(&issuer, &auth, Some("orders:read")).await?;
//! let response = client.call(reqwest::Method::GET, "https://api.example.com/orders", &token.access_token, None).await?;
//! # Ok(()) }
//! ```
//!
//! An ordinary `reqwest` client gets the same behaviour through [`DpopMiddleware`]
//! (`reqwest-middleware`).
//!
//! Client authentication: `client_secret_basic`, `private_key_jwt`, mTLS (`tls_client_auth` or
//! `self_signed_tls_client_auth`, RFC 8705 §2, with a [`TlsIdentity`]), or none (public
//! clients). A client with a TLS identity sends its token and PAR requests to the issuer's
//! `mtls_endpoint_aliases` when it publishes them (RFC 8705 §5).
//!
//! The authorization-code flow of browser and native apps (PKCE, `dpop_jkt`, PAR, callback
//! checks, the code exchange) is in [`authorize`]. [`TokenSession`] keeps a
//! client-credentials token fresh.
//!
//! ```no_run
//! # async fn run() -> Result<(), keybound_client::ClientError> {
//! use keybound_client::{ClientAuth, DpopClient, TlsIdentity, load_key_file};
//! let identity = TlsIdentity::from_pem_files("client.crt".as_ref(), "client.key".as_ref())?;
//! let client = DpopClient::builder(load_key_file("client.p8".as_ref(), None)?)
//!     .tls_identity(identity)
//!     .build()?;
//! let issuer = client.discover("https://as.example.com").await?;
//! let auth = ClientAuth::Tls { client_id: "billing".into() };
//! let token = client.client_credentials(&issuer, &auth, None).await?; // at the mTLS alias
//! # Ok(()) }
//! ```

pub mod authorize;
mod key;
mod middleware;
mod session;

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use keybound_core::challenge::{Scheme, parse_challenges};
use keybound_core::dpop::ProofBuilder;
use keybound_core::{ErrorCode, SigningKey, UnixTime};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;

pub use authorize::{
    AuthorizationCode, AuthorizationRequest, Pkce, PushedAuthorization, parse_callback,
};
pub use key::{generate_key_file, load_key_file};
pub use middleware::DpopMiddleware;
pub use session::TokenSession;

/// Largest token-endpoint or metadata response read.
const MAX_RESPONSE: usize = 256 * 1024;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The key file could not be created or read.
    #[error("key: {0}")]
    Key(String),
    /// The request could not be sent or the response not read.
    #[error("HTTP: {0}")]
    Http(String),
    /// The issuer's metadata is missing or unusable.
    #[error("discovery: {0}")]
    Discovery(String),
    /// The server refused, with its OAuth error.
    #[error("{status}: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        /// HTTP status.
        status: u16,
        /// The OAuth error code.
        error: ErrorCode,
        /// `error_description`, if any.
        description: Option<String>,
    },
    /// The AS answered with a token that is not DPoP-bound; it is discarded (RFC 9449 §5).
    #[error("the token endpoint returned token_type {0:?}, not DPoP; the token was discarded")]
    NotDpopBound(String),
    /// A request parameter is unusable (a reserved extra parameter, a malformed PKCE
    /// verifier or redirect URI, authentication for another client).
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// The issuer's metadata does not name the endpoint this operation needs.
    #[error("the issuer's metadata has no {0}")]
    MissingEndpoint(&'static str),
    /// The issuer requires pushed authorization requests (RFC 9126 §5); a front-channel URL
    /// with the whole request would be refused.
    #[error("the issuer requires pushed authorization requests (PAR)")]
    ParRequired,
    /// The authorization response at the redirect URI is unreadable, repeats a parameter, or
    /// has neither a code nor an error.
    #[error("authorization response: {0}")]
    Callback(String),
    /// The authorization response's `state` is missing or not the request's: it was not
    /// caused by this request (CSRF, RFC 6749 §10.12).
    #[error("the authorization response's state does not match the request's")]
    StateMismatch,
    /// The authorization response names another issuer (`iss`, RFC 9207): a mix-up attack.
    #[error("the authorization response comes from issuer {received:?}, not {expected:?}")]
    IssuerMismatch {
        /// The issuer the request was sent to.
        expected: String,
        /// The `iss` in the response.
        received: String,
    },
    /// The issuer says it sends `iss` in authorization responses, and this one has none
    /// (RFC 9207 §2.4).
    #[error("the authorization response has no iss, which this issuer always sends")]
    MissingIssuer,
    /// The AS answered the authorization request with an error (RFC 6749 §4.1.2.1).
    #[error("authorization refused: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    AuthorizationFailed {
        /// The OAuth error code (`access_denied`, `invalid_request`, ...).
        error: ErrorCode,
        /// `error_description`, if any.
        description: Option<String>,
    },
}

/// How the client authenticates at the token endpoint.
#[derive(Clone)]
#[non_exhaustive]
pub enum ClientAuth {
    /// `client_secret_basic`.
    Secret {
        /// The client id.
        client_id: String,
        /// The secret.
        client_secret: String,
    },
    /// A public client: `client_id` only.
    Public {
        /// The client id.
        client_id: String,
    },
    /// `tls_client_auth` or `self_signed_tls_client_auth` (RFC 8705 §2): the client's TLS
    /// certificate authenticates it, and `client_id` is sent in the form. Needs a client built
    /// with a [`TlsIdentity`].
    Tls {
        /// The client id.
        client_id: String,
    },
    /// `private_key_jwt` (RFC 7523): a fresh assertion signed by `key` (registered under `kid`
    /// in the client's JWKS at the AS) for every request. This is not the DPoP key.
    PrivateKeyJwt {
        /// The client id.
        client_id: String,
        /// The assertion signing key.
        key: std::sync::Arc<SigningKey>,
        /// Its `kid` at the AS.
        kid: String,
    },
}

impl ClientAuth {
    /// The client id, whichever the method.
    #[must_use]
    pub fn client_id(&self) -> &str {
        match self {
            Self::Secret { client_id, .. }
            | Self::Public { client_id }
            | Self::Tls { client_id }
            | Self::PrivateKeyJwt { client_id, .. } => client_id,
        }
    }
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Secret { client_id, .. } => write!(f, "Secret({client_id}, [redacted])"),
            Self::Public { client_id } => write!(f, "Public({client_id})"),
            Self::Tls { client_id } => write!(f, "Tls({client_id})"),
            Self::PrivateKeyJwt { client_id, kid, .. } => {
                write!(f, "PrivateKeyJwt({client_id}, kid {kid})")
            }
        }
    }
}

/// What the client needs from RFC 8414 metadata.
#[derive(Clone, Debug, Deserialize)]
pub struct IssuerMetadata {
    /// `issuer`.
    pub issuer: String,
    /// `token_endpoint`.
    pub token_endpoint: String,
    /// `dpop_signing_alg_values_supported`, if published.
    #[serde(default)]
    pub dpop_signing_alg_values_supported: Vec<String>,
    /// `authorization_endpoint`, if published (needed for the authorization-code flow).
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// `pushed_authorization_request_endpoint` (RFC 9126 §5), if published.
    #[serde(default)]
    pub pushed_authorization_request_endpoint: Option<String>,
    /// `require_pushed_authorization_requests` (RFC 9126 §5; false when absent).
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
    /// `authorization_response_iss_parameter_supported` (RFC 9207 §3; false when absent):
    /// when true, an authorization response without `iss` is refused.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    /// `mtls_endpoint_aliases` (RFC 8705 §5), if published.
    #[serde(default)]
    pub mtls_endpoint_aliases: Option<MtlsEndpointAliases>,
}

/// RFC 8705 §5: the endpoints a client using mTLS must call instead of the top-level ones.
/// Members the client does not use are ignored.
#[derive(Clone, Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct MtlsEndpointAliases {
    /// `token_endpoint`.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// `pushed_authorization_request_endpoint`.
    #[serde(default)]
    pub pushed_authorization_request_endpoint: Option<String>,
    /// `introspection_endpoint`.
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
    /// `revocation_endpoint`.
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
}

/// A TLS client certificate and its private key (PEM), for mTLS client authentication and
/// certificate-bound tokens. `Debug` shows nothing of the key.
#[derive(Clone)]
pub struct TlsIdentity {
    pem: Vec<u8>,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsIdentity([redacted])")
    }
}

impl TlsIdentity {
    /// The certificate (chain) and private key, as PEM text.
    ///
    /// # Errors
    /// [`ClientError::Key`] if the text holds no certificate or no key.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, ClientError> {
        let mut pem = cert_pem.to_vec();
        pem.push(b'\n');
        pem.extend_from_slice(key_pem);
        reqwest::Identity::from_pem(&pem)
            .map_err(|e| ClientError::Key(format!("TLS identity: {e}")))?;
        Ok(Self { pem })
    }

    /// Reads the certificate and key files.
    ///
    /// # Errors
    /// [`ClientError::Key`] if a file cannot be read or holds no usable PEM.
    pub fn from_pem_files(
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> Result<Self, ClientError> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| ClientError::Key(format!("{}: {e}", p.display())))
        };
        Self::from_pem(&read(cert)?, &read(key)?)
    }
}

/// Builds a [`DpopClient`]: the DPoP key, and optionally a TLS identity and extra trust roots.
#[derive(Debug)]
pub struct DpopClientBuilder {
    key: SigningKey,
    identity: Option<TlsIdentity>,
    roots: Vec<Vec<u8>>,
    timeout: Duration,
}

impl DpopClientBuilder {
    /// Presents this certificate in TLS handshakes (mTLS), and sends token and PAR requests to
    /// the issuer's `mtls_endpoint_aliases` when it has them.
    #[must_use]
    pub fn tls_identity(mut self, identity: TlsIdentity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Also trusts this CA certificate (PEM), e.g. a private CA of the AS's mTLS host.
    #[must_use]
    pub fn add_root_certificate_pem(mut self, pem: &[u8]) -> Self {
        self.roots.push(pem.to_vec());
        self
    }

    /// Request timeout (default 30 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The client. Redirects are never followed.
    ///
    /// # Errors
    /// [`ClientError::Http`] if the HTTP client cannot be built, [`ClientError::Key`] for an
    /// unusable root certificate or identity.
    pub fn build(self) -> Result<DpopClient, ClientError> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout);
        for pem in &self.roots {
            let cert = reqwest::Certificate::from_pem(pem)
                .map_err(|e| ClientError::Key(format!("root certificate: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        if let Some(identity) = &self.identity {
            let identity = reqwest::Identity::from_pem(&identity.pem)
                .map_err(|e| ClientError::Key(format!("TLS identity: {e}")))?;
            builder = builder.identity(identity);
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Http(e.to_string()))?;
        Ok(DpopClient {
            http,
            key: self.key,
            mtls: self.identity.is_some(),
            rng: SystemRandom::new(),
            nonces: Mutex::new(HashMap::new()),
            retries: AtomicU64::new(0),
        })
    }
}

/// A token response. `Debug` shows no token.
#[derive(Clone, Deserialize)]
pub struct TokenResponse {
    /// The access token.
    pub access_token: String,
    /// `DPoP` (anything else is refused before you see it).
    pub token_type: String,
    /// Lifetime in seconds.
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// The refresh token, if one was issued.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Granted scopes.
    #[serde(default)]
    pub scope: Option<String>,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .finish_non_exhaustive()
    }
}

/// A DPoP client: one key, one HTTP client, one nonce cache.
pub struct DpopClient {
    http: reqwest::Client,
    key: SigningKey,
    mtls: bool,
    rng: SystemRandom,
    nonces: Mutex<HashMap<(Role, String), String>>,
    retries: AtomicU64,
}

impl fmt::Debug for DpopClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopClient")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Who issued a nonce: the AS's and a resource's nonces are separate even on one origin
/// (RFC 9449 §9), so they are cached apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Role {
    Token,
    Resource,
}

fn origin(role: Role, url: &Url) -> (Role, String) {
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(0);
    (role, format!("{}://{host}:{port}", url.scheme()))
}

fn now() -> UnixTime {
    UnixTime::from_secs(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, ClientError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?
    {
        if body.len() + chunk.len() > MAX_RESPONSE {
            return Err(ClientError::Http("response too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl DpopClient {
    /// A client signing proofs with `key`. Redirects are not followed; requests time out after 30 s.
    ///
    /// # Errors
    /// [`ClientError::Http`] if the HTTP client cannot be built.
    pub fn new(key: SigningKey) -> Result<Self, ClientError> {
        Self::builder(key).build()
    }

    /// A builder, for a TLS identity (mTLS) or extra trust roots.
    #[must_use]
    pub fn builder(key: SigningKey) -> DpopClientBuilder {
        DpopClientBuilder {
            key,
            identity: None,
            roots: Vec::new(),
            timeout: Duration::from_secs(30),
        }
    }

    /// The token endpoint this client calls: the mTLS alias when it has a TLS identity and the
    /// issuer publishes one (RFC 8705 §5), else the top-level endpoint.
    #[must_use]
    pub fn token_endpoint<'a>(&self, issuer: &'a IssuerMetadata) -> &'a str {
        self.mtls_alias(issuer, |a| a.token_endpoint.as_deref())
            .unwrap_or(&issuer.token_endpoint)
    }

    /// The alias of an endpoint, if this client uses mTLS and the issuer publishes one.
    pub(crate) fn mtls_alias<'a>(
        &self,
        issuer: &'a IssuerMetadata,
        pick: impl Fn(&'a MtlsEndpointAliases) -> Option<&'a str>,
    ) -> Option<&'a str> {
        if !self.mtls {
            return None;
        }
        issuer.mtls_endpoint_aliases.as_ref().and_then(pick)
    }

    /// The key's thumbprint (what the server binds tokens to).
    #[must_use]
    pub fn thumbprint(&self) -> &keybound_core::JwkThumbprint {
        self.key.public_jwk().thumbprint()
    }

    /// How many nonce retries this client has made (never more than one per request).
    #[must_use]
    pub fn nonce_retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    pub(crate) fn remember_nonce(
        &self,
        role: Role,
        url: &Url,
        headers: &reqwest::header::HeaderMap,
    ) {
        if let Some(nonce) = headers.get("dpop-nonce").and_then(|v| v.to_str().ok())
            && keybound_core::Nonce::parse(nonce).is_some()
            && let Ok(mut map) = self.nonces.lock()
        {
            map.insert(origin(role, url), nonce.to_owned());
        }
    }

    fn nonce_for(&self, role: Role, url: &Url) -> Option<String> {
        self.nonces.lock().ok()?.get(&origin(role, url)).cloned()
    }

    /// Whether a resource's answer is a `use_dpop_nonce` challenge that gave a nonce to retry with.
    pub(crate) fn resource_wants_nonce(&self, response: &reqwest::Response, url: &Url) -> bool {
        response.status() == StatusCode::UNAUTHORIZED
            && self.nonce_for(Role::Resource, url).is_some()
            && response
                .headers()
                .get_all("www-authenticate")
                .iter()
                .any(|v| {
                    parse_challenges(v.to_str().unwrap_or_default()).is_ok_and(|all| {
                        all.iter().any(|c| {
                            c.scheme() == Some(Scheme::DPoP)
                                && c.error() == Some(ErrorCode::UseDpopNonce)
                        })
                    })
                })
    }

    pub(crate) fn count_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// A fresh proof for `method` on `url`, with `ath` for `token` and the nonce the server at
    /// that origin gave (its token endpoint's if no token is sent, else its resource's).
    ///
    /// # Errors
    /// [`ClientError::Key`] if signing fails, [`ClientError::Http`] for a bad URL.
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        token: Option<&str>,
    ) -> Result<String, ClientError> {
        let parsed = Url::parse(url).map_err(|e| ClientError::Http(format!("{url}: {e}")))?;
        let role = if token.is_some() {
            Role::Resource
        } else {
            Role::Token
        };
        let nonce = self.nonce_for(role, &parsed);
        let mut builder = ProofBuilder::new(method, url, now());
        if let Some(token) = token {
            builder = builder.access_token(token);
        }
        if let Some(nonce) = &nonce {
            builder = builder.nonce(nonce);
        }
        builder
            .sign(&self.key, &self.rng)
            .map_err(|e| ClientError::Key(e.to_string()))
    }

    /// Reads `issuer`'s RFC 8414 metadata and checks that it names the same issuer.
    ///
    /// # Errors
    /// [`ClientError::Discovery`].
    pub async fn discover(&self, issuer: &str) -> Result<IssuerMetadata, ClientError> {
        // RFC 8414 §3.1: the well-known segment goes before the issuer's path, if any.
        let url = keybound_core::metadata::well_known_url(issuer)
            .ok_or_else(|| ClientError::Discovery(format!("{issuer} is not an http(s) URL")))?;
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| ClientError::Discovery(format!("{url}: {e}")))?;
        if !response.status().is_success() {
            return Err(ClientError::Discovery(format!(
                "{url}: status {}",
                response.status()
            )));
        }
        let body = read_limited(response).await?;
        let metadata: IssuerMetadata = serde_json::from_slice(&body)
            .map_err(|e| ClientError::Discovery(format!("{url}: {e}")))?;
        if metadata.issuer != issuer {
            return Err(ClientError::Discovery(format!(
                "{url} names issuer {}, not {issuer}",
                metadata.issuer
            )));
        }
        Ok(metadata)
    }

    /// A token request: [`DpopClient::post_to_as`] at the token endpoint, then the response
    /// read as a token, which must be DPoP-bound (RFC 9449 §5).
    async fn token_request(
        &self,
        issuer: &IssuerMetadata,
        auth: &ClientAuth,
        params: &[(&str, &str)],
    ) -> Result<TokenResponse, ClientError> {
        let body = self
            .post_to_as(
                issuer,
                self.token_endpoint(issuer),
                auth,
                params,
                true,
                StatusCode::OK,
            )
            .await?;
        let token: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| ClientError::Http(format!("token response: {e}")))?;
        if !token.token_type.eq_ignore_ascii_case("DPoP") {
            return Err(ClientError::NotDpopBound(token.token_type));
        }
        Ok(token)
    }

    /// A form POST to one of the AS's endpoints (token, PAR): client authentication as `auth`
    /// says (a public client's `client_id` is added to the form unless `params` has one), a
    /// fresh DPoP proof for `endpoint` when `dpop`, every `DPoP-Nonce` remembered, and exactly
    /// one retry with a new proof (and a new client assertion) on `use_dpop_nonce`. Returns
    /// the body of a response with status `success`; any other status is
    /// [`ClientError::Refused`] with the server's error.
    pub(crate) async fn post_to_as(
        &self,
        issuer: &IssuerMetadata,
        endpoint: &str,
        auth: &ClientAuth,
        params: &[(&str, &str)],
        dpop: bool,
        success: StatusCode,
    ) -> Result<Vec<u8>, ClientError> {
        let url = Url::parse(endpoint).map_err(|e| ClientError::Discovery(e.to_string()))?;
        for attempt in 0..2 {
            let mut form: Vec<(&str, &str)> = params.to_vec();
            let assertion;
            let mut request = self.http.post(url.clone());
            if dpop {
                request = request.header("DPoP", self.proof("POST", endpoint, None)?);
            }
            match auth {
                ClientAuth::Secret {
                    client_id,
                    client_secret,
                } => request = request.basic_auth(client_id, Some(client_secret)),
                ClientAuth::Public { client_id } | ClientAuth::Tls { client_id } => {
                    if matches!(auth, ClientAuth::Tls { .. }) && !self.mtls {
                        return Err(ClientError::InvalidParameter(
                            "mTLS client authentication needs a client built with a TLS identity"
                                .into(),
                        ));
                    }
                    if !form.iter().any(|(name, _)| *name == "client_id") {
                        form.push(("client_id", client_id));
                    }
                }
                ClientAuth::PrivateKeyJwt {
                    client_id,
                    key,
                    kid,
                } => {
                    // A new assertion (new jti) per attempt: the nonce retry never reuses one.
                    // Its audience is the token endpoint, which RFC 9126 §2 makes acceptable
                    // at the PAR endpoint too.
                    assertion =
                        self.client_assertion(client_id, key, kid, &issuer.token_endpoint)?;
                    form.push((
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ));
                    form.push(("client_assertion", &assertion));
                }
            }
            let response = request
                .form(&form)
                .send()
                .await
                .map_err(|e| ClientError::Http(e.to_string()))?;
            self.remember_nonce(Role::Token, &url, response.headers());
            let status = response.status();
            let body = read_limited(response).await?;
            if status == success {
                return Ok(body);
            }
            let error: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let code = ErrorCode::parse(error["error"].as_str().unwrap_or("server_error"));
            if dpop
                && code == ErrorCode::UseDpopNonce
                && attempt == 0
                && self.nonce_for(Role::Token, &url).is_some()
            {
                self.retries.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let description = error["error_description"].as_str().map(str::to_owned);
            return Err(ClientError::Refused {
                status: status.as_u16(),
                error: code,
                description,
            });
        }
        Err(ClientError::Refused {
            status: 400,
            error: ErrorCode::UseDpopNonce,
            description: Some("the nonce retry was refused too".into()),
        })
    }

    fn client_assertion(
        &self,
        client_id: &str,
        key: &SigningKey,
        kid: &str,
        audience: &str,
    ) -> Result<String, ClientError> {
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::SecureRandom::fill(&self.rng, &mut jti)
            .map_err(|_| ClientError::Key("no randomness".into()))?;
        let jti = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, jti);
        let now = now().as_secs();
        let header = serde_json::json!({ "alg": key.algorithm().name(), "kid": kid, "typ": "JWT" });
        let claims = serde_json::json!({ "iss": client_id, "sub": client_id, "aud": audience, "jti": jti, "iat": now, "exp": now + 60 });
        keybound_core::jws::sign_compact(&header.to_string(), &claims.to_string(), key)
            .map_err(|e| ClientError::Key(e.to_string()))
    }

    /// The client credentials grant, DPoP-bound.
    ///
    /// # Errors
    /// [`ClientError::Refused`] with the server's error, or [`ClientError::NotDpopBound`].
    pub async fn client_credentials(
        &self,
        issuer: &IssuerMetadata,
        auth: &ClientAuth,
        scope: Option<&str>,
    ) -> Result<TokenResponse, ClientError> {
        let mut params = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            params.push(("scope", scope));
        }
        self.token_request(issuer, auth, &params).await
    }

    /// Redeems a refresh token (the new response carries the rotated one).
    ///
    /// # Errors
    /// As [`DpopClient::client_credentials`].
    pub async fn refresh(
        &self,
        issuer: &IssuerMetadata,
        auth: &ClientAuth,
        refresh_token: &str,
    ) -> Result<TokenResponse, ClientError> {
        self.token_request(
            issuer,
            auth,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }

    /// Calls a protected resource with `Authorization: DPoP` and a fresh proof, retrying once
    /// with the server's nonce on `use_dpop_nonce`.
    ///
    /// # Errors
    /// [`ClientError::Http`] if the request cannot be sent. HTTP error statuses are returned as
    /// responses.
    pub async fn call(
        &self,
        method: Method,
        url: &str,
        token: &str,
        body: Option<Vec<u8>>,
    ) -> Result<reqwest::Response, ClientError> {
        let parsed = Url::parse(url).map_err(|e| ClientError::Http(format!("{url}: {e}")))?;
        let mut attempt = 0;
        loop {
            let proof = self.proof(method.as_str(), url, Some(token))?;
            let mut request = self
                .http
                .request(method.clone(), parsed.clone())
                .header("Authorization", format!("DPoP {token}"))
                .header("DPoP", proof);
            if let Some(body) = &body {
                request = request.body(body.clone());
            }
            let response = request
                .send()
                .await
                .map_err(|e| ClientError::Http(e.to_string()))?;
            self.remember_nonce(Role::Resource, &parsed, response.headers());
            let asks_for_nonce = self.resource_wants_nonce(&response, &parsed);
            if asks_for_nonce && attempt == 0 {
                attempt += 1;
                self.count_retry();
                continue;
            }
            return Ok(response);
        }
    }
}
