//! # keybound-server
//!
//! The keybound Authorization Server as a library: [`router`] returns an axum `Router` with
//! RFC 8414 metadata, the JWKS, `/token` (client credentials, refresh tokens and, with
//! [`AppState::with_authorization_store`], authorization codes; DPoP-bound when the client
//! sends a proof), `/authorize` with sign-in and consent pages, `/par`, `/introspect`,
//! `/revoke` and `/metrics`. The binary
//! (`keybound serve`) adds configuration files, listeners and logging; this crate opens no
//! socket and reads no file except the key directory in [`keys`].
//!
//! Every DPoP proof is checked by `keybound_core::dpop::ProofVerifier`, the verifier the
//! resource server uses too. Every network input has a size limit; store failures are answered
//! with 503 and nothing is issued unchecked.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use keybound_server::{AppState, Config, keys, router, system_clock};
//! use keybound_store::{MemoryReplayCache, SqliteStore};
//!
//! let config = Config::from_toml(r#"issuer = "http://127.0.0.1:8080""#)?.validate()?;
//! let ring = keys::load_or_create(&config.config.data_dir, config.signing_alg)?;
//! let store = SqliteStore::open(&config.config.data_dir.join("keybound.db")).await?;
//! let state = AppState::new(config, ring, Arc::new(MemoryReplayCache::new(1 << 20)), Arc::new(store), system_clock());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, router(Arc::new(state))).await?;
//! # Ok(()) }
//! ```

mod auth_limit;
mod authorize;
mod clients;
mod code_grant;
mod config;
mod error;
mod form;
mod introspect;
pub mod keys;
mod metrics;
mod pages;
mod par;
mod state;
mod token;
pub mod users;

use std::sync::Arc;

use axum::Json;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

pub use clients::{AuthFailure, hash_secret};
pub use config::{
    AuthMethod, AuthorizeConfig, ClientAuthenticationConfig, ClientConfig, ClientTls, Config,
    ConfigError, DpopConfig, ForwardedCertFormat, MtlsConfig, NonceRequirement, StoreConfig,
    TokenConfig, UserConfig, Validated,
};
pub use error::OAuthError;
pub use metrics::Metrics;
pub use state::{AppState, Clock, system_clock};

/// Largest request body accepted by the form endpoints.
pub const MAX_FORM_BODY: usize = 16 * 1024;

/// The Authorization Server's routes.
///
/// Client certificates (RFC 8705) reach the endpoints through [`keybound_tls::ClientCertLayer`],
/// applied here with the configured trusted proxies: serve with
/// `into_make_service_with_connect_info::<keybound_tls::Peer>()` on a [`keybound_tls::TlsListener`],
/// or `::<std::net::SocketAddr>()` on a TCP listener behind a trusted proxy.
pub fn router(state: Arc<AppState>) -> axum::Router {
    let certificates = keybound_tls::ClientCertLayer::new(state.settings.forwarded.clone());
    axum::Router::new()
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/.well-known/openid-configuration", get(metadata))
        .route("/jwks", get(jwks))
        .route("/token", post(token::token))
        .route("/authorize", get(authorize::authorize))
        .route("/login", post(authorize::login))
        .route("/consent", post(authorize::consent))
        .route("/par", post(par::par))
        .route("/introspect", post(introspect::introspect))
        .route("/revoke", post(introspect::revoke))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(MAX_FORM_BODY))
        .layer(certificates)
        .with_state(state)
}

/// RFC 8414 metadata (also served as OpenID discovery).
fn metadata_document(state: &AppState) -> serde_json::Value {
    let issuer = state.issuer();
    let mut scopes: Vec<&str> = state
        .settings
        .config
        .clients
        .iter()
        .flat_map(|c| c.scopes.iter().map(String::as_str))
        .collect();
    scopes.sort_unstable();
    scopes.dedup();
    let algs: Vec<&str> = state
        .settings
        .dpop_algorithms
        .iter()
        .map(|a| a.name())
        .collect();
    let auth_methods = [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
        "tls_client_auth",
        "self_signed_tls_client_auth",
        "none",
    ];
    let signing = ["ES256", "EdDSA", "PS256"];
    let mut document = json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "introspection_endpoint": format!("{issuer}/introspect"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "grant_types_supported": ["client_credentials", "refresh_token"],
        "response_types_supported": [],
        "scopes_supported": scopes,
        "token_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": signing,
        "introspection_endpoint_auth_methods_supported": &auth_methods[..5],
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "dpop_signing_alg_values_supported": algs,
        "code_challenge_methods_supported": ["S256"],
        "tls_client_certificate_bound_access_tokens": true,
        "authorization_response_iss_parameter_supported": false,
    });
    if state.authz.is_some() {
        document["authorization_endpoint"] = json!(format!("{issuer}/authorize"));
        document["pushed_authorization_request_endpoint"] = json!(format!("{issuer}/par"));
        document["require_pushed_authorization_requests"] = json!(
            state
                .settings
                .config
                .authorize
                .require_pushed_authorization_requests
        );
        document["grant_types_supported"] =
            json!(["authorization_code", "client_credentials", "refresh_token"]);
        document["response_types_supported"] = json!(["code"]);
        document["response_modes_supported"] = json!(["query"]);
        document["authorization_response_iss_parameter_supported"] = json!(true);
    }
    // RFC 8705 §5: where certificate-authenticated calls go.
    if let Some(base) = &state.settings.mtls_base {
        document["mtls_endpoint_aliases"] = json!({
            "token_endpoint": format!("{base}/token"),
            "introspection_endpoint": format!("{base}/introspect"),
            "revocation_endpoint": format!("{base}/revoke"),
            "pushed_authorization_request_endpoint": format!("{base}/par"),
        });
    }
    document
}

async fn metadata(State(state): State<Arc<AppState>>) -> Response {
    let mut response = Json(metadata_document(&state)).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    response
}

async fn jwks(State(state): State<Arc<AppState>>) -> Response {
    let mut response = Json(state.published().ring.jwks().clone()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    response
}

/// Readiness: 200 when every store answers, 503 naming the one that does not. A load balancer
/// sends no traffic to a replica whose stores are down (which would answer 503 anyway).
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let mut failures = Vec::new();
    if let Err(e) = state.grants.ping().await {
        failures.push(format!("grant store: {e}"));
    }
    if let Err(e) = state.replay.ping().await {
        failures.push(format!("replay cache: {e}"));
    }
    if failures.is_empty() {
        "ready".into_response()
    } else {
        tracing::warn!(?failures, "not ready");
        let body = json!({ "ready": false, "failures": failures });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}
