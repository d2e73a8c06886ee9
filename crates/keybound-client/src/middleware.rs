//! A `reqwest-middleware` layer: every request through an ordinary client gets
//! `Authorization: DPoP <token>` and a fresh proof, and a `use_dpop_nonce` challenge is retried
//! once with the server's nonce (when the body can be replayed).

use std::sync::{Arc, RwLock};

use http::Extensions;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};

use crate::{ClientError, DpopClient, Role};

/// Adds DPoP to every request. Share the token with [`DpopMiddleware::token_handle`] to replace
/// it after a refresh.
///
/// ```no_run
/// # async fn run(client: std::sync::Arc<keybound_client::DpopClient>, token: String) -> Result<(), Box<dyn std::error::Error>> {
/// use keybound_client::DpopMiddleware;
/// let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(DpopMiddleware::new(client, token))
///     .build();
/// let orders = http.get("https://api.example.com/orders").send().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DpopMiddleware {
    client: Arc<DpopClient>,
    token: Arc<RwLock<String>>,
}

impl DpopMiddleware {
    /// Proofs by `client`'s key for `access_token`.
    #[must_use]
    pub fn new(client: Arc<DpopClient>, access_token: impl Into<String>) -> Self {
        Self {
            client,
            token: Arc::new(RwLock::new(access_token.into())),
        }
    }

    /// The shared token, to replace after a refresh.
    #[must_use]
    pub fn token_handle(&self) -> Arc<RwLock<String>> {
        self.token.clone()
    }
}

fn fail(error: ClientError) -> reqwest_middleware::Error {
    reqwest_middleware::Error::middleware(error)
}

#[async_trait::async_trait]
impl Middleware for DpopMiddleware {
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let token = self
            .token
            .read()
            .map(|t| t.clone())
            .map_err(|_| fail(ClientError::Key("token lock poisoned".into())))?;
        let authorization = HeaderValue::from_str(&format!("DPoP {token}"))
            .map_err(|e| fail(ClientError::Http(e.to_string())))?;
        let mut pending = Some(request);
        for attempt in 0..2 {
            let Some(original) = pending.take() else {
                break;
            };
            // Keep a copy for the retry if the body allows it (streams do not).
            pending = original.try_clone();
            let mut request = original;
            let proof = self
                .client
                .proof(
                    request.method().as_str(),
                    request.url().as_str(),
                    Some(&token),
                )
                .map_err(fail)?;
            let headers = request.headers_mut();
            headers.insert(AUTHORIZATION, authorization.clone());
            headers.insert(
                "dpop",
                HeaderValue::from_str(&proof)
                    .map_err(|e| fail(ClientError::Http(e.to_string())))?,
            );
            let url = request.url().clone();
            let response = next.clone().run(request, extensions).await?;
            self.client
                .remember_nonce(Role::Resource, &url, response.headers());
            if attempt == 0
                && pending.is_some()
                && self.client.resource_wants_nonce(&response, &url)
            {
                self.client.count_retry();
                continue;
            }
            return Ok(response);
        }
        Err(fail(ClientError::Http(
            "the request could not be retried".into(),
        )))
    }
}
