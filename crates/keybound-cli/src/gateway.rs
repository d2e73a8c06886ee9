//! `keybound gateway`: the resource-server layer as a reverse proxy in front of any API.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use keybound_core::{NonceKeyRing, NonceSecret};
use keybound_resource::{
    GatewayConfig, JwksSource, KeySource, ResourceConfig, ResourceVerifier, gateway_router,
};
use keybound_store::MemoryReplayCache;

use crate::Failure;

/// Options of `keybound gateway`.
#[derive(Debug, clap::Args)]
pub(crate) struct GatewayArgs {
    /// The API to protect, e.g. `http://127.0.0.1:3000`.
    #[arg(long, env = "KEYBOUND_UPSTREAM")]
    upstream: String,
    /// The authorization server whose tokens are accepted (its metadata gives the JWKS).
    #[arg(long, env = "KEYBOUND_ISSUER")]
    issuer: String,
    /// The `aud` tokens must carry. Defaults to the public URL.
    #[arg(long, env = "KEYBOUND_AUDIENCE")]
    audience: Option<String>,
    /// The public base URL clients call (the `htu` base), e.g. `https://api.example.com`.
    #[arg(long, env = "KEYBOUND_PUBLIC_URL")]
    public_url: String,
    /// Address to listen on.
    #[arg(long, env = "KEYBOUND_LISTEN", default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Also accept unbound tokens with the Bearer scheme.
    #[arg(long, env = "KEYBOUND_ACCEPT_BEARER")]
    accept_bearer: bool,
    /// Require a server nonce in every proof (secrets from KEYBOUND_NONCE_SECRETS, else random).
    #[arg(long, env = "KEYBOUND_REQUIRE_NONCE")]
    require_nonce: bool,
}

fn nonce_ring(purpose: &str) -> Result<NonceKeyRing, Failure> {
    let decode = |text: &str| -> Result<NonceSecret, Failure> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| Failure("KEYBOUND_NONCE_SECRETS: not base64url".into()))?;
        NonceSecret::new(&bytes)
            .ok_or_else(|| Failure("KEYBOUND_NONCE_SECRETS: secrets need 32 bytes or more".into()))
    };
    let configured = std::env::var("KEYBOUND_NONCE_SECRETS").unwrap_or_default();
    let mut secrets = configured
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(decode);
    let current = match secrets.next() {
        Some(secret) => secret?,
        None => {
            let mut bytes = [0u8; 32];
            aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut bytes)
                .map_err(|_| Failure("no randomness for a nonce secret".into()))?;
            decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))?
        }
    };
    let previous = secrets.next().transpose()?;
    Ok(NonceKeyRing::new(purpose, &current, previous.as_ref()))
}

pub(crate) fn gateway(args: &GatewayArgs) -> Result<(), Failure> {
    let audience = args
        .audience
        .clone()
        .unwrap_or_else(|| args.public_url.clone());
    let mut config = ResourceConfig::new(&args.issuer, &audience, &args.public_url)
        .accept_unbound_bearer(args.accept_bearer);
    if args.require_nonce {
        config = config.nonces(nonce_ring(&args.public_url)?, true);
    }
    let keys = KeySource::Jwks(Box::new(
        JwksSource::new(&args.issuer).map_err(|e| Failure(e.to_string()))?,
    ));
    let verifier = ResourceVerifier::new(config, keys, Arc::new(MemoryReplayCache::new(1 << 20)))
        .map_err(|e| Failure(e.to_string()))?;
    let app =
        gateway_router(Arc::new(verifier), GatewayConfig::new(&args.upstream)).map_err(Failure)?;
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Failure(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| Failure(format!("cannot listen on {}: {e}", args.listen)))?;
        println!(
            "keybound gateway: {} -> {} (tokens from {})",
            args.public_url, args.upstream, args.issuer
        );
        tracing::info!(listen = %args.listen, "gateway serving");
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(|e| Failure(format!("gateway error: {e}")))
    })
}
