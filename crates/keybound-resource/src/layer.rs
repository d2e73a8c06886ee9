//! The tower `Layer` and `Service`, and the axum extractor for handlers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keybound_core::ErrorCode;
use keybound_tls::ClientCertificate;
use tower::{Layer, Service};

use crate::rejection::{EXPOSE, Rejection};
use crate::verifier::{ResourceVerifier, VerifiedToken};

/// Protects the services it wraps: only requests with a valid, correctly bound access token
/// reach them, with the [`VerifiedToken`] in the request extensions.
///
/// ```no_run
/// # async fn demo(verifier: std::sync::Arc<keybound_resource::ResourceVerifier>) {
/// use axum::{Router, routing::get};
/// use keybound_resource::{ResourceLayer, VerifiedToken};
///
/// async fn whoami(token: VerifiedToken) -> String {
///     format!("{} via {}", token.claims.sub, token.claims.client_id)
/// }
/// let app: Router = Router::new()
///     .route("/orders", get(whoami))
///     .layer(ResourceLayer::new(verifier).require_scopes(&["orders:read"]));
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ResourceLayer {
    verifier: Arc<ResourceVerifier>,
    scopes: Arc<[String]>,
}

impl ResourceLayer {
    /// A layer checking requests with `verifier`.
    #[must_use]
    pub fn new(verifier: Arc<ResourceVerifier>) -> Self {
        Self {
            verifier,
            scopes: Arc::from(Vec::new()),
        }
    }

    /// Scopes every request through this layer must have (403 `insufficient_scope` otherwise).
    #[must_use]
    pub fn require_scopes(mut self, scopes: &[&str]) -> Self {
        self.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        self
    }
}

impl<S> Layer<S> for ResourceLayer {
    type Service = ResourceService<S>;

    fn layer(&self, inner: S) -> ResourceService<S> {
        ResourceService {
            inner,
            verifier: self.verifier.clone(),
            scopes: self.scopes.clone(),
        }
    }
}

/// The service [`ResourceLayer`] produces.
#[derive(Clone, Debug)]
pub struct ResourceService<S> {
    inner: S,
    verifier: Arc<ResourceVerifier>,
    scopes: Arc<[String]>,
}

fn expose(response: &mut Response) {
    response.headers_mut().insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE),
    );
}

impl<S, B> Service<Request<B>> for ResourceService<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The ready inner service handles this request; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        let scopes = self.scopes.clone();
        Box::pin(async move {
            // Behind `Router::nest` the path is stripped; htu needs the one the client sent.
            let uri = request
                .extensions()
                .get::<OriginalUri>()
                .map_or_else(|| request.uri().clone(), |o| o.0.clone());
            let method = request.method().as_str().to_owned();
            // Put there by keybound_tls::ClientCertLayer, from the TLS connection or a
            // trusted proxy; a client cannot set a request extension.
            let certificate = request
                .extensions()
                .get::<ClientCertificate>()
                .map(|c| c.thumbprint().clone());
            let checked = verifier
                .verify(
                    &method,
                    uri.path(),
                    uri.query(),
                    request.headers(),
                    certificate.as_ref(),
                    &scopes,
                )
                .await;
            match checked {
                Ok(token) => {
                    request.extensions_mut().insert(token);
                    let mut response = inner.call(request).await?;
                    expose(&mut response);
                    Ok(response)
                }
                Err(rejection) => Ok(rejection.into_response()),
            }
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for VerifiedToken {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or_else(|| {
            tracing::error!("VerifiedToken extracted on a route without ResourceLayer");
            Rejection::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::ServerError,
                &[],
                "not_protected",
                "route is not protected",
            )
        })
    }
}
