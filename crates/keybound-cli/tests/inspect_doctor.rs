//! `keybound inspect` and `keybound doctor` as a user runs them: the check or finding that names the problem, `--json`, exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Killed, free_port};
use std::io::{BufRead as _, Read as _, Write as _};
use std::process::{Command, Output, Stdio};

use aws_lc_rs::rand::SystemRandom;
use keybound_core::access_token::{Audience, Confirmation};
use keybound_core::dpop::ProofBuilder;
use keybound_core::{AccessTokenClaims, AccessTokenSigner, Algorithm, SigningKey, UnixTime};
use serde_json::{Value, json};

/// The time every inspect test evaluates at (`--at`), so no test depends on the clock.
const NOW: u64 = 1_700_000_000;
const ISSUER: &str = "https://as.example";
const AUDIENCE: &str = "https://api.example";
const URL: &str = "https://api.example/orders";

fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keybound"));
    for name in [
        "KEYBOUND_LISTEN",
        "KEYBOUND_JSON",
        "KEYBOUND_ISSUER",
        "KEYBOUND_CLIENT_ID",
        "KEYBOUND_CLIENT_SECRET",
        "KEYBOUND_KEY",
        "KEYBOUND_CONFIG",
    ] {
        command.env_remove(name);
    }
    command
}

fn keybound(args: &[&str]) -> Output {
    command().args(args).output().unwrap()
}

fn temp_file(name: &str, contents: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("keybound-inspect-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

/// The entry named `name` in `list` (inspect's `checks`, doctor's `findings`).
fn entry<'a>(report: &'a Value, list: &str, name: &str) -> &'a Value {
    report[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no {name} in {report:#}"))
}

// ---------------------------------------------------------------------------------------------
// inspect

/// An AS key and its JWKS file, a client key, and helpers to mint tokens and proofs.
struct Fixture {
    signer: AccessTokenSigner,
    jwks: std::path::PathBuf,
    client: SigningKey,
    rng: SystemRandom,
}

impl Fixture {
    fn new(name: &str) -> Self {
        let rng = SystemRandom::new();
        let (as_key, _) = SigningKey::generate(Algorithm::Es256, &rng).unwrap();
        let signer = AccessTokenSigner::new(as_key, "as-1");
        let jwks = temp_file(
            &format!("{name}.jwks.json"),
            &json!({ "keys": [signer.jwks_entry()] }).to_string(),
        );
        let (client, _) = SigningKey::generate(Algorithm::Es256, &rng).unwrap();
        Self {
            signer,
            jwks,
            client,
            rng,
        }
    }

    fn token_bound_to(&self, key: &SigningKey) -> String {
        let claims = AccessTokenClaims {
            iss: ISSUER.into(),
            sub: "alice".into(),
            aud: Audience::One(AUDIENCE.into()),
            exp: NOW + 300,
            iat: NOW,
            nbf: None,
            jti: "t-1".into(),
            client_id: "app".into(),
            scope: Some("read".into()),
            cnf: Some(Confirmation {
                jkt: Some(key.public_jwk().thumbprint().clone()),
                x5t_s256: None,
            }),
        };
        self.signer.sign(&claims).unwrap()
    }

    fn token(&self) -> String {
        self.token_bound_to(&self.client)
    }

    fn proof(&self, url: &str, iat: u64, token: &str) -> String {
        ProofBuilder::new("GET", url, UnixTime::from_secs(iat))
            .access_token(token)
            .sign(&self.client, &self.rng)
            .unwrap()
    }

    /// `keybound --json inspect` of `proof` and `token` for GET `URL`, with the AS's keys.
    fn inspect(&self, proof: &str, token: &str) -> (Option<i32>, Value) {
        let at = NOW.to_string();
        let out = keybound(&[
            "--json",
            "inspect",
            "--proof",
            proof,
            "--token",
            token,
            "--method",
            "GET",
            "--url",
            URL,
            "--issuer",
            ISSUER,
            "--audience",
            AUDIENCE,
            "--jwks",
            self.jwks.to_str().unwrap(),
            "--at",
            &at,
        ]);
        (out.status.code(), json_of(&out))
    }
}

#[test]
fn inspect_passes_a_valid_proof_and_token() {
    let f = Fixture::new("valid");
    let token = f.token();
    let (code, report) = f.inspect(&f.proof(URL, NOW - 5, &token), &token);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["ok"], true);
    for check in report["checks"].as_array().unwrap() {
        assert_ne!(check["status"], "fail", "{check}");
    }
    for name in [
        "proof.signature",
        "proof.htu",
        "proof.iat",
        "proof.ath",
        "proof.verified",
        "token.signature",
        "token.iss",
        "token.aud",
        "token.exp",
        "token.verified",
        "binding",
    ] {
        assert_eq!(entry(&report, "checks", name)["status"], "pass", "{name}");
    }
    assert_eq!(report["proof"]["verdict"]["valid"], true);
    assert_eq!(report["token"]["verdict"]["valid"], true);
    assert_eq!(report["proof"]["claims"]["htu"], URL, "decoded claims");
    assert_eq!(report["token"]["header"]["typ"], "at+jwt", "decoded header");
    assert_eq!(
        report["proof"]["jkt"].as_str(),
        Some(f.client.public_jwk().thumbprint().as_str())
    );
}

#[test]
fn inspect_names_the_htu_check_for_a_proof_made_for_another_url() {
    let f = Fixture::new("htu");
    let token = f.token();
    let (code, report) = f.inspect(&f.proof("https://api.example/other", NOW, &token), &token);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["ok"], false);
    let htu = entry(&report, "checks", "proof.htu");
    assert_eq!(htu["status"], "fail");
    assert_eq!(htu["reason"], "htu_mismatch");
    let detail = htu["detail"].as_str().unwrap();
    assert!(
        detail.contains("https://api.example/other") && detail.contains(URL),
        "both normalised forms: {detail}"
    );
    assert_eq!(report["proof"]["verdict"]["reason"], "htu_mismatch");
    assert_eq!(report["proof"]["verdict"]["error"], "invalid_dpop_proof");
    // Only the URL is wrong: the other checks still ran and passed.
    for name in [
        "proof.signature",
        "proof.iat",
        "proof.ath",
        "token.verified",
        "binding",
    ] {
        assert_eq!(entry(&report, "checks", name)["status"], "pass", "{name}");
    }
}

