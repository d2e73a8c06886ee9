//! Independent DPoP client libraries against `keybound serve` (issue 10, interop): each gets a
//! DPoP-bound token and calls the protected demo API (`GET /api/whoami`) with its own proofs.
//!
//! - `oauth4webapi` (npm, `interop/oauth4webapi`) and `requests-oauth2client` (PyPI,
//!   `interop/requests-oauth2client`) each run client credentials with `client_secret_basic`
//!   and DPoP against a client registered with `dpop_nonce = "required"`, so the first token
//!   request is answered `use_dpop_nonce` and the library must retry with the server's nonce.
//!   Each test checks `token_type`, that the token's `cnf.jkt` is the thumbprint of the
//!   library's key (computed by the library, by keybound-core from the public JWK, and reported
//!   by the API), that the API answers 200 for the right client, and that the nonce challenge
//!   happened: the client retried once and keybound's `/metrics` counted one challenge.
//!   The demo API asks for no nonce, so each library is also pointed at `keybound gateway
//!   --require-nonce` in front of a small API run here: the gateway answers the first call
//!   with 401 `DPoP error="use_dpop_nonce"` and a `DPoP-Nonce`, and the library must retry.
//! - The `dpop` npm package (`interop/dpop`) mints proofs for a key it generates; this test
//!   takes them to the token endpoint (through the nonce challenge), then to the API: a proof
//!   with `ath` is accepted, and the same kind of proof with one signature byte flipped is
//!   refused with 401 `DPoP error="invalid_dpop_proof"`.
//!
//! The tests install what they run, pinned: `npm ci` from each `package-lock.json` (skipped when
//! `node_modules` already holds the locked versions) and a venv under
//! `$CARGO_TARGET_DIR/interop/` from `requirements.txt` with `pip --require-hashes` (one venv
//! per content of that file). Without node and npm, or a python3 that can make a venv, or the
//! package registries, a test says why and passes, except under CI (`CI=true`), where it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::{Killed, free_port, wait_for};
use serde_json::Value;

/// The repository's root.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A missing tool: the test passes saying so, except under CI, where it fails.
fn unavailable(reason: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI must run the interop client tests: {reason}"
    );
    eprintln!("skipped: {reason}");
}

/// Runs `command`; its output, or why it could not start.
fn run(command: &mut Command) -> Result<Output, String> {
    command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))
}

