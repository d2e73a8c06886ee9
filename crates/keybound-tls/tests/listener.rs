//! The TLS listener and the certificate intake over real loopback sockets: a certificate from
//! the handshake reaches the handler; a forwarded one only from a trusted proxy (RFC 9440 §4,
//! standards §5 #42); spoofed headers never reach the application.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use axum::Router;
use axum::http::{HeaderMap, HeaderName};
use axum::routing::get;
use keybound_core::cert::encode_client_cert;
use keybound_tls::test_pki::{ClientSpec, TestCa, TestIdentity, self_signed};
use keybound_tls::{
    ClientCertLayer, ClientCertMode, ClientCertificate, ForwardedCertificates, ForwardedFormat,
    Peer, ProxyNet, ServerTls, TlsListener, TrustAnchors,
};

async fn echo(
    certificate: Option<axum::Extension<ClientCertificate>>,
    headers: HeaderMap,
) -> String {
    let seen =
        certificate.map_or_else(|| "none".to_owned(), |c| c.thumbprint().as_str().to_owned());
    let leaked = [
        "client-cert",
        "x-ssl-client-cert",
        "x-forwarded-client-cert",
    ]
    .iter()
    .any(|name| headers.contains_key(*name));
    format!("{seen}|{leaked}")
}

fn app(forwarded: Option<ForwardedCertificates>) -> Router {
    Router::new()
        .route("/", get(echo))
        .layer(ClientCertLayer::new(forwarded))
}

fn trusted_loopback(format: ForwardedFormat) -> ForwardedCertificates {
    ForwardedCertificates::new(vec![ProxyNet::parse("127.0.0.1").unwrap()], format)
}

async fn tls_server(ca: &TestCa, mode: ClientCertMode) -> SocketAddr {
    let server = ca.server();
    let config = ServerTls::new(vec![server.der.clone()], server.private_key())
        .server_config(mode)
        .unwrap();
    let listener = TlsListener::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let addr = axum::serve::Listener::local_addr(&listener).unwrap().remote;
    let service = app(Some(trusted_loopback(ForwardedFormat::Rfc9440)))
        .into_make_service_with_connect_info::<Peer>();
    tokio::spawn(async move { axum::serve(listener, service).await });
    addr
}

async fn plain_server(forwarded: ForwardedCertificates) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = app(Some(forwarded)).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await });
    addr
}

