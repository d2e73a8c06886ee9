//! What asking for a client certificate costs: full TLS 1.3 handshakes in memory (no sockets),
//! server not asking, asking and getting none, and verifying a client certificate (possession
//! only, and chained to a CA). Session resumption is off, as keybound configures it.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use keybound_tls::test_pki::{ClientSpec, TestCa, TestIdentity};
use keybound_tls::{ClientCertMode, ServerTls, TrustAnchors};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn client_config(ca: &TestCa, identity: Option<&TestIdentity>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(vec![id.der.clone()], id.private_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

fn no_client_auth_server(server: &TestIdentity) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![server.der.clone()], server.private_key())
        .unwrap();
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Arc::new(config)
}

fn handshake(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) {
    let name = "localhost".try_into().unwrap();
    let mut c = ClientConnection::new(client.clone(), name).unwrap();
    let mut s = ServerConnection::new(server.clone()).unwrap();
    let mut buf = Vec::with_capacity(8192);
    while c.is_handshaking() || s.is_handshaking() {
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let mut slice = buf.as_slice();
        while !slice.is_empty() {
            s.read_tls(&mut slice).unwrap();
            s.process_new_packets().unwrap();
        }
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        let mut slice = buf.as_slice();
        while !slice.is_empty() {
            c.read_tls(&mut slice).unwrap();
            c.process_new_packets().unwrap();
        }
    }
    assert!(s.peer_certificates().is_some() == client.client_auth_cert_resolver.has_certs());
}

fn bench(c: &mut Criterion) {
    let ca = TestCa::new("Bench CA");
    let server = ca.server();
    let client_id = ca.client(&ClientSpec::common_name("bench-client"));
    let plain = no_client_auth_server(&server);
    let any = ServerTls::new(vec![server.der.clone()], server.private_key())
        .server_config(ClientCertMode::AnyCertificate)
        .unwrap();
    let pki = ServerTls::new(vec![server.der.clone()], server.private_key())
        .server_config(ClientCertMode::Pki(
            TrustAnchors::from_der(vec![ca.der.clone()]).unwrap(),
        ))
        .unwrap();
    let anonymous = client_config(&ca, None);
    let with_cert = client_config(&ca, Some(&client_id));

    let mut group = c.benchmark_group("tls13_full_handshake_p256");
    group.bench_function("server_does_not_ask", |b| {
        b.iter(|| handshake(&anonymous, &plain))
    });
    group.bench_function("asks_client_sends_none", |b| {
        b.iter(|| handshake(&anonymous, &any))
    });
    group.bench_function("client_cert_possession_only", |b| {
        b.iter(|| handshake(&with_cert, &any));
    });
    group.bench_function("client_cert_chain_checked", |b| {
        b.iter(|| handshake(&with_cert, &pki))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
