//! `application/x-www-form-urlencoded` request bodies, with RFC 6749 §3.2's rule that a
//! parameter must not appear twice.

use std::collections::HashMap;

use axum::http::{HeaderMap, header};
use keybound_core::ErrorCode;

use crate::error::OAuthError;

/// Most parameters accepted in one request.
const MAX_PARAMS: usize = 32;

/// A parsed form: each name once.
#[derive(Debug, Default)]
pub(crate) struct Form(HashMap<String, String>);

impl Form {
    /// Parses a body, refusing repeated names, too many parameters and a wrong content type.
    ///
    /// # Errors
    /// `invalid_request`.
    pub(crate) fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Self, OAuthError> {
        let is_form = content_type
            .and_then(|ct| ct.split(';').next())
            .is_some_and(|ct| {
                ct.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !is_form {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        Self::fields(body).map(Self)
    }

    /// Reads a query string (`/authorize`) by the same rules as a body: each name at most once
    /// (RFC 6749 §3.1), at most the same number of parameters.
    ///
    /// # Errors
    /// `invalid_request`.
    pub(crate) fn parse_query(query: &str) -> Result<HashMap<String, String>, OAuthError> {
        Self::fields(query.as_bytes())
    }

    fn fields(body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
        let mut map = HashMap::new();
        for (name, value) in form_urlencoded::parse(body) {
            if map.len() == MAX_PARAMS {
                return Err(OAuthError::new(
                    ErrorCode::InvalidRequest,
                    "too many parameters",
                ));
            }
            if map
                .insert(name.clone().into_owned(), value.into_owned())
                .is_some()
            {
                return Err(OAuthError::new(
                    ErrorCode::InvalidRequest,
                    format!("parameter `{}` is repeated", sanitize(&name)),
                ));
            }
        }
        Ok(map)
    }

    /// Parses a request's body, using its `Content-Type` header.
    ///
    /// # Errors
    /// `invalid_request`, as [`Form::parse`].
    pub(crate) fn from_request(headers: &HeaderMap, body: &[u8]) -> Result<Self, OAuthError> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        Self::parse(content_type, body)
    }

    /// Every parameter, empty values included.
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// A parameter; empty values count as absent (RFC 6749 §3.1).
    #[must_use]
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A required parameter.
    ///
    /// # Errors
    /// `invalid_request` naming the parameter.
    pub(crate) fn require(&self, name: &'static str) -> Result<&str, OAuthError> {
        self.get(name).ok_or_else(|| {
            OAuthError::new(
                ErrorCode::InvalidRequest,
                format!("missing parameter `{name}`"),
            )
        })
    }
}

/// A parameter name fit for an error description (RFC 6749 allows %x20-21 / %x23-5B / %x5D-7E).
fn sanitize(text: &str) -> String {
    text.chars()
        .take(40)
        .filter(|c| keybound_core::challenge::is_error_text_char(*c))
        .collect()
}
