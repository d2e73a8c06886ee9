//! `keybound doctor`: probe a deployment (the AS's metadata, clock, nonces; a resource's
//! challenge, binding and public URL) and print findings a person can act on. Wiring only:
//! tokens and calls go through `keybound-client`, challenges are parsed by `keybound-core`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use keybound_client::{ClientAuth, DpopClient, IssuerMetadata, load_key_file};
use keybound_core::challenge::{ParsedChallenge, Scheme, parse_challenges};
use keybound_core::dpop::{MAX_PROOF_LEN, NoncePolicy, ProofRequest, ProofVerifier};
use keybound_core::jws::UntrustedJws;
use keybound_core::{Algorithm, ErrorCode, Htu, KeySet, SigningKey, UnixTime};
use reqwest::header::{AUTHORIZATION, DATE, HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};

use crate::Failure;

use crate::output::outln;

/// Largest metadata or JWKS document read.
const MAX_DOCUMENT: usize = 256 * 1024;
/// Skew above which the clock finding warns, and above which it fails, in seconds.
const SKEW_WARN: f64 = 5.0;
const SKEW_FAIL: f64 = 30.0;

/// Options of `keybound doctor`.
#[derive(Debug, clap::Args)]
pub(crate) struct DoctorArgs {
    /// The issuer URL, exactly as clients and resource servers are configured with it.
    #[arg(long, env = "KEYBOUND_ISSUER")]
    issuer: String,
    /// A protected resource to probe with GET, e.g. `https://api.example/orders`.
    #[arg(long)]
    resource: Option<String>,
    /// A client allowed the client credentials grant: enables the token, nonce, binding and
    /// public-URL probes.
    #[arg(long, env = "KEYBOUND_CLIENT_ID", requires = "key")]
    client_id: Option<String>,
    /// The client's secret (better from KEYBOUND_CLIENT_SECRET than on the command line).
    /// Without one, the client is public.
    #[arg(long, env = "KEYBOUND_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    /// The client's DPoP key file.
    #[arg(long, env = "KEYBOUND_KEY")]
    key: Option<PathBuf>,
    /// Scopes to request.
    #[arg(long)]
    scope: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Severity {
    Ok,
    Warn,
    Fail,
    Skip,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "fail",
            Self::Skip => "skip",
        }
    }
}

/// One thing found, with what to do about it.
#[derive(Debug)]
struct Finding {
    check: &'static str,
    severity: Severity,
    detail: String,
    fix: Option<String>,
}

fn ok(check: &'static str, detail: impl Into<String>) -> Finding {
    Finding {
        check,
        severity: Severity::Ok,
        detail: detail.into(),
        fix: None,
    }
}

fn warn(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        check,
        severity: Severity::Warn,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

fn fail(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        check,
        severity: Severity::Fail,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

fn skip(check: &'static str, detail: impl Into<String>) -> Finding {
    Finding {
        check,
        severity: Severity::Skip,
        detail: detail.into(),
        fix: None,
    }
}

pub(crate) fn doctor(args: &DoctorArgs, as_json: bool) -> ExitCode {
    let findings = crate::inspect::runtime().and_then(|rt| rt.block_on(probe(args)));
    match findings {
        Ok(findings) => print(args, &findings, as_json),
        Err(failure) => failure.report(as_json),
    }
}

fn print(args: &DoctorArgs, findings: &[Finding], as_json: bool) -> ExitCode {
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    let failures = count(Severity::Fail);
    if as_json {
        let list: Vec<Value> = findings
            .iter()
            .map(|f| {
                json!({
                    "check": f.check,
                    "severity": f.severity.as_str(),
                    "detail": f.detail,
                    "fix": f.fix,
                })
            })
            .collect();
        outln!(
            "{}",
            json!({
                "issuer": args.issuer,
                "resource": args.resource,
                "ok": failures == 0,
                "findings": list,
            })
        );
    } else {
        outln!("keybound doctor {}", args.issuer);
        let width = findings.iter().map(|f| f.check.len()).max().unwrap_or(0);
        for f in findings {
            let label = match f.severity {
                Severity::Ok => "ok  ",
                Severity::Warn => "WARN",
                Severity::Fail => "FAIL",
                Severity::Skip => "skip",
            };
            outln!("  {label}  {:width$}  {}", f.check, f.detail);
            if let Some(fix) = &f.fix {
                outln!("        {:width$}  fix: {fix}", "");
            }
        }
        outln!(
            "{} ok, {} warnings, {failures} failures, {} skipped",
            count(Severity::Ok),
            count(Severity::Warn),
            count(Severity::Skip)
        );
    }
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn http_client() -> Result<reqwest::Client, Failure> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| Failure(format!("cannot build the HTTP client: {e}")))
}

async fn read_json(mut response: reqwest::Response) -> Result<Value, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_DOCUMENT {
            return Err(format!("larger than {MAX_DOCUMENT} bytes"));
        }
    }
    serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))
}

