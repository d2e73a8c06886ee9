//! RFC 6749 §5.2 error responses: status, JSON body, `Cache-Control: no-store`, and the
//! `DPoP-Nonce` or `WWW-Authenticate` headers some errors carry. The one place errors become HTTP.

use std::borrow::Cow;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keybound_core::{ErrorCode, Nonce};
use serde_json::json;

/// An error returned by the token, introspection or revocation endpoint.
#[derive(Debug)]
pub struct OAuthError {
    code: ErrorCode,
    description: Cow<'static, str>,
    nonce: Option<Nonce>,
    basic_challenge: bool,
    retry_after: Option<u64>,
}

impl OAuthError {
    /// An error with its code and a description safe to show the client.
    #[must_use]
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        let description: Cow<'static, str> = description.into();
        // RFC 6749 §5.2: error_description is %x20-21 / %x23-5B / %x5D-7E only.
        let allowed = keybound_core::challenge::is_error_text_char;
        let description = if description.chars().all(allowed) {
            description
        } else {
            Cow::Owned(
                description
                    .chars()
                    .map(|c| if allowed(c) { c } else { '\'' })
                    .collect(),
            )
        };
        Self {
            code,
            description,
            nonce: None,
            basic_challenge: false,
            retry_after: None,
        }
    }

    /// Attaches a fresh `DPoP-Nonce` (for `use_dpop_nonce`, RFC 9449 §8).
    #[must_use]
    pub fn with_nonce(mut self, nonce: Nonce) -> Self {
        self.nonce = Some(nonce);
        self
    }

    /// Adds `WWW-Authenticate: Basic` (the client tried HTTP Basic and failed, RFC 6749 §5.2).
    #[must_use]
    pub fn with_basic_challenge(mut self) -> Self {
        self.basic_challenge = true;
        self
    }

    /// Answers `429 Too Many Requests` with `Retry-After: secs` (RFC 6585 §4): the code stays
    /// (OAuth has none for rate limits), the status tells the client to wait.
    #[must_use]
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// The wire code.
    #[must_use]
    pub fn code(&self) -> &ErrorCode {
        &self.code
    }

    fn status(&self) -> StatusCode {
        if self.retry_after.is_some() {
            return StatusCode::TOO_MANY_REQUESTS;
        }
        match self.code {
            ErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// `Cache-Control: no-store` and `Pragma: no-cache`, on every token-endpoint response.
pub(crate) fn no_store(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

pub(crate) fn attach_nonce(response: &mut Response, nonce: Option<&Nonce>) {
    if let Some(value) = nonce.and_then(|n| HeaderValue::from_str(n.as_str()).ok()) {
        response.headers_mut().insert("dpop-nonce", value);
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = json!({ "error": self.code.as_str(), "error_description": self.description });
        let mut response = (status, Json(body)).into_response();
        no_store(&mut response);
        attach_nonce(&mut response, self.nonce.as_ref());
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.basic_challenge && status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"keybound\""),
            );
        }
        response
    }
}
