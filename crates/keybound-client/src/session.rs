//! A token that keeps itself fresh: cached until shortly before it expires, then renewed with
//! the refresh token (rotated by the AS), or with a new client-credentials grant if there is
//! none or it is refused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::{ClientAuth, ClientError, DpopClient, IssuerMetadata, TokenResponse};

#[derive(Debug)]
struct Held {
    token: TokenResponse,
    renew_at: Instant,
}

/// Client-credentials tokens for one client, renewed before expiry. Concurrent callers share
/// one renewal.
#[derive(Debug)]
pub struct TokenSession {
    client: Arc<DpopClient>,
    issuer: IssuerMetadata,
    auth: ClientAuth,
    scope: Option<String>,
    margin: Duration,
    held: Mutex<Option<Held>>,
}

impl TokenSession {
    /// Tokens from `issuer` for `auth`, renewed 30 s before they expire.
    #[must_use]
    pub fn new(
        client: Arc<DpopClient>,
        issuer: IssuerMetadata,
        auth: ClientAuth,
        scope: Option<String>,
    ) -> Self {
        Self {
            client,
            issuer,
            auth,
            scope,
            margin: Duration::from_secs(30),
            held: Mutex::new(None),
        }
    }

    /// Renew this long before expiry (default 30 s).
    #[must_use]
    pub fn with_refresh_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    fn hold(&self, token: TokenResponse) -> Held {
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(60));
        Held {
            renew_at: Instant::now() + lifetime.saturating_sub(self.margin),
            token,
        }
    }

    /// A current access token: the cached one, or a renewed one.
    ///
    /// # Errors
    /// The [`ClientError`] of the grant that failed.
    pub async fn access_token(&self) -> Result<String, ClientError> {
        let mut held = self.held.lock().await;
        if let Some(h) = held.as_ref()
            && Instant::now() < h.renew_at
        {
            return Ok(h.token.access_token.clone());
        }
        let refreshed = match held.as_ref().and_then(|h| h.token.refresh_token.clone()) {
            Some(refresh_token) => self
                .client
                .refresh(&self.issuer, &self.auth, &refresh_token)
                .await
                .ok(),
            None => None,
        };
        let token = match refreshed {
            Some(token) => token,
            None => {
                self.client
                    .client_credentials(&self.issuer, &self.auth, self.scope.as_deref())
                    .await?
            }
        };
        let access = token.access_token.clone();
        *held = Some(self.hold(token));
        Ok(access)
    }
}
