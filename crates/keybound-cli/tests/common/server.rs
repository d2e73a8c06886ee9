//! `keybound serve` and `keybound gateway` as child processes for the attack tests, a recording
//! upstream API for the gateway, and a reply type that keeps what the attacks assert on: the
//! status, the JSON body, the `WWW-Authenticate` challenges and the `DPoP-Nonce`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use keybound_core::SigningKey;
use keybound_tls::test_pki::{TestCa, TestIdentity};
use serde_json::Value;

use super::proofs::resource_proof;
use super::{Killed, free_port, wait_for};

/// The client secret of every secret-authenticated client in these tests.
pub const SECRET: &str = "attack-matrix-secret-0123456789";

/// Environment variables that would change what a started `keybound` does.
const INHERITED: [&str; 9] = [
    "KEYBOUND_CONFIG",
    "KEYBOUND_LISTEN",
    "KEYBOUND_DATA_DIR",
    "KEYBOUND_ISSUER",
    "KEYBOUND_STORE_URL",
    "KEYBOUND_REPLAY_URL",
    "KEYBOUND_NONCE_SECRETS",
    "KEYBOUND_REQUIRE_NONCE",
    "KEYBOUND_TRUSTED_PROXY",
];

/// A `keybound` child process; when the test fails its log is printed, else the directory
/// it owns (if any) is removed once it has stopped.
pub struct Process {
    log: PathBuf,
    child: Option<Killed>,
    owned_dir: Option<PathBuf>,
}

impl Process {
    fn spawn(args: &[&str], env: &[(String, String)], log: PathBuf) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_keybound"));
        command.args(args);
        for name in INHERITED {
            command.env_remove(name);
        }
        let file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}"));
        let child = command
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("keybound: {e}"));
        Self {
            log,
            child: Some(Killed(child)),
            owned_dir: None,
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        drop(self.child.take());
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- {}\n{log}", self.log.display());
        } else if let Some(dir) = &self.owned_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A `keybound serve` about to start: its port, directory and environment.
pub struct Setup {
    pub port: u16,
    pub base: String,
    pub dir: PathBuf,
    env: Vec<(String, String)>,
    wait: Vec<u16>,
}

impl Setup {
    /// A fresh directory and port; `name` tells the directories of the tests apart.
    pub fn new(name: &str) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("keybound-{name}-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        Self {
            port,
            base: format!("http://127.0.0.1:{port}"),
            dir,
            env: Vec::new(),
            wait: Vec::new(),
        }
    }

    /// Writes `text` to `name` in the directory and returns its path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        path.display().to_string()
    }

    /// Sets an environment variable of the process.
    #[must_use]
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Also waits for this port (the `[mtls] listen` one) before the server counts as started.
    #[must_use]
    pub fn also_listening_on(mut self, port: u16) -> Self {
        self.wait.push(port);
        self
    }

    /// Starts `keybound serve` with `issuer`, `data_dir` and then `config`.
    pub fn start(self, config: &str) -> Server {
        let file = self.file(
            "keybound.toml",
            &format!(
                "issuer = \"{}\"\ndata_dir = \"{}\"\n{config}",
                self.base,
                self.dir.join("data").display()
            ),
        );
        let listen = format!("127.0.0.1:{}", self.port);
        let mut process = Process::spawn(
            &["serve", "--config", &file, "--listen", &listen],
            &self.env,
            self.dir.join("serve.log"),
        );
        process.owned_dir = Some(self.dir.clone());
        for port in std::iter::once(self.port).chain(self.wait.iter().copied()) {
            wait_for(port, "keybound serve");
        }
        Server {
            _process: process,
            base: self.base,
            dir: self.dir,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_else(|e| panic!("{e}")),
        }
    }
}

/// The clients of `attack_matrix.rs`: `app` must use DPoP, `plain` gets bearer tokens.
pub fn secret_clients() -> String {
    let hash = keybound_server::hash_secret(SECRET);
    format!(
        r#"
[[clients]]
client_id = "app"
auth_method = "client_secret_basic"
client_secret_sha256 = "{hash}"
grant_types = ["client_credentials"]
scopes = ["read", "write"]
dpop_bound_access_tokens = true
[[clients]]
client_id = "plain"
auth_method = "client_secret_basic"
client_secret_sha256 = "{hash}"
grant_types = ["client_credentials"]
"#
    )
}

/// A running `keybound serve`.
pub struct Server {
    _process: Process,
    pub base: String,
    pub dir: PathBuf,
    pub http: reqwest::Client,
}