/// The output of a command that must succeed, as text.
fn succeed(command: &mut Command) -> String {
    let out = run(command).unwrap();
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `interop/NAME` with its locked npm packages installed (`npm ci`, unless `node_modules`
/// already holds exactly the versions of `package-lock.json`), or why that is not possible.
fn node_package(name: &str) -> Result<PathBuf, String> {
    for tool in ["node", "npm"] {
        let found = run(Command::new(tool).arg("--version"));
        if !found.is_ok_and(|o| o.status.success()) {
            return Err(format!("{tool} is not installed"));
        }
    }
    let dir = workspace().join("interop").join(name);
    let _lock = install_lock(name);
    let lock: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("package-lock.json")).unwrap())
            .unwrap();
    let locked = lock["packages"].as_object().unwrap();
    let installed = locked
        .iter()
        .filter(|(path, _)| !path.is_empty())
        .all(|(path, entry)| {
            std::fs::read_to_string(dir.join(path).join("package.json"))
                .ok()
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .is_some_and(|package| package["version"] == entry["version"])
        });
    if !installed {
        let out = run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir))?;
        if !out.status.success() {
            return Err(format!(
                "npm ci in {} failed: {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    Ok(dir)
}

/// `$CARGO_TARGET_DIR`, or `target/` in the workspace.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace().join("target"), |t| workspace().join(t))
}

/// An exclusive lock on installing `name`, held until dropped: the tests of this file run in
/// parallel, and two `npm ci` in one folder (or two venvs being made at one path) break each
/// other. A file lock, so that two test runs at once wait for each other too.
fn install_lock(name: &str) -> std::fs::File {
    let dir = target_dir().join("interop");
    std::fs::create_dir_all(&dir).unwrap();
    let file = std::fs::File::create(dir.join(format!("{name}.lock"))).unwrap();
    file.lock().unwrap();
    file
}

/// The python of a venv holding `interop/requests-oauth2client/requirements.txt` (installed
/// with `--require-hashes` on first use; one venv per content of that file), or why there is
/// none.
fn python_venv() -> Result<PathBuf, String> {
    let python = std::env::var("KEYBOUND_PYTHON").unwrap_or_else(|_| "python3".into());
    let usable = run(Command::new(&python).args(["-c", "import venv, ensurepip"]))?;
    if !usable.status.success() {
        return Err(format!(
            "{python} cannot make a venv (apt-get install python3-venv): {}",
            String::from_utf8_lossy(&usable.stderr).trim()
        ));
    }
    let requirements = workspace().join("interop/requests-oauth2client/requirements.txt");
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        &std::fs::read(&requirements).unwrap(),
    );
    let tag: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let venv = target_dir()
        .join("interop")
        .join(format!("requests-oauth2client-{tag}"));
    let _lock = install_lock("requests-oauth2client");
    let marker = venv.join("installed");
    if !marker.is_file() {
        // Nothing, or what an interrupted run left: start again.
        let _ = std::fs::remove_dir_all(&venv);
        let made = run(Command::new(&python).args(["-m", "venv"]).arg(&venv))?;
        if !made.status.success() {
            return Err(format!(
                "{python} -m venv failed: {}",
                String::from_utf8_lossy(&made.stderr)
            ));
        }
        let pip = run(Command::new(venv.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(["--require-hashes", "--no-deps", "-r"])
            .arg(&requirements))?;
        if !pip.status.success() {
            return Err(format!(
                "pip install --require-hashes -r {} failed: {}",
                requirements.display(),
                String::from_utf8_lossy(&pip.stderr)
            ));
        }
        std::fs::write(&marker, "").unwrap();
    }
    Ok(venv.join("bin/python"))
}

/// `keybound serve --config` on a free loopback port with one confidential client: secret
/// (`client_secret_basic`), DPoP-bound tokens only, and a nonce required at the token
/// endpoint. Killed when dropped; its log is printed if the test failed.
struct Keybound {
    child: Child,
    dir: PathBuf,
    issuer: String,
    client_id: String,
    secret: String,
}

impl Keybound {
    fn start(client_id: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("keybound-{client_id}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut random = [0u8; 32];
        aws_lc_rs::rand::fill(&mut random).unwrap();
        let secret = B64.encode(random);
        let secret_sha256 = B64.encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            secret.as_bytes(),
        ));
        let port = free_port();
        let issuer = format!("http://127.0.0.1:{port}");
        let config = format!(
            r#"
issuer = "{issuer}"
data_dir = "{data}"
[[clients]]
client_id = "{client_id}"
auth_method = "client_secret_basic"
client_secret_sha256 = "{secret_sha256}"
grant_types = ["client_credentials"]
dpop_bound_access_tokens = true
dpop_nonce = "required"
"#,
            data = dir.join("data").display(),
        );
        std::fs::write(dir.join("keybound.toml"), config).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_keybound"))
            .args(["serve", "--config"])
            .arg(dir.join("keybound.toml"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env_remove("KEYBOUND_LISTEN")
            .env_remove("KEYBOUND_CONFIG")
            .env_remove("KEYBOUND_ISSUER")
            .env_remove("KEYBOUND_DATA_DIR")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("serve.log")).unwrap())
            .spawn()
            .unwrap();
        let server = Self {
            child,
            dir,
            issuer,
            client_id: client_id.to_owned(),
            secret,
        };
        wait_for(port, "keybound serve");
        server
    }

    fn api(&self) -> String {
        format!("{}/api/whoami", self.issuer)
    }

    /// A counter from `/metrics` (the line `NAME VALUE`).
    async fn metric(&self, name: &str) -> u64 {
        let text = reqwest::get(format!("{}/metrics", self.issuer))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
            .parse()
            .unwrap()
    }
}

