//! The client subcommands: `keygen`, `proof`, `token`, `call`. Protocol work is in
//! `keybound-client`; this module parses arguments and prints.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use keybound_client::{ClientAuth, DpopClient, TlsIdentity, generate_key_file, load_key_file};
use keybound_core::dpop::ProofBuilder;
use keybound_core::{Algorithm, SigningKey, UnixTime};
use serde_json::json;

use crate::Failure;

use crate::output::outln;

/// The algorithm named `name` (ES256, EdDSA, ES384, PS256, RS256), if one is named.
pub(crate) fn algorithm(name: Option<&str>) -> Result<Option<Algorithm>, Failure> {
    name.map(|n| {
        Algorithm::from_name(n).ok_or_else(|| Failure(format!("unsupported algorithm {n}")))
    })
    .transpose()
}

/// Options of `keybound keygen`.
#[derive(Debug, clap::Args)]
pub(crate) struct KeygenArgs {
    /// Where to write the key (refuses to overwrite).
    #[arg(long)]
    out: PathBuf,
    /// ES256 (default), EdDSA, ES384 or PS256.
    #[arg(long, default_value = "ES256")]
    alg: String,
}

pub(crate) fn keygen(args: &KeygenArgs, as_json: bool) -> Result<(), Failure> {
    let alg = algorithm(Some(&args.alg))?.unwrap_or(Algorithm::Es256);
    let key = generate_key_file(&args.out, alg).map_err(|e| Failure(e.to_string()))?;
    let jkt = key.public_jwk().thumbprint();
    if as_json {
        outln!(
            "{}",
            json!({ "file": args.out.display().to_string(), "alg": alg.name(), "jkt": jkt.as_str() })
        );
    } else {
        outln!("{jkt}");
    }
    Ok(())
}

/// Options of `keybound proof`.
#[derive(Debug, clap::Args)]
pub(crate) struct ProofArgs {
    /// PKCS#8 private key file (PEM "BEGIN PRIVATE KEY", or DER).
    #[arg(long, env = "KEYBOUND_KEY")]
    key: PathBuf,
    /// HTTP method of the request.
    #[arg(long, default_value = "POST")]
    method: String,
    /// URL of the request (query and fragment are left out of htu).
    #[arg(long)]
    url: String,
    /// Access token the request carries (adds ath).
    #[arg(long)]
    token: Option<String>,
    /// Server nonce to include.
    #[arg(long)]
    nonce: Option<String>,
    /// Algorithm, when the key fits several (RS256 or PS256 for RSA keys; default PS256).
    #[arg(long)]
    alg: Option<String>,
}

pub(crate) fn proof(args: &ProofArgs) -> Result<(), Failure> {
    let key = load_key_file(&args.key, algorithm(args.alg.as_deref())?)
        .map_err(|e| Failure(e.to_string()))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| Failure("the clock is before 1970".into()))?;
    let mut builder =
        ProofBuilder::new(&args.method, &args.url, UnixTime::from_secs(now.as_secs()));
    if let Some(token) = &args.token {
        builder = builder.access_token(token);
    }
    if let Some(nonce) = &args.nonce {
        builder = builder.nonce(nonce);
    }
    outln!(
        "{}",
        builder
            .sign(&key, &SystemRandom::new())
            .map_err(|e| Failure(e.to_string()))?
    );
    Ok(())
}

/// How `token` and `call` reach the AS.
#[derive(Debug, clap::Args)]
pub(crate) struct TokenArgs {
    /// The authorization server (its metadata gives the token endpoint).
    #[arg(long, env = "KEYBOUND_ISSUER")]
    issuer: String,
    /// The client id.
    #[arg(long, env = "KEYBOUND_CLIENT_ID")]
    client_id: String,
    /// The client secret (better from KEYBOUND_CLIENT_SECRET than on the command line).
    /// Without one, the client is public.
    #[arg(long, env = "KEYBOUND_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<crate::SecretArg>,
    /// The DPoP key file.
    #[arg(long, env = "KEYBOUND_KEY")]
    key: PathBuf,
    /// Authenticate with `private_key_jwt`: the PKCS#8 file of the key registered at the AS
    /// (not the DPoP key).
    #[arg(
        long,
        env = "KEYBOUND_ASSERTION_KEY",
        requires = "assertion_kid",
        conflicts_with = "client_secret"
    )]
    assertion_key: Option<PathBuf>,
    /// The `kid` of the assertion key in the client's registered JWKS.
    #[arg(long, env = "KEYBOUND_ASSERTION_KID")]
    assertion_kid: Option<String>,
    /// Authenticate with this TLS client certificate (PEM; `tls_client_auth` or
    /// `self_signed_tls_client_auth`). Token requests go to the issuer's `mtls_endpoint_aliases`.
    #[arg(
        long,
        env = "KEYBOUND_CERT",
        requires = "cert_key",
        conflicts_with_all = ["client_secret", "assertion_key"]
    )]
    cert: Option<PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(long, env = "KEYBOUND_CERT_KEY", requires = "cert")]
    cert_key: Option<PathBuf>,
    /// Also trust this CA certificate (PEM) for the servers' TLS certificates.
    #[arg(long, env = "KEYBOUND_CA")]
    ca: Option<PathBuf>,
    /// Scopes to request.
    #[arg(long)]
    scope: Option<String>,
}