fn client(ca: &TestCa, identity: Option<&TestIdentity>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap()]);
    if let Some(identity) = identity {
        builder = builder
            .identity(reqwest::Identity::from_pem(identity.identity_pem().as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

#[tokio::test]
async fn the_handshake_certificate_reaches_the_handler() {
    let ca = TestCa::new("Server CA");
    let addr = tls_server(&ca, ClientCertMode::AnyCertificate).await;
    let url = format!("https://localhost:{}/", addr.port());
    let me = self_signed(&ClientSpec::common_name("app"));
    let body = client(&ca, Some(&me))
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        body,
        format!("{}|false", me.client_certificate().thumbprint().as_str())
    );
    // Requested, not required: a connection without a certificate is served, without one.
    let body = client(&ca, None)
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "none|false");
}

#[tokio::test]
async fn a_tls_certificate_wins_over_a_forwarded_header() {
    let ca = TestCa::new("Server CA");
    let addr = tls_server(&ca, ClientCertMode::AnyCertificate).await;
    let me = self_signed(&ClientSpec::common_name("app"));
    let victim = self_signed(&ClientSpec::common_name("victim"));
    let body = client(&ca, Some(&me))
        .get(format!("https://localhost:{}/", addr.port()))
        .header("client-cert", encode_client_cert(victim.der.as_ref()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        body,
        format!("{}|false", me.client_certificate().thumbprint().as_str())
    );
}

#[tokio::test]
async fn pki_mode_refuses_certificates_from_other_cas_at_the_handshake() {
    let ca = TestCa::new("Server and client CA");
    let other = TestCa::new("Other CA");
    let anchors = TrustAnchors::from_pem(ca.pem.as_bytes()).unwrap();
    let addr = tls_server(&ca, ClientCertMode::Pki(anchors)).await;
    let url = format!("https://localhost:{}/", addr.port());
    let good = ca.client(&ClientSpec::common_name("app"));
    let body = client(&ca, Some(&good))
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        body,
        format!("{}|false", good.client_certificate().thumbprint().as_str())
    );
    let bad = other.client(&ClientSpec::common_name("app"));
    assert!(client(&ca, Some(&bad)).get(&url).send().await.is_err());
}

#[tokio::test]
async fn attack42_forwarded_certificates_count_only_from_trusted_proxies() {
    let addr = plain_server(trusted_loopback(ForwardedFormat::Rfc9440)).await;
    let url = format!("http://{addr}/");
    let cert = self_signed(&ClientSpec::common_name("app"));
    let header = encode_client_cert(cert.der.as_ref());
    let from = |ip: &str| {
        reqwest::Client::builder()
            .local_address(ip.parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap()
    };
    let trusted = from("127.0.0.1")
        .get(&url)
        .header("client-cert", &header)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        trusted,
        format!("{}|false", cert.client_certificate().thumbprint().as_str())
    );
    // The same header from another address: ignored, and stripped before the application.
    let spoofed = from("127.0.0.2")
        .get(&url)
        .header("client-cert", &header)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(spoofed, "none|false");
}

#[tokio::test]
async fn attack42_conventional_certificate_headers_never_reach_the_application() {
    let cert = self_signed(&ClientSpec::common_name("app"));
    let pem = cert.cert_pem.replace('\n', "%0A");
    let without_forwarding = app(None).into_make_service_with_connect_info::<SocketAddr>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bare = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, without_forwarding).await });
    // RFC 9440 mode reads `Client-Cert` only; a proxy convention's header sent by the client
    // itself, even through the trusted proxy, is removed, and so is Envoy's XFCC.
    let rfc9440 = plain_server(trusted_loopback(ForwardedFormat::Rfc9440)).await;
    for addr in [bare, rfc9440] {
        for name in ["x-ssl-client-cert", "x-forwarded-client-cert"] {
            let body = reqwest::Client::new()
                .get(format!("http://{addr}/"))
                .header(name, &pem)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert_eq!(body, "none|false", "{name} at {addr}");
        }
    }
}

#[tokio::test]
async fn malformed_or_repeated_forwarded_certificates_are_refused_not_ignored() {
    let addr = plain_server(trusted_loopback(ForwardedFormat::Rfc9440)).await;
    let url = format!("http://{addr}/");
    let cert = self_signed(&ClientSpec::common_name("app"));
    let header = encode_client_cert(cert.der.as_ref());
    let http = reqwest::Client::new();
    for bad in [
        vec![("client-cert", "not-a-byte-sequence".to_owned())],
        vec![
            ("client-cert", header.clone()),
            ("client-cert", header.clone()),
        ],
        vec![("client-cert-chain", header.clone())],
    ] {
        let mut request = http.get(&url);
        for (name, value) in &bad {
            request = request.header(*name, value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 400, "{bad:?}");
        assert!(response.text().await.unwrap().contains("invalid_request"));
    }
}

#[tokio::test]
async fn nginx_escaped_pem_is_read_from_the_configured_header() {
    let format = ForwardedFormat::EscapedPem(HeaderName::from_static("x-ssl-client-cert"));
    let addr = plain_server(trusted_loopback(format)).await;
    let cert = self_signed(&ClientSpec::common_name("app"));
    let escaped = cert.escaped_pem();
    let http = reqwest::Client::new();
    let body = http
        .get(format!("http://{addr}/"))
        .header("x-ssl-client-cert", escaped)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        body,
        format!("{}|false", cert.client_certificate().thumbprint().as_str())
    );
    // nginx sends an empty value when the client had no certificate.
    let body = http
        .get(format!("http://{addr}/"))
        .header("x-ssl-client-cert", "")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "none|false");
}
