//! The `keybound` binary as a user scripts it: output, `--json`, environment, exit codes.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Killed, free_port};
use std::process::{Command, Output};

fn keybound(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keybound"))
        .args(args)
        .env_remove("KEYBOUND_LISTEN")
        .env_remove("KEYBOUND_JSON")
        .output()
        .unwrap()
}

fn temp_file(name: &str, contents: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("keybound-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn serve_prints_a_command_that_gets_a_dpop_bound_token() {
    use std::io::BufRead as _;
    let port = free_port();
    let data = temp_file("unused", "").with_file_name(format!("data-{port}"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_keybound"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .env_remove("KEYBOUND_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _server = Killed(child);
    let mut lines = std::io::BufReader::new(stdout).lines();
    let mut banner = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let last = line.trim_end().ends_with("/token");
        banner.push(line);
        if last && banner.iter().any(|l| l.contains("curl")) {
            break;
        }
    }
    let text = banner.join("\n");
    assert!(
        text.contains(&format!("issuer    http://127.0.0.1:{port}")),
        "{text}"
    );
    // Run the printed command as a user would paste it.
    let command = text[text.find("curl").unwrap()..].replace("\\\n", " ");
    let out = Command::new("sh").arg("-c").arg(&command).output().unwrap();
    let body: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{command}\n{out:?}"));
    assert_eq!(body["token_type"], "DPoP", "{body}");
    assert!(body["refresh_token"].is_string());
    // keygen, token and call against the same server, as a user would script them.
    let issuer = format!("http://127.0.0.1:{port}");
    let secret = text
        .split("secret ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap()
        .to_owned();
    let key = data.with_file_name(format!("client-{port}.pem"));
    let out = keybound(&[
        "--json",
        "keygen",
        "--out",
        key.to_str().unwrap(),
        "--alg",
        "EdDSA",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let jkt = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["jkt"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        keybound(&["keygen", "--out", key.to_str().unwrap()])
            .status
            .code(),
        Some(1),
        "never overwrites"
    );
    let out = keybound(&["thumbprint", key.to_str().unwrap()]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        jkt,
        "thumbprint of a PKCS#8 key file"
    );
    let auth = [
        "--issuer",
        &issuer,
        "--client-id",
        "demo-confidential",
        "--client-secret",
        &secret,
        "--key",
        key.to_str().unwrap(),
    ];
    let out = keybound(&[&["--json", "token"][..], &auth[..]].concat());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let token: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (token["token_type"].as_str(), token["jkt"].as_str()),
        (Some("DPoP"), Some(jkt.as_str()))
    );
    let whoami = format!("{issuer}/api/whoami");
    let out = keybound(&[&["call", whoami.as_str()][..], &auth[..]].concat());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (answer["client_id"].as_str(), answer["jkt"].as_str()),
        (Some("demo-confidential"), Some(jkt.as_str()))
    );
    let wrong = [
        "--issuer",
        &issuer,
        "--client-id",
        "demo-confidential",
        "--client-secret",
        "wrong",
        "--key",
        key.to_str().unwrap(),
    ];
    let out = keybound(&[&["token"][..], &wrong[..]].concat());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("invalid_client")
    );
    // The key files are private.
    use std::os::unix::fs::PermissionsExt as _;
    for file in ["demo-client-secret", "demo-dpop-key.p8"] {
        let mode = std::fs::metadata(data.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
}

#[test]
fn serve_refuses_a_bad_configuration_naming_the_key() {
    let config = temp_file(
        "bad.toml",
        "issuer = \"https://as.example\"\n[tokens]\nsigning_alg = \"HS256\"\n",
    );
    let out = keybound(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("tokens.signing_alg")
    );
    assert_eq!(
        keybound(&["serve", "--config", "/nonexistent.toml"])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn endless_or_huge_files_named_in_the_configuration_are_refused_not_read_forever() {
    let out = keybound(&["serve", "--config", "/dev/zero"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("larger than")
    );
    let config = temp_file(
        "endless-ca.toml",
        "issuer = \"https://as.example\"\n[mtls]\nclient_ca_files = [\"/dev/zero\"]\n",
    );
    let out = keybound(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("mtls.client_ca_files[0]") && stderr.contains("larger than"),
        "{stderr}"
    );
}

#[test]
fn a_closed_standard_output_ends_the_command_quietly_with_status_1() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_keybound"))
        .args(["--json", "secret"])
        .env_remove("KEYBOUND_JSON")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn keys_rotate_and_proof() {
    let port = free_port();
    let data = temp_file("unused2", "").with_file_name(format!("rot-{port}"));
    let args = ["keys", "rotate", "--data-dir", data.to_str().unwrap()];
    let first = keybound(&args);
    assert_eq!(first.status.code(), Some(0), "{first:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_keybound"))
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let kid: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(kid["current_kid"].as_str().unwrap().len() == 43);
    let key = data.join("demo-dpop-key.p8");
    let out = keybound(&[
        "proof",
        "--key",
        key.to_str().unwrap(),
        "--method",
        "GET",
        "--url",
        "https://rs.example/x?y=1",
        "--token",
        "abc",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let proof = String::from_utf8(out.stdout).unwrap();
    assert_eq!(proof.trim().split('.').count(), 3);
    assert_eq!(
        keybound(&["proof", "--key", "/nonexistent", "--url", "https://a/"])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn thumbprint_of_public_and_private_key_files() {
    let public = temp_file(
        "pub.jwk",
        r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#,
    );
    let private = temp_file(
        "priv.jwk",
        r#"{"kty":"OKP","crv":"Ed25519","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#,
    );
    for file in [&public, &private] {
        let out = keybound(&["thumbprint", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().trim(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }
    let out = keybound(&["--json", "thumbprint", public.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["jkt"], "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
}

#[test]
fn failures_exit_1_and_usage_errors_exit_2() {
    let bad = temp_file("bad.jwk", r#"{"kty":"oct","k":"c2VjcmV0"}"#);
    let out = keybound(&["thumbprint", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("not a usable JWK")
    );
    let out = keybound(&["--json", "thumbprint", "/nonexistent/key.jwk"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["error"].as_str().unwrap().contains("cannot read"));
    assert_eq!(keybound(&["no-such-command"]).status.code(), Some(2));
    assert_eq!(
        keybound(&["serve", "--listen", "not-an-address"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn hash_secret_reads_standard_input() {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_keybound"))
        .arg("hash-secret")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse battery staple\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    // SHA-256("correct horse battery staple"), base64url.
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        "xLvLH77JnWW_WdhcjLYu4tuWPw_hBvSD2a-nO9Tjmoo"
    );
}

#[test]
fn demo_tells_the_story_and_refuses_every_attack() {
    let out = keybound(&["demo"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(": 200 "), "{text}");
    assert!(text.contains("5 of 5 attempts refused"), "{text}");
    for reason in [
        "Bearer error=\"invalid_token\"",
        "error=\"invalid_request\"",
        "does not match the token's binding",
        "already used",
        "htu does not match",
    ] {
        assert!(text.contains(reason), "{reason} missing from:\n{text}");
    }
}
