//! The per-request check, in order: credentials → access token (cache, then keys) → proof (the
//! shared `keybound-core` verifier) → binding → scopes → replay record. Every stateless check runs
//! before the proof's `jti` is recorded, so a refused request consumes nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;
use axum::http::{HeaderMap, StatusCode, header};
use keybound_core::access_token::AccessTokenError;
use keybound_core::binding::{BindingError, Presented};
use keybound_core::challenge::{Scheme, is_token68};
use keybound_core::dpop::{
    IatWindow, NoncePolicy, ProofError, ProofRequest, ProofVerifier, single_dpop_header,
};
use keybound_core::{
    AccessTokenClaims, AccessTokenVerifier, Algorithm, CertThumbprint, ErrorCode, Htu,
    JwkThumbprint, NonceKeyRing, UnixTime,
};
use keybound_store::ReplayCache;

use crate::cache::TokenCache;
use crate::keys::KeySource;
use crate::rejection::Rejection;

/// The source of "now".
pub type Clock = Arc<dyn Fn() -> UnixTime + Send + Sync>;

fn system_clock() -> Clock {
    Arc::new(|| {
        UnixTime::from_secs(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        )
    })
}

/// How a resource checks requests.
#[derive(Debug)]
pub struct ResourceConfig {
    issuer: String,
    audience: String,
    base: String,
    algorithms: Vec<Algorithm>,
    window: IatWindow,
    nonces: Option<(NonceKeyRing, bool)>,
    accept_unbound: bool,
    cache_entries: usize,
}

/// A configuration value that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("resource configuration: {0}")]
pub struct ResourceConfigError(String);

impl ResourceConfig {
    /// Tokens from `issuer` for `audience`; `public_base_url` is the origin (and any path prefix)
    /// clients call, e.g. `https://api.example.com` — `htu` is this plus the request path, never
    /// the `Host` or `X-Forwarded-*` headers.
    ///
    /// Defaults: FAPI 2.0 algorithms, 60 s / 30 s `iat` window, no nonces, DPoP-bound tokens only,
    /// 100 000 cached tokens.
    #[must_use]
    pub fn new(issuer: &str, audience: &str, public_base_url: &str) -> Self {
        Self {
            // RFC 9068 §4: `iss` must match exactly, trailing slash included.
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            base: public_base_url.trim_end_matches('/').to_owned(),
            algorithms: Algorithm::FAPI2.to_vec(),
            window: IatWindow::default(),
            nonces: None,
            accept_unbound: false,
            cache_entries: 100_000,
        }
    }

    /// Accepted proof and token algorithms.
    #[must_use]
    pub fn algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        self.algorithms = algorithms.to_vec();
        self
    }

    /// The proof `iat` window.
    #[must_use]
    pub fn iat_window(mut self, window: IatWindow) -> Self {
        self.window = window;
        self
    }

    /// Issue and check nonces with `ring` (use a purpose distinct from the AS's); `required`
    /// makes every proof carry one.
    #[must_use]
    pub fn nonces(mut self, ring: NonceKeyRing, required: bool) -> Self {
        self.nonces = Some((ring, required));
        self
    }

    /// Also accept unbound tokens with the `Bearer` scheme. Defaults to false.
    #[must_use]
    pub fn accept_unbound_bearer(mut self, accept: bool) -> Self {
        self.accept_unbound = accept;
        self
    }

    /// Most tokens kept in the verified-token cache.
    #[must_use]
    pub fn token_cache_entries(mut self, entries: usize) -> Self {
        self.cache_entries = entries;
        self
    }
}

/// What a handler behind the layer receives: the verified token and how it was bound.
#[derive(Clone, Debug)]
pub struct VerifiedToken {
    /// The access token's claims.
    pub claims: Arc<AccessTokenClaims>,
    /// The scheme the client used.
    pub scheme: Scheme,
    /// The proof key's thumbprint, for DPoP requests.
    pub jkt: Option<JwkThumbprint>,
}

