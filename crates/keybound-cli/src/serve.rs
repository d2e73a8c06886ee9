//! `keybound serve`: configuration, stores, keys, the listener, and the start-up banner.

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use keybound_core::{Algorithm, SigningKey};
use keybound_server::{AppState, Config, Validated, hash_secret, router, system_clock};
use keybound_store::{MemoryReplayCache, SqliteStore};

use crate::Failure;
use crate::signing_keys::{AsKeys, KeyHome, kid};

use crate::input::{MAX_CONFIG_FILE, read_file};
use crate::output::outln;

/// Replay-cache capacity of a single node (about 56 MB at the limit).
const REPLAY_CAPACITY: usize = 1 << 20;

/// Options of `keybound serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Configuration file (TOML). Without one, a development server with demo clients starts.
    #[arg(long, env = "KEYBOUND_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "KEYBOUND_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory for keys and the embedded database (overrides `data_dir` in the file).
    #[arg(long, env = "KEYBOUND_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Public issuer URL (overrides `issuer` in the file). Defaults to `http://LISTEN`.
    #[arg(long, env = "KEYBOUND_ISSUER")]
    issuer: Option<String>,
}

/// What the development banner prints about the demo clients.
struct Demo {
    confidential_secret: String,
    key_file: PathBuf,
    user_password: String,
}

fn read_or_create_secret(
    path: &Path,
    make: impl FnOnce() -> Result<Vec<u8>, Failure>,
) -> Result<Vec<u8>, Failure> {
    if let Ok(bytes) = std::fs::read(path) {
        return Ok(bytes);
    }
    let bytes = make()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))?;
    std::io::Write::write_all(&mut file, &bytes)
        .map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))?;
    Ok(bytes)
}

/// Creates the data directory, readable by its owner only.
fn create_data_dir(dir: &Path) -> Result<(), Failure> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Failure(format!("cannot create {}: {e}", dir.display())))
}

/// The development configuration: two demo clients whose secret and DPoP key live in the data dir.
fn development_config(issuer: &str, data_dir: &Path) -> Result<(Config, Demo), Failure> {
    create_data_dir(data_dir)?;
    let secret_file = data_dir.join("demo-client-secret");
    let secret = read_or_create_secret(&secret_file, || {
        let mut raw = [0u8; 24];
        SystemRandom::new()
            .fill(&mut raw)
            .map_err(|_| Failure("no randomness".into()))?;
        // A fixed prefix: base64url may start with '-', which a command line reads as an option.
        let encoded =
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, raw);
        Ok(format!("kbs_{encoded}").into_bytes())
    })?;
    let secret = String::from_utf8(secret)
        .map_err(|_| Failure(format!("{} is corrupt", secret_file.display())))?;
    let key_file = data_dir.join("demo-dpop-key.p8");
    read_or_create_secret(&key_file, || {
        let (_, pkcs8) = SigningKey::generate(Algorithm::Es256, &SystemRandom::new())
            .map_err(|e| Failure(e.to_string()))?;
        Ok(pkcs8.to_vec())
    })?;
    let password_file = data_dir.join("demo-user-password");
    let password = read_or_create_secret(&password_file, || {
        let mut raw = [0u8; 12];
        SystemRandom::new()
            .fill(&mut raw)
            .map_err(|_| Failure("no randomness".into()))?;
        let encoded =
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, raw);
        Ok(format!("kbp_{encoded}").into_bytes())
    })?;
    let password = String::from_utf8(password)
        .map_err(|_| Failure(format!("{} is corrupt", password_file.display())))?;
    let password_hash = keybound_server::users::hash_password(password.trim()).map_err(Failure)?;
    let toml = format!(
        r#"
issuer = "{issuer}"
data_dir = "{data_dir}"

[[users]]
username = "alice"
password_argon2 = "{password_hash}"

[[clients]]
client_id = "demo-confidential"
auth_method = "client_secret_basic"
client_secret_sha256 = "{hash}"
grant_types = ["client_credentials", "refresh_token"]
scopes = ["read", "write"]
dpop_bound_access_tokens = true

[[clients]]
client_id = "demo-public"
auth_method = "none"
grant_types = ["authorization_code", "refresh_token"]
redirect_uris = ["{issuer}/demo/callback"]
scopes = ["read"]
dpop_bound_access_tokens = true
"#,
        data_dir = data_dir.display(),
        hash = hash_secret(secret.trim())
    );
    let config = Config::from_toml(&toml).map_err(|e| Failure(e.to_string()))?;
    Ok((
        config,
        Demo {
            confidential_secret: secret.trim().to_owned(),
            key_file,
            user_password: password.trim().to_owned(),
        },
    ))
}

