//! `keybound inspect` (and, next, `keybound doctor`) as a user runs them: the check or finding that names the problem, `--json`, exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
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
fn inspect_has_an_example_in_its_help() {
    let out = keybound(&["inspect", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Example: `keybound inspect "), "{text}");
}