fn unix_now() -> UnixTime {
    UnixTime::from_secs(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}

async fn probe(args: &DoctorArgs) -> Result<Vec<Finding>, Failure> {
    let http = http_client()?;
    let mut out = Vec::new();
    let key = match &args.key {
        Some(file) => load_key_file(file, None).map_err(|e| Failure(e.to_string()))?,
        // Without a key file the probes that need a proof use a throwaway key.
        None => SigningKey::generate(Algorithm::Es256, &SystemRandom::new())
            .map(|(key, _)| key)
            .map_err(|e| Failure(e.to_string()))?,
    };
    let client = DpopClient::new(key).map_err(|e| Failure(e.to_string()))?;

    let document = metadata(&http, &args.issuer, &mut out).await;
    let discovered = match client.discover(&args.issuer).await {
        Ok(metadata) => {
            out.push(ok(
                "issuer",
                format!("the metadata names the issuer {} exactly", metadata.issuer),
            ));
            Some(metadata)
        }
        Err(error) => {
            let named = document
                .as_ref()
                .and_then(|d| d["issuer"].as_str())
                .filter(|named| *named != args.issuer);
            let fix = match named {
                Some(named) => format!(
                    "configure clients and resource servers with exactly {named} (RFC 8414 §3.3), or make the AS's issuer setting {}",
                    args.issuer
                ),
                None => "serve the metadata at the issuer URL with /.well-known/oauth-authorization-server appended, naming this exact issuer".to_owned(),
            };
            out.push(fail(
                "issuer",
                format!("keybound-client cannot use this issuer: {error}"),
                fix,
            ));
            None
        }
    };
    if let Some(document) = &document {
        out.push(dpop_algs(document));
        out.push(token_endpoint(document));
        out.push(jwks(&http, document).await);
    }

    // The token endpoint: a DPoP-bound token, and what it says about nonces.
    let token = match (&args.client_id, &discovered) {
        (None, _) => {
            out.push(skip(
                "token",
                "not tried: give --client-id and --key (and --client-secret) of a client allowed client_credentials",
            ));
            out.push(skip("nonce", "not tried: needs a token request"));
            None
        }
        (Some(_), None) => {
            out.push(skip("token", "not tried: discovery failed"));
            out.push(skip("nonce", "not tried: discovery failed"));
            None
        }
        (Some(client_id), Some(metadata)) => {
            get_token(&client, metadata, client_id, args, &mut out).await
        }
    };

    if let Some(resource) = &args.resource {
        let as_algs = document
            .as_ref()
            .map(|d| string_list(&d["dpop_signing_alg_values_supported"]))
            .unwrap_or_default();
        out.push(challenge(&http, resource, &as_algs).await);
        match &token {
            Some(token) => {
                out.push(call(&client, resource, token).await);
                out.push(bearer_downgrade(&http, resource, token).await);
            }
            None => {
                out.push(skip("resource_call", "not tried: no token"));
                out.push(skip("bearer_downgrade", "not tried: no token"));
            }
        }
    }
    Ok(out)
}

/// The metadata at the RFC 8414 location, and the clock skew from its response's `Date`.
async fn metadata(http: &reqwest::Client, issuer: &str, out: &mut Vec<Finding>) -> Option<Value> {
    let Some(url) = keybound_core::metadata::well_known_url(issuer) else {
        out.push(fail(
            "metadata",
            format!("{issuer} is not an http(s) URL without query or fragment"),
            "give the issuer URL exactly as the AS publishes it, e.g. https://as.example",
        ));
        return None;
    };
    let sent = SystemTime::now();
    let response = match http.get(&url).send().await {
        Ok(response) => response,
        Err(error) => {
            out.push(fail(
                "metadata",
                format!("{url}: {error}"),
                "check the issuer URL, and that the AS runs and is reachable from here",
            ));
            out.push(skip("clock_skew", "not measured: no response"));
            return None;
        }
    };
    let received = SystemTime::now();
    let date = response.headers().get(DATE).cloned();
    let status = response.status();
    let finding = if status.is_success() {
        match read_json(response).await {
            Ok(document) if document.is_object() => {
                out.push(ok("metadata", format!("RFC 8414 metadata at {url}")));
                Some(document)
            }
            Ok(_) => {
                out.push(fail(
                    "metadata",
                    format!("{url} is not a JSON object"),
                    "serve the RFC 8414 metadata document there",
                ));
                None
            }
            Err(error) => {
                out.push(fail(
                    "metadata",
                    format!("{url}: {error}"),
                    "serve the RFC 8414 metadata document there",
                ));
                None
            }
        }
    } else {
        out.push(fail(
            "metadata",
            format!("{url} answered {status}"),
            format!("serve the RFC 8414 metadata at {url} (the well-known path goes before the issuer's path)"),
        ));
        None
    };
    out.push(clock(
        date.as_ref().and_then(|d| d.to_str().ok()),
        sent,
        received,
    ));
    finding
}

/// The server's clock from `Date` (whole seconds, so ±1 s) against the middle of the round trip.
fn clock(date: Option<&str>, sent: SystemTime, received: SystemTime) -> Finding {
    let fix = "synchronise the clocks with NTP: a proof is accepted only from about 60 s before to 30 s after the server's time";
    let Some(date) = date else {
        return warn(
            "clock_skew",
            "the server sent no Date header: the skew cannot be measured",
            "send Date (RFC 9110 §6.6.1), or check the server's clock by hand",
        );
    };
    let Ok(server) = httpdate::parse_http_date(date) else {
        return warn(
            "clock_skew",
            format!("unreadable Date header {date:?}"),
            "send Date in the RFC 9110 IMF-fixdate format",
        );
    };
    let secs = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    // Date is truncated to the second: its true value is half a second later on average.
    let skew = secs(server) + 0.5 - (secs(sent) + secs(received)) / 2.0;
    let direction = if skew >= 0.0 { "ahead of" } else { "behind" };
    let detail = if skew.abs() < 1.0 {
        format!("the server's clock agrees with this machine's to within a second (Date: {date})")
    } else {
        format!(
            "the server's clock is {:.0} s {direction} this machine's (Date: {date}; ±1 s)",
            skew.abs()
        )
    };
    if skew.abs() > SKEW_FAIL {
        fail("clock_skew", detail, fix)
    } else if skew.abs() > SKEW_WARN {
        warn("clock_skew", detail, fix)
    } else {
        ok("clock_skew", detail)
    }
}

fn string_list(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// `dpop_signing_alg_values_supported`: present, FAPI 2.0 algorithms, nothing symmetric.
fn dpop_algs(document: &Value) -> Finding {
    let member = &document["dpop_signing_alg_values_supported"];
    if !member.is_array() {
        return fail(
            "dpop_algs",
            "no dpop_signing_alg_values_supported in the metadata: the AS does not advertise DPoP (RFC 9449 §5.1)",
            "enable DPoP on the AS and publish the algorithms it accepts in proofs (ES256, EdDSA, PS256)",
        );
    }
    let names = string_list(member);
    let list = names.join(" ");
    let unsafe_algs: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| n.eq_ignore_ascii_case("none") || n.to_ascii_uppercase().starts_with("HS"))
        .collect();
    if !unsafe_algs.is_empty() {
        return fail(
            "dpop_algs",
            format!(
                "advertises {}: a proof must be signed with an asymmetric key (RFC 9449 §4.2)",
                unsafe_algs.join(" ")
            ),
            "accept only ES256, EdDSA and PS256 in proofs",
        );
    }
    let fapi = |n: &&String| Algorithm::from_name(n).is_some_and(|a| Algorithm::FAPI2.contains(&a));
    if !names.iter().any(|n| fapi(&n)) {
        return fail(
            "dpop_algs",
            format!("[{list}] has none of the FAPI 2.0 algorithms ES256, EdDSA, PS256"),
            "accept ES256 (and EdDSA, PS256) in proofs",
        );
    }
    if names.iter().any(|n| n == "RS256") {
        return warn(
            "dpop_algs",
            format!("[{list}] includes RS256, which FAPI 2.0 does not allow"),
            "drop RS256 from the accepted proof algorithms",
        );
    }
    ok("dpop_algs", format!("[{list}]"))
}

/// The token endpoint is https, except on loopback for development.
fn token_endpoint(document: &Value) -> Finding {
    let Some(endpoint) = document["token_endpoint"].as_str() else {
        return fail(
            "token_endpoint",
            "the metadata has no token_endpoint",
            "publish token_endpoint in the metadata",
        );
    };
    let Ok(url) = Url::parse(endpoint) else {
        return fail(
            "token_endpoint",
            format!("{endpoint:?} is not a URL"),
            "publish an absolute https URL",
        );
    };
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => ok("token_endpoint", format!("{endpoint} (https)")),
        "http" if loopback => ok(
            "token_endpoint",
            format!("{endpoint} (http on loopback: fine for development only)"),
        ),
        _ => warn(
            "token_endpoint",
            format!(
                "{endpoint} is not https: client secrets and tokens cross the network in clear"
            ),
            "serve the token endpoint over https (or behind a TLS-terminating proxy whose public URL the AS publishes)",
        ),
    }
}

