//! `keybound inspect`: decode a DPoP proof and/or an access token and list every check with its
//! outcome. Wiring only: the checks and the verdicts are `keybound-core`'s
//! (`ProofVerifier::diagnose`, `diagnose::access_token`, `diagnose::binding`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keybound_core::binding::Presented;
use keybound_core::challenge::Scheme;
use keybound_core::diagnose::{self, Check, Status, TokenExpectations};
use keybound_core::dpop::{IatWindow, NoncePolicy, ProofDiagnosis, ProofRequest, ProofVerifier};
use keybound_core::{CertThumbprint, ErrorCode, Htu, KeySet, UnixTime};
use serde_json::{Map, Value, json};

use crate::Failure;
use crate::input::{MAX_INPUT, read_file, read_limited};

use crate::output::outln;

/// Options of `keybound inspect`.
#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("input").args(["proof", "token"]).required(true).multiple(true)
))]
pub(crate) struct InspectArgs {
    /// The DPoP proof: the value itself, `@FILE` or a file name, or `-` for standard input.
    #[arg(long, requires_all = ["method", "url"])]
    proof: Option<String>,
    /// The access token (an `Authorization` value such as `DPoP eyJ...` is fine too): the value,
    /// `@FILE` or a file name, or `-` for standard input.
    #[arg(long)]
    token: Option<String>,
    /// The request's HTTP method, exactly as sent (`htm` is case-sensitive).
    #[arg(long)]
    method: Option<String>,
    /// The URL the client called: the resource server's public URL (query and fragment are
    /// ignored), e.g. `https://api.example/orders`.
    #[arg(long, value_parser = parse_url)]
    url: Option<Htu>,
    /// The nonce the server sent in `DPoP-Nonce`: the proof must carry exactly this one.
    #[arg(long)]
    nonce: Option<String>,
    /// The issuer the resource accepts. Without --jwks or --jwks-url, its RFC 8414 metadata
    /// gives the keys.
    #[arg(long)]
    issuer: Option<String>,
    /// The audience the resource expects in `aud`.
    #[arg(long)]
    audience: Option<String>,
    /// The authorization server's JWKS, from a file.
    #[arg(long, conflicts_with = "jwks_url")]
    jwks: Option<PathBuf>,
    /// The authorization server's JWKS, from a URL.
    #[arg(long)]
    jwks_url: Option<String>,
    /// The client certificate (PEM or DER) a certificate-bound (`x5t#S256`) token goes with.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Evaluate time checks at this Unix time instead of now (e.g. for recorded traffic).
    #[arg(long, value_name = "UNIX_SECONDS")]
    at: Option<u64>,
    /// Seconds a proof may be old, as the server is configured (1 to 300).
    #[arg(long, default_value_t = 60)]
    max_age: u64,
    /// Seconds a proof may be ahead of the server's clock (10 to 59).
    #[arg(long, default_value_t = 30)]
    future_leeway: u64,
}

fn parse_url(text: &str) -> Result<Htu, String> {
    Htu::parse(text).map_err(|e| format!("{text}: {e}"))
}

/// Exits with status 2 like clap does for other usage errors.
fn usage(message: &str) -> ! {
    clap::Error::raw(
        clap::error::ErrorKind::ArgumentConflict,
        format!("{message}\n"),
    )
    .exit()
}

/// A proof or token argument: `-` is standard input, `@FILE` or an existing file is read,
/// anything else is the value itself.
fn read_value(value: &str) -> Result<String, Failure> {
    let bytes = if value == "-" {
        read_limited(std::io::stdin().lock(), "standard input", MAX_INPUT)?
    } else if let Some(path) = value.strip_prefix('@') {
        read_file(Path::new(path), MAX_INPUT)?
    } else if Path::new(value).is_file() {
        read_file(Path::new(value), MAX_INPUT)?
    } else {
        return Ok(value.trim().to_owned());
    };
    String::from_utf8(bytes)
        .map(|text| text.trim().to_owned())
        .map_err(|_| Failure("the input is not UTF-8 text".into()))
}

/// Accepts a pasted header: drops `Authorization:` / `DPoP:` and an auth scheme in front.
fn strip_header(value: &str, header: &str) -> String {
    let mut text = value.trim();
    if let Some((name, rest)) = text.split_once(':')
        && name.trim().eq_ignore_ascii_case(header)
    {
        text = rest.trim();
    }
    if let Some((scheme, rest)) = text.split_once(' ')
        && Scheme::from_name(scheme).is_some()
    {
        text = rest.trim();
    }
    text.to_owned()
}

fn now(at: Option<u64>) -> Result<UnixTime, Failure> {
    if let Some(at) = at {
        return Ok(UnixTime::from_secs(at));
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| UnixTime::from_secs(d.as_secs()))
        .map_err(|_| Failure("the clock is before 1970".into()))
}