#[test]
fn inspect_shows_an_expired_iat_with_its_skew() {
    let f = Fixture::new("iat");
    let token = f.token();
    let (code, report) = f.inspect(&f.proof(URL, NOW - 3600, &token), &token);
    assert_eq!(code, Some(1));
    let iat = entry(&report, "checks", "proof.iat");
    assert_eq!(
        (&iat["status"], &iat["reason"]),
        (&json!("fail"), &json!("iat_too_old"))
    );
    assert!(
        iat["detail"].as_str().unwrap().contains("3600 s ago"),
        "{iat}"
    );
    assert_eq!(entry(&report, "checks", "proof.htu")["status"], "pass");
}

#[test]
fn inspect_catches_an_ath_for_another_token() {
    let f = Fixture::new("ath");
    let token = f.token();
    let (code, report) = f.inspect(&f.proof(URL, NOW, "another-access-token"), &token);
    assert_eq!(code, Some(1));
    let ath = entry(&report, "checks", "proof.ath");
    assert_eq!(
        (&ath["status"], &ath["reason"]),
        (&json!("fail"), &json!("ath_mismatch"))
    );
    assert_eq!(report["proof"]["verdict"]["reason"], "ath_mismatch");
    assert_eq!(entry(&report, "checks", "token.verified")["status"], "pass");
}

#[test]
fn inspect_catches_a_token_bound_to_another_key() {
    let f = Fixture::new("cnf");
    let (thief, _) = SigningKey::generate(Algorithm::Es256, &f.rng).unwrap();
    let token = f.token_bound_to(&thief);
    let (code, report) = f.inspect(&f.proof(URL, NOW, &token), &token);
    assert_eq!(code, Some(1), "{report:#}");
    let binding = entry(&report, "checks", "binding");
    assert_eq!(binding["status"], "fail");
    assert_eq!(binding["reason"], "key_mismatch");
    let detail = binding["detail"].as_str().unwrap();
    assert!(
        detail.contains(thief.public_jwk().thumbprint().as_str())
            && detail.contains(f.client.public_jwk().thumbprint().as_str()),
        "both thumbprints: {detail}"
    );
    // The proof and the token are each fine on their own: only the binding is wrong.
    assert_eq!(entry(&report, "checks", "proof.verified")["status"], "pass");
    assert_eq!(entry(&report, "checks", "token.verified")["status"], "pass");
}

