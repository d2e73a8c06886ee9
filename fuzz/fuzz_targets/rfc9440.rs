//! Forwarded client certificates (RFC 9440 `Client-Cert` / `Client-Cert-Chain`, and nginx's
//! URL-encoded PEM) as `keybound_tls::ClientCertLayer` takes them from a trusted proxy, the
//! `keybound_core::cert` codec under it, and what the AS then does with the certificate
//! (subject and SAN matching, its public key, chain validation).
//!
//! Input: one option byte (header format; peer trusted or not; a TLS peer with its own
//! certificate; no connection info), then header lines `name: value`.
//!
//! Invariants: the codec round-trips whatever it decodes, within its limits; the layer strips
//! every forwarded-certificate header before the inner service, whatever the peer; it takes a
//! certificate from headers only from a trusted peer without a TLS certificate, refuses (400)
//! only then, and the certificate it passes on is exactly the one in the header; a connection's
//! own certificate is never replaced by a header.

#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderName, Request, Response, StatusCode};
use keybound_core::CertThumbprint;
use keybound_core::cert::{
    MAX_CERT_HEADER_LEN, MAX_CHAIN_LEN, decode_client_cert, decode_client_cert_chain,
    encode_client_cert, encode_client_cert_chain,
};
use keybound_fuzz::{NOW, header_lines, send};
use keybound_tls::identity::public_jwk_of_certificate;
use keybound_tls::{
    CLIENT_CERT, CLIENT_CERT_CHAIN, ClientCertLayer, ClientCertificate, ExpectedSubject,
    ForwardedCertificates, ForwardedFormat, Peer, ProxyNet, TrustAnchors, certificates_from_pem,
};
use libfuzzer_sys::fuzz_target;
use tower::Layer as _;

const ESCAPED: HeaderName = HeaderName::from_static("x-ssl-client-cert");
const FIXTURE_CA: &[u8] = include_bytes!("../fixtures/ca.pem");

struct Fixtures {
    anchors: TrustAnchors,
    subjects: Vec<ExpectedSubject>,
    tls_certificate: ClientCertificate,
}

fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let ca = certificates_from_pem(FIXTURE_CA).expect("fixture CA");
        Fixtures {
            anchors: TrustAnchors::from_der(ca.clone()).expect("fixture CA"),
            subjects: vec![
                ExpectedSubject::subject_dn("CN=client.example").expect("a DN"),
                ExpectedSubject::SanDns("client.example".into()),
                ExpectedSubject::SanUri("spiffe://example/client".into()),
                ExpectedSubject::san_ip("10.0.0.1").expect("an IP"),
                ExpectedSubject::SanEmail("client@example.com".into()),
            ],
            tls_certificate: ClientCertificate::new(ca[0].clone(), Vec::new()),
        }
    })
}

fn check_codec(value: &str) {
    if let Ok(der) = decode_client_cert(value) {
        assert!(value.len() <= MAX_CERT_HEADER_LEN);
        assert!(!der.is_empty());
        assert_eq!(
            decode_client_cert(&encode_client_cert(&der)).as_ref(),
            Ok(&der)
        );
    }
    if let Ok(chain) = decode_client_cert_chain(value) {
        assert!(!chain.is_empty() && chain.len() <= MAX_CHAIN_LEN);
        let encoded = encode_client_cert_chain(chain.iter().map(Vec::as_slice));
        assert_eq!(decode_client_cert_chain(&encoded).as_ref(), Ok(&chain));
        if chain.len() == 1 {
            assert_eq!(
                decode_client_cert(value).as_ref(),
                Ok(&chain[0]),
                "{value:?}"
            );
        }
    }
}

/// The certificate the layer must pass on for a trusted proxy's headers, if it accepts them.
fn expected_from_headers(format: &ForwardedFormat, headers: &HeaderMap) -> Option<Vec<u8>> {
    let name = match format {
        ForwardedFormat::Rfc9440 => &CLIENT_CERT,
        _ => &ESCAPED,
    };
    let value = headers.get(name)?.to_str().ok()?;
    match format {
        ForwardedFormat::Rfc9440 => decode_client_cert(value).ok(),
        _ => {
            let decoded = percent_decode(value)?;
            let certs = certificates_from_pem(&decoded).ok()?;
            (certs.len() == 1).then(|| certs[0].to_vec())
        }
    }
}

fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

fn check_certificate(certificate: &ClientCertificate) {
    let fixtures = fixtures();
    for subject in &fixtures.subjects {
        let _ = subject.matches(certificate);
    }
    if let Ok(jwk) = public_jwk_of_certificate(certificate.leaf()) {
        assert_eq!(jwk.thumbprint().as_str().len(), 43);
    }
    let now =
        keybound_tls::UnixTime::since_unix_epoch(std::time::Duration::from_secs(NOW.as_secs()));
    let _ = fixtures.anchors.verify(certificate, now);
}

fuzz_target!(|data: &[u8]| {
    let Some((&options, rest)) = data.split_first() else {
        return;
    };
    let headers = header_lines(rest);
    for value in headers.values() {
        if let Ok(text) = value.to_str() {
            check_codec(text);
        }
    }

    let format = if options & 1 == 0 {
        ForwardedFormat::Rfc9440
    } else {
        ForwardedFormat::EscapedPem(ESCAPED)
    };
    let trusted_peer = options & 0b10 != 0;
    let tls_peer = options & 0b100 != 0;
    let no_connect_info = options & 0b1000 != 0;
    let forwarded = ForwardedCertificates::new(
        vec![ProxyNet::parse("10.0.0.0/8").expect("a CIDR block")],
        format.clone(),
    );
    let remote: SocketAddr = if trusted_peer {
        "10.1.2.3:4430"
    } else {
        "192.0.2.1:4430"
    }
    .parse()
    .expect("an address");

    let mut request = Request::post("/token")
        .body(Body::empty())
        .expect("a request");
    *request.headers_mut() = headers.clone();
    // A certificate smuggled in by whoever built the request is never trusted either.
    request
        .extensions_mut()
        .insert(fixtures().tls_certificate.clone());
    let from_tls = if no_connect_info {
        None
    } else if tls_peer {
        let certificate = fixtures().tls_certificate.clone();
        request.extensions_mut().insert(ConnectInfo(Peer {
            remote,
            certificate: Some(certificate.clone()),
        }));
        Some(certificate)
    } else {
        request.extensions_mut().insert(ConnectInfo(remote));
        None
    };

    let escaped_pem = matches!(format, ForwardedFormat::EscapedPem(_));
    let inner = tower::service_fn(move |request: Request<Body>| async move {
        for name in [CLIENT_CERT, CLIENT_CERT_CHAIN] {
            assert!(
                !request.headers().contains_key(&name),
                "{name} reached the service"
            );
        }
        if escaped_pem {
            assert!(
                !request.headers().contains_key(ESCAPED),
                "{ESCAPED} reached the service"
            );
        }
        let mut response = Response::new(Body::empty());
        if let Some(certificate) = request.extensions().get::<ClientCertificate>() {
            check_certificate(certificate);
            response.extensions_mut().insert(certificate.clone());
        }
        Ok::<_, std::convert::Infallible>(response)
    });
    let reads_headers = trusted_peer && !tls_peer && !no_connect_info;
    let service = ClientCertLayer::new(Some(forwarded)).layer(inner);
    let (response, _) = send(service, request);
    let passed = response.extensions().get::<ClientCertificate>();

    if !reads_headers {
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "only a trusted proxy's headers are read"
        );
        assert_eq!(
            passed.map(|c| c.thumbprint()),
            from_tls.as_ref().map(|c| c.thumbprint())
        );
        return;
    }
    match response.status() {
        StatusCode::OK => match passed {
            Some(certificate) => {
                let expected = expected_from_headers(&format, &headers)
                    .expect("a certificate came from a header that does not hold one");
                assert_eq!(certificate.leaf().as_ref(), expected.as_slice());
                assert_eq!(certificate.thumbprint(), &CertThumbprint::of_der(&expected));
                assert!(certificate.intermediates().len() <= MAX_CHAIN_LEN);
            }
            None => {
                if format == ForwardedFormat::Rfc9440 {
                    assert!(
                        !headers.contains_key(CLIENT_CERT)
                            && !headers.contains_key(CLIENT_CERT_CHAIN)
                    );
                }
            }
        },
        StatusCode::BAD_REQUEST => {}
        other => panic!("unexpected status {other}"),
    }
});
