//! The options of `keybound bench`: the mode, the client, the load.

use std::path::PathBuf;
use std::time::Duration;

use clap::ArgGroup;

/// Options of `keybound bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    pub(super) mode: Mode,
}

/// What to load: a token endpoint or a protected API.
#[derive(Debug, clap::Subcommand)]
pub(super) enum Mode {
    /// Client-credentials token requests, each with its own DPoP proof (and the client's TLS
    /// certificate with --cert).
    ///
    /// Example: `keybound bench token --issuer http://127.0.0.1:8080 --client-id demo-confidential --requests 20000 --concurrency 32`
    Token(TokenMode),
    /// Calls to a DPoP-protected API, each with its own proof (with `ath`). The token comes
    /// from --token (with --key, the key it is bound to) or from the client-credentials grant.
    ///
    /// Example: `keybound bench resource --url http://127.0.0.1:8080/api/whoami --issuer http://127.0.0.1:8080 --client-id demo-confidential`
    Resource(ResourceMode),
}

/// Options of `keybound bench token`.
#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("client").args(["client_id"]).required(true)))]
pub(super) struct TokenMode {
    #[command(flatten)]
    pub(super) client: ClientArgs,
    #[command(flatten)]
    pub(super) load: LoadArgs,
}

/// Options of `keybound bench resource`.
#[derive(Debug, clap::Args)]
#[command(group(
    ArgGroup::new("credentials").args(["token", "client_id"]).required(true).multiple(true)
))]
pub(super) struct ResourceMode {
    /// The protected URL to call.
    #[arg(long, env = "KEYBOUND_URL")]
    pub(super) url: String,
    /// HTTP method.
    #[arg(short = 'X', long, env = "KEYBOUND_METHOD", default_value = "GET")]
    pub(super) method: String,
    /// Request body, sent with every request.
    #[arg(short = 'd', long, env = "KEYBOUND_DATA")]
    pub(super) data: Option<String>,
    /// A DPoP-bound access token to use instead of getting one (wins over --client-id); --key
    /// must be the key it is bound to.
    #[arg(long, env = "KEYBOUND_TOKEN", hide_env_values = true, requires = "key")]
    pub(super) token: Option<crate::SecretArg>,
    #[command(flatten)]
    pub(super) client: ClientArgs,
    #[command(flatten)]
    pub(super) load: LoadArgs,
}

/// The client: how it reaches the AS and authenticates, and its keys.
#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("server").args(["issuer", "token_endpoint"]).multiple(true)))]
pub(super) struct ClientArgs {
    /// The authorization server (its metadata gives the token endpoint).
    #[arg(long, env = "KEYBOUND_ISSUER")]
    pub(super) issuer: Option<String>,
    /// The token endpoint, to skip discovery (and the issuer's mTLS endpoint aliases).
    #[arg(long, env = "KEYBOUND_TOKEN_ENDPOINT")]
    pub(super) token_endpoint: Option<String>,
    /// The client id.
    #[arg(long, env = "KEYBOUND_CLIENT_ID", requires = "server")]
    pub(super) client_id: Option<String>,
    /// The client secret (better from KEYBOUND_CLIENT_SECRET than on the command line).
    /// Without one (and without --cert), the client is public.
    #[arg(long, env = "KEYBOUND_CLIENT_SECRET", hide_env_values = true)]
    pub(super) client_secret: Option<crate::SecretArg>,
    /// Scopes to request.
    #[arg(long, env = "KEYBOUND_SCOPE")]
    pub(super) scope: Option<String>,
    /// The DPoP key file (PKCS#8, PEM or DER). Without one, a new key for this run (--alg).
    #[arg(long, env = "KEYBOUND_KEY")]
    pub(super) key: Option<PathBuf>,
    /// The algorithm: of the new key (default ES256), or of --key when it fits several (RSA).
    /// ES256, EdDSA, ES384 or PS256.
    #[arg(long, env = "KEYBOUND_ALG")]
    pub(super) alg: Option<String>,
    /// Authenticate with this TLS client certificate (PEM; `tls_client_auth` or
    /// `self_signed_tls_client_auth`), presented on every connection.
    #[arg(
        long,
        env = "KEYBOUND_CERT",
        requires = "cert_key",
        conflicts_with = "client_secret"
    )]
    pub(super) cert: Option<PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(long, env = "KEYBOUND_CERT_KEY", requires = "cert")]
    pub(super) cert_key: Option<PathBuf>,
    /// Also trust this CA certificate (PEM) for the servers' TLS certificates.
    #[arg(long, env = "KEYBOUND_CA")]
    pub(super) ca: Option<PathBuf>,
}

/// How much load, and when to stop.
#[derive(Debug, clap::Args)]
pub(super) struct LoadArgs {
    /// Requests in the timed phase (one proof minted for each, before it starts).
    #[arg(
        short = 'n',
        long,
        env = "KEYBOUND_REQUESTS",
        default_value_t = 20_000,
        value_parser = clap::value_parser!(u32).range(1..=10_000_000)
    )]
    pub(super) requests: u32,
    /// Requests in flight at once (each on its own keep-alive connection).
    #[arg(
        short = 'c',
        long,
        env = "KEYBOUND_CONCURRENCY",
        default_value_t = 32,
        value_parser = clap::value_parser!(u32).range(1..=10_000)
    )]
    pub(super) concurrency: u32,
    /// Stop the timed phase after this many seconds even if requests remain (fractions
    /// allowed). Requests in flight then finish.
    #[arg(long, env = "KEYBOUND_DURATION", default_value = "30", value_parser = seconds)]
    pub(super) duration: Duration,
    /// Untimed requests before the timed phase (connections, caches), with their own proofs.
    #[arg(
        long,
        env = "KEYBOUND_WARMUP",
        default_value_t = 0,
        value_parser = clap::value_parser!(u32).range(0..=1_000_000)
    )]
    pub(super) warmup: u32,
    /// Per-request timeout in seconds.
    #[arg(long, env = "KEYBOUND_TIMEOUT", default_value = "10", value_parser = seconds)]
    pub(super) timeout: Duration,
    /// Exit 1 when more than this fraction (0 to 1) of the timed requests fail.
    #[arg(long, env = "KEYBOUND_MAX_ERROR_RATE", default_value_t = 0.0, value_parser = fraction)]
    pub(super) max_error_rate: f64,
    /// No progress line on standard error (warnings are still printed).
    #[arg(short, long, env = "KEYBOUND_QUIET")]
    pub(super) quiet: bool,
}

/// A number of seconds (fractions allowed), more than 0 and at most a day.
fn seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text.parse().map_err(|_| format!("not a number: {text}"))?;
    if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err("must be more than 0 and at most 86400 seconds".into())
    }
}

/// A fraction from 0 to 1.
fn fraction(text: &str) -> Result<f64, String> {
    let value: f64 = text.parse().map_err(|_| format!("not a number: {text}"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err("must be between 0 and 1".into())
    }
}
