//! `keybound bench` against a real `keybound serve` process: token and resource modes, a
//! server that requires nonces, a refused setup, the duration bound, usage errors.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use common::{Killed, free_port, wait_for};
use serde_json::Value;

/// A development `keybound serve` on a free port, and its demo client's secret.
struct Server {
    _process: Killed,
    issuer: String,
    secret: String,
}

fn data_dir(name: &str, port: u16) -> PathBuf {
    std::env::temp_dir().join(format!(
        "keybound-bench-test-{}-{name}-{port}",
        std::process::id()
    ))
}

fn serve(extra: &[&str], port: u16) -> Killed {
    let child = Command::new(env!("CARGO_BIN_EXE_keybound"))
        .arg("serve")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .env_remove("KEYBOUND_CONFIG")
        .env_remove("KEYBOUND_ISSUER")
        .env_remove("KEYBOUND_DATA_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let process = Killed(child);
    wait_for(port, "keybound serve");
    process
}

/// A development server (demo clients, `/api/whoami`).
fn dev_server(name: &str) -> Server {
    let port = free_port();
    let data = data_dir(name, port);
    let process = serve(&["--data-dir", data.to_str().unwrap()], port);
    let secret = std::fs::read_to_string(data.join("demo-client-secret")).unwrap();
    Server {
        _process: process,
        issuer: format!("http://127.0.0.1:{port}"),
        secret: secret.trim().to_owned(),
    }
}

/// Runs `keybound bench ARGS` with no KEYBOUND_* settings from the test's environment.
fn bench(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keybound"));
    command.arg("bench").args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KEYBOUND_") {
            command.env_remove(name);
        }
    }
    command.output().unwrap()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

fn assert_latencies_ordered(report: &Value) {
    for which in ["ok", "all"] {
        let l = &report["latency_ms"][which];
        let [p50, p90, p99, max] =
            ["p50", "p90", "p99", "max"].map(|p| l[p].as_f64().unwrap_or_else(|| panic!("{l}")));
        assert!(p50 <= p90 && p90 <= p99 && p99 <= max, "{which}: {l}");
    }
}

