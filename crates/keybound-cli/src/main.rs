//! The `keybound` command.
//!
//! Wiring only: argument parsing, files, printing and exit codes. Every protocol rule lives in
//! `keybound-core` (and, as they arrive, the server, resource and client crates).
//!
//! Exit codes: 0 success, 1 a refused or failed operation, 2 a usage error.

// Standard output goes through `output::outln!`, which a closed pipe cannot crash.
#![deny(clippy::print_stdout)]

mod bench;
mod client;
mod demo;
mod demo_web;
mod doctor;
mod gateway;
mod input;
mod inspect;
mod output;
mod serve;
mod signing_keys;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use keybound_core::PublicJwk;
use serde_json::json;

use crate::output::outln;

/// mimalloc instead of the system allocator: a request allocates and frees many small
/// buffers (headers, JSON, base64), and glibc's malloc and free were 4-7% of the server's CPU
/// under load (`docs/performance.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// keybound: sender-constrained OAuth 2.0 (DPoP and mTLS) for authorization servers, resource
/// servers and clients.
#[derive(Debug, Parser)]
#[command(name = "keybound", version, about, propagate_version = true)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true, env = "KEYBOUND_JSON")]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Authorization Server. Without --config: a development server with demo clients.
    ///
    /// Example: `keybound serve --listen 127.0.0.1:8443 --data-dir ./keybound-data`
    Serve(serve::ServeArgs),
    /// Protect any HTTP API: a reverse proxy that enforces DPoP binding and forwards the
    /// verified claims in X-Keybound-* headers.
    ///
    /// Example: `keybound gateway --upstream http://127.0.0.1:3000 --issuer https://as.example --public-url https://api.example`
    Gateway(gateway::GatewayArgs),
    /// Manage the signing keys: in the data directory, or with a PostgreSQL store in the
    /// database that every replica follows.
    ///
    /// Example: `keybound keys rotate --config keybound.toml`
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Print a DPoP proof for one request, signed with a PKCS#8 key file (DER or PEM).
    ///
    /// Example: `keybound proof --key client.p8 --method POST --url https://as.example/token`
    Proof(client::ProofArgs),
    /// Generate a DPoP key file (PKCS#8 PEM, permissions 0600) and print its thumbprint.
    ///
    /// Example: `keybound keygen --out client.pem --alg EdDSA`
    Keygen(client::KeygenArgs),
    /// Start an AS and an API in-process, get a bound token, call the API, then play the
    /// attacker with the stolen token and show each attempt refused.
    ///
    /// Example: `keybound demo`
    Demo,
    /// Get a DPoP-bound access token with client credentials (the nonce retry is handled).
    ///
    /// Example: `keybound token --issuer https://as.example --client-id app --key client.pem`
    Token(client::TokenArgs),
    /// Call a protected API: get a DPoP-bound token, send the request with a fresh proof,
    /// handle the nonce, print the response.
    ///
    /// Example: `keybound call https://api.example/orders --issuer https://as.example --client-id app --key client.pem`
    Call(client::CallArgs),
    /// A load generator for a token endpoint or a DPoP-protected API (keybound or any
    /// compliant server): proofs minted before the timed phase, then requests/s, latency
    /// percentiles, errors by kind and the generator's own CPU use. Exit 1 if setup fails or
    /// more requests fail than --max-error-rate allows.
    ///
    /// Example: `keybound bench token --issuer http://127.0.0.1:8080 --client-id demo-confidential --requests 20000 --concurrency 32`
    Bench(bench::BenchArgs),
    /// Decode a DPoP proof and/or an access token and list every check with pass, fail or
    /// skipped and why, next to the verdict of keybound's own verifiers. Exit 1 if a check fails.
    ///
    /// Example: `keybound inspect --proof "$PROOF" --token "$TOKEN" --method GET --url https://api.example/orders --issuer https://as.example`
    Inspect(inspect::InspectArgs),
    /// Probe a deployment and print findings (ok, warn, fail) with a fix for each: metadata,
    /// algorithms, clock skew, nonces, and with --resource the challenge, the bound token,
    /// the Bearer downgrade and the public URL. Exit 1 if anything fails.
    ///
    /// Example: `keybound doctor --issuer https://as.example --resource https://api.example/orders --client-id app --key client.pem`
    Doctor(doctor::DoctorArgs),
    /// Print 32 random bytes in base64url: a value for KEYBOUND_KEY_ENCRYPTION_KEY or
    /// KEYBOUND_NONCE_SECRETS.
    ///
    /// Example: `export KEYBOUND_KEY_ENCRYPTION_KEY=$(keybound secret)`
    Secret,
    /// Read a client secret on standard input and print the `client_secret_sha256` to configure.
    ///
    /// Example: `printf %s "$SECRET" | keybound hash-secret`
    HashSecret,
    /// Read a password on standard input and print the Argon2id hash for `[[users]]
    /// password_argon2`.
    ///
    /// Example: `printf %s "$PASSWORD" | keybound hash-password`
    HashPassword,
    /// Print the RFC 7638 SHA-256 thumbprint (the `jkt`) of a JWK file (public or private) or a
    /// PKCS#8 key file.
    ///
    /// Example: `keybound thumbprint client-key.jwk`
    Thumbprint {
        /// The JWK file.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// Make the next key current, keep the current one as previous, and generate a new next key.
    /// Keys in files: restart the servers afterwards. Keys in PostgreSQL: running replicas
    /// switch within 10 s.
    Rotate(serve::ServeArgs),
}

/// A failed operation: its message goes to stderr (or as JSON to stdout) and the exit code is 1.
pub(crate) struct Failure(pub(crate) String);