impl Server {
    /// A server with [`secret_clients`].
    pub fn start() -> Self {
        Setup::new("attacks").start(&secret_clients())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The data directory (its `keys/` hold the signing keys).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `POST path` with a form, optional HTTP Basic credentials and these `DPoP` header values.
    pub async fn post(
        &self,
        path: &str,
        basic: Option<&str>,
        proofs: &[&str],
        form: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.http.post(self.url(path)).form(form);
        if let Some(client) = basic {
            request = request.basic_auth(client, Some(SECRET));
        }
        for proof in proofs {
            request = request.header("DPoP", *proof);
        }
        Reply::of(request.send().await.unwrap_or_else(|e| panic!("{e}"))).await
    }

    /// `POST /token` (client credentials) as `client` with these `DPoP` header values.
    pub async fn token(&self, client: &str, proofs: &[&str]) -> Reply {
        self.post(
            "/token",
            Some(client),
            proofs,
            &[("grant_type", "client_credentials")],
        )
        .await
    }

    /// `GET path_and_query` with these headers.
    pub async fn api(&self, path_and_query: &str, headers: &[(&str, &str)]) -> Reply {
        send(&self.http, "GET", &self.url(path_and_query), headers, None).await
    }

    /// `GET /api/whoami` with `Authorization: DPoP <token>` and a valid proof by `key` (with
    /// `ath`) using `jti`.
    pub async fn whoami_dpop(&self, key: &SigningKey, token: &str, jti: &str) -> Reply {
        let proof = resource_proof(key, "GET", &self.url("/api/whoami"), token, jti);
        let auth = format!("DPoP {token}");
        self.api("/api/whoami", &[("authorization", &auth), ("dpop", &proof)])
            .await
    }

    /// The sum of `keybound_tokens_issued_total` in `/metrics`.
    pub async fn tokens_issued(&self) -> u64 {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .text()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        text.lines()
            .filter(|l| l.starts_with("keybound_tokens_issued_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

/// Sends one request with `client`.
pub async fn send(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let mut request = client.request(method, url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body.to_owned());
    }
    Reply::of(
        request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}")),
    )
    .await
}

/// What came back.
pub struct Reply {
    pub status: u16,
    /// The JSON body, or `Null`.
    pub body: Value,
    /// Every `WWW-Authenticate` value, joined with ", ".
    pub challenge: String,
    /// Every `WWW-Authenticate` value.
    pub challenges: Vec<String>,
    /// The `DPoP-Nonce` header.
    pub nonce: Option<String>,
}

impl Reply {
    pub async fn of(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers();
        let challenges: Vec<String> = headers
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .collect();
        let challenge = challenges.join(", ");
        let nonce = headers
            .get("dpop-nonce")
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let body = response.json().await.unwrap_or(Value::Null);
        Self {
            status,
            body,
            challenge,
            challenges,
            nonce,
        }
    }

    /// Asserts an AS answer: this status and OAuth `error`.
    pub fn assert_error(&self, status: u16, error: &str, what: &str) {
        assert_eq!(
            (self.status, self.error()),
            (status, error),
            "{what}: {}",
            self.body
        );
    }

    /// Asserts a resource answer: this status and a `scheme` challenge with `error="<error>"`;
    /// a DPoP challenge also names the accepted algorithms.
    pub fn assert_challenge(&self, status: u16, scheme: &str, error: &str, what: &str) {
        assert_eq!(self.status, status, "{what}: {:?}", self.challenges);
        let line = self
            .challenges
            .iter()
            .find(|c| c.starts_with(&format!("{scheme} ")))
            .unwrap_or_else(|| panic!("{what}: no {scheme} challenge in {:?}", self.challenges));
        assert!(
            line.contains(&format!("error=\"{error}\"")),
            "{what}: {line}"
        );
        if scheme == "DPoP" {
            assert!(line.contains("algs=\""), "{what}: no algs in {line}");
        }
    }

    /// The OAuth `error` of the body, or "".
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }

    /// The `access_token` of a token response.
    pub fn access_token(&self) -> String {
        self.body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access token: {}", self.body))
            .to_owned()
    }
}

/// One request the upstream API received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub body: String,
    pub headers: axum::http::HeaderMap,
}

/// An API behind the gateway: answers every request with 200 "ok" and records it.
pub struct Upstream {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let url = format!(
            "http://{}",
            listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let record = move |request: axum::extract::Request| {
            let log = log.clone();
            async move {
                let (parts, body) = request.into_parts();
                let bytes = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .unwrap_or_default();
                log.lock().unwrap_or_else(|e| panic!("{e}")).push(Seen {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_owned(),
                    body: String::from_utf8_lossy(&bytes).into_owned(),
                    headers: parts.headers,
                });
                "ok"
            }
        };
        let app = axum::Router::new().fallback(record);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, seen }
    }

    /// What it received so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|e| panic!("{e}")).clone()
    }
}

/// A running `keybound gateway` in front of an upstream, accepting `issuer`'s tokens.
pub struct Gateway {
    _process: Process,
    pub base: String,
    pub http: reqwest::Client,
}

impl Gateway {
    /// `keybound gateway` with the audience of `issuer`'s tokens, its own loopback URL as the
    /// public URL, and `args` and `env` added.
    pub fn start(
        issuer: &Server,
        upstream: &Upstream,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let audience = issuer.url("/api");
        let listen = format!("127.0.0.1:{port}");
        let mut all = vec![
            "gateway",
            "--upstream",
            &upstream.url,
            "--issuer",
            &issuer.base,
            "--audience",
            &audience,
            "--public-url",
            &base,
            "--listen",
            &listen,
        ];
        all.extend_from_slice(args);
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let process = Process::spawn(&all, &env, issuer.dir.join(format!("gateway-{port}.log")));
        wait_for(port, "keybound gateway");
        Self {
            _process: process,
            base,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET url` with `Authorization: DPoP <token>` and this proof.
    pub async fn get_dpop(&self, url: &str, token: &str, proof: &str) -> Reply {
        let auth = format!("DPoP {token}");
        let headers = [("authorization", auth.as_str()), ("dpop", proof)];
        send(&self.http, "GET", url, &headers, None).await
    }
}

/// An HTTPS client trusting only `ca`, presenting `identity` (mTLS) if given.
pub fn https_client(ca: &TestCa, identity: Option<&TestIdentity>) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let mut builder = reqwest::Client::builder().tls_certs_only([root]);
    if let Some(identity) = identity {
        let pem = identity.identity_pem();
        builder = builder.identity(
            reqwest::Identity::from_pem(pem.as_bytes()).unwrap_or_else(|e| panic!("{e}")),
        );
    }
    builder.build().unwrap_or_else(|e| panic!("{e}"))
}

/// An HTTP client whose connections come from `ip` (a loopback address other than 127.0.0.1).
pub fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(
            ip.parse::<std::net::IpAddr>()
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}