/// The JWKS resource servers verify tokens with.
async fn jwks(http: &reqwest::Client, document: &Value) -> Finding {
    let fix = "publish the AS's public signing keys at jwks_uri: resource servers verify tokens with them";
    let Some(uri) = document["jwks_uri"].as_str() else {
        return fail("jwks", "the metadata has no jwks_uri", fix);
    };
    let response = match http.get(uri).send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => return fail("jwks", format!("{uri} answered {}", r.status()), fix),
        Err(error) => return fail("jwks", format!("{uri}: {error}"), fix),
    };
    let document = match read_json(response).await {
        Ok(document) => document,
        Err(error) => return fail("jwks", format!("{uri}: {error}"), fix),
    };
    match KeySet::from_jwks_json(document.to_string().as_bytes()) {
        Ok(keys) if !keys.is_empty() => ok(
            "jwks",
            format!("{} usable signing key(s) at {uri}", keys.len()),
        ),
        Ok(_) => fail("jwks", format!("{uri} has no usable key with a kid"), fix),
        Err(error) => fail("jwks", format!("{uri}: {error}"), fix),
    }
}

/// A DPoP-bound token by client credentials; then whether the AS asked for or issued a nonce.
async fn get_token(
    client: &DpopClient,
    metadata: &IssuerMetadata,
    client_id: &str,
    args: &DoctorArgs,
    out: &mut Vec<Finding>,
) -> Option<String> {
    let auth = match &args.client_secret {
        Some(secret) => ClientAuth::Secret {
            client_id: client_id.to_owned(),
            client_secret: secret.clone(),
        },
        None => ClientAuth::Public {
            client_id: client_id.to_owned(),
        },
    };
    let token = match client
        .client_credentials(metadata, &auth, args.scope.as_deref())
        .await
    {
        Ok(token) => token,
        Err(error) => {
            let text = error.to_string();
            let fix = if text.contains("invalid_client") {
                "check --client-id and --client-secret against the AS's client registration"
            } else if text.contains("unauthorized_client")
                || text.contains("unsupported_grant_type")
            {
                "allow this client the client_credentials grant, or probe with one that has it"
            } else if text.contains("not DPoP") {
                "enable DPoP-bound tokens for this client on the AS"
            } else {
                "read the AS's error above; `keybound token -v` shows the exchange"
            };
            out.push(fail(
                "token",
                format!("client credentials refused: {text}"),
                fix,
            ));
            out.push(skip("nonce", "not tried: no token"));
            return None;
        }
    };
    out.push(ok(
        "token",
        format!(
            "a DPoP-bound token (token_type {}, expires in {} s), bound to jkt {}",
            token.token_type,
            token.expires_in.unwrap_or_default(),
            client.thumbprint()
        ),
    ));
    // Whether the AS sent a nonce shows in the next proof the client would make for it.
    let issued = client
        .proof("POST", &metadata.token_endpoint, None)
        .ok()
        .and_then(|proof| {
            UntrustedJws::parse(&proof, MAX_PROOF_LEN)
                .ok()
                .map(|jws| jws.payload().contains_key("nonce"))
        })
        .unwrap_or(false);
    let required = client.nonce_retries() > 0;
    out.push(match (required, issued) {
        (true, _) => ok(
            "nonce",
            "the token endpoint requires a DPoP nonce (use_dpop_nonce, answered with one retry)",
        ),
        (false, true) => ok(
            "nonce",
            "the token endpoint issues DPoP-Nonce, and does not require one yet",
        ),
        (false, false) => warn(
            "nonce",
            "the token endpoint neither issues nor requires DPoP nonces: a proof made in advance stays usable for its whole iat window",
            "consider server nonces (keybound: dpop.require_nonce = true), RFC 9449 §8",
        ),
    });
    Some(token.access_token)
}

