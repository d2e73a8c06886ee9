//! Where the AS's public keys come from: a fixed key set, or the issuer's JWKS, discovered from
//! its RFC 8414 metadata, refreshed on a schedule and when a token names an unknown `kid`
//! (at most once per `min_refresh_interval`, so a storm of bogus `kid`s cannot hammer the AS).

use std::sync::Arc;
use std::time::{Duration, Instant};

use keybound_core::KeySet;
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

/// Largest metadata or JWKS document accepted.
pub const MAX_DOCUMENT: usize = 64 * 1024;

/// Why keys could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFetchError {
    /// The request failed or timed out.
    #[error("fetching {url}: {message}")]
    Http {
        /// What was fetched.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The response is not the expected document.
    #[error("{url} returned an invalid document: {message}")]
    Invalid {
        /// What was fetched.
        url: String,
        /// What is wrong with it.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    #[test]
    fn metadata_locations() {
        assert_eq!(
            super::metadata_urls("https://as.example"),
            ["https://as.example/.well-known/oauth-authorization-server"]
        );
        assert_eq!(
            super::metadata_urls("https://as.example/"),
            ["https://as.example/.well-known/oauth-authorization-server"]
        );
        assert_eq!(
            super::metadata_urls("https://as.example/tenant"),
            [
                "https://as.example/.well-known/oauth-authorization-server/tenant",
                "https://as.example/tenant/.well-known/oauth-authorization-server"
            ]
        );
        assert!(super::metadata_urls("as.example").is_empty());
    }
}

#[derive(Debug)]
struct Fetched {
    keys: Arc<KeySet>,
    at: Instant,
}

/// The issuer's keys as fetched over HTTP.
#[derive(Debug)]
pub struct JwksSource {
    issuer: String,
    http: reqwest::Client,
    jwks_uri: RwLock<Option<String>>,
    current: RwLock<Option<Fetched>>,
    last_attempt: Mutex<Option<Instant>>,
    min_refresh_interval: Duration,
    max_age: Duration,
}

/// Keys that change while the process runs, for [`KeySource::Current`].
pub trait CurrentKeys: Send + Sync + std::fmt::Debug {
    /// The keys as they are now. Called once per request: make it cheap (an `Arc` clone).
    fn current_keys(&self) -> Arc<KeySet>;
}

/// A key source for the resource verifier.
#[derive(Debug)]
pub enum KeySource {
    /// Keys given at construction (tests, or keys that never rotate).
    Static(Arc<KeySet>),
    /// Keys read on every request from their owner: an AS in the same process, whose key ring
    /// rotates while it runs.
    Current(Arc<dyn CurrentKeys>),
    /// The issuer's JWKS over HTTP.
    Jwks(Box<JwksSource>),
    /// Opaque tokens, introspected at the AS (RFC 7662).
    Introspection(Box<crate::IntrospectionSource>),
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, KeyFetchError> {
    let http_err = |message: String| KeyFetchError::Http {
        url: url.to_owned(),
        message,
    };
    let mut response = http
        .get(url)
        .send()
        .await
        .map_err(|e| http_err(e.to_string()))?;
    if !response.status().is_success() {
        return Err(http_err(format!("status {}", response.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| http_err(e.to_string()))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(http_err(format!("larger than {MAX_DOCUMENT} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| KeyFetchError::Invalid {
        url: url.to_owned(),
        message: e.to_string(),
    })
}

/// Where an issuer's metadata may be: the RFC 8414 §3.1 location (the well-known segment
/// inserted between the host and the issuer's path), then the form that appends it to the whole
/// issuer (OpenID Connect Discovery style, what many servers serve).
fn metadata_urls(issuer: &str) -> Vec<String> {
    const WELL_KNOWN: &str = "/.well-known/oauth-authorization-server";
    let Some((scheme, rest)) = issuer.split_once("://") else {
        return Vec::new();
    };
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let path = path.trim_end_matches('/');
    let rfc8414 = format!("{scheme}://{authority}{WELL_KNOWN}{path}");
    let appended = format!("{}{WELL_KNOWN}", issuer.trim_end_matches('/'));
    if rfc8414 == appended {
        vec![rfc8414]
    } else {
        vec![rfc8414, appended]
    }
}

impl JwksSource {
    /// Keys of `issuer`, discovered from its RFC 8414 metadata (`/.well-known/oauth-authorization-server`
    /// inserted before the issuer's path, then appended to the issuer as a fallback).
    /// Redirects are not followed; requests time out after 5 s.
    ///
    /// # Errors
    /// [`KeyFetchError::Http`] if the HTTP client cannot be built.
    pub fn new(issuer: &str) -> Result<Self, KeyFetchError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| KeyFetchError::Http {
                url: issuer.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Self {
            issuer: issuer.to_owned(),
            http,
            jwks_uri: RwLock::new(None),
            current: RwLock::new(None),
            last_attempt: Mutex::new(None),
            min_refresh_interval: Duration::from_secs(30),
            max_age: Duration::from_secs(300),
        })
    }

    /// Sets how often a refresh may be attempted (default 30 s) and how old keys may get before
    /// a scheduled refresh (default 300 s).
    #[must_use]
    pub fn with_intervals(mut self, min_refresh_interval: Duration, max_age: Duration) -> Self {
        self.min_refresh_interval = min_refresh_interval;
        self.max_age = max_age;
        self
    }

    async fn jwks_uri(&self) -> Result<String, KeyFetchError> {
        if let Some(uri) = self.jwks_uri.read().await.clone() {
            return Ok(uri);
        }
        let mut candidates = metadata_urls(&self.issuer).into_iter();
        let mut attempt = None;
        for candidate in candidates.by_ref() {
            match get_json(&self.http, &candidate).await {
                Ok(document) => {
                    attempt = Some(Ok((candidate, document)));
                    break;
                }
                Err(e) => attempt = Some(Err(e)),
            }
        }
        let (url, metadata) = attempt.unwrap_or_else(|| {
            Err(KeyFetchError::Invalid {
                url: self.issuer.clone(),
                message: "not an http(s) issuer".into(),
            })
        })?;
        let invalid = |message: &str| KeyFetchError::Invalid {
            url: url.clone(),
            message: message.to_owned(),
        };
        if metadata.get("issuer").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(invalid("issuer does not match (RFC 8414 §3.3)"));
        }
        let uri = metadata
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("no jwks_uri"))?
            .to_owned();
        *self.jwks_uri.write().await = Some(uri.clone());
        Ok(uri)
    }

    async fn fetch(&self) -> Result<Arc<KeySet>, KeyFetchError> {
        let uri = self.jwks_uri().await?;
        let document = get_json(&self.http, &uri).await?;
        let keys = KeySet::from_jwks_json(document.to_string().as_bytes()).map_err(|e| {
            KeyFetchError::Invalid {
                url: uri.clone(),
                message: e.to_string(),
            }
        })?;
        let keys = Arc::new(keys);
        *self.current.write().await = Some(Fetched {
            keys: keys.clone(),
            at: Instant::now(),
        });
        tracing::info!(keys = keys.len(), %uri, "fetched the issuer's JWKS");
        Ok(keys)
    }

    /// Refreshes unless one was attempted within `min_refresh_interval`. Returns the keys if a
    /// fetch happened and succeeded.
    async fn refresh_rate_limited(&self) -> Option<Arc<KeySet>> {
        {
            let mut last = self.last_attempt.lock().await;
            if last.is_some_and(|t| t.elapsed() < self.min_refresh_interval) {
                return None;
            }
            *last = Some(Instant::now());
        }
        match self.fetch().await {
            Ok(keys) => Some(keys),
            Err(error) => {
                tracing::warn!(%error, "JWKS refresh failed; keeping the previous keys");
                None
            }
        }
    }
}

impl KeySource {
    /// The current keys, fetching them first if there are none yet or they are older than the
    /// maximum age. `None` when no keys could ever be fetched.
    pub(crate) async fn keys(&self) -> Option<Arc<KeySet>> {
        match self {
            Self::Static(keys) => Some(keys.clone()),
            Self::Current(source) => Some(source.current_keys()),
            Self::Introspection(_) => None,
            Self::Jwks(source) => {
                let (keys, stale) = match source.current.read().await.as_ref() {
                    Some(f) => (Some(f.keys.clone()), f.at.elapsed() > source.max_age),
                    None => (None, true),
                };
                if stale && let Some(fresh) = source.refresh_rate_limited().await {
                    return Some(fresh);
                }
                keys
            }
        }
    }

    /// Called when a token names an unknown `kid`: a rate-limited refetch.
    pub(crate) async fn unknown_kid(&self) -> Option<Arc<KeySet>> {
        match self {
            Self::Static(_) | Self::Current(_) | Self::Introspection(_) => None,
            Self::Jwks(source) => source.refresh_rate_limited().await,
        }
    }
}