fn banner(settings: &Validated, listen: SocketAddr, demo: Option<&Demo>) {
    let issuer = &settings.issuer;
    outln!(
        "keybound {} authorization server",
        env!("CARGO_PKG_VERSION")
    );
    outln!("  issuer    {issuer}");
    outln!("  listening {listen}");
    outln!("  metadata  {issuer}/.well-known/oauth-authorization-server");
    outln!("  data dir  {}", settings.config.data_dir.display());
    let Some(demo) = demo else { return };
    let exe =
        std::env::current_exe().map_or_else(|_| "keybound".to_owned(), |p| p.display().to_string());
    outln!();
    outln!("Development mode (no --config): demo clients");
    outln!(
        "  demo-confidential  client_secret_basic, secret {}  (DPoP required)",
        demo.confidential_secret
    );
    outln!("  demo-public        public client (authorization code + PKCE + DPoP)");
    outln!("  user alice         password {}", demo.user_password);
    outln!("  in a browser       {issuer}/demo  (sign in as alice, get a DPoP-bound token)");
    outln!();
    outln!(
        "Get a DPoP-bound token (the demo client's key is {}):",
        demo.key_file.display()
    );
    outln!(
        "  curl -s -u demo-confidential:{secret} -d grant_type=client_credentials \\\n    -H \"DPoP: $({exe} proof --key {key} --method POST --url {issuer}/token)\" {issuer}/token",
        secret = demo.confidential_secret,
        key = demo.key_file.display(),
    );
    outln!();
    outln!("Then call the protected demo API with it:");
    outln!(
        "  TOKEN=$(curl -s -u demo-confidential:{secret} -d grant_type=client_credentials -H \"DPoP: $({exe} proof --key {key} --method POST --url {issuer}/token)\" {issuer}/token | sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/')",
        secret = demo.confidential_secret,
        key = demo.key_file.display()
    );
    outln!(
        "  curl -s -H \"Authorization: DPoP $TOKEN\" -H \"DPoP: $({exe} proof --key {key} --method GET --url {issuer}/api/whoami --token $TOKEN)\" {issuer}/api/whoami",
        key = demo.key_file.display()
    );
}

fn load(args: &ServeArgs) -> Result<(Validated, bool, Option<Demo>), Failure> {
    let issuer_default = format!("http://{}", args.listen);
    let (mut config, demo) = match &args.config {
        Some(path) => {
            let text = String::from_utf8(read_file(path, MAX_CONFIG_FILE)?)
                .map_err(|_| Failure(format!("{}: not UTF-8 text", path.display())))?;
            (
                Config::from_toml(&text)
                    .map_err(|e| Failure(format!("{}: {e}", path.display())))?,
                None,
            )
        }
        None => {
            let data_dir = args
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("keybound-data"));
            let issuer = args.issuer.clone().unwrap_or(issuer_default);
            let (config, demo) = development_config(&issuer, &data_dir)?;
            (config, Some(demo))
        }
    };
    if let Some(issuer) = &args.issuer {
        config.issuer.clone_from(issuer);
    }
    if let Some(dir) = &args.data_dir {
        config.data_dir.clone_from(dir);
    }
    // Secrets come from the environment rather than a file or the command line, where
    // `ps` would show them: KEYBOUND_NONCE_SECRETS=current[,previous] (base64url).
    for (name, slot) in [
        ("KEYBOUND_STORE_URL", &mut config.store.url),
        ("KEYBOUND_REPLAY_URL", &mut config.store.replay_url),
    ] {
        if let Ok(url) = std::env::var(name) {
            *slot = Some(url);
        }
    }
    if let Ok(secrets) = std::env::var("KEYBOUND_NONCE_SECRETS") {
        config.dpop.nonce_secrets = secrets
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
    }
    let dev = demo.is_some();
    let settings = config
        .validate()
        .map_err(|e| Failure(format!("invalid configuration: {e}")))?;
    Ok((settings, dev, demo))
}