/// A single-threaded runtime for the few requests `inspect` and `doctor` make.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure(format!("cannot start the runtime: {e}")))
}

async fn fetch(url: &str) -> Result<Vec<u8>, Failure> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| Failure(e.to_string()))?;
    let mut response = http
        .get(url)
        .send()
        .await
        .map_err(|e| Failure(format!("{url}: {e}")))?;
    if !response.status().is_success() {
        return Err(Failure(format!("{url}: status {}", response.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Failure(format!("{url}: {e}")))?
    {
        body.extend_from_slice(&chunk);
        if body.len() as u64 > MAX_INPUT {
            return Err(Failure(format!("{url}: larger than {MAX_INPUT} bytes")));
        }
    }
    Ok(body)
}

/// The JWKS document's URL from `issuer`'s RFC 8414 metadata.
async fn jwks_uri(issuer: &str) -> Result<String, Failure> {
    let url = keybound_core::metadata::well_known_url(issuer)
        .ok_or_else(|| Failure(format!("{issuer} is not an http(s) issuer URL")))?;
    let metadata: Value =
        serde_json::from_slice(&fetch(&url).await?).map_err(|e| Failure(format!("{url}: {e}")))?;
    metadata["jwks_uri"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Failure(format!("{url} has no jwks_uri")))
}

/// The AS's keys, from --jwks, --jwks-url, or the issuer's metadata; `None` without any.
fn load_keys(args: &InspectArgs) -> Result<Option<KeySet>, Failure> {
    let (bytes, source) = match (&args.jwks, &args.jwks_url, &args.issuer) {
        (Some(file), _, _) => (read_file(file, MAX_INPUT)?, file.display().to_string()),
        (None, Some(url), _) => (runtime()?.block_on(fetch(url))?, url.clone()),
        (None, None, Some(issuer)) => {
            let runtime = runtime()?;
            let url = runtime.block_on(jwks_uri(issuer))?;
            (runtime.block_on(fetch(&url))?, url)
        }
        (None, None, None) => return Ok(None),
    };
    KeySet::from_jwks_json(&bytes)
        .map(Some)
        .map_err(|e| Failure(format!("{source}: not a usable JWKS: {e}")))
}

/// A certificate file, PEM or DER, to its `x5t#S256`.
fn cert_thumbprint(path: &Path) -> Result<CertThumbprint, Failure> {
    let bytes = read_file(path, MAX_INPUT)?;
    let der = match std::str::from_utf8(&bytes) {
        Ok(text) if text.contains("-----BEGIN CERTIFICATE-----") => {
            let body: String = text
                .lines()
                .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
                .skip(1)
                .take_while(|l| !l.starts_with("-----END"))
                .collect();
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, body.trim())
                .map_err(|_| Failure(format!("{}: bad PEM", path.display())))?
        }
        _ => bytes,
    };
    Ok(CertThumbprint::of_der(&der))
}

/// What was inspected, for printing.
struct Report {
    proof: Option<ProofDiagnosis>,
    token: Option<diagnose::TokenDiagnosis>,
    checks: Vec<Check>,
}

pub(crate) fn inspect(args: &InspectArgs, as_json: bool) -> ExitCode {
    match run(args) {
        Ok(report) => print(&report, as_json),
        Err(failure) => failure.report(as_json),
    }
}

fn run(args: &InspectArgs) -> Result<Report, Failure> {
    if args.proof.as_deref() == Some("-") && args.token.as_deref() == Some("-") {
        usage("only one of --proof and --token can be read from standard input");
    }
    let Some(window) = IatWindow::new(args.max_age, args.future_leeway) else {
        usage("--max-age must be 1 to 300 and --future-leeway 10 to 59");
    };
    let now = now(args.at)?;
    let proof = args
        .proof
        .as_deref()
        .map(read_value)
        .transpose()?
        .map(|p| strip_header(&p, "DPoP"));
    let token = args
        .token
        .as_deref()
        .map(read_value)
        .transpose()?
        .map(|t| strip_header(&t, "Authorization"));
    let mut checks = Vec::new();

    let proof_diagnosis = match (&proof, &args.method, &args.url) {
        (Some(proof), Some(method), Some(url)) => {
            let request = ProofRequest {
                method,
                htu: url,
                now,
                access_token: token.as_deref(),
                nonce: args
                    .nonce
                    .as_deref()
                    .map_or(NoncePolicy::NotUsed, NoncePolicy::Exactly),
            };
            let verifier = ProofVerifier::new(&keybound_core::Algorithm::FAPI2, window);
            let diagnosis = verifier.diagnose(proof, &request);
            checks.extend(diagnosis.checks.iter().cloned());
            Some(diagnosis)
        }
        _ => None,
    };

    let token_diagnosis = match &token {
        Some(token) => {
            let keys = load_keys(args)?;
            let expect = TokenExpectations {
                keys: keys.as_ref(),
                issuer: args.issuer.as_deref(),
                audience: args.audience.as_deref(),
            };
            let mut diagnosis = diagnose::access_token(token, &expect, now);
            if keys.is_none()
                && let Some(signature) = diagnosis
                    .checks
                    .iter_mut()
                    .find(|c| c.name == "token.signature" && c.detail == "not checked: no keys")
            {
                signature.detail =
                    "not checked: no keys (give --issuer, --jwks or --jwks-url)".into();
            }
            checks.extend(diagnosis.checks.iter().cloned());
            Some(diagnosis)
        }
        None => None,
    };

    // The binding: what the token's cnf demands against what would be presented with it.
    let certificate = args.cert.as_deref().map(cert_thumbprint).transpose()?;
    if let Some(claims) = token_diagnosis.as_ref().and_then(|t| t.parsed.as_ref()) {
        let proof_key = proof_diagnosis
            .as_ref()
            .and_then(|p| p.jwk.as_ref())
            .map(|jwk| jwk.thumbprint());
        let scheme = if proof.is_some() {
            Scheme::DPoP
        } else {
            Scheme::Bearer
        };
        if proof.is_some() && proof_key.is_none() {
            checks.push(skipped(
                "binding",
                "not checked: the proof has no usable jwk",
            ));
        } else if proof.is_none() && certificate.is_none() {
            checks.push(skipped(
                "binding",
                "not checked: no proof (--proof) or certificate (--cert) given",
            ));
        } else {
            let presented = Presented {
                scheme,
                proof_key,
                certificate: certificate.as_ref(),
                accept_unbound: false,
            };
            checks.push(diagnose::binding(claims, &presented));
        }
    }
    Ok(Report {
        proof: proof_diagnosis,
        token: token_diagnosis,
        checks,
    })
}

fn skipped(name: &'static str, detail: &str) -> Check {
    Check {
        name,
        status: Status::Skipped,
        detail: detail.to_owned(),
        reason: None,
    }
}

fn decoded(header: Option<&Map<String, Value>>, claims: Option<&Map<String, Value>>) -> Value {
    json!({ "header": header, "claims": claims })
}

fn print(report: &Report, as_json: bool) -> ExitCode {
    let failed = report.checks.iter().filter(|c| c.failed()).count();
    if as_json {
        let checks: Vec<Value> = report
            .checks
            .iter()
            .map(|c| {
                json!({
                    "check": c.name,
                    "status": c.status.as_str(),
                    "detail": c.detail,
                    "reason": c.reason,
                })
            })
            .collect();
        let mut out = json!({ "ok": failed == 0, "checks": checks });
        if let Some(p) = &report.proof {
            let mut proof = decoded(p.header.as_ref(), p.claims.as_ref());
            proof["jkt"] = json!(p.jwk.as_ref().map(|k| k.thumbprint().as_str()));
            proof["verdict"] = match &p.verdict {
                Ok(_) => json!({ "valid": true }),
                Err(e) => json!({
                    "valid": false,
                    "error": ErrorCode::from(e).as_str(),
                    "reason": e.reason(),
                    "message": e.to_string(),
                }),
            };
            out["proof"] = proof;
        }
        if let Some(t) = &report.token {
            let mut token = decoded(t.header.as_ref(), t.claims.as_ref());
            token["verdict"] = match &t.verdict {
                None => Value::Null,
                Some(Ok(_)) => json!({ "valid": true }),
                Some(Err(e)) => json!({
                    "valid": false,
                    "error": ErrorCode::from(e).as_str(),
                    "reason": e.reason(),
                    "message": e.to_string(),
                }),
            };
            out["token"] = token;
        }
        outln!("{out}");
    } else {
        let pretty = |v: Option<&Map<String, Value>>| {
            v.and_then(|m| serde_json::to_string_pretty(m).ok())
                .unwrap_or_else(|| "(not decodable)".into())
                .replace('\n', "\n    ")
        };
        if let Some(p) = &report.proof {
            outln!("DPoP proof");
            outln!("  header: {}", pretty(p.header.as_ref()));
            outln!("  claims: {}", pretty(p.claims.as_ref()));
        }
        if let Some(t) = &report.token {
            outln!("Access token");
            outln!("  header: {}", pretty(t.header.as_ref()));
            outln!("  claims: {}", pretty(t.claims.as_ref()));
        }
        outln!("Checks");
        let width = report
            .checks
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(0);
        for c in &report.checks {
            let status = match c.status {
                Status::Pass => "pass",
                Status::Fail => "FAIL",
                Status::Skipped => "skip",
            };
            outln!("  {status}  {:width$}  {}", c.name, c.detail);
        }
        let performed = report
            .checks
            .iter()
            .filter(|c| c.status != Status::Skipped)
            .count();
        if failed == 0 {
            outln!("All {performed} checks performed passed.");
        } else {
            outln!("{failed} of {performed} checks performed failed.");
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
