//! Gateway mode: a reverse proxy that enforces the binding in front of an API written in any
//! language. Verified requests go to the upstream with the claims in `X-Keybound-*` headers;
//! those headers, the credentials and hop-by-hop headers are removed from what the client sent,
//! so the upstream can trust them.

use keybound_tls::{ClientCertLayer, ForwardedCertificates};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::layer::ResourceLayer;
use crate::verifier::{ResourceVerifier, VerifiedToken};

/// Headers the gateway sets; any the client sends are removed first.
pub const CLAIM_HEADER_PREFIX: &str = "x-keybound-";

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus `host`.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// Where and how the gateway forwards.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Upstream base URL, e.g. `http://127.0.0.1:3000`.
    pub upstream: String,
    /// Largest request or response body forwarded. Defaults to 10 MiB.
    pub max_body: usize,
    /// Upstream request timeout. Defaults to 30 s.
    pub timeout: Duration,
    /// Proxies trusted to forward client certificates (for certificate-bound tokens behind a
    /// TLS-terminating proxy). Defaults to none: forwarded certificates are stripped, ignored.
    pub forwarded_certificates: Option<ForwardedCertificates>,
    /// Where the gateway answers its own health checks instead of forwarding:
    /// `<prefix>/healthz` (liveness) and `<prefix>/readyz` (replay cache and issuer keys).
    /// Defaults to `/_keybound`, out of the way of the upstream's own paths.
    pub health_prefix: String,
}

impl GatewayConfig {
    /// Forwards to `upstream` with the default limits.
    #[must_use]
    pub fn new(upstream: &str) -> Self {
        Self {
            upstream: upstream.trim_end_matches('/').to_owned(),
            max_body: 10 << 20,
            timeout: Duration::from_secs(30),
            forwarded_certificates: None,
            health_prefix: "/_keybound".to_owned(),
        }
    }
}

#[derive(Debug)]
struct Gateway {
    config: GatewayConfig,
    http: reqwest::Client,
}

fn strip(headers: &HeaderMap, drop_credentials: bool) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let n = name.as_str();
        let credential = n == "authorization" || n == "dpop";
        if HOP_BY_HOP.contains(&n)
            || n.starts_with(CLAIM_HEADER_PREFIX)
            || (drop_credentials && credential)
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

fn claim_headers(token: &VerifiedToken, headers: &mut HeaderMap) {
    let claims = &token.claims;
    let mut set = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    set("x-keybound-subject", &claims.sub);
    set("x-keybound-client-id", &claims.client_id);
    set(
        "x-keybound-scope",
        claims.scope.as_deref().unwrap_or_default(),
    );
    set("x-keybound-token-type", token.scheme.name());
    if let Some(jkt) = &token.jkt {
        set("x-keybound-jkt", jkt.as_str());
    }
}

fn bad_gateway(why: &str) -> Response {
    tracing::warn!(why, "upstream request failed");
    (StatusCode::BAD_GATEWAY, "upstream unavailable").into_response()
}

async fn forward(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some(token) = parts.extensions.get::<VerifiedToken>().cloned() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let Ok(body) = axum::body::to_bytes(body, gateway.config.max_body).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut headers = strip(&parts.headers, true);
    claim_headers(&token, &mut headers);
    let upstream = gateway
        .http
        .request(
            parts.method.clone(),
            format!("{}{path}", gateway.config.upstream),
        )
        .headers(headers)
        .body(body)
        .send()
        .await;
    let upstream = match upstream {
        Ok(response) => response,
        Err(e) => return bad_gateway(&e.to_string()),
    };
    let status = upstream.status();
    let headers = strip(upstream.headers(), false);
    if upstream
        .content_length()
        .is_some_and(|l| l > gateway.config.max_body as u64)
    {
        return bad_gateway("response too large");
    }
    let Ok(bytes) = upstream.bytes().await else {
        return bad_gateway("reading the response failed");
    };
    if bytes.len() > gateway.config.max_body {
        return bad_gateway("response too large");
    }
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response.headers_mut().remove(header::CONTENT_LENGTH);
    response
}

/// A router that verifies every request with `verifier` and forwards the verified ones.
///
/// # Errors
/// A description if the HTTP client cannot be built.
pub fn gateway_router(
    verifier: Arc<ResourceVerifier>,
    config: GatewayConfig,
) -> Result<axum::Router, String> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(config.timeout)
        .build()
        .map_err(|e| e.to_string())?;
    let prefix = config.health_prefix.trim_end_matches('/').to_owned();
    if !prefix.starts_with('/') || prefix.contains(['?', '#', '{', '}', '*']) {
        return Err(format!(
            "health prefix {prefix:?}: must be a path like /_keybound"
        ));
    }
    let certificates = ClientCertLayer::new(config.forwarded_certificates.clone());
    let gateway = Arc::new(Gateway { config, http });
    let protected = axum::Router::new()
        .fallback(forward)
        .with_state(gateway)
        .layer(ResourceLayer::new(verifier.clone()))
        .layer(certificates);
    let health = axum::Router::new()
        .route(&format!("{prefix}/healthz"), get(|| async { "ok" }))
        .route(&format!("{prefix}/readyz"), get(readyz))
        .with_state(verifier);
    Ok(health.merge(protected))
}

/// Ready when the replay cache answers and the issuer's keys are loaded; else 503 naming what
/// is not.
async fn readyz(State(verifier): State<Arc<ResourceVerifier>>) -> Response {
    match verifier.ready().await {
        Ok(()) => "ready".into_response(),
        Err(failures) => {
            tracing::warn!(?failures, "not ready");
            let body = serde_json::json!({ "ready": false, "failures": failures });
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
        }
    }
}