pub(crate) fn serve(args: &ServeArgs) -> Result<(), Failure> {
    let (settings, _, demo) = load(args)?;
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Failure(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let data_dir = settings.config.data_dir.clone();
        let mtls_config = settings.config.mtls.clone();
        let key_reload_secs = settings.config.store.key_reload_secs;
        create_data_dir(&data_dir)?;
        let store = open_store(&settings.config.store, &data_dir).await?;
        let ring = store.keys.load(settings.signing_alg).await?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| Failure(format!("cannot listen on {}: {e}", args.listen)))?;
        let listen = listener.local_addr().unwrap_or(args.listen);
        banner(&settings, listen, demo.as_ref());
        tokio::spawn(purge_periodically(store.grants.clone()));
        let replay = replay_cache(settings.config.store.replay_url.as_deref(), REPLAY_CAPACITY)?;
        let state = Arc::new(
            AppState::new(settings, ring, replay.clone(), store.grants, system_clock())
                .with_authorization_store(store.codes),
        );
        store.keys.follow_rotations(state.clone(), key_reload_secs);
        let mut app =
            router(state.clone()).merge(demo_api(&state, replay.clone(), state.issuer())?);
        if let Some(demo) = &demo {
            let key = keybound_client::load_key_file(&demo.key_file, None)
                .map_err(|e| Failure(e.to_string()))?;
            let client =
                keybound_client::DpopClient::new(key).map_err(|e| Failure(e.to_string()))?;
            app = app.merge(crate::demo_web::routes(state.issuer(), client));
        }
        let limits = keybound_tls::ServeLimits::default();
        if let Some(mtls) = mtls_listener(&mtls_config).await? {
            // The same routes; the demo API checks `htu` against the listener's own URL.
            let public = state.mtls_base_url().unwrap_or(state.issuer());
            let app = router(state.clone()).merge(demo_api(&state, replay, public)?);
            tokio::spawn(keybound_tls::serve(
                mtls,
                app,
                limits,
                std::future::pending(),
            ));
        }
        tracing::info!(%listen, "serving");
        // Requests carry the peer's address: what trusted-proxy checks of forwarded
        // certificates look at.
        keybound_tls::serve(listener, app, limits, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
        Ok(())
    })
}

/// `[mtls] listen`: a TLS listener that asks clients for certificates (RFC 8705), serving the
/// same routes; its public URL is `[mtls] base_url`, published as `mtls_endpoint_aliases`.
async fn mtls_listener(
    config: &keybound_server::MtlsConfig,
) -> Result<Option<keybound_tls::TlsListener>, Failure> {
    let (Some(listen), Some(cert), Some(key)) = (
        &config.listen,
        &config.server_cert_file,
        &config.server_key_file,
    ) else {
        return Ok(None);
    };
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| Failure(format!("mtls.listen: not an address: {listen}")))?;
    let tls = keybound_tls::ServerTls::from_pem_files(cert, key)
        .and_then(|t| t.server_config(keybound_tls::ClientCertMode::AnyCertificate))
        .map_err(|e| Failure(format!("mtls: {e}")))?;
    let listener = keybound_tls::TlsListener::bind(addr, tls)
        .await
        .map_err(|e| Failure(format!("cannot listen on {addr}: {e}")))?;
    tracing::info!(%addr, "mTLS listener (client certificates requested)");
    Ok(Some(listener))
}

/// The replay cache: shared in Redis for replicas (`redis://`), else in this process's memory.
/// Redis is connected lazily: while it is down every check fails (503) and `/readyz` says so,
/// and service resumes when it answers. Must run inside the tokio runtime.
pub(crate) fn replay_cache(
    url: Option<&str>,
    capacity: usize,
) -> Result<Arc<dyn keybound_store::ReplayCache>, Failure> {
    match url {
        Some(url) => {
            let cache = keybound_store::RedisReplayCache::connect_lazy(
                url,
                keybound_store::RedisReplayOptions::default(),
            )
            .map_err(|e| Failure(format!("replay cache: {e}")))?;
            tracing::info!(cache = ?cache, "shared replay cache");
            Ok(Arc::new(cache))
        }
        None => Ok(Arc::new(MemoryReplayCache::new(capacity))),
    }
}