fn challenges(headers: &HeaderMap) -> Vec<ParsedChallenge> {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| parse_challenges(v).ok())
        .flatten()
        .collect()
}

fn raw_challenges(headers: &HeaderMap) -> String {
    let all: Vec<&str> = headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if all.is_empty() {
        "no WWW-Authenticate".to_owned()
    } else {
        format!("WWW-Authenticate: {}", all.join(", "))
    }
}

/// Without credentials: 401 with a `DPoP` challenge naming its `algs`.
async fn challenge(http: &reqwest::Client, resource: &str, as_algs: &[String]) -> Finding {
    let response = match http.get(resource).send().await {
        Ok(r) => r,
        Err(error) => {
            return fail(
                "resource_challenge",
                format!("{resource}: {error}"),
                "check the resource URL and that it is reachable from here",
            );
        }
    };
    let status = response.status();
    if status.is_success() {
        return fail(
            "resource_challenge",
            format!("{resource} answered {status} without any credentials"),
            "protect it (keybound-resource's layer, or keybound gateway in front of it)",
        );
    }
    let found = challenges(response.headers());
    let dpop = found.iter().find(|c| c.scheme() == Some(Scheme::DPoP));
    match (status, dpop) {
        (StatusCode::UNAUTHORIZED, Some(c)) => {
            let algs = c.algs();
            if algs.is_empty() {
                return warn(
                    "resource_challenge",
                    "401 with a DPoP challenge, without algs",
                    "name the accepted proof algorithms in the challenge's algs (RFC 9449 §7.1)",
                );
            }
            let names: Vec<&str> = algs.iter().map(|a| a.name()).collect();
            let common = as_algs.is_empty() || names.iter().any(|n| as_algs.iter().any(|a| a == n));
            if common {
                ok(
                    "resource_challenge",
                    format!("401 with a DPoP challenge, algs {}", names.join(" ")),
                )
            } else {
                fail(
                    "resource_challenge",
                    format!(
                        "the resource accepts proofs signed with {} and the AS with {}: no algorithm works at both",
                        names.join(" "),
                        as_algs.join(" ")
                    ),
                    "accept a common algorithm (ES256) at both",
                )
            }
        }
        (_, None) => fail(
            "resource_challenge",
            format!(
                "{status} without a DPoP challenge ({})",
                raw_challenges(response.headers())
            ),
            "the resource does not offer DPoP: protect it with a DPoP-aware verifier (keybound-resource, keybound gateway)",
        ),
        (status, Some(_)) => fail(
            "resource_challenge",
            format!("{status} with a DPoP challenge; a request without credentials should get 401"),
            "answer 401 with WWW-Authenticate: DPoP algs=\"...\" when no credentials are sent",
        ),
    }
}