impl VerifiedToken {
    /// Whether the token grants `scope`.
    #[must_use]
    pub fn has_scope(&self, scope: &str) -> bool {
        self.claims.scopes().any(|s| s == scope)
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ResourceMetrics {
    accepted: AtomicU64,
    cache_hits: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
}

impl ResourceMetrics {
    /// Prometheus text format.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# TYPE keybound_resource_requests_accepted_total counter"
        );
        let _ = writeln!(
            out,
            "keybound_resource_requests_accepted_total {}",
            self.accepted.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# TYPE keybound_resource_token_cache_hits_total counter"
        );
        let _ = writeln!(
            out,
            "keybound_resource_token_cache_hits_total {}",
            self.cache_hits.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# TYPE keybound_resource_requests_rejected_total counter"
        );
        if let Ok(map) = self.rejected.lock() {
            for (reason, n) in map.iter() {
                let _ = writeln!(
                    out,
                    "keybound_resource_requests_rejected_total{{reason=\"{reason}\"}} {n}"
                );
            }
        }
        out
    }
}

/// Verifies requests for one protected resource. Share it (`Arc`) between layers and routes.
pub struct ResourceVerifier {
    config: ResourceConfig,
    keys: KeySource,
    tokens: tokio::sync::RwLock<Option<(Arc<keybound_core::KeySet>, Arc<AccessTokenVerifier>)>>,
    proofs: ProofVerifier,
    replay: Arc<dyn ReplayCache>,
    cache: TokenCache,
    metrics: ResourceMetrics,
    clock: Clock,
}

impl std::fmt::Debug for ResourceVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceVerifier")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn sha256(text: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, text.as_bytes()).as_ref());
    out
}

impl ResourceVerifier {
    /// A verifier with `keys` for access tokens and `replay` for proof `jti`s.
    ///
    /// # Errors
    /// [`ResourceConfigError`] if the public base URL is not an absolute http(s) URL.
    pub fn new(
        config: ResourceConfig,
        keys: KeySource,
        replay: Arc<dyn ReplayCache>,
    ) -> Result<Self, ResourceConfigError> {
        Htu::parse(&config.base)
            .map_err(|e| ResourceConfigError(format!("public_base_url: {e}")))?;
        let proofs = ProofVerifier::new(&config.algorithms, config.window);
        let cache = TokenCache::new(config.cache_entries);
        Ok(Self {
            config,
            keys,
            tokens: tokio::sync::RwLock::new(None),
            proofs,
            replay,
            cache,
            metrics: ResourceMetrics::default(),
            clock: system_clock(),
        })
    }

    /// Replaces the clock (tests).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The counters.
    #[must_use]
    pub fn metrics(&self) -> &ResourceMetrics {
        &self.metrics
    }