fn assert_no_panic(out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bench_token_counts_every_request_and_orders_the_percentiles() {
    let server = dev_server("token");
    let out = bench(&[
        "token",
        "--issuer",
        &server.issuer,
        "--client-id",
        "demo-confidential",
        "--client-secret",
        &server.secret,
        "--requests",
        "200",
        "--concurrency",
        "8",
        "--warmup",
        "10",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report = json_of(&out);
    assert_eq!(report["mode"], "token", "{report}");
    assert_eq!(report["ok"], 200, "{report}");
    assert_eq!(report["total"], 200, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    assert_eq!(report["stopped_by"], "requests", "{report}");
    assert_eq!(report["mint"]["proofs"], 210, "{report}");
    assert!(report["requests_per_second"].as_f64().unwrap() > 0.0);
    assert!(report["url"].as_str().unwrap().ends_with("/token"));
    assert_latencies_ordered(&report);
}

#[test]
fn bench_resource_gets_a_token_then_calls_the_api_with_fresh_proofs() {
    let server = dev_server("resource");
    let whoami = format!("{}/api/whoami", server.issuer);
    let out = bench(&[
        "resource",
        "--url",
        &whoami,
        "--method",
        "GET",
        "--issuer",
        &server.issuer,
        "--client-id",
        "demo-confidential",
        "--client-secret",
        &server.secret,
        "--requests",
        "200",
        "--concurrency",
        "8",
        "--quiet",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report = json_of(&out);
    assert_eq!(report["ok"], 200, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    assert_latencies_ordered(&report);

    // The same with a token and the key it is bound to, and the text report.
    let key = data_dir("resource-key", 0).with_extension("pem");
    let _ = std::fs::remove_file(&key);
    let keygen = Command::new(env!("CARGO_BIN_EXE_keybound"))
        .args(["keygen", "--out", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(keygen.status.code(), Some(0), "{keygen:?}");
    let token = Command::new(env!("CARGO_BIN_EXE_keybound"))
        .args(["--json", "token", "--issuer", &server.issuer])
        .args(["--client-id", "demo-confidential"])
        .args(["--client-secret", &server.secret])
        .args(["--key", key.to_str().unwrap()])
        .output()
        .unwrap();
    let token = json_of(&token)["access_token"].as_str().unwrap().to_owned();
    let out = bench(&[
        "resource",
        "--url",
        &whoami,
        "--token",
        &token,
        "--key",
        key.to_str().unwrap(),
        "--requests",
        "50",
        "--concurrency",
        "4",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("50 ok, 0 failed"), "{text}");
    assert!(text.contains("errors      none"), "{text}");
}

#[test]
fn bench_token_gets_a_nonce_first_when_the_server_requires_one() {
    let port = free_port();
    let data = data_dir("nonce", port);
    std::fs::create_dir_all(&data).unwrap();
    let mut hash = Command::new(env!("CARGO_BIN_EXE_keybound"))
        .arg("hash-secret")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut hash.stdin.take().unwrap(), b"bench-secret").unwrap();
    let hash = String::from_utf8(hash.wait_with_output().unwrap().stdout).unwrap();
    let config = data.join("keybound.toml");
    std::fs::write(
        &config,
        format!(
            "issuer = \"http://127.0.0.1:{port}\"\ndata_dir = \"{}\"\n[dpop]\nrequire_nonce = true\n\
             [[clients]]\nclient_id = \"load\"\nauth_method = \"client_secret_basic\"\n\
             client_secret_sha256 = \"{}\"\ngrant_types = [\"client_credentials\"]\n\
             dpop_bound_access_tokens = true\n",
            data.display(),
            hash.trim()
        ),
    )
    .unwrap();
    let _server = serve(&["--config", config.to_str().unwrap()], port);
    let out = bench(&[
        "token",
        "--token-endpoint",
        &format!("http://127.0.0.1:{port}/token"),
        "--client-id",
        "load",
        "--client-secret",
        "bench-secret",
        "--requests",
        "100",
        "--concurrency",
        "4",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report = json_of(&out);
    assert_eq!(report["ok"], 100, "{report}");
    assert_eq!(report["mint"]["nonce"], true, "{report}");
}

#[test]
fn bench_token_over_mtls_presents_the_certificate_at_the_alias() {
    use keybound_tls::test_pki::{ClientSpec, TestCa, self_signed};
    let (port, mtls_port) = (free_port(), free_port());
    let data = data_dir("mtls", port);
    std::fs::create_dir_all(&data).unwrap();
    let ca = TestCa::new("bench test CA");
    let server = ca.server();
    let client = self_signed(&ClientSpec::common_name("app"));
    let write = |name: &str, text: &str| {
        let path = data.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let (server_cert, server_key) = (
        write("server.pem", &server.cert_pem),
        write("server-key.pem", &server.key_pem),
    );
    let (cert, key, ca_file) = (
        write("client.pem", &client.cert_pem),
        write("client-key.pem", &client.key_pem),
        write("ca.pem", &ca.pem),
    );
    let config = write(
        "keybound.toml",
        &format!(
            "issuer = \"http://127.0.0.1:{port}\"\ndata_dir = \"{}\"\n[mtls]\n\
             base_url = \"https://127.0.0.1:{mtls_port}\"\nlisten = \"127.0.0.1:{mtls_port}\"\n\
             server_cert_file = \"{}\"\nserver_key_file = \"{}\"\n[[clients]]\n\
             client_id = \"app\"\nauth_method = \"self_signed_tls_client_auth\"\n\
             jwks = \"{}\"\ndpop_bound_access_tokens = true\n",
            data.display(),
            server_cert.display(),
            server_key.display(),
            client.jwks_with_x5c().replace('"', "\\\""),
        ),
    );
    let _server = serve(&["--config", config.to_str().unwrap()], port);
    wait_for(mtls_port, "the mTLS listener");
    let out = bench(&[
        "token",
        "--issuer",
        &format!("http://127.0.0.1:{port}"),
        "--client-id",
        "app",
        "--cert",
        cert.to_str().unwrap(),
        "--cert-key",
        key.to_str().unwrap(),
        "--ca",
        ca_file.to_str().unwrap(),
        "--requests",
        "100",
        "--concurrency",
        "4",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report = json_of(&out);
    assert_eq!(report["ok"], 100, "{report}");
    assert_eq!(
        report["url"],
        format!("https://127.0.0.1:{mtls_port}/token"),
        "{report}"
    );
}

#[test]
fn bench_with_a_wrong_secret_fails_setup_naming_invalid_client() {
    let server = dev_server("wrong");
    let out = bench(&[
        "token",
        "--issuer",
        &server.issuer,
        "--client-id",
        "demo-confidential",
        "--client-secret",
        "wrong",
        "--requests",
        "10",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_no_panic(&out);
    let error = json_of(&out)["error"].as_str().unwrap().to_owned();
    assert!(error.contains("invalid_client"), "{error}");
    // Text mode says the same on standard error.
    let out = bench(&[
        "token",
        "--issuer",
        &server.issuer,
        "--client-id",
        "demo-confidential",
        "--client-secret",
        "wrong",
        "--requests",
        "10",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid_client"));
}

#[test]
fn bench_stops_at_the_duration_before_the_requests_run_out() {
    let server = dev_server("duration");
    let out = bench(&[
        "token",
        "--issuer",
        &server.issuer,
        "--client-id",
        "demo-confidential",
        "--client-secret",
        &server.secret,
        "--requests",
        "5000",
        "--duration",
        "0.2",
        "--concurrency",
        "4",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report = json_of(&out);
    let total = report["total"].as_u64().unwrap();
    assert!(total > 0 && total < 5000, "{report}");
    assert_eq!(report["stopped_by"], "duration", "{report}");
    assert_eq!(report["ok"].as_u64(), Some(total), "{report}");
}

#[test]
fn bench_usage_errors_exit_2() {
    for args in [
        &["token", "--client-id", "app"][..],
        &["token", "--issuer", "http://127.0.0.1:9"],
        &[
            "token",
            "--issuer",
            "http://127.0.0.1:9",
            "--client-id",
            "app",
            "--requests",
            "0",
        ],
        &[
            "token",
            "--token-endpoint",
            "http://127.0.0.1:9/token",
            "--client-id",
            "app",
            "--duration",
            "-1",
        ],
        &[
            "resource",
            "--url",
            "http://127.0.0.1:9/api",
            "--token",
            "abc",
        ],
        &["resource", "--url", "http://127.0.0.1:9/api"],
        &["nonsense"],
    ] {
        let out = bench(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
}

#[test]
fn bench_with_nothing_listening_fails_setup() {
    let port = free_port();
    let out = bench(&[
        "token",
        "--issuer",
        &format!("http://127.0.0.1:{port}"),
        "--client-id",
        "app",
        "--requests",
        "10",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_no_panic(&out);
}