/// The DPoP-bound token with a fresh proof, through keybound-client. A refusal of a proof that
/// keybound's own verifier accepts for this URL points at the resource's idea of its URL.
async fn call(client: &DpopClient, resource: &str, token: &str) -> Finding {
    let response = match client.call(Method::GET, resource, token, None).await {
        Ok(r) => r,
        Err(error) => {
            return fail(
                "resource_call",
                error.to_string(),
                "check the resource URL and that it is reachable from here",
            );
        }
    };
    let status = response.status();
    if status.is_success() {
        return ok(
            "resource_call",
            format!("GET with the DPoP-bound token and a fresh proof: {status}"),
        );
    }
    let found = challenges(response.headers());
    let with_error = found.iter().find(|c| c.error().is_some());
    let error = with_error.and_then(ParsedChallenge::error);
    let description = with_error
        .and_then(|c| c.param("error_description"))
        .map(str::to_owned);
    let said = format!(
        "{status} {}",
        description
            .as_deref()
            .map_or_else(|| raw_challenges(response.headers()), |d| format!("({d})"))
    );
    match error {
        Some(ErrorCode::InvalidDpopProof)
            if description.as_deref().is_none_or(|d| d.contains("htu")) =>
        {
            let evidence = if proof_is_valid_for(client, resource, token) {
                format!("a proof that keybound's verifier accepts for {resource} was refused")
            } else {
                format!("a proof for {resource} was refused")
            };
            let origin = Url::parse(resource)
                .map(|u| u.origin().ascii_serialization())
                .unwrap_or_else(|_| resource.to_owned());
            fail(
                "htu",
                format!(
                    "htu mismatch: the resource server sees a different URL; set its public URL ({evidence}: {said})"
                ),
                format!(
                    "configure the resource server's public URL as {origin} (with any path prefix clients use), e.g. keybound gateway --public-url {origin}; never derive it from Host or X-Forwarded-* headers"
                ),
            )
        }
        Some(ErrorCode::InvalidDpopProof) => fail(
            "resource_call",
            format!("the resource refused the proof: {said}"),
            "compare the two clocks (clock_skew above) and the resource's accepted algorithms; `keybound inspect` explains a proof check by check",
        ),
        Some(ErrorCode::UseDpopNonce) => fail(
            "resource_call",
            format!("the resource refused its own nonce on the retry: {said}"),
            "check that every replica of the resource shares the nonce secrets (KEYBOUND_NONCE_SECRETS)",
        ),
        Some(ErrorCode::InvalidToken) => {
            let claims = keybound_core::diagnose::access_token(
                token,
                &keybound_core::diagnose::TokenExpectations::default(),
                unix_now(),
            )
            .parsed;
            let which = claims.map_or_else(String::new, |c| {
                format!(
                    " (the token has iss {} and aud {})",
                    c.iss,
                    serde_json::to_string(&c.aud).unwrap_or_default()
                )
            });
            fail(
                "resource_call",
                format!("the resource refused the token: {said}"),
                format!(
                    "configure the resource with this AS's issuer and the audience its tokens carry{which}"
                ),
            )
        }
        Some(ErrorCode::InsufficientScope) => warn(
            "resource_call",
            format!("the token lacks a scope the resource requires: {said}"),
            "request the scope with --scope",
        ),
        _ => fail(
            "resource_call",
            format!("the resource answered {said}"),
            "read the resource server's logs for this request",
        ),
    }
}