#[test]
fn inspect_reads_files_and_standard_input_and_explains_in_text() {
    let f = Fixture::new("io");
    let token = f.token();
    let proof_file = temp_file(
        "io.proof",
        &format!(
            "DPoP: {}\n",
            f.proof("https://api.example/other", NOW, &token)
        ),
    );
    let mut child = command()
        .args([
            "inspect",
            "--proof",
            &format!("@{}", proof_file.display()),
            "--token",
            "-",
            "--method",
            "GET",
            "--url",
            URL,
            "--at",
            &NOW.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("Authorization: DPoP {token}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    let htu_line = text
        .lines()
        .find(|l| l.contains("proof.htu"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(htu_line.contains("FAIL"), "{htu_line}");
    let signature = text
        .lines()
        .find(|l| l.contains("token.signature"))
        .unwrap();
    assert!(
        signature.contains("skip") && signature.contains("no keys"),
        "no keys given: {signature}"
    );
    assert!(
        text.contains("\"htu\": \"https://api.example/other\""),
        "decoded claims: {text}"
    );
}

#[test]
fn inspect_usage_errors_exit_2() {
    for args in [
        &["inspect"][..],
        &["inspect", "--proof", "a.b.c"],
        &[
            "inspect",
            "--proof",
            "a.b.c",
            "--method",
            "GET",
            "--url",
            "/relative",
        ],
        &[
            "inspect", "--proof", "-", "--token", "-", "--method", "GET", "--url", URL,
        ],
        &["inspect", "--token", "a.b.c", "--max-age", "0"],
    ] {
        assert_eq!(keybound(args).status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn new_subcommands_have_an_example_in_their_help() {
    for command in ["inspect", "doctor"] {
        let out = keybound(&[command, "--help"]);
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains(&format!("Example: `keybound {command} ")),
            "{text}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// doctor

/// Reads a child's standard output on a thread until it closes (so the child never writes to
/// a closed pipe), handing over the lines as they come.
fn drain(stdout: std::process::ChildStdout) -> std::sync::mpsc::IntoIter<String> {
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = send.send(line);
        }
    });
    receive.into_iter()
}

/// `keybound serve` in development mode: the server, its issuer and the demo client's secret.
fn serve(name: &str) -> (Killed, String, String, std::path::PathBuf) {
    let port = free_port();
    let data = temp_file("unused", "").with_file_name(format!("{name}-{port}"));
    let mut child = command()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = drain(child.stdout.take().unwrap());
    let server = Killed(child);
    // The banner is printed once the listener is bound.
    let secret = lines
        .find(|line| line.contains("demo-confidential"))
        .and_then(|line| {
            line.split("secret ")
                .nth(1)
                .and_then(|t| t.split_whitespace().next())
                .map(str::to_owned)
        });
    let key = data.join("demo-dpop-key.p8");
    (
        server,
        format!("http://127.0.0.1:{port}"),
        secret.expect("the banner names the demo secret"),
        key,
    )
}

fn doctor(
    issuer: &str,
    resource: &str,
    secret: &str,
    key: &std::path::Path,
) -> (Option<i32>, Value) {
    let out = keybound(&[
        "--json",
        "doctor",
        "--issuer",
        issuer,
        "--resource",
        resource,
        "--client-id",
        "demo-confidential",
        "--client-secret",
        secret,
        "--key",
        key.to_str().unwrap(),
    ]);
    (out.status.code(), json_of(&out))
}

#[test]
fn doctor_reports_ok_for_the_development_server() {
    let (_server, issuer, secret, key) = serve("doctor-ok");
    let (code, report) = doctor(&issuer, &format!("{issuer}/api/whoami"), &secret, &key);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["ok"], true);
    for finding in report["findings"].as_array().unwrap() {
        assert_ne!(finding["severity"], "fail", "{finding}");
    }
    for name in [
        "metadata",
        "issuer",
        "dpop_algs",
        "token_endpoint",
        "jwks",
        "clock_skew",
        "token",
        "resource_challenge",
        "resource_call",
        "bearer_downgrade",
    ] {
        assert_eq!(
            entry(&report, "findings", name)["severity"],
            "ok",
            "{name}: {report:#}"
        );
    }
    // The development server neither requires nonces nor gives them to clients that use none:
    // a warning, not a failure.
    assert_eq!(
        entry(&report, "findings", "nonce")["severity"],
        "warn",
        "{report:#}"
    );

    // The same in text, and without credentials: the token probes are skipped, not failed.
    let out = keybound(&["doctor", "--issuer", &issuer]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("skip  token"), "{text}");
    assert!(text.contains("0 failures"), "{text}");

    // An issuer that is not the one the AS names is a failure with a fix.
    let out = keybound(&["--json", "doctor", "--issuer", &format!("{issuer}/")]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report = json_of(&out);
    let finding = entry(&report, "findings", "issuer");
    assert_eq!(finding["severity"], "fail");
    assert!(
        finding["fix"].as_str().unwrap().contains(&issuer),
        "{finding}"
    );
}

#[test]
fn doctor_finds_the_htu_mismatch_behind_a_gateway_with_another_public_url() {
    let (_server, issuer, secret, key) = serve("doctor-htu");
    // A gateway configured for a public URL that is not the one clients reach it at.
    let port = free_port();
    let mut child = command()
        .args([
            "gateway",
            "--upstream",
            &issuer,
            "--issuer",
            &issuer,
            "--audience",
            &format!("{issuer}/api"),
            "--public-url",
            "https://api.example.com",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = drain(child.stdout.take().unwrap());
    let _gateway = Killed(child);
    // It prints one line once it listens.
    lines.next().expect("the gateway starts");

    let resource = format!("http://127.0.0.1:{port}/api/whoami");
    let (code, report) = doctor(&issuer, &resource, &secret, &key);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["ok"], false);
    let htu = entry(&report, "findings", "htu");
    assert_eq!(htu["severity"], "fail");
    let detail = htu["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(
            "htu mismatch: the resource server sees a different URL; set its public URL"
        ),
        "{detail}"
    );
    assert!(
        htu["fix"]
            .as_str()
            .unwrap()
            .contains(&format!("http://127.0.0.1:{port}")),
        "{htu}"
    );
    // Everything else about the deployment is fine, and the downgrade is still refused.
    for name in [
        "metadata",
        "token",
        "resource_challenge",
        "bearer_downgrade",
    ] {
        assert_eq!(entry(&report, "findings", name)["severity"], "ok", "{name}");
    }
    let failures = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "fail")
        .count();
    assert_eq!(failures, 1, "{report:#}");
}

/// A one-file HTTP server on loopback answering every request with `respond(request head)`.
fn stub(respond: impl Fn(&str) -> String + Send + 'static) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = stream.write_all(respond(&String::from_utf8_lossy(&head)).as_bytes());
        }
    });
    base
}

fn response(status: &str, extra_headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// An AS stand-in whose clock is two minutes slow and whose metadata advertises a symmetric
/// proof algorithm and a plain-http token endpoint: each is reported.
#[test]
fn doctor_flags_a_slow_clock_and_unsafe_metadata() {
    let issuer = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let named = issuer.clone();
    let base = stub(move |_| {
        let metadata = json!({
            "issuer": named.get().unwrap(),
            "token_endpoint": "http://as.example.com/token",
            "dpop_signing_alg_values_supported": ["HS256", "ES256"],
        })
        .to_string();
        let date = httpdate::fmt_http_date(
            std::time::SystemTime::now() - std::time::Duration::from_secs(120),
        );
        response("200 OK", &format!("Date: {date}\r\n"), &metadata)
    });
    issuer.set(base.clone()).unwrap();
    let out = keybound(&["--json", "doctor", "--issuer", &base]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report = json_of(&out);
    let clock = entry(&report, "findings", "clock_skew");
    assert_eq!(clock["severity"], "fail", "{clock}");
    assert!(
        clock["detail"].as_str().unwrap().contains("behind"),
        "{clock}"
    );
    let algs = entry(&report, "findings", "dpop_algs");
    assert_eq!(algs["severity"], "fail");
    assert!(algs["detail"].as_str().unwrap().contains("HS256"), "{algs}");
    assert_eq!(
        entry(&report, "findings", "token_endpoint")["severity"],
        "warn"
    );
    assert_eq!(entry(&report, "findings", "jwks")["severity"], "fail");
    assert_eq!(entry(&report, "findings", "issuer")["severity"], "ok");
    for finding in report["findings"].as_array().unwrap() {
        if finding["severity"] != "ok" && finding["severity"] != "skip" {
            assert!(
                finding["fix"].is_string(),
                "a fix for every problem: {finding}"
            );
        }
    }
}

/// A resource that challenges for DPoP but then accepts any `Authorization` (what an API that
/// only validates the JWT does): the DPoP-bound token works as a plain Bearer token.
#[test]
fn doctor_finds_a_resource_that_accepts_a_bound_token_as_bearer() {
    let (_server, issuer, secret, key) = serve("doctor-bearer");
    let resource = stub(|head| {
        if head.to_ascii_lowercase().contains("\r\nauthorization:") {
            response("200 OK", "", r#"{"ok":true}"#)
        } else {
            response(
                "401 Unauthorized",
                "WWW-Authenticate: DPoP algs=\"ES256\"\r\n",
                "",
            )
        }
    });
    let (code, report) = doctor(&issuer, &format!("{resource}/api"), &secret, &key);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(
        entry(&report, "findings", "resource_challenge")["severity"],
        "ok"
    );
    assert_eq!(
        entry(&report, "findings", "resource_call")["severity"],
        "ok"
    );
    let downgrade = entry(&report, "findings", "bearer_downgrade");
    assert_eq!(downgrade["severity"], "fail", "{downgrade}");
    assert!(
        downgrade["detail"]
            .as_str()
            .unwrap()
            .contains("without a proof"),
        "{downgrade}"
    );
}

#[test]
fn doctor_usage_errors_exit_2() {
    assert_eq!(keybound(&["doctor"]).status.code(), Some(2));
    assert_eq!(
        keybound(&[
            "doctor",
            "--issuer",
            "http://127.0.0.1:9",
            "--client-id",
            "x"
        ])
        .status
        .code(),
        Some(2),
        "--client-id needs --key"
    );
}