/// A secret given on the command line or in the environment (a client secret, an access
/// token): `Debug` shows that one is there, never what it is.
#[derive(Clone)]
pub(crate) struct SecretArg(String);

impl SecretArg {
    /// The secret itself, for the one place that sends it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for SecretArg {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_owned()))
    }
}

impl std::fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretArg(..)")
    }
}

impl Failure {
    /// Prints the message (as `{"error": ...}` on stdout with `--json`, else on stderr) and
    /// returns exit code 1.
    pub(crate) fn report(self, as_json: bool) -> ExitCode {
        if as_json {
            outln!("{}", json!({ "error": self.0 }));
        } else {
            eprintln!("keybound: {}", self.0);
        }
        ExitCode::from(1)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Serve(args) => {
            init_logging();
            serve::serve(args)
        }
        Command::Keys {
            action: KeysAction::Rotate(args),
        } => serve::rotate(args).map(|(kid, followed)| {
            if cli.json {
                outln!("{}", json!({ "current_kid": kid, "replicas_follow": followed }));
            } else if followed {
                outln!(
                    "rotated in the shared store; the current signing key is now {kid}. Running replicas switch to it within `[store] key_reload_secs` (default 10 s)."
                );
            } else {
                outln!(
                    "rotated; the current signing key is now {kid}. Restart the servers to use it."
                );
            }
        }),
        Command::Proof(args) => client::proof(args),
        Command::Keygen(args) => client::keygen(args, cli.json),
        Command::Demo => demo::demo(),
        Command::Token(args) => client::token(args, cli.json),
        Command::Call(args) => client::call(args),
        Command::Gateway(args) => {
            init_logging();
            gateway::gateway(args)
        }
        Command::Bench(args) => return bench::bench(args, cli.json),
        Command::Inspect(args) => return inspect::inspect(args, cli.json),
        Command::Doctor(args) => return doctor::doctor(args, cli.json),
        Command::Secret => secret(cli.json),
        Command::HashSecret => hash_secret(cli.json),
        Command::HashPassword => hash_password(cli.json),
        Command::Thumbprint { file } => thumbprint(file, cli.json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(cli.json),
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("KEYBOUND_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if std::env::var("KEYBOUND_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn secret(as_json: bool) -> Result<(), Failure> {
    use aws_lc_rs::rand::SecureRandom as _;
    use base64::Engine as _;
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::SystemRandom::new()
        .fill(bytes.as_mut())
        .map_err(|_| Failure("the system random generator failed".into()))?;
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref());
    if as_json {
        outln!("{}", json!({ "secret": secret }));
    } else {
        outln!("{secret}");
    }
    Ok(())
}

fn hash_secret(as_json: bool) -> Result<(), Failure> {
    let mut secret = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin().take(4096), &mut secret)
        .map_err(|e| Failure(format!("cannot read the secret: {e}")))?;
    let secret = secret.strip_suffix('\n').unwrap_or(&secret);
    if secret.is_empty() {
        return Err(Failure("no secret on standard input".into()));
    }
    let hash = keybound_server::hash_secret(secret);
    if as_json {
        outln!("{}", json!({ "client_secret_sha256": hash }));
    } else {
        outln!("{hash}");
    }
    Ok(())
}

fn hash_password(as_json: bool) -> Result<(), Failure> {
    let mut password = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin().take(4096), &mut password)
        .map_err(|e| Failure(format!("cannot read the password: {e}")))?;
    let password = password.strip_suffix('\n').unwrap_or(&password);
    if password.is_empty() {
        return Err(Failure("no password on standard input".into()));
    }
    let hash = keybound_server::users::hash_password(password).map_err(Failure)?;
    if as_json {
        outln!("{}", json!({ "password_argon2": hash }));
    } else {
        outln!("{hash}");
    }
    Ok(())
}

fn thumbprint(file: &Path, as_json: bool) -> Result<(), Failure> {
    let bytes = input::read_file(file, input::MAX_INPUT)?;
    // A JWK (public or private), else a PKCS#8 key file as `keygen` writes them.
    let jwk = match PublicJwk::public_half_of(&bytes) {
        Ok(jwk) => jwk,
        Err(jwk_error) if bytes.first() == Some(&b'{') => {
            return Err(Failure(format!(
                "{} is not a usable JWK: {jwk_error}",
                file.display()
            )));
        }
        Err(_) => keybound_client::load_key_file(file, None)
            .map(|key| key.public_jwk().clone())
            .map_err(|e| Failure(e.to_string()))?,
    };
    if as_json {
        outln!("{}", json!({ "jkt": jwk.thumbprint().as_str() }));
    } else {
        outln!("{}", jwk.thumbprint());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::Cli;

    #[test]
    fn debug_output_of_the_arguments_never_shows_a_secret_or_token() {
        for args in [
            &[
                "keybound",
                "token",
                "--issuer",
                "https://as.example",
                "--client-id",
                "app",
                "--client-secret",
                "s3cr3t-value",
                "--key",
                "k.pem",
            ][..],
            &[
                "keybound",
                "bench",
                "resource",
                "--url",
                "https://api.example/x",
                "--token",
                "t0ken-value",
                "--key",
                "k.pem",
            ][..],
            &[
                "keybound",
                "bench",
                "token",
                "--issuer",
                "https://as.example",
                "--client-id",
                "app",
                "--client-secret",
                "s3cr3t-value",
            ][..],
        ] {
            let debug = format!("{:?}", Cli::try_parse_from(args).unwrap());
            assert!(
                !debug.contains("s3cr3t-value") && !debug.contains("t0ken-value"),
                "{debug}"
            );
            assert!(debug.contains("SecretArg(..)"), "{debug}");
        }
    }
}
