//! `keybound gateway`: the resource-server layer as a reverse proxy in front of any API.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use keybound_core::{NonceKeyRing, NonceSecret};
use keybound_resource::{
    GatewayConfig, JwksSource, KeySource, ResourceConfig, ResourceVerifier, gateway_router,
};

use crate::Failure;

use crate::output::outln;

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
    /// A TLS-terminating proxy trusted to forward client certificates (address or CIDR block;
    /// repeat or comma-separate). Certificate headers from anyone else are stripped and ignored.
    #[arg(long, env = "KEYBOUND_TRUSTED_PROXY", value_delimiter = ',')]
    trusted_proxy: Vec<String>,
    /// The shared replay cache for several gateway replicas, e.g. `redis://127.0.0.1:6379`.
    /// Without it, replays are tracked in this process's memory (one replica only).
    #[arg(long, env = "KEYBOUND_REPLAY_URL")]
    replay_url: Option<String>,
    /// The header in which the trusted proxy forwards a URL-encoded PEM certificate (nginx:
    /// `proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;`). Without it, RFC 9440
    /// `Client-Cert` is read.
    #[arg(long, env = "KEYBOUND_FORWARDED_CERT_HEADER")]
    forwarded_cert_header: Option<String>,
    /// Where the gateway answers its own probes instead of forwarding: `<prefix>/healthz`
    /// (alive) and `<prefix>/readyz` (replay cache and issuer keys; 503 naming what is down).
    #[arg(long, env = "KEYBOUND_HEALTH_PREFIX", default_value = "/_keybound")]
    health_prefix: String,
}

fn forwarded_certificates(
    args: &GatewayArgs,
) -> Result<Option<keybound_tls::ForwardedCertificates>, Failure> {
    if args.trusted_proxy.is_empty() {
        return Ok(None);
    }
    let nets = args
        .trusted_proxy
        .iter()
        .map(|p| {
            keybound_tls::ProxyNet::parse(p).map_err(|e| Failure(format!("--trusted-proxy: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let format = match &args.forwarded_cert_header {
        Some(name) => keybound_tls::ForwardedFormat::EscapedPem(
            axum::http::HeaderName::try_from(name.as_str())
                .map_err(|_| Failure(format!("--forwarded-cert-header: bad header name {name}")))?,
        ),
        None => keybound_tls::ForwardedFormat::Rfc9440,
    };
    Ok(Some(keybound_tls::ForwardedCertificates::new(nets, format)))
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
    let mut gateway_config = GatewayConfig::new(&args.upstream);
    gateway_config.forwarded_certificates = forwarded_certificates(args)?;
    gateway_config.health_prefix.clone_from(&args.health_prefix);
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Failure(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let replay = crate::serve::replay_cache(args.replay_url.as_deref(), 1 << 20)?;
        let verifier =
            ResourceVerifier::new(config, keys, replay).map_err(|e| Failure(e.to_string()))?;
        let app = gateway_router(Arc::new(verifier), gateway_config).map_err(Failure)?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| Failure(format!("cannot listen on {}: {e}", args.listen)))?;
        outln!(
            "keybound gateway: {} -> {} (tokens from {})",
            args.public_url,
            args.upstream,
            args.issuer
        );
        tracing::info!(listen = %args.listen, "gateway serving");
        let limits = keybound_tls::ServeLimits::default();
        keybound_tls::serve(listener, app, limits, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
        Ok(())
    })
}
