//! The configuration file: `keybound_server::Config::from_toml` then `validate`, on arbitrary
//! UTF-8, then (for a valid one) the server's start: `AppState::new` and its metadata.
//!
//! The configuration is trusted input (an operator writes it), but a typo must be an error that
//! names the key, never a panic at start. `validate` reads the CA files a configuration names;
//! the target points every such path at one fixture CA file, so a mutated path reads nothing
//! else on the machine (no `/dev/stdin`, no `/dev/zero`).
//!
//! Invariants: an error names a key or says why; a validated configuration has an issuer
//! without a trailing slash, a token endpoint under it, one entry of derived keys and
//! certificate checks per client, unique non-empty client ids, at least one DPoP algorithm,
//! an `iat` window within its bounds, and keys for every `private_key_jwt` client; a server
//! built from it answers its metadata with that issuer.

#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use keybound_core::Algorithm;
use keybound_core::dpop::IatWindow;
use keybound_fuzz::{NOW, NoGrants, send};
use keybound_server::{AppState, AuthMethod, Config};
use keybound_store::MemoryReplayCache;
use libfuzzer_sys::fuzz_target;

/// The CA certificate file every configured path is pointed at (the rfc9440 fixture).
fn ca_file() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/ca.pem")))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut config = match Config::from_toml(text) {
        Ok(config) => config,
        Err(error) => {
            assert!(!error.to_string().is_empty());
            return;
        }
    };
    for path in &mut config.mtls.client_ca_files {
        path.clone_from(ca_file());
    }
    for client in &mut config.clients {
        if let Some(path) = &mut client.tls_client_auth_ca_file {
            path.clone_from(ca_file());
        }
    }

    let validated = match config.validate() {
        Ok(validated) => validated,
        Err(error) => {
            assert!(!error.message.is_empty(), "an error says why: {error:?}");
            return;
        }
    };
    let issuer = validated.issuer.clone();
    assert!(!issuer.ends_with('/'), "{issuer:?}");
    assert!(validated.token_htu.as_str().ends_with("/token"));
    let clients = &validated.config.clients;
    assert_eq!(validated.client_keys.len(), clients.len());
    assert_eq!(validated.client_tls.len(), clients.len());
    let mut ids: Vec<&str> = clients.iter().map(|c| c.client_id.as_str()).collect();
    assert!(ids.iter().all(|id| !id.is_empty() && id.len() <= 255));
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), clients.len(), "client ids are unique");
    for (client, keys) in clients.iter().zip(&validated.client_keys) {
        if client.auth_method == AuthMethod::PrivateKeyJwt {
            assert!(
                keys.as_ref().is_some_and(|k| !k.is_empty()),
                "{}",
                client.client_id
            );
        }
    }
    assert!(!validated.dpop_algorithms.is_empty());
    assert!(Algorithm::FAPI2.contains(&validated.signing_alg));
    let window = validated.iat_window;
    assert_eq!(
        IatWindow::new(window.max_age(), window.future_leeway()),
        Some(window)
    );

    // Start a server with it (an ES256 ring whatever the configured algorithm: RSA key
    // generation would cost a second per input) and read its metadata.
    let ring = keybound_server::keys::KeyRing::ephemeral(Algorithm::Es256).expect("key generation");
    let state = AppState::new(
        validated,
        ring,
        Arc::new(MemoryReplayCache::new(16)),
        Arc::new(NoGrants),
        Arc::new(|| NOW),
    );
    let app = keybound_server::router(Arc::new(state));
    let request = Request::get("/.well-known/oauth-authorization-server")
        .body(Body::empty())
        .expect("a request");
    let (response, body) = send(app, request);
    assert_eq!(response.status(), StatusCode::OK);
    let metadata: serde_json::Value = serde_json::from_slice(&body).expect("JSON metadata");
    assert_eq!(metadata["issuer"], issuer.as_str());
    assert_eq!(
        metadata["token_endpoint"],
        format!("{issuer}/token").as_str()
    );
});
