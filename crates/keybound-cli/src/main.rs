//! The `keybound` command.
//!
//! Wiring only: argument parsing, files, printing and exit codes. Every protocol rule lives in
//! `keybound-core` (and, as they arrive, the server, resource and client crates).
//!
//! Exit codes: 0 success, 1 a refused or failed operation, 2 a usage error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use keybound_core::PublicJwk;
use serde_json::json;

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
    /// Run keybound (Authorization Server and a demo protected API).
    ///
    /// Example: keybound serve --listen 127.0.0.1:8443 --data-dir ./keybound-data
    Serve(ServeArgs),
    /// Print the RFC 7638 SHA-256 thumbprint (the `jkt`) of a JWK file, public or private.
    ///
    /// Example: keybound thumbprint client-key.jwk
    Thumbprint {
        /// The JWK file.
        file: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Configuration file (TOML).
    #[arg(long, env = "KEYBOUND_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "KEYBOUND_LISTEN", default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Directory for keys and the embedded database.
    #[arg(long, env = "KEYBOUND_DATA_DIR", default_value = "keybound-data")]
    data_dir: PathBuf,
}

/// A failed operation: its message goes to stderr (or as JSON to stdout) and the exit code is 1.
struct Failure(String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Serve(args) => serve(args, cli.json),
        Command::Thumbprint { file } => thumbprint(file, cli.json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            if cli.json {
                println!("{}", json!({ "error": message }));
            } else {
                eprintln!("keybound: {message}");
            }
            ExitCode::from(1)
        }
    }
}

const ROLES: [(&str, &str); 3] = [
    (
        "authorization-server",
        "issues DPoP- and certificate-bound access tokens (issue #3)",
    ),
    (
        "resource-server",
        "tower/axum middleware that verifies the binding on every request (issue #4)",
    ),
    (
        "client",
        "library and CLI that obtain bound tokens and call APIs (issue #5)",
    ),
];

fn serve(args: &ServeArgs, as_json: bool) -> Result<(), Failure> {
    if let Some(config) = &args.config
        && !config.is_file()
    {
        return Err(Failure(format!(
            "configuration file {} not found",
            config.display()
        )));
    }
    let version = env!("CARGO_PKG_VERSION");
    if as_json {
        let roles: Vec<_> = ROLES
            .iter()
            .map(|(name, what)| json!({"role": name, "planned": what}))
            .collect();
        let out = json!({
            "version": version,
            "status": "protocol core only; the server is not built yet",
            "listen": args.listen.to_string(),
            "data_dir": args.data_dir.display().to_string(),
            "roles": roles,
        });
        println!("{out}");
    } else {
        println!("keybound {version}");
        println!(
            "The protocol core (keybound-core) is built; the server is not yet, so nothing listens on {}.",
            args.listen
        );
        println!("Planned roles:");
        for (name, what) in ROLES {
            println!("  {name:<22} {what}");
        }
    }
    Ok(())
}

fn thumbprint(file: &PathBuf, as_json: bool) -> Result<(), Failure> {
    let bytes =
        std::fs::read(file).map_err(|e| Failure(format!("cannot read {}: {e}", file.display())))?;
    let jwk = PublicJwk::public_half_of(&bytes)
        .map_err(|e| Failure(format!("{} is not a usable JWK: {e}", file.display())))?;
    if as_json {
        println!("{}", json!({ "jkt": jwk.thumbprint().as_str() }));
    } else {
        println!("{}", jwk.thumbprint());
    }
    Ok(())
}
