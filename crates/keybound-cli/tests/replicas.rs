//! Several replicas behind one load balancer, as real processes on loopback against the
//! PostgreSQL and Redis of this machine (issue: scale past one machine). Two `keybound serve`
//! replicas share PostgreSQL (grants, refresh tokens) and Redis (replay cache); two
//! `keybound gateway` replicas share Redis. Proven here:
//! - one proof sent to both gateways concurrently, many times: exactly one acceptance each time;
//! - one refresh token redeemed on both AS replicas at once: exactly one succeeds, and the
//!   reuse revokes the grant;
//! - Redis stopped mid-run: only 503s, never an acceptance; back without a restart;
//! - an AS replica killed and restarted: no refresh token and no key lost;
//! - signing keys in PostgreSQL: replicas on separate data directories publish one JWKS, and
//!   `keybound keys rotate` reaches both without a restart; tokens signed before and after the
//!   rotation are accepted by either replica.
//!
//! `KEYBOUND_POSTGRES_URL` and `KEYBOUND_REDIS_URL` name the services (`.ci/run` sets them and
//! fails when they are down). Without them the test says why and passes, except under CI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Killed, free_port, wait_for};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keybound_client::{ClientAuth, DpopClient};
use keybound_core::{Algorithm, SigningKey};

fn services() -> Option<(String, String)> {
    match (
        std::env::var("KEYBOUND_POSTGRES_URL"),
        std::env::var("KEYBOUND_REDIS_URL"),
    ) {
        (Ok(pg), Ok(redis)) => Some((pg, redis)),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI must set KEYBOUND_POSTGRES_URL and KEYBOUND_REDIS_URL"
            );
            eprintln!("skipped: KEYBOUND_POSTGRES_URL and KEYBOUND_REDIS_URL are not set");
            None
        }
    }
}

const NONCE_SECRETS: &str = "c2hhcmVkLW5vbmNlLXNlY3JldC1vZi1ldmVyeS1yZXBsaWNhLTAxMjM0NQ";
/// Seals the signing keys in PostgreSQL; the same on every replica.
const KEY_ENCRYPTION_KEY: &str = "a2V5LWVuY3J5cHRpb24ta2V5LW9mLWV2ZXJ5LXJlcGw";

