//! The `keybound` binary as a user scripts it: output, `--json`, environment, exit codes.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

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
fn serve_runs_and_reports_version_and_roles() {
    let out = keybound(&["serve"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(env!("CARGO_PKG_VERSION")));
    assert!(text.contains("authorization-server") && text.contains("resource-server"));
}

#[test]
fn serve_options_come_from_flags_or_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_keybound"))
        .args(["--json", "serve", "--data-dir", "/tmp/kb"])
        .env("KEYBOUND_LISTEN", "127.0.0.1:9443")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["listen"], "127.0.0.1:9443");
    assert_eq!(v["data_dir"], "/tmp/kb");
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
    assert_eq!(
        keybound(&["serve", "--config", "/nonexistent.toml"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(keybound(&["no-such-command"]).status.code(), Some(2));
    assert_eq!(
        keybound(&["serve", "--listen", "not-an-address"])
            .status
            .code(),
        Some(2)
    );
}