    /// Whether requests can be verified now (readiness): the replay cache answers, and the
    /// issuer's keys are loaded (fetched first if needed). Each failure is described.
    ///
    /// # Errors
    /// The list of what is not ready.
    pub async fn ready(&self) -> Result<(), Vec<String>> {
        let mut failures = Vec::new();
        if let Err(e) = self.replay.ping().await {
            failures.push(format!("replay cache: {e}"));
        }
        let needs_keys = !matches!(self.keys, KeySource::Introspection(_));
        if needs_keys && self.keys.keys().await.is_none() {
            failures.push("issuer keys: none could be fetched".to_owned());
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures)
        }
    }

    fn reject(&self, rejection: Rejection) -> Rejection {
        if let Ok(mut map) = self.metrics.rejected.lock() {
            *map.entry(rejection.reason()).or_default() += 1;
        }
        tracing::info!(
            reason = rejection.reason(),
            status = rejection.status().as_u16(),
            "request rejected"
        );
        rejection.with_offer(&self.config.algorithms, self.config.accept_unbound)
    }

    async fn token_verifier(&self, refresh: bool) -> Option<Arc<AccessTokenVerifier>> {
        let keys = if refresh {
            self.keys.unknown_kid().await?
        } else {
            self.keys.keys().await?
        };
        if let Some((cached_keys, verifier)) = self.tokens.read().await.as_ref()
            && Arc::ptr_eq(cached_keys, &keys)
        {
            return Some(verifier.clone());
        }
        if self.tokens.read().await.is_some() {
            self.cache.clear();
        }
        let verifier = Arc::new(
            AccessTokenVerifier::new(
                (*keys).clone(),
                self.config.issuer.clone(),
                self.config.audience.clone(),
            )
            .with_algorithms(&self.config.algorithms),
        );
        *self.tokens.write().await = Some((keys, verifier.clone()));
        Some(verifier)
    }

    async fn access_token(
        &self,
        token: &str,
        scheme: Scheme,
        now: UnixTime,
    ) -> Result<Arc<AccessTokenClaims>, Rejection> {
        let key = sha256(token);
        if let Some(claims) = self.cache.get(&key, now) {
            self.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(claims);
        }
        if let KeySource::Introspection(source) = &self.keys {
            let answer = source
                .introspect(token, &self.config.issuer, &self.config.audience, now)
                .await;
            let claims = Arc::new(answer.map_err(|e| match e {
                crate::IntrospectionError::Unavailable(why) => {
                    tracing::warn!(%why, "introspection unavailable; refusing");
                    Rejection::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        ErrorCode::TemporarilyUnavailable,
                        &[scheme],
                        "introspection_unavailable",
                        "try again later",
                    )
                }
                inactive => Rejection::new(
                    StatusCode::UNAUTHORIZED,
                    ErrorCode::InvalidToken,
                    &[scheme],
                    "inactive_token",
                    inactive.to_string(),
                ),
            })?);
            let until = now.as_secs() + source.ttl().as_secs();
            self.cache.insert(key, claims.clone(), until, now);
            return Ok(claims);
        }
        let unavailable = || {
            Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::TemporarilyUnavailable,
                &[scheme],
                "keys_unavailable",
                "the issuer's keys are unavailable",
            )
        };
        let verifier = self.token_verifier(false).await.ok_or_else(unavailable)?;
        let result = match verifier.verify(token, now) {
            Err(AccessTokenError::UnknownKey(_)) => match self.token_verifier(true).await {
                Some(fresh) => fresh.verify(token, now),
                None => Err(AccessTokenError::UnknownKey(String::new())),
            },
            other => other,
        };
        let claims = Arc::new(result.map_err(|e| {
            Rejection::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::from(&e),
                &[scheme],
                "invalid_access_token",
                e.to_string(),
            )
        })?);
        self.cache.insert(key, claims.clone(), claims.exp, now);
        Ok(claims)
    }

    fn proof_rejection(&self, error: &ProofError, now: UnixTime) -> Rejection {
        let code = ErrorCode::from(error);
        let status = if code == ErrorCode::InvalidRequest {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::UNAUTHORIZED
        };
        let rejection = Rejection::new(
            status,
            code.clone(),
            &[Scheme::DPoP],
            error.reason(),
            error.to_string(),
        );
        match (&self.config.nonces, code) {
            (Some((ring, _)), ErrorCode::UseDpopNonce) => rejection.with_nonce(ring.issue(now)),
            _ => rejection,
        }
    }

    /// Checks one request. `path` is the request path as the client sent it (after any prefix
    /// the public base URL already contains), `query` its query string, `certificate` the
    /// thumbprint of the client certificate of the connection or of a trusted proxy (RFC 8705
    /// §3: a certificate-bound token needs it).
    ///
    /// # Errors
    /// The [`Rejection`] to send.
    pub async fn verify(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        certificate: Option<&CertThumbprint>,
        required_scopes: &[String],
    ) -> Result<VerifiedToken, Rejection> {
        let result = self
            .verify_inner(method, path, query, headers, certificate, required_scopes)
            .await;
        match result {
            Ok(token) => {
                self.metrics.accepted.fetch_add(1, Ordering::Relaxed);
                Ok(token)
            }
            Err(rejection) => Err(self.reject(rejection)),
        }
    }

    async fn verify_inner(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        certificate: Option<&CertThumbprint>,
        required_scopes: &[String],
    ) -> Result<VerifiedToken, Rejection> {
        let now = (self.clock)();
        let bad_request = |schemes: &[Scheme], reason, text: &str| {
            Rejection::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidRequest,
                schemes,
                reason,
                text,
            )
        };
        let in_query = query.is_some_and(|q| {
            q.split('&')
                .any(|p| p.split('=').next() == Some("access_token"))
        });

        // Credentials: one Authorization header, DPoP or Bearer, never the query (§5 #29).
        let mut authorizations = headers.get_all(header::AUTHORIZATION).iter();
        let Some(authorization) = authorizations.next() else {
            if in_query {
                return Err(bad_request(
                    &[Scheme::DPoP, Scheme::Bearer],
                    "token_in_query",
                    "access tokens are accepted only in the Authorization header",
                ));
            }
            return Err(Rejection::unauthenticated());
        };
        if authorizations.next().is_some() || in_query {
            return Err(bad_request(
                &[Scheme::DPoP, Scheme::Bearer],
                "multiple_credentials",
                "more than one credential was presented",
            ));
        }
        let text = authorization.to_str().unwrap_or_default();
        let (scheme_name, token) = text.split_once(' ').unwrap_or((text, ""));
        let token = token.trim_start_matches(' ');
        let Some(scheme) = Scheme::from_name(scheme_name) else {
            return Err(Rejection::unauthenticated());
        };
        if !is_token68(token) {
            return Err(Rejection::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::InvalidToken,
                &[scheme],
                "malformed_token",
                "the access token is malformed",
            ));
        }
        let dpop_lines: Vec<&[u8]> = headers
            .get_all("dpop")
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        if scheme == Scheme::Bearer && !dpop_lines.is_empty() {
            return Err(bad_request(
                &[Scheme::DPoP, Scheme::Bearer],
                "bearer_with_proof",
                "a DPoP proof was sent with the Bearer scheme",
            ));
        }
        if scheme == Scheme::DPoP && dpop_lines.is_empty() {
            return Err(self.proof_rejection(&ProofError::Missing, now));
        }

        let claims = self.access_token(token, scheme, now).await?;

        // DPoP: the proof, by the verifier the AS uses too.
        let proof = if scheme == Scheme::DPoP {
            let htu = Htu::parse(&format!("{}{path}", self.config.base)).map_err(|_| {
                bad_request(
                    &[Scheme::DPoP],
                    "bad_path",
                    "the request path is not a valid URI path",
                )
            })?;
            let nonce = match &self.config.nonces {
                Some((ring, true)) => NoncePolicy::Required(ring),
                Some((ring, false)) => NoncePolicy::IfPresent(ring),
                None => NoncePolicy::NotUsed,
            };
            let request = ProofRequest {
                method,
                htu: &htu,
                now,
                access_token: Some(token),
                nonce,
            };
            let proof = single_dpop_header(dpop_lines)
                .and_then(|p| self.proofs.verify(p, &request))
                .map_err(|e| self.proof_rejection(&e, now))?;
            Some(proof)
        } else {
            None
        };

        // Binding: cnf against what was presented (rule 12b, §2.8).
        let presented = Presented {
            scheme,
            proof_key: proof.as_ref().map(|p| p.thumbprint()),
            certificate,
            accept_unbound: self.config.accept_unbound,
        };
        claims
            .binding()
            .check(&presented)
            .map_err(|e: BindingError| {
                let reason = e.reason();
                Rejection::new(
                    StatusCode::UNAUTHORIZED,
                    ErrorCode::from(&e),
                    &[scheme],
                    reason,
                    e.to_string(),
                )
            })?;

        // Scopes are stateless too: check them before anything is recorded.
        let missing: Vec<&str> = required_scopes
            .iter()
            .map(String::as_str)
            .filter(|s| !claims.scopes().any(|have| have == *s))
            .collect();
        if !missing.is_empty() {
            let rejection = Rejection::new(
                StatusCode::FORBIDDEN,
                ErrorCode::InsufficientScope,
                &[scheme],
                "insufficient_scope",
                "the token lacks a required scope",
            );
            return Err(rejection.with_scope(required_scopes.join(" ")));
        }
        // Every check passed: record the proof, atomically (rule 11).
        if let Some(proof) = &proof {
            let key = proof.replay_key();
            match self
                .replay
                .insert_once(*key.digest(), key.expires_at(), now)
                .await
            {
                Ok(true) => {}
                Ok(false) => return Err(self.proof_rejection(&ProofError::Replayed, now)),
                Err(error) => {
                    tracing::error!(%error, "replay cache unavailable; refusing");
                    return Err(Rejection::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        ErrorCode::TemporarilyUnavailable,
                        &[scheme],
                        "replay_cache_unavailable",
                        "try again later",
                    ));
                }
            }
        }

        Ok(VerifiedToken {
            claims,
            scheme,
            jkt: proof.map(|p| p.thumbprint().clone()),
        })
    }
}