/// Options of `keybound call`.
#[derive(Debug, clap::Args)]
pub(crate) struct CallArgs {
    /// The URL to call.
    url: String,
    /// HTTP method.
    #[arg(short = 'X', long, default_value = "GET")]
    method: String,
    /// Request body.
    #[arg(short = 'd', long)]
    data: Option<String>,
    /// Show the token exchange and the response status and headers on stderr.
    #[arg(short, long)]
    verbose: bool,
    #[command(flatten)]
    token: TokenArgs,
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure(format!("cannot start the runtime: {e}")))
}

/// A DPoP client signing with `key` that also trusts the CA certificate in `ca` and, given
/// `(certificate, private key)` files, presents that TLS client certificate (mTLS).
pub(crate) fn dpop_client(
    key: SigningKey,
    ca: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> Result<DpopClient, Failure> {
    let mut builder = DpopClient::builder(key);
    if let Some(ca) = ca {
        let pem = keybound_tls::read_pem_file(ca).map_err(|e| Failure(e.to_string()))?;
        builder = builder.add_root_certificate_pem(&pem);
    }
    if let Some((cert, cert_key)) = identity {
        let identity =
            TlsIdentity::from_pem_files(cert, cert_key).map_err(|e| Failure(e.to_string()))?;
        builder = builder.tls_identity(identity);
    }
    builder.build().map_err(|e| Failure(e.to_string()))
}

async fn get_token(
    args: &TokenArgs,
) -> Result<(DpopClient, keybound_client::TokenResponse), Failure> {
    let key = load_key_file(&args.key, None).map_err(|e| Failure(e.to_string()))?;
    let client = dpop_client(
        key,
        args.ca.as_deref(),
        args.cert.as_deref().zip(args.cert_key.as_deref()),
    )?;
    let metadata = client
        .discover(&args.issuer)
        .await
        .map_err(|e| Failure(e.to_string()))?;
    let auth = match (
        &args.client_secret,
        &args.assertion_key,
        &args.assertion_kid,
    ) {
        (Some(secret), _, _) => ClientAuth::Secret {
            client_id: args.client_id.clone(),
            client_secret: secret.expose().to_owned(),
        },
        (None, Some(file), Some(kid)) => ClientAuth::PrivateKeyJwt {
            client_id: args.client_id.clone(),
            key: std::sync::Arc::new(
                load_key_file(file, None).map_err(|e| Failure(e.to_string()))?,
            ),
            kid: kid.clone(),
        },
        _ if args.cert.is_some() => ClientAuth::Tls {
            client_id: args.client_id.clone(),
        },
        _ => ClientAuth::Public {
            client_id: args.client_id.clone(),
        },
    };
    let token = client
        .client_credentials(&metadata, &auth, args.scope.as_deref())
        .await
        .map_err(|e| Failure(e.to_string()))?;
    Ok((client, token))
}

pub(crate) fn token(args: &TokenArgs, as_json: bool) -> Result<(), Failure> {
    let (client, token) = runtime()?.block_on(get_token(args))?;
    let body = json!({
        "access_token": token.access_token,
        "token_type": token.token_type,
        "expires_in": token.expires_in,
        "refresh_token": token.refresh_token,
        "scope": token.scope,
        "jkt": client.thumbprint().as_str(),
    });
    if as_json {
        outln!("{body}");
    } else {
        outln!("{}", token.access_token);
        eprintln!(
            "token_type DPoP, bound to jkt {}, expires in {} s",
            client.thumbprint(),
            token.expires_in.unwrap_or_default()
        );
    }
    Ok(())
}

pub(crate) fn call(args: &CallArgs) -> Result<(), Failure> {
    let method = reqwest::Method::from_bytes(args.method.as_bytes())
        .map_err(|_| Failure(format!("bad method {}", args.method)))?;
    runtime()?.block_on(async {
        let (client, token) = get_token(&args.token).await?;
        if args.verbose {
            eprintln!(
                "* token from {} (DPoP, jkt {})",
                args.token.issuer,
                client.thumbprint()
            );
        }
        let body = args.data.clone().map(String::into_bytes);
        let response = client
            .call(method, &args.url, &token.access_token, body)
            .await
            .map_err(|e| Failure(e.to_string()))?;
        let status = response.status();
        if args.verbose {
            eprintln!("< {status}");
            for (name, value) in response.headers() {
                eprintln!("< {name}: {}", value.to_str().unwrap_or("<binary>"));
            }
            eprintln!("* nonce retries: {}", client.nonce_retries());
        }
        let text = response.text().await.map_err(|e| Failure(e.to_string()))?;
        outln!("{text}");
        if status.is_success() {
            Ok(())
        } else {
            Err(Failure(format!("the API answered {status}")))
        }
    })
}
