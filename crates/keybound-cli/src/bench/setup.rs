//! Setup: the DPoP key and the client, the token endpoint, the first token and API call
//! (through `keybound-client`, which keeps the server's nonce), and the request to repeat.

use aws_lc_rs::rand::SystemRandom;
use base64::Engine as _;
use keybound_client::{ClientAuth, DpopClient, IssuerMetadata, load_key_file};
use keybound_core::{Algorithm, SigningKey};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, Url};
use serde_json::json;

use super::args::{ClientArgs, LoadArgs, Mode, ResourceMode};
use super::run::{self, Target};
use crate::Failure;
use crate::client::{algorithm, dpop_client};

/// Everything the proofs and the timed phase need, found during setup.
#[derive(Debug)]
pub(super) struct Prepared {
    /// Mints the proofs: the DPoP key, and the nonce the server gave during setup, if any.
    pub(super) client: DpopClient,
    /// The request to repeat, without its proof.
    pub(super) target: Target,
    /// The access token the proofs carry `ath` for (resource mode).
    pub(super) token: Option<String>,
    /// The token's lifetime, when known (resource mode).
    pub(super) expires_in: Option<u64>,
}

/// The HTTP client of the timed phase: keep-alive connections for `concurrency` requests in
/// flight, redirects not followed, the same trust roots and TLS identity as setup.
pub(super) fn load_client(args: &ClientArgs, load: &LoadArgs) -> Result<reqwest::Client, Failure> {
    let read = |path: &std::path::Path| {
        keybound_tls::read_pem_file(path).map_err(|e| Failure(e.to_string()))
    };
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(load.timeout)
        .pool_max_idle_per_host(usize::try_from(load.concurrency).unwrap_or(1));
    if let Some(ca) = &args.ca {
        let cert = reqwest::Certificate::from_pem(&read(ca)?)
            .map_err(|e| Failure(format!("{}: {e}", ca.display())))?;
        builder = builder.add_root_certificate(cert);
    }
    if let (Some(cert), Some(key)) = (&args.cert, &args.cert_key) {
        // The same certificate and key as the setup client's TlsIdentity, which keeps its PEM
        // to itself: keybound-client has no way to lend it to another reqwest client.
        let mut pem = read(cert)?;
        pem.push(b'\n');
        pem.extend_from_slice(&read(key)?);
        let identity =
            reqwest::Identity::from_pem(&pem).map_err(|e| Failure(format!("TLS identity: {e}")))?;
        builder = builder.identity(identity);
    }
    builder
        .build()
        .map_err(|e| Failure(format!("cannot build the HTTP client: {e}")))
}

/// Setup: the DPoP key, the token endpoint, a first token request (which also gets a nonce
/// if the server wants one) and, in resource mode, a first call to the API.
pub(super) async fn prepare(mode: &Mode, args: &ClientArgs) -> Result<Prepared, Failure> {
    let alg = algorithm(args.alg.as_deref())?;
    let key = match &args.key {
        Some(path) => load_key_file(path, alg).map_err(|e| Failure(e.to_string()))?,
        None => {
            SigningKey::generate(alg.unwrap_or(Algorithm::Es256), &SystemRandom::new())
                .map_err(|e| Failure(format!("cannot generate a key: {e}")))?
                .0
        }
    };
    let client = dpop_client(
        key,
        args.ca.as_deref(),
        args.cert.as_deref().zip(args.cert_key.as_deref()),
    )?;
    match mode {
        Mode::Token(_) => {
            let (metadata, auth) = token_endpoint(&client, args).await?;
            client
                .client_credentials(&metadata, &auth, args.scope.as_deref())
                .await
                .map_err(|e| Failure(format!("setup: the token request was refused: {e}")))?;
            let target = token_target(&client, &metadata, &auth, args.scope.as_deref())?;
            Ok(Prepared {
                client,
                target,
                token: None,
                expires_in: None,
            })
        }
        Mode::Resource(resource) => {
            let (token, expires_in) = match &resource.token {
                Some(token) => (token.expose().to_owned(), None),
                None => {
                    let (metadata, auth) = token_endpoint(&client, args).await?;
                    let response = client
                        .client_credentials(&metadata, &auth, args.scope.as_deref())
                        .await
                        .map_err(|e| Failure(format!("setup: no access token: {e}")))?;
                    (response.access_token, response.expires_in)
                }
            };
            let target = resource_target(resource, &token)?;
            let body = resource.data.clone().map(String::into_bytes);
            let response = client
                .call(target.method.clone(), target.url.as_str(), &token, body)
                .await
                .map_err(|e| Failure(format!("setup: {}: {e}", target.url)))?;
            if !response.status().is_success() {
                let kind = run::refusal_kind(response).await;
                return Err(Failure(format!("setup: {} answered {kind}", resource.url)));
            }
            Ok(Prepared {
                client,
                target,
                token: Some(token),
                expires_in,
            })
        }
    }
}

