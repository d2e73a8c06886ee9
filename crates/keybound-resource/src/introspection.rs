//! Opaque access tokens through RFC 7662 introspection. The answer is cached briefly (default
//! 30 s, never past the token's `exp`), so a revoked token stops working within that time.

use std::time::Duration;

use keybound_core::access_token::{Audience, Confirmation};
use keybound_core::{AccessTokenClaims, UnixTime};
use serde_json::Value;

/// Why introspection gave no usable answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntrospectionError {
    /// The AS could not be reached or answered with an error status.
    #[error("introspection failed: {0}")]
    Unavailable(String),
    /// The token is inactive, or its claims do not fit this resource.
    #[error("the token is not active here: {0}")]
    Inactive(&'static str),
}

/// Introspects tokens at an AS with client credentials.
#[derive(Debug)]
pub struct IntrospectionSource {
    endpoint: String,
    client_id: String,
    client_secret: String,
    http: reqwest::Client,
    ttl: Duration,
}

impl IntrospectionSource {
    /// Calls `endpoint` authenticated with `client_secret_basic`. No redirects; 5 s timeout.
    ///
    /// # Errors
    /// [`IntrospectionError::Unavailable`] if the HTTP client cannot be built.
    pub fn new(
        endpoint: &str,
        client_id: &str,
        client_secret: &str,
    ) -> Result<Self, IntrospectionError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| IntrospectionError::Unavailable(e.to_string()))?;
        Ok(Self {
            endpoint: endpoint.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            http,
            ttl: Duration::from_secs(30),
        })
    }

    /// How long an answer is reused (default 30 s).
    #[must_use]
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Asks the AS about `token` and checks the answer for this issuer and audience.
    pub(crate) async fn introspect(
        &self,
        token: &str,
        issuer: &str,
        audience: &str,
        now: UnixTime,
    ) -> Result<AccessTokenClaims, IntrospectionError> {
        let response = self
            .http
            .post(&self.endpoint)
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .map_err(|e| IntrospectionError::Unavailable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(IntrospectionError::Unavailable(format!(
                "status {}",
                response.status()
            )));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| IntrospectionError::Unavailable(e.to_string()))?;
        if bytes.len() > crate::MAX_DOCUMENT {
            return Err(IntrospectionError::Unavailable("answer too large".into()));
        }
        let answer: Value = serde_json::from_slice(&bytes)
            .map_err(|e| IntrospectionError::Unavailable(e.to_string()))?;
        claims_from(&answer, issuer, audience, now)
    }
}

/// RFC 7662 §2.2 answer → claims, with RFC 9449 §6.2: a `cnf.jkt` token's `token_type` is `DPoP`.
fn claims_from(
    answer: &Value,
    issuer: &str,
    audience: &str,
    now: UnixTime,
) -> Result<AccessTokenClaims, IntrospectionError> {
    let text = |name: &str| answer.get(name).and_then(Value::as_str);
    if answer.get("active").and_then(Value::as_bool) != Some(true) {
        return Err(IntrospectionError::Inactive("inactive"));
    }
    if text("iss").is_some_and(|iss| iss != issuer) {
        return Err(IntrospectionError::Inactive("another issuer"));
    }
    let aud = match answer.get("aud") {
        Some(Value::String(a)) => Audience::One(a.clone()),
        Some(Value::Array(all)) => Audience::Many(
            all.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        _ => Audience::One(audience.to_owned()),
    };
    if !aud.contains(audience) {
        return Err(IntrospectionError::Inactive("another audience"));
    }
    let exp = answer
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or(IntrospectionError::Inactive("no exp"))?;
    if exp <= now.as_secs() {
        return Err(IntrospectionError::Inactive("expired"));
    }
    let cnf: Option<Confirmation> = match answer.get("cnf") {
        None => None,
        Some(value) => Some(serde_json::from_value(value.clone()).map_err(|_| {
            IntrospectionError::Inactive("cnf has members this resource cannot check")
        })?),
    };
    let dpop = cnf.as_ref().is_some_and(|c| c.jkt.is_some());
    if dpop && text("token_type").is_some_and(|t| !t.eq_ignore_ascii_case("DPoP")) {
        return Err(IntrospectionError::Inactive(
            "token_type is not DPoP for a DPoP-bound token",
        ));
    }
    let client_id = text("client_id").unwrap_or_default().to_owned();
    Ok(AccessTokenClaims {
        iss: text("iss").unwrap_or(issuer).to_owned(),
        sub: text("sub").map_or_else(|| client_id.clone(), str::to_owned),
        aud,
        exp,
        iat: answer
            .get("iat")
            .and_then(Value::as_u64)
            .unwrap_or_default(),
        nbf: None,
        jti: text("jti").unwrap_or_default().to_owned(),
        client_id,
        scope: text("scope").map(str::to_owned),
        cnf,
    })
}