fn keybound(args: &[&str], dir: &Path, log: &str) -> Killed {
    let log = std::fs::File::create(dir.join(log)).unwrap();
    Killed(
        Command::new(env!("CARGO_BIN_EXE_keybound"))
            .args(args)
            .env_remove("KEYBOUND_LISTEN")
            .env_remove("KEYBOUND_CONFIG")
            .env("KEYBOUND_NONCE_SECRETS", NONCE_SECRETS)
            .env("KEYBOUND_KEY_ENCRYPTION_KEY", KEY_ENCRYPTION_KEY)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

struct Deployment {
    dir: PathBuf,
    config: PathBuf,
    issuer: String,
    ports: [u16; 2],
    replicas: Vec<Killed>,
    /// Signing keys in PostgreSQL (else in replica 0's data directory).
    shared_keys: bool,
}

impl Deployment {
    fn start(pg: Option<&str>, redis: &str, tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("keybound-replicas-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ports = [free_port(), free_port()];
        // The issuer is what the load balancer publishes; here replica 0's address.
        let issuer = format!("http://127.0.0.1:{}", ports[0]);
        let schema = format!("kb_replicas_{tag}_{}", std::process::id());
        let config = dir.join("keybound.toml");
        std::fs::write(
            &config,
            format!(
                r#"
issuer = "{issuer}"
data_dir = "{data}"
[store]
{pg}replay_url = "{redis}"
[[clients]]
client_id = "app"
auth_method = "client_secret_basic"
client_secret_sha256 = "{hash}"
grant_types = ["client_credentials", "refresh_token"]
dpop_bound_access_tokens = true
"#,
                data = dir.join("data-0").display(),
                pg = pg.map_or_else(String::new, |pg| format!(
                    "url = \"{pg}\"\nschema = \"{schema}\"\nkey_reload_secs = 1\n"
                )),
                hash = keybound_server::hash_secret("s3cret-s3cret"),
            ),
        )
        .unwrap();
        let mut deployment = Self {
            dir,
            config,
            issuer,
            ports,
            replicas: Vec::new(),
            shared_keys: pg.is_some(),
        };
        // Both at once: with PostgreSQL both race to create the signing keys in the database,
        // and one set wins; without it, replica 1 shares replica 0's key directory.
        for i in 0..2 {
            deployment.replicas.push(deployment.spawn(i));
        }
        for port in ports {
            wait_for(port, "keybound serve");
        }
        deployment
    }

    /// Replica `i`, on a data directory of its own when the keys are in PostgreSQL.
    fn spawn(&self, i: usize) -> Killed {
        let data = if self.shared_keys { i } else { 0 };
        keybound(
            &[
                "serve",
                "--config",
                self.config.to_str().unwrap(),
                "--listen",
                &format!("127.0.0.1:{}", self.ports[i]),
                "--data-dir",
                self.dir.join(format!("data-{data}")).to_str().unwrap(),
            ],
            &self.dir,
            &format!("as-{i}.log"),
        )
    }

    fn replica_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }
}

fn dpop_key() -> SigningKey {
    SigningKey::generate(Algorithm::Es256, &aws_lc_rs::rand::SystemRandom::new())
        .unwrap()
        .0
}

fn auth() -> ClientAuth {
    ClientAuth::Secret {
        client_id: "app".into(),
        client_secret: "s3cret-s3cret".into(),
    }
}

/// A refresh-token request sent to replica `i` with a fresh proof for the issuer's token URL
/// (replicas check `htu` against the configured public URL, not the socket they listen on).
async fn refresh_at(
    d: &Deployment,
    client: &DpopClient,
    i: usize,
    refresh: &str,
) -> reqwest::Response {
    let proof = client
        .proof("POST", &format!("{}/token", d.issuer), None)
        .unwrap();
    reqwest::Client::new()
        .post(format!("{}/token", d.replica_url(i)))
        .basic_auth("app", Some("s3cret-s3cret"))
        .header("DPoP", proof)
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
        .send()
        .await
        .unwrap()
}

/// The `kid`s of a JWKS document: current, next, previous.
fn kids(jwks: &str) -> Vec<String> {
    let jwks: serde_json::Value = serde_json::from_str(jwks).unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// The `kid` in an access token's header.
fn token_kid(token: &str) -> String {
    use base64::Engine as _;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').next().unwrap())
        .unwrap();
    let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

/// `GET /api/whoami` on replica `i` with a fresh proof for the public URL; the status.
async fn whoami_at(d: &Deployment, client: &DpopClient, i: usize, token: &str) -> u16 {
    let proof = client
        .proof("GET", &format!("{}/api/whoami", d.issuer), Some(token))
        .unwrap();
    reqwest::Client::new()
        .get(format!("{}/api/whoami", d.replica_url(i)))
        .header("Authorization", format!("DPoP {token}"))
        .header("DPoP", proof)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_share_refresh_tokens_and_keys_and_survive_a_restart() {
    let Some((pg, redis)) = services() else {
        return;
    };
    let mut d = Deployment::start(Some(&pg), &redis, "as");
    let client = DpopClient::new(dpop_key()).unwrap();
    let metadata = client.discover(&d.issuer).await.unwrap();

    // One refresh token redeemed on both replicas at once, many times: exactly one wins.
    for round in 0..10 {
        let token = client
            .client_credentials(&metadata, &auth(), None)
            .await
            .unwrap();
        let refresh = token.refresh_token.unwrap();
        let (a, b) = tokio::join!(
            refresh_at(&d, &client, 0, &refresh),
            refresh_at(&d, &client, 1, &refresh)
        );
        let statuses = [a.status().as_u16(), b.status().as_u16()];
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "round {round}: {statuses:?}"
        );
        // The loser's reuse revoked the grant: the winner's new refresh token is dead too.
        let winner: serde_json::Value = if statuses[0] == 200 {
            a.json().await.unwrap()
        } else {
            b.json().await.unwrap()
        };
        let next = winner["refresh_token"].as_str().unwrap();
        assert_eq!(refresh_at(&d, &client, round % 2, next).await.status(), 400);
    }

    // Every replica publishes the same keys; a replica killed and restarted loses nothing.
    let token = client
        .client_credentials(&metadata, &auth(), None)
        .await
        .unwrap();
    let urls = [d.replica_url(0), d.replica_url(1)];
    let jwks = |i: usize| {
        let url = format!("{}/jwks", urls[i]);
        async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
    };
    let before = jwks(0).await;
    assert_eq!(before, jwks(1).await);
    d.replicas.remove(1);
    let port = d.ports[1];
    d.replicas.push(d.spawn(1));
    wait_for(port, "the restarted replica");
    assert_eq!(jwks(1).await, before);
    let refreshed = refresh_at(&d, &client, 1, token.refresh_token.as_deref().unwrap()).await;
    assert_eq!(
        refreshed.status(),
        200,
        "{}",
        refreshed.text().await.unwrap()
    );
    let ready = reqwest::get(format!("{}/readyz", d.replica_url(1)))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    // `keybound keys rotate` against the database: both replicas switch by themselves.
    let old_kids = kids(&before);
    let rotate = Command::new(env!("CARGO_BIN_EXE_keybound"))
        .args(["keys", "rotate", "--json", "--config"])
        .arg(&d.config)
        .env("KEYBOUND_KEY_ENCRYPTION_KEY", KEY_ENCRYPTION_KEY)
        .output()
        .unwrap();
    assert!(rotate.status.success(), "{rotate:?}");
    let answer: serde_json::Value = serde_json::from_slice(&rotate.stdout).unwrap();
    assert_eq!(
        answer["current_kid"],
        old_kids[1].as_str(),
        "next became current"
    );
    assert_eq!(answer["replicas_follow"], true);
    let mut after = [String::new(), String::new()];
    for _ in 0..100 {
        after = [jwks(0).await, jwks(1).await];
        if after.iter().all(|j| *j != before) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(after[0], after[1], "one JWKS after the rotation");
    assert_eq!(kids(&after[0])[0], old_kids[1]);
    let new_token = client
        .client_credentials(&metadata, &auth(), None)
        .await
        .unwrap();
    assert_eq!(token_kid(&new_token.access_token), old_kids[1]);
    // Each replica's protected API accepts tokens signed before and after the rotation, by
    // either replica.
    for i in 0..2 {
        for access in [&token.access_token, &new_token.access_token] {
            let status = whoami_at(&d, &client, i, access).await;
            assert_eq!(status, 200, "replica {i}");
        }
    }
    drop(d);
    // Best effort: leave the test database as it was.
    let schema = format!("kb_replicas_as_{}", std::process::id());
    let _ = Command::new("psql")
        .args([
            pg.as_str(),
            "-qc",
            &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
        ])
        .output();
}

/// Upstream API for the gateways.
async fn upstream() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().route("/api/hello", axum::routing::get(|| async { "hello" }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

fn gateway(
    dir: &Path,
    issuer: &str,
    public: &str,
    port: u16,
    up: u16,
    redis: &str,
    log: &str,
) -> Killed {
    keybound(
        &[
            "gateway",
            "--upstream",
            &format!("http://127.0.0.1:{up}"),
            "--issuer",
            issuer,
            "--audience",
            &format!("{issuer}/api"),
            "--public-url",
            public,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--replay-url",
            redis,
        ],
        dir,
        log,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_proof_is_accepted_once_across_gateway_replicas_and_redis_down_means_503() {
    let Some((_, redis)) = services() else { return };
    let d = Deployment::start(None, &redis, "rs");
    let up = upstream().await;
    let gw = [free_port(), free_port()];
    let public = format!("http://127.0.0.1:{}", gw[0]);
    let _gateways: Vec<Killed> = (0..2)
        .map(|i| {
            gateway(
                &d.dir,
                &d.issuer,
                &public,
                gw[i],
                up,
                &redis,
                &format!("gw-{i}.log"),
            )
        })
        .collect();
    for port in gw {
        wait_for(port, "keybound gateway");
    }
    let client = Arc::new(DpopClient::new(dpop_key()).unwrap());
    let metadata = client.discover(&d.issuer).await.unwrap();
    let token = client
        .client_credentials(&metadata, &auth(), None)
        .await
        .unwrap()
        .access_token;
    let api = format!("{public}/api/hello");
    let send = |port: u16, proof: String| {
        let token = token.clone();
        async move {
            reqwest::Client::new()
                .get(format!("http://127.0.0.1:{port}/api/hello"))
                .header("Authorization", format!("DPoP {token}"))
                .header("DPoP", proof)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for round in 0..25 {
        let proof = client.proof("GET", &api, Some(&token)).unwrap();
        let (a, b) = tokio::join!(send(gw[0], proof.clone()), send(gw[1], proof));
        assert_eq!(
            [a, b].iter().filter(|s| **s == 200).count(),
            1,
            "round {round}: {a} {b}"
        );
    }

    // A gateway on a Redis of its own, stopped and started again.
    let redis_port = free_port();
    let start_redis = || {
        Killed(
            Command::new("redis-server")
                .args([
                    "--port",
                    &redis_port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let mut own_redis = start_redis();
    wait_for(redis_port, "redis-server");
    let gw3 = free_port();
    let public3 = format!("http://127.0.0.1:{gw3}");
    let _g3 = gateway(
        &d.dir,
        &d.issuer,
        &public3,
        gw3,
        up,
        &format!("redis://127.0.0.1:{redis_port}"),
        "gw-3.log",
    );
    wait_for(gw3, "keybound gateway 3");
    let api3 = format!("{public3}/api/hello");
    let fresh = || client.proof("GET", &api3, Some(&token)).unwrap();
    let health = |what: &'static str| {
        let url = format!("{public3}/_keybound/{what}");
        async move {
            let response = reqwest::get(url).await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(send(gw3, fresh()).await, 200);
    assert_eq!(health("readyz").await.0, 200);
    drop(own_redis);
    for _ in 0..5 {
        assert_eq!(
            send(gw3, fresh()).await,
            503,
            "Redis is down: refuse, never accept"
        );
    }
    let (status, body) = health("readyz").await;
    assert_eq!(status, 503, "not ready without its replay cache");
    assert!(body.contains("replay cache"), "{body}");
    assert_eq!(health("healthz").await.0, 200, "but alive");
    own_redis = start_redis();
    wait_for(redis_port, "redis-server again");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = send(gw3, fresh()).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(
            Instant::now() < deadline,
            "the gateway did not recover when Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(health("readyz").await.0, 200, "ready again");
    drop(own_redis);
}