impl Drop for Keybound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            for log in ["serve.log", "gateway.log"] {
                if let Ok(text) = std::fs::read_to_string(self.dir.join(log)) {
                    eprintln!("--- {log}\n{text}");
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `keybound gateway --require-nonce` for `server`'s tokens, in front of an API run in this
/// process that answers like `/api/whoami`, from the claims the gateway forwards.
struct Gateway {
    _child: Killed,
    url: String,
}

impl Gateway {
    async fn start(server: &Keybound) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = format!("http://{}", listener.local_addr().unwrap());
        async fn whoami(headers: axum::http::HeaderMap) -> axum::Json<Value> {
            let claim = |name: &str| {
                headers
                    .get(format!("x-keybound-{name}"))
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            axum::Json(serde_json::json!({
                "sub": claim("subject"),
                "client_id": claim("client-id"),
                "token_type": claim("token-type"),
                "jkt": claim("jkt"),
            }))
        }
        let app = axum::Router::new().route("/api/whoami", axum::routing::get(whoami));
        tokio::spawn(async move { axum::serve(listener, app).await });

        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_keybound"))
            .arg("gateway")
            .args(["--upstream", &upstream])
            .args(["--issuer", &server.issuer])
            .args(["--audience", &format!("{}/api", server.issuer)])
            .args(["--public-url", &url])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--require-nonce")
            .env_remove("KEYBOUND_LISTEN")
            .env_remove("KEYBOUND_NONCE_SECRETS")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(server.dir.join("gateway.log")).unwrap())
            .spawn()
            .unwrap();
        let gateway = Self {
            _child: Killed(child),
            url,
        };
        wait_for(port, "keybound gateway");
        gateway
    }

    fn api(&self) -> String {
        format!("{}/api/whoami", self.url)
    }
}

/// The gateway asked for a nonce once, and the library answered it.
fn check_gateway_nonce(report: &Value) {
    assert_eq!(
        report["api_nonce_retries"], 1,
        "the gateway answered use_dpop_nonce and the library retried once: {report}"
    );
}

/// The payload of a compact JWT, decoded (keybound signed it; the API checks the signature).
fn jwt_payload(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a compact JWT");
    serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap()
}

/// keybound-core's RFC 7638 thumbprint of an EC public JWK (its `kty`, `crv`, `x`, `y`; the
/// members WebCrypto adds, like `key_ops` and `ext`, left out).
fn thumbprint(jwk: &Value) -> String {
    let public = serde_json::json!({
        "kty": jwk["kty"], "crv": jwk["crv"], "x": jwk["x"], "y": jwk["y"],
    });
    keybound_core::PublicJwk::from_json(public.to_string().as_bytes())
        .unwrap()
        .thumbprint()
        .as_str()
        .to_owned()
}

/// What both client scripts print, checked against keybound: a DPoP token bound to the
/// library's key, the API's 200 for this client, and exactly one nonce challenge, answered.
async fn check_client_report(server: &Keybound, report: &Value) {
    assert!(
        report["token_type"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case("DPoP"),
        "{report}"
    );
    let access_token = report["access_token"].as_str().unwrap();
    let claims = jwt_payload(access_token);
    let jkt = report["jkt"].as_str().unwrap();
    assert_eq!(
        thumbprint(&report["public_jwk"]),
        jkt,
        "the library's thumbprint of its key is keybound-core's: {report}"
    );
    assert_eq!(
        claims["cnf"]["jkt"], jkt,
        "the token is bound to the library's key: {claims}"
    );
    assert_eq!(report["jkt_in_token"], jkt, "{report}");
    assert_eq!(claims["client_id"], server.client_id.as_str(), "{claims}");

    assert_eq!(report["api_status"], 200, "{report}");
    let me = &report["api_body"];
    assert_eq!(me["client_id"], server.client_id.as_str(), "{me}");
    assert_eq!(
        me["token_type"], "DPoP",
        "the API saw the DPoP scheme: {me}"
    );
    assert_eq!(me["jkt"], jkt, "the API checked the proof's key: {me}");

    assert_eq!(
        report["token_nonce_retries"], 1,
        "the token endpoint asked for a nonce and the library retried once: {report}"
    );
    assert_eq!(
        server.metric("keybound_dpop_nonce_challenges_total").await,
        1,
        "keybound answered use_dpop_nonce once"
    );
    assert_eq!(
        server
            .metric("keybound_tokens_issued_total{token_type=\"DPoP\"}")
            .await,
        1
    );
    println!(
        "nonce retries: token endpoint {}, API {}",
        report["token_nonce_retries"], report["api_nonce_retries"]
    );
}

/// What a lookup found, or `None` after [`unavailable`] said why (the test then returns).
fn installed<T>(found: Result<T, String>) -> Option<T> {
    found.map_err(|reason| unavailable(&reason)).ok()
}

/// A client library, installed, and the script that drives it.
enum Library {
    /// `interop/oauth4webapi`, with its `node_modules`.
    Oauth4webapi(PathBuf),
    /// The python of the venv holding `requests-oauth2client`.
    RequestsOauth2client(PathBuf),
}

impl Library {
    fn oauth4webapi() -> Option<Self> {
        installed(node_package("oauth4webapi")).map(Self::Oauth4webapi)
    }

    fn requests_oauth2client() -> Option<Self> {
        installed(python_venv()).map(Self::RequestsOauth2client)
    }

    /// The JSON line the script prints after getting a token from `server` and calling `api`.
    /// Run off the runtime, which meanwhile serves the gateway's upstream.
    async fn run(&self, server: &Keybound, api: &str) -> Value {
        let mut command = match self {
            Self::Oauth4webapi(dir) => {
                let mut command = Command::new("node");
                command.arg("client.mjs").current_dir(dir);
                command
            }
            Self::RequestsOauth2client(python) => {
                let mut command = Command::new(python);
                command
                    .arg(workspace().join("interop/requests-oauth2client/client.py"))
                    .env("PYTHONDONTWRITEBYTECODE", "1");
                command
            }
        };
        command.args([&server.issuer, &server.client_id, &server.secret, api]);
        let out = tokio::task::spawn_blocking(move || succeed(&mut command))
            .await
            .unwrap();
        let report: Value =
            serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
        if let Self::RequestsOauth2client(_) = self {
            assert_eq!(
                report["token_type"], "DPoP",
                "requests-oauth2client keeps keybound's spelling: {report}"
            );
        }
        report
    }
}

#[tokio::test]
async fn oauth4webapi_gets_a_dpop_token_through_the_nonce_challenge_and_calls_the_api() {
    let Some(library) = Library::oauth4webapi() else {
        return;
    };
    let server = Keybound::start("interop-oauth4webapi");
    let report = library.run(&server, &server.api()).await;
    check_client_report(&server, &report).await;
}

#[tokio::test]
async fn oauth4webapi_answers_the_gateways_nonce_challenge() {
    let Some(library) = Library::oauth4webapi() else {
        return;
    };
    let server = Keybound::start("interop-oauth4webapi-gw");
    let gateway = Gateway::start(&server).await;
    let report = library.run(&server, &gateway.api()).await;
    check_client_report(&server, &report).await;
    check_gateway_nonce(&report);
}

#[tokio::test]
async fn requests_oauth2client_gets_a_dpop_token_through_the_nonce_challenge_and_calls_the_api() {
    let Some(library) = Library::requests_oauth2client() else {
        return;
    };
    let server = Keybound::start("interop-requests-oauth2client");
    let report = library.run(&server, &server.api()).await;
    check_client_report(&server, &report).await;
}

#[tokio::test]
async fn requests_oauth2client_answers_the_gateways_nonce_challenge() {
    let Some(library) = Library::requests_oauth2client() else {
        return;
    };
    let server = Keybound::start("interop-requests-oauth2client-gw");
    let gateway = Gateway::start(&server).await;
    let report = library.run(&server, &gateway.api()).await;
    check_client_report(&server, &report).await;
    check_gateway_nonce(&report);
}

/// A key from the `dpop` package, and a keybound token bound to it: the package's proofs for
/// the token endpoint, the first refused with `use_dpop_nonce`, the second (with that nonce)
/// accepted.
struct DpopPackage {
    dir: PathBuf,
    key_file: PathBuf,
    jkt: String,
    access_token: String,
}

impl DpopPackage {
    fn proof(&self, htm: &str, htu: &str, nonce: Option<&str>, token: Option<&str>) -> String {
        let mut command = Command::new("node");
        command
            .arg("proof.mjs")
            .arg("proof")
            .arg(&self.key_file)
            .args([htm, htu, nonce.unwrap_or("-")])
            .args(token)
            .current_dir(&self.dir);
        succeed(&mut command).trim().to_owned()
    }

    async fn bound_token(dir: PathBuf, server: &Keybound) -> Self {
        let key: Value = serde_json::from_str(
            succeed(
                Command::new("node")
                    .args(["proof.mjs", "key"])
                    .current_dir(&dir),
            )
            .trim(),
        )
        .unwrap();
        let jkt = key["jkt"].as_str().unwrap().to_owned();
        assert_eq!(
            thumbprint(&key["public_jwk"]),
            jkt,
            "the dpop package's thumbprint is keybound-core's"
        );
        let key_file = server.dir.join("dpop-key.json");
        std::fs::write(&key_file, key["private_jwk"].to_string()).unwrap();
        let mut package = Self {
            dir,
            key_file,
            jkt,
            access_token: String::new(),
        };

        let metadata: Value = reqwest::get(format!(
            "{}/.well-known/oauth-authorization-server",
            server.issuer
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let token_endpoint = metadata["token_endpoint"].as_str().unwrap();
        let http = reqwest::Client::new();
        let request = |proof: String| {
            http.post(token_endpoint)
                .basic_auth(&server.client_id, Some(&server.secret))
                .form(&[("grant_type", "client_credentials")])
                .header("DPoP", proof)
                .send()
        };

        let challenged = request(package.proof("POST", token_endpoint, None, None))
            .await
            .unwrap();
        assert_eq!(challenged.status(), 400);
        let nonce = challenged.headers()["dpop-nonce"]
            .to_str()
            .unwrap()
            .to_owned();
        let body: Value = challenged.json().await.unwrap();
        assert_eq!(body["error"], "use_dpop_nonce", "{body}");

        let issued = request(package.proof("POST", token_endpoint, Some(&nonce), None))
            .await
            .unwrap();
        assert_eq!(issued.status(), 200);
        assert_eq!(issued.headers()["cache-control"], "no-store");
        let body: Value = issued.json().await.unwrap();
        assert_eq!(body["token_type"], "DPoP", "{body}");
        package.access_token = body["access_token"].as_str().unwrap().to_owned();
        assert_eq!(
            jwt_payload(&package.access_token)["cnf"]["jkt"],
            package.jkt.as_str(),
            "bound to the dpop package's key"
        );
        assert_eq!(
            server.metric("keybound_dpop_nonce_challenges_total").await,
            1
        );
        package
    }

    async fn call(&self, url: &str, proof: &str) -> reqwest::Response {
        reqwest::Client::new()
            .get(url)
            .header("Authorization", format!("DPoP {}", self.access_token))
            .header("DPoP", proof)
            .send()
            .await
            .unwrap()
    }
}

/// `proof` with one byte of its signature changed, base64url-encoded again (no padding), so
/// that only the signature is wrong: the header and the claims are untouched.
fn flip_signature_byte(proof: &str) -> String {
    let (signed, signature) = proof.rsplit_once('.').unwrap();
    let mut bytes = B64.decode(signature).unwrap();
    assert_eq!(bytes.len(), 64, "an ES256 signature is r || s");
    bytes[17] ^= 0x01;
    format!("{signed}.{}", B64.encode(bytes))
}

#[tokio::test]
async fn dpop_package_proof_is_accepted_by_the_resource_server() {
    let Some(dir) = installed(node_package("dpop")) else {
        return;
    };
    let server = Keybound::start("interop-dpop-accepted");
    let package = DpopPackage::bound_token(dir, &server).await;
    let api = server.api();
    let proof = package.proof("GET", &api, None, Some(&package.access_token));
    let claims = jwt_payload(&proof);
    assert!(
        claims["ath"].is_string(),
        "a resource proof has ath: {claims}"
    );

    let response = package.call(&api, &proof).await;
    assert_eq!(response.status(), 200);
    let me: Value = response.json().await.unwrap();
    assert_eq!(me["client_id"], server.client_id.as_str(), "{me}");
    assert_eq!(me["token_type"], "DPoP", "{me}");
    assert_eq!(me["jkt"], package.jkt.as_str(), "{me}");
}

#[tokio::test]
async fn dpop_package_proof_with_a_flipped_signature_byte_is_refused() {
    let Some(dir) = installed(node_package("dpop")) else {
        return;
    };
    let server = Keybound::start("interop-dpop-flipped");
    let package = DpopPackage::bound_token(dir, &server).await;
    let api = server.api();
    let proof = package.proof("GET", &api, None, Some(&package.access_token));
    let flipped = flip_signature_byte(&proof);
    assert_ne!(flipped, proof);

    let response = package.call(&api, &flipped).await;
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with("DPoP "),
        "a DPoP challenge: {challenge}"
    );
    assert!(
        challenge.contains("error=\"invalid_dpop_proof\""),
        "{challenge}"
    );
    let algs = challenge
        .split("algs=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("the supported algs are named (RFC 9449 §7.1): {challenge}"));
    assert!(algs.split(' ').any(|alg| alg == "ES256"), "{challenge}");
    println!("flipped signature byte: 401, WWW-Authenticate: {challenge}");

    // The refusal was the signature's alone, and it spent nothing: the very same proof with its
    // signature intact is accepted afterwards (its jti was not recorded by the failed attempt).
    let response = package.call(&api, &proof).await;
    assert_eq!(response.status(), 200);
    let me: Value = response.json().await.unwrap();
    assert_eq!(me["client_id"], server.client_id.as_str(), "{me}");
}
