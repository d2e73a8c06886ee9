//! `keybound demo`: the whole story in a few seconds. An AS and a protected API start in this
//! process on loopback; a client gets a DPoP-bound token and calls the API; then an attacker who
//! stole the token (and captured one request) tries five ways to use it.

use std::sync::Arc;
use std::time::Instant;

use aws_lc_rs::rand::SystemRandom;
use keybound_client::{ClientAuth, DpopClient};
use keybound_core::{Algorithm, SigningKey};
use keybound_resource::{
    KeySource, ResourceConfig, ResourceLayer, ResourceVerifier, VerifiedToken,
};
use keybound_server::{AppState, Config, hash_secret, keys, router, system_clock};
use keybound_store::{MemoryReplayCache, SqliteStore};

use crate::Failure;

use crate::output::outln;

fn fail(e: impl std::fmt::Display) -> Failure {
    Failure(e.to_string())
}

async fn start() -> Result<(String, std::path::PathBuf), Failure> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(fail)?;
    let base = format!("http://{}", listener.local_addr().map_err(fail)?);
    let dir = std::env::temp_dir().join(format!("keybound-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(fail)?;
    let toml = format!(
        "issuer = \"{base}\"\ndata_dir = \"{}\"\n[[clients]]\nclient_id = \"shop\"\nauth_method = \"client_secret_basic\"\nclient_secret_sha256 = \"{}\"\nscopes = [\"orders:read\"]\ndpop_bound_access_tokens = true\n",
        dir.display(),
        hash_secret("demo-secret")
    );
    let settings = Config::from_toml(&toml)
        .map_err(fail)?
        .validate()
        .map_err(fail)?;
    let ring = keys::KeyRing::ephemeral(Algorithm::Es256).map_err(fail)?;
    let store = SqliteStore::open(&dir.join("keybound.db"))
        .await
        .map_err(fail)?;
    let replay = Arc::new(MemoryReplayCache::new(10_000));
    let state = AppState::new(
        settings,
        ring,
        replay.clone(),
        Arc::new(store),
        system_clock(),
    );
    let config = ResourceConfig::new(&base, state.audience(), &base);
    let verifier =
        ResourceVerifier::new(config, KeySource::Static(state.key_set()), replay).map_err(fail)?;
    async fn orders(token: VerifiedToken) -> String {
        format!("3 orders for {}", token.claims.sub)
    }
    let api = axum::Router::new()
        .route("/api/orders", axum::routing::get(orders))
        .layer(ResourceLayer::new(Arc::new(verifier)));
    let app = router(Arc::new(state)).merge(api);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((base, dir))
}

/// Sends `GET url` with the given headers and describes the answer in one line.
async fn attempt(
    http: &reqwest::Client,
    url: &str,
    headers: &[(&str, String)],
) -> Result<(u16, String), Failure> {
    let mut request = http.get(url);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.map_err(fail)?;
    let status = response.status().as_u16();
    // Of several challenges, show the one that carries the error.
    let challenges: Vec<&str> = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let challenge = challenges
        .iter()
        .find(|c| c.contains("error="))
        .or(challenges.first())
        .map_or_else(String::new, |c| (*c).to_owned());
    let body = response.text().await.map_err(fail)?;
    Ok((
        status,
        if challenge.is_empty() {
            body
        } else {
            challenge
        },
    ))
}

/// What the attacker does, the headers it sends, and where.
type Attempt<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);

pub(crate) fn demo() -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(fail)?;
    runtime.block_on(async {
        let started = Instant::now();
        let (base, dir) = start().await?;
        let orders = format!("{base}/api/orders");
        outln!("keybound demo: an authorization server and a protected API on {base}\n");

        let client_key = SigningKey::generate(Algorithm::Es256, &SystemRandom::new()).map_err(fail)?.0;
        let client = DpopClient::new(client_key).map_err(fail)?;
        let issuer = client.discover(&base).await.map_err(fail)?;
        let auth = ClientAuth::Secret { client_id: "shop".into(), client_secret: "demo-secret".into() };
        let token = client.client_credentials(&issuer, &auth, None).await.map_err(fail)?.access_token;
        outln!("1. The client gets a token bound to its key (jkt {}).", client.thumbprint());
        let proof = client.proof("GET", &orders, Some(&token)).map_err(fail)?;
        let http = reqwest::Client::new();
        let dpop = format!("DPoP {token}");
        let (status, body) = attempt(&http, &orders, &[("authorization", dpop.clone()), ("dpop", proof.clone())]).await?;
        outln!("2. It calls the API with a fresh proof: {status} {body}\n");

        outln!("An attacker steals the token and captures that request:");
        let thief_key = SigningKey::generate(Algorithm::Es256, &SystemRandom::new()).map_err(fail)?.0;
        let thief = DpopClient::new(thief_key).map_err(fail)?;
        let thief_proof = thief.proof("GET", &orders, Some(&token)).map_err(fail)?;
        let other_url = format!("{base}/api/orders/export");
        let tries: [Attempt<'_>; 5] = [
            ("uses it as a plain bearer token", vec![("authorization", format!("Bearer {token}"))], &orders),
            ("sends it with the DPoP scheme but no proof", vec![("authorization", dpop.clone())], &orders),
            ("signs a proof with its own key", vec![("authorization", dpop.clone()), ("dpop", thief_proof)], &orders),
            ("replays the captured proof", vec![("authorization", dpop.clone()), ("dpop", proof.clone())], &orders),
            ("reuses the captured proof on another URL", vec![("authorization", dpop.clone()), ("dpop", proof)], &other_url),
        ];
        let mut refused = 0;
        for (i, (what, headers, url)) in tries.iter().enumerate() {
            let (status, why) = attempt(&http, url, headers).await?;
            if status >= 400 {
                refused += 1;
            }
            outln!("  {}. {what}: {status} {why}", i + 1);
        }
        let _ = std::fs::remove_dir_all(&dir);
        outln!("\n{refused} of {} attempts refused; the stolen token is useless without the client's key. ({:.1} s)", tries.len(), started.elapsed().as_secs_f64());
        if refused == tries.len() { Ok(()) } else { Err(Failure("an attack was not refused".into())) }
    })
}
