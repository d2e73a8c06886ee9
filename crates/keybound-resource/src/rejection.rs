//! Rejections at the protected resource, rendered once: the status and `WWW-Authenticate`
//! challenge of standards §1.3, `DPoP-Nonce` when a nonce is asked for, CORS exposure.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keybound_core::challenge::{Challenge, Scheme};
use keybound_core::{Algorithm, ErrorCode, Nonce};

/// Headers a browser client must be able to read (RFC 9449 §7.1, §8).
pub(crate) const EXPOSE: &str = "WWW-Authenticate, DPoP-Nonce";

/// Why a request was refused, with what the response must carry.
#[derive(Debug, Clone)]
pub struct Rejection {
    status: StatusCode,
    /// `None`: no credentials, challenges without an error.
    error: Option<ErrorCode>,
    /// The scheme(s) whose challenge carries the error.
    schemes: Vec<Scheme>,
    description: String,
    scope: Option<String>,
    nonce: Option<Nonce>,
    reason: &'static str,
    algs: Vec<Algorithm>,
    offer_bearer: bool,
}

impl Rejection {
    pub(crate) fn new(
        status: StatusCode,
        error: ErrorCode,
        schemes: &[Scheme],
        reason: &'static str,
        description: impl Into<String>,
    ) -> Self {
        Self {
            status,
            error: Some(error),
            schemes: schemes.to_vec(),
            description: description.into(),
            scope: None,
            nonce: None,
            reason,
            algs: Vec::new(),
            offer_bearer: false,
        }
    }

    /// No credentials at all: 401 with bare challenges (RFC 6750 §3.1, RFC 9449 §7.1).
    pub(crate) fn unauthenticated() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            error: None,
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::InvalidToken,
                &[],
                "no_credentials",
                "",
            )
        }
    }

    pub(crate) fn with_scope(mut self, scope: String) -> Self {
        self.scope = Some(scope);
        self
    }

    pub(crate) fn with_nonce(mut self, nonce: Nonce) -> Self {
        self.nonce = Some(nonce);
        self
    }

    pub(crate) fn with_offer(mut self, algs: &[Algorithm], offer_bearer: bool) -> Self {
        self.algs = algs.to_vec();
        self.offer_bearer = offer_bearer;
        self
    }

    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The wire error code, if any (none for a request without credentials).
    #[must_use]
    pub fn error(&self) -> Option<&ErrorCode> {
        self.error.as_ref()
    }

    /// A stable label for logs and metrics naming the check that failed.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    fn challenges(&self) -> Vec<String> {
        let mut out = Vec::new();
        let with_error = |scheme: Scheme| {
            let mut c = Challenge::new(scheme);
            if let Some(code) = &self.error
                && self.schemes.contains(&scheme)
            {
                c = c.error(code.clone());
                if !self.description.is_empty() {
                    c = c.description(&self.description);
                }
                if let Some(scope) = &self.scope {
                    c = c.scope(scope);
                }
            }
            if scheme == Scheme::DPoP {
                c = c.algs(&self.algs);
            }
            c.to_string()
        };
        out.push(with_error(Scheme::DPoP));
        if self.offer_bearer || self.schemes.contains(&Scheme::Bearer) {
            out.push(with_error(Scheme::Bearer));
        }
        out
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        let headers = response.headers_mut();
        for challenge in self.challenges() {
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                headers.append(header::WWW_AUTHENTICATE, value);
            }
        }
        if let Some(value) = self
            .nonce
            .as_ref()
            .and_then(|n| HeaderValue::from_str(n.as_str()).ok())
        {
            headers.insert("dpop-nonce", value);
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE),
        );
        response
    }
}
