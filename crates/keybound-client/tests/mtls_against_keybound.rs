//! mTLS client authentication against a keybound AS that publishes `mtls_endpoint_aliases`
//! (RFC 8705 §2, §5): the AS's plain listener never sees a certificate, so a token for a
//! certificate-authenticated client proves the client went to the alias with its identity.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use keybound_client::{ClientAuth, ClientError, DpopClient, TlsIdentity};
use keybound_core::{Algorithm, ErrorCode, SigningKey};
use keybound_server::{AppState, Config, keys, router, system_clock};
use keybound_store::{MemoryReplayCache, SqliteStore};
use keybound_tls::test_pki::{ClientSpec, TestCa, TestIdentity};
use keybound_tls::{ClientCertMode, Peer, ServerTls, TlsListener};

struct Deployment {
    issuer: String,
    ca: TestCa,
}

/// The AS on a plain listener (the issuer) and on a TLS listener asking for client
/// certificates (the mTLS alias), one state behind both.
async fn start() -> Deployment {
    let ca = TestCa::new("mTLS test CA");
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("keybound-client-mtls-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", plain.local_addr().unwrap());
    let server = ca.server();
    let tls_config = ServerTls::new(vec![server.der.clone()], server.private_key())
        .server_config(ClientCertMode::AnyCertificate)
        .unwrap();
    let tls = TlsListener::bind("127.0.0.1:0".parse().unwrap(), tls_config)
        .await
        .unwrap();
    let tls_port = axum::serve::Listener::local_addr(&tls)
        .unwrap()
        .remote
        .port();
    let toml = format!(
        r#"
issuer = "{issuer}"
data_dir = "{dir}"
[dpop]
require_nonce = true
[mtls]
base_url = "https://localhost:{tls_port}"
client_ca_files = ["{dir}/ca.pem"]
[[clients]]
client_id = "tls-app"
auth_method = "tls_client_auth"
tls_client_auth_san_dns = "app.example.com"
dpop_bound_access_tokens = true
"#,
        dir = dir.display()
    );
    let settings = Config::from_toml(&toml).unwrap().validate().unwrap();
    let ring = keys::load_or_create(&dir, settings.signing_alg).unwrap();
    let store = SqliteStore::open(&dir.join("keybound.db")).await.unwrap();
    let state = Arc::new(AppState::new(
        settings,
        ring,
        Arc::new(MemoryReplayCache::new(10_000)),
        Arc::new(store),
        system_clock(),
    ));
    let app = router(state);
    let mtls_app = app.clone().into_make_service_with_connect_info::<Peer>();
    tokio::spawn(async move { axum::serve(plain, app).await });
    tokio::spawn(async move { axum::serve(tls, mtls_app).await });
    Deployment { issuer, ca }
}

fn dpop_key() -> SigningKey {
    SigningKey::generate(Algorithm::Es256, &aws_lc_rs::rand::SystemRandom::new())
        .unwrap()
        .0
}

fn client(d: &Deployment, identity: Option<&TestIdentity>) -> DpopClient {
    let mut builder = DpopClient::builder(dpop_key()).add_root_certificate_pem(d.ca.pem.as_bytes());
    if let Some(identity) = identity {
        let identity =
            TlsIdentity::from_pem(identity.cert_pem.as_bytes(), identity.key_pem.as_bytes())
                .unwrap();
        assert_eq!(format!("{identity:?}"), "TlsIdentity([redacted])");
        builder = builder.tls_identity(identity);
    }
    builder.build().unwrap()
}

fn tls_auth() -> ClientAuth {
    ClientAuth::Tls {
        client_id: "tls-app".into(),
    }
}

#[tokio::test]
async fn tls_client_auth_goes_to_the_mtls_alias_and_gets_a_dpop_bound_token() {
    let d = start().await;
    let me = d.ca.client(&ClientSpec {
        dns: vec!["app.example.com".into()],
        ..ClientSpec::common_name("app")
    });
    let client = client(&d, Some(&me));
    let issuer = client.discover(&d.issuer).await.unwrap();
    let alias = client.token_endpoint(&issuer).to_owned();
    assert!(alias.starts_with("https://localhost:"), "{alias}");
    assert_ne!(alias, issuer.token_endpoint);
    let token = client
        .client_credentials(&issuer, &tls_auth(), None)
        .await
        .unwrap();
    assert_eq!(token.token_type, "DPoP");
    // The nonce the alias demanded was handled with exactly one retry.
    assert_eq!(client.nonce_retries(), 1);
}

#[tokio::test]
async fn without_the_registered_certificate_the_client_is_refused() {
    let d = start().await;
    let stranger = d.ca.client(&ClientSpec {
        dns: vec!["other.example.com".into()],
        ..ClientSpec::common_name("app")
    });
    let client = client(&d, Some(&stranger));
    let issuer = client.discover(&d.issuer).await.unwrap();
    let error = client
        .client_credentials(&issuer, &tls_auth(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::Refused { error, .. } if *error == ErrorCode::InvalidClient),
        "{error:?}"
    );
}

#[tokio::test]
async fn mtls_authentication_without_an_identity_is_a_usage_error_and_uses_no_alias() {
    let d = start().await;
    let client = client(&d, None);
    let issuer = client.discover(&d.issuer).await.unwrap();
    assert_eq!(client.token_endpoint(&issuer), issuer.token_endpoint);
    let error = client
        .client_credentials(&issuer, &tls_auth(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ClientError::InvalidParameter(_)),
        "{error:?}"
    );
}
