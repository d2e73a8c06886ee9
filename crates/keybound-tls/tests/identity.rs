//! Certificate identity for RFC 8705 client authentication: DN and SAN matching (§2.1.2), chain
//! validation against limited trust anchors (§7.4), and self-signed registration (§2.2).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use keybound_tls::test_pki::{ClientSpec, TestCa, self_signed};
use keybound_tls::{
    ExpectedSubject, ProxyNet, RegisteredCertificates, TrustAnchors, UnixTime,
    identity::public_jwk_of_certificate,
};
use rcgen::DnType;

fn now() -> UnixTime {
    UnixTime::now()
}

fn org_client(ca: &TestCa, cn: &str) -> keybound_tls::test_pki::TestIdentity {
    ca.client(&ClientSpec {
        subject: vec![
            (DnType::OrganizationName, "Example Org".into()),
            (DnType::CommonName, cn.into()),
        ],
        ..ClientSpec::default()
    })
}

#[test]
fn subject_dn_matches_by_the_dn_matching_rule_not_the_string() {
    let ca = TestCa::new("Test CA");
    let cert = org_client(&ca, "client1, with comma").client_certificate();
    // RFC 4514 order (last RDN first), escaped comma.
    for registered in [
        r"CN=client1\, with comma,O=Example Org",
        // §5 #44: the same DN written differently (case, spaces after separators, in values).
        r"cn=CLIENT1\,  with comma, o=example   org",
    ] {
        let expected = ExpectedSubject::subject_dn(registered).unwrap();
        assert!(expected.matches(&cert), "{registered} should match");
    }
    for other in [
        r"CN=client1\, with comma,O=Other Org",
        r"CN=client1\, with comma",
        r"O=Example Org,CN=client1\, with comma",
    ] {
        let expected = ExpectedSubject::subject_dn(other).unwrap();
        assert!(!expected.matches(&cert), "{other} must not match");
    }
}

#[test]
fn san_values_match_by_type_and_ip_addresses_in_binary() {
    let ca = TestCa::new("Test CA");
    let cert = ca
        .client(&ClientSpec {
            subject: vec![(DnType::CommonName, "svc".into())],
            dns: vec!["client.example.com".into()],
            uris: vec!["spiffe://example/client".into()],
            ips: vec!["::1".parse().unwrap(), "192.0.2.7".parse().unwrap()],
            emails: vec!["ops@example.com".into()],
            expired: false,
        })
        .client_certificate();
    let yes = [
        ExpectedSubject::SanDns("CLIENT.example.com".into()),
        ExpectedSubject::SanUri("spiffe://example/client".into()),
        ExpectedSubject::san_ip("0:0:0:0:0:0:0:1").unwrap(),
        ExpectedSubject::san_ip("192.0.2.7").unwrap(),
        ExpectedSubject::SanEmail("ops@example.com".into()),
    ];
    for expected in &yes {
        assert!(expected.matches(&cert), "{expected:?}");
    }
    let no = [
        ExpectedSubject::SanDns("other.example.com".into()),
        ExpectedSubject::SanDns("example.com".into()),
        ExpectedSubject::SanUri("spiffe://example/other".into()),
        ExpectedSubject::san_ip("::2").unwrap(),
        ExpectedSubject::san_ip("192.0.2.8").unwrap(),
        ExpectedSubject::SanEmail("dev@example.com".into()),
        // A DNS SAN value registered as a URI does not match: the type counts.
        ExpectedSubject::SanUri("client.example.com".into()),
    ];
    for expected in &no {
        assert!(!expected.matches(&cert), "{expected:?}");
    }
    assert!(ExpectedSubject::san_ip("not-an-ip").is_err());
}

#[test]
fn attack43_chain_must_lead_to_the_clients_own_ca_and_be_valid_now() {
    let ca = TestCa::new("Partner CA");
    let other = TestCa::new("Other CA");
    let anchors = TrustAnchors::from_pem(ca.pem.as_bytes()).unwrap();
    let good = org_client(&ca, "app").client_certificate();
    anchors.verify(&good, now()).unwrap();
    // Same subject from another CA: an impersonation unless that CA is this client's anchor.
    let impostor = org_client(&other, "app").client_certificate();
    assert!(anchors.verify(&impostor, now()).is_err());
    let expired = ca
        .client(&ClientSpec {
            expired: true,
            ..ClientSpec::common_name("app")
        })
        .client_certificate();
    assert!(anchors.verify(&expired, now()).is_err());
    let self_made = self_signed(&ClientSpec::common_name("app")).client_certificate();
    assert!(anchors.verify(&self_made, now()).is_err());
}

#[test]
fn self_signed_certificates_match_only_what_the_client_registered() {
    let mine = self_signed(&ClientSpec::common_name("app"));
    let theirs = self_signed(&ClientSpec::common_name("app"));
    let registered =
        RegisteredCertificates::from_jwks_json(mine.jwks_with_x5c().as_bytes()).unwrap();
    assert!(registered.matches(&mine.client_certificate()));
    assert!(!registered.matches(&theirs.client_certificate()));

    // A bare key registers every certificate for that key.
    let jwk = public_jwk_of_certificate(mine.der.as_ref()).unwrap();
    let by_key = format!(r#"{{"keys":[{}]}}"#, jwk.to_json());
    let registered = RegisteredCertificates::from_jwks_json(by_key.as_bytes()).unwrap();
    assert!(registered.matches(&mine.client_certificate()));
    assert!(!registered.matches(&theirs.client_certificate()));
}

#[test]
fn a_jwk_whose_key_differs_from_its_x5c_is_refused() {
    let mine = self_signed(&ClientSpec::common_name("app"));
    let theirs = self_signed(&ClientSpec::common_name("app"));
    let mut jwks: serde_json::Value = serde_json::from_str(&mine.jwks_with_x5c()).unwrap();
    jwks["keys"][0]["x5c"] =
        serde_json::json!([base64::engine::general_purpose::STANDARD.encode(theirs.der.as_ref())]);
    assert!(RegisteredCertificates::from_jwks_json(jwks.to_string().as_bytes()).is_err());
    assert!(RegisteredCertificates::from_jwks_json(br#"{"keys":[]}"#).is_err());
}

#[test]
fn proxy_nets_parse_and_contain() {
    let net = ProxyNet::parse("10.1.0.0/16").unwrap();
    assert!(net.contains("10.1.200.3".parse().unwrap()));
    assert!(!net.contains("10.2.0.1".parse().unwrap()));
    assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
    let one = ProxyNet::parse("127.0.0.1").unwrap();
    assert!(one.contains("127.0.0.1".parse().unwrap()));
    assert!(!one.contains("127.0.0.2".parse().unwrap()));
    assert!(
        ProxyNet::parse("::1")
            .unwrap()
            .contains("::1".parse().unwrap())
    );
    for bad in ["10.0.0.0/33", "example.com", "10.0.0.1/", ""] {
        assert!(ProxyNet::parse(bad).is_err(), "{bad}");
    }
}