/// Whether a fresh proof from `client` for GET `resource` passes keybound's own verifier:
/// evidence that a refusal is about the resource's URL, not the proof.
fn proof_is_valid_for(client: &DpopClient, resource: &str, token: &str) -> bool {
    let (Ok(proof), Ok(htu)) = (
        client.proof("GET", resource, Some(token)),
        Htu::parse(resource),
    ) else {
        return false;
    };
    let request = ProofRequest {
        method: "GET",
        htu: &htu,
        now: unix_now(),
        access_token: Some(token),
        nonce: NoncePolicy::NotUsed,
    };
    ProofVerifier::default().verify(&proof, &request).is_ok()
}

/// The DPoP-bound token sent as a bearer token, without a proof: it must be refused.
async fn bearer_downgrade(http: &reqwest::Client, resource: &str, token: &str) -> Finding {
    let response = match http
        .get(resource)
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .send()
        .await
    {
        Ok(r) => r,
        Err(error) => {
            return fail(
                "bearer_downgrade",
                format!("{resource}: {error}"),
                "check the resource URL",
            );
        }
    };
    let status = response.status();
    if status.is_success() {
        fail(
            "bearer_downgrade",
            format!(
                "the resource accepted the DPoP-bound token as a Bearer token without a proof ({status}): a stolen token works without its key"
            ),
            "refuse tokens with cnf.jkt presented with the Bearer scheme (RFC 9449 §7.2); keybound-resource does",
        )
    } else if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::BAD_REQUEST) {
        ok(
            "bearer_downgrade",
            format!(
                "the DPoP-bound token presented as Bearer is refused: {status} ({})",
                raw_challenges(response.headers())
            ),
        )
    } else {
        warn(
            "bearer_downgrade",
            format!("the DPoP-bound token presented as Bearer got {status}, expected 401"),
            "answer 401 invalid_token to a DPoP-bound token sent as Bearer (RFC 9449 §7.2)",
        )
    }
}
