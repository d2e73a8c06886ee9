//! Certificate-bound tokens at the resource server (RFC 8705 §3, standards §3.3): the token's
//! `x5t#S256` must be the thumbprint of the connection's client certificate, taken from the TLS
//! layer (keybound-tls) or a trusted proxy, never from what the client says.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::http::StatusCode;
use common::{Rs, request, send};
use keybound_core::access_token::Confirmation;
use keybound_core::cert::encode_client_cert;
use keybound_tls::test_pki::{ClientSpec, TestCa, TestIdentity, self_signed};
use keybound_tls::{
    ClientCertLayer, ClientCertMode, ForwardedCertificates, ForwardedFormat, Peer, ProxyNet,
    ServerTls, TlsListener,
};

fn cert_bound(rs: &Rs, identity: &TestIdentity) -> String {
    let mut claims = rs.claims();
    claims.cnf = Some(Confirmation {
        jkt: None,
        x5t_s256: Some(identity.client_certificate().thumbprint().clone()),
    });
    rs.sign(&claims)
}

/// The harness's routes behind the certificate intake, with 10.0.0.1 as a trusted proxy.
fn app(rs: &Rs) -> Router {
    rs.router
        .clone()
        .layer(ClientCertLayer::new(Some(ForwardedCertificates::new(
            vec![ProxyNet::parse("10.0.0.1").unwrap()],
            ForwardedFormat::Rfc9440,
        ))))
}

/// A request arriving over a connection from `remote` that presented `certificate`.
fn over(
    remote: &str,
    certificate: Option<&TestIdentity>,
    headers: &[(&str, &str)],
) -> Request<Body> {
    let mut request = request("GET", common::RES, headers);
    request.extensions_mut().insert(ConnectInfo(Peer {
        remote: remote.parse().unwrap(),
        certificate: certificate.map(TestIdentity::client_certificate),
    }));
    request
}

#[tokio::test]
async fn attack41_certificate_bound_token_needs_the_same_certificate() {
    let rs = Rs::new();
    let app = app(&rs);
    let mine = self_signed(&ClientSpec::common_name("app"));
    let other = self_signed(&ClientSpec::common_name("app"));
    let token = cert_bound(&rs, &mine);
    let auth = format!("Bearer {token}");
    let ok = send(
        &app,
        over("192.0.2.1:5000", Some(&mine), &[("authorization", &auth)]),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    for presented in [Some(&other), None] {
        let reply = send(
            &app,
            over("192.0.2.1:5000", presented, &[("authorization", &auth)]),
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        // RFC 8705 §3: `Bearer error="invalid_token"` (the DPoP challenge is offered too).
        let challenges: Vec<&str> = reply
            .headers
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert!(
            challenges
                .iter()
                .any(|c| c.starts_with("Bearer") && c.contains("error=\"invalid_token\"")),
            "{challenges:?}"
        );
    }
}

#[tokio::test]
async fn a_certificate_bound_token_is_not_a_dpop_token() {
    let rs = Rs::new();
    let app = app(&rs);
    let mine = self_signed(&ClientSpec::common_name("app"));
    let token = cert_bound(&rs, &mine);
    let proof = common::proof_by(&rs.client, "GET", common::RES_URL, rs.now(), &token);
    let auth = format!("DPoP {token}");
    let reply = send(
        &app,
        over(
            "192.0.2.1:5000",
            Some(&mine),
            &[("authorization", &auth), ("dpop", &proof)],
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn attack42_a_forwarded_certificate_counts_only_from_the_trusted_proxy() {
    let rs = Rs::new();
    let app = app(&rs);
    let victim = self_signed(&ClientSpec::common_name("app"));
    let token = cert_bound(&rs, &victim);
    let auth = format!("Bearer {token}");
    let forwarded = encode_client_cert(victim.der.as_ref());
    let headers = [
        ("authorization", auth.as_str()),
        ("client-cert", forwarded.as_str()),
    ];
    // Through the proxy: accepted.
    let via_proxy = send(&app, over("10.0.0.1:443", None, &headers)).await;
    assert_eq!(via_proxy.status, StatusCode::OK, "{:?}", via_proxy.body);
    // The thief with the stolen token sends the victim's (public) certificate itself.
    let direct = send(&app, over("198.51.100.9:5000", None, &headers)).await;
    assert_eq!(direct.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn over_a_real_tls_listener_the_handshake_certificate_is_the_one_checked() {
    let rs = Rs::new();
    let ca = TestCa::new("RS test CA");
    let server = ca.server();
    let config = ServerTls::new(vec![server.der.clone()], server.private_key())
        .server_config(ClientCertMode::AnyCertificate)
        .unwrap();
    let listener = TlsListener::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let port = axum::serve::Listener::local_addr(&listener)
        .unwrap()
        .remote
        .port();
    let service = app(&rs).into_make_service_with_connect_info::<Peer>();
    tokio::spawn(async move { axum::serve(listener, service).await });

    let mine = ca.client(&ClientSpec::common_name("app"));
    let other = self_signed(&ClientSpec::common_name("app"));
    let token = cert_bound(&rs, &mine);
    let url = format!("https://localhost:{port}{}", common::RES);
    let call = |identity: &TestIdentity| {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap()])
            .identity(reqwest::Identity::from_pem(identity.identity_pem().as_bytes()).unwrap())
            .build()
            .unwrap()
            .get(&url)
            .bearer_auth(&token)
            .send()
    };
    assert_eq!(call(&mine).await.unwrap().status(), 200);
    assert_eq!(call(&other).await.unwrap().status(), 401);
    let _ = Arc::clone(&rs.verifier);
}