/// The issuer's metadata (discovered, or made up from --token-endpoint) and the client
/// authentication: the secret, else the TLS certificate, else none (a public client).
async fn token_endpoint(
    client: &DpopClient,
    args: &ClientArgs,
) -> Result<(IssuerMetadata, ClientAuth), Failure> {
    let client_id = args.client_id.clone().unwrap_or_default();
    let auth = match (&args.client_secret, &args.cert) {
        (Some(secret), _) => ClientAuth::Secret {
            client_id,
            client_secret: secret.expose().to_owned(),
        },
        (None, Some(_)) => ClientAuth::Tls { client_id },
        (None, None) => ClientAuth::Public { client_id },
    };
    let metadata = match (&args.token_endpoint, &args.issuer) {
        (Some(endpoint), issuer) => serde_json::from_value(json!({
            "issuer": issuer.as_deref().unwrap_or(endpoint),
            "token_endpoint": endpoint,
        }))
        .map_err(|e| Failure(format!("--token-endpoint: {e}")))?,
        (None, Some(issuer)) => client
            .discover(issuer)
            .await
            .map_err(|e| Failure(format!("setup: {e}")))?,
        (None, None) => return Err(Failure("--issuer or --token-endpoint is required".into())),
    };
    Ok((metadata, auth))
}

/// The token request of the timed phase, as `DpopClient` sends it: form body, and the
/// client's authentication (Basic for a secret, `client_id` in the form otherwise).
fn token_target(
    client: &DpopClient,
    metadata: &IssuerMetadata,
    auth: &ClientAuth,
    scope: Option<&str>,
) -> Result<Target, Failure> {
    let endpoint = client.token_endpoint(metadata);
    let url = Url::parse(endpoint).map_err(|e| Failure(format!("{endpoint}: {e}")))?;
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials");
    if let Some(scope) = scope {
        form.append_pair("scope", scope);
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    match auth {
        ClientAuth::Secret {
            client_id,
            client_secret,
        } => {
            let credentials = base64::engine::general_purpose::STANDARD
                .encode(format!("{client_id}:{client_secret}"));
            let mut value = HeaderValue::try_from(format!("Basic {credentials}"))
                .map_err(|_| Failure("the client id or secret cannot go in a header".into()))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        other => {
            form.append_pair("client_id", other.client_id());
        }
    }
    Ok(Target {
        method: Method::POST,
        url,
        headers,
        body: Some(form.finish()),
    })
}

/// The API call of the timed phase: `Authorization: DPoP <token>` and the body, if any.
fn resource_target(args: &ResourceMode, token: &str) -> Result<Target, Failure> {
    let method = Method::from_bytes(args.method.as_bytes())
        .map_err(|_| Failure(format!("bad method {}", args.method)))?;
    let url = Url::parse(&args.url).map_err(|e| Failure(format!("{}: {e}", args.url)))?;
    let mut headers = HeaderMap::new();
    let mut value = HeaderValue::try_from(format!("DPoP {token}"))
        .map_err(|_| Failure("the access token cannot go in a header".into()))?;
    value.set_sensitive(true);
    headers.insert(AUTHORIZATION, value);
    Ok(Target {
        method,
        url,
        headers,
        body: args.data.clone(),
    })
}