/// `GET /api/whoami`: a protected API on the AS's own keys, answering with the verified claims.
/// Proofs must name it under `public_url`. It trusts the same proxies to forward client
/// certificates as the token endpoint does.
fn demo_api(
    state: &Arc<AppState>,
    replay: Arc<dyn keybound_store::ReplayCache>,
    public_url: &str,
) -> Result<axum::Router, Failure> {
    use keybound_resource::{
        KeySource, ResourceConfig, ResourceLayer, ResourceVerifier, VerifiedToken,
    };
    let config = ResourceConfig::new(state.issuer(), state.audience(), public_url);
    let keys = KeySource::Current(Arc::new(AsKeys(state.clone())));
    let verifier =
        ResourceVerifier::new(config, keys, replay).map_err(|e| Failure(e.to_string()))?;
    async fn whoami(token: VerifiedToken) -> axum::Json<serde_json::Value> {
        axum::Json(serde_json::json!({
            "sub": token.claims.sub,
            "client_id": token.claims.client_id,
            "scope": token.claims.scope,
            "token_type": token.scheme.name(),
            "jkt": token.jkt.as_ref().map(|j| j.as_str().to_owned()),
        }))
    }
    Ok(axum::Router::new()
        .route("/api/whoami", axum::routing::get(whoami))
        .layer(ResourceLayer::new(Arc::new(verifier)))
        .layer(keybound_tls::ClientCertLayer::new(
            state.forwarded_certificates().cloned(),
        )))
}

/// Deletes expired refresh tokens, grants and revocations every ten minutes.
/// Grants and codes: shared in PostgreSQL for replicas (`[store] url`), else the SQLite file in
/// the data directory.
struct Stores {
    grants: Arc<dyn keybound_store::GrantStore>,
    codes: Arc<dyn keybound_store::AuthorizationStore>,
    keys: KeyHome,
}

async fn open_store(
    config: &keybound_server::StoreConfig,
    data_dir: &Path,
) -> Result<Stores, Failure> {
    if let Some(url) = &config.url {
        let mut options = keybound_store::PostgresOptions::default();
        if let Some(schema) = &config.schema {
            options = options.with_schema(schema.clone());
        }
        let store = Arc::new(
            keybound_store::PostgresStore::connect(url, &options)
                .await
                .map_err(|e| Failure(format!("grant store: {e}")))?,
        );
        tracing::info!(store = ?store, "shared grant store");
        return Ok(Stores {
            keys: KeyHome::shared(store.clone())?,
            grants: store.clone(),
            codes: store,
        });
    }
    let store = Arc::new(
        SqliteStore::open(&data_dir.join("keybound.db"))
            .await
            .map_err(|e| Failure(e.to_string()))?,
    );
    Ok(Stores {
        grants: store.clone(),
        codes: store,
        keys: KeyHome::Files(data_dir.to_owned()),
    })
}

async fn purge_periodically(store: Arc<dyn keybound_store::GrantStore>) {
    let clock = system_clock();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
    loop {
        tick.tick().await;
        match keybound_store::GrantStore::purge_expired(store.as_ref(), clock()).await {
            Ok(rows) => tracing::debug!(rows, "purged expired records"),
            Err(error) => tracing::warn!(%error, "purging expired records failed"),
        }
    }
}

/// `keybound keys rotate`: in the data directory, or in the shared store that every replica
/// follows. Returns the new current `kid` and whether the replicas pick it up by themselves.
pub(crate) fn rotate(args: &ServeArgs) -> Result<(String, bool), Failure> {
    let (settings, _, _) = load(args)?;
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Failure(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async {
        let store = open_store(&settings.config.store, &settings.config.data_dir).await?;
        let ring = store.keys.rotate(settings.signing_alg).await?;
        Ok((kid(&ring), matches!(store.keys, KeyHome::Store(..))))
    })
}
