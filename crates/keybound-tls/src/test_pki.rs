//! A throwaway PKI made at test time with rcgen (feature `test-pki`): CAs, CA-issued client
//! certificates with chosen subject DNs and SANs, expired ones, self-signed ones, and server
//! certificates for loopback. Nothing here is for production; no PEM fixture is committed.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::identity::ClientCertificate;

/// A certificate and its private key.
pub struct TestIdentity {
    /// The certificate, DER.
    pub der: CertificateDer<'static>,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The issuing CA's certificate PEM, if CA-issued.
    pub chain_pem: Option<String>,
}

impl std::fmt::Debug for TestIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestIdentity").finish_non_exhaustive()
    }
}

impl TestIdentity {
    /// Certificate then key, PEM: what `reqwest::Identity::from_pem` takes.
    #[must_use]
    pub fn identity_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }

    /// The private key as rustls takes it.
    ///
    /// # Panics
    /// Never for keys made here.
    #[must_use]
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        use rustls_pki_types::pem::PemObject as _;
        #[allow(clippy::expect_used, reason = "test PKI: rcgen's PEM always parses")]
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("rcgen key PEM")
    }

    /// As a request's client certificate (no intermediates).
    #[must_use]
    pub fn client_certificate(&self) -> ClientCertificate {
        ClientCertificate::new(self.der.clone(), Vec::new())
    }

    /// A JWKS registering this certificate (`x5c`) and its key, as a
    /// `self_signed_tls_client_auth` client registers it.
    ///
    /// # Panics
    /// Never for certificates made here.
    #[must_use]
    pub fn jwks_with_x5c(&self) -> String {
        use base64::Engine as _;
        #[allow(clippy::expect_used, reason = "test PKI: rcgen keys are P-256")]
        let jwk = crate::identity::public_jwk_of_certificate(self.der.as_ref()).expect("key");
        #[allow(clippy::expect_used, reason = "to_json is JSON")]
        let mut value: serde_json::Value = serde_json::from_str(&jwk.to_json()).expect("JSON");
        value["x5c"] =
            serde_json::json!(
                [base64::engine::general_purpose::STANDARD.encode(self.der.as_ref())]
            );
        serde_json::json!({ "keys": [value] }).to_string()
    }

    /// The certificate as nginx's `$ssl_client_escaped_cert` holds it: the PEM, URL-encoded.
    #[must_use]
    pub fn escaped_pem(&self) -> String {
        self.cert_pem
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
}

/// What a client certificate should say.
#[derive(Clone, Debug, Default)]
pub struct ClientSpec {
    /// Subject attributes in order, e.g. `[(DnType::OrganizationName, "Example"), (DnType::CommonName, "app")]`.
    pub subject: Vec<(DnType, String)>,
    /// dNSName SANs.
    pub dns: Vec<String>,
    /// URI SANs.
    pub uris: Vec<String>,
    /// IP SANs.
    pub ips: Vec<IpAddr>,
    /// rfc822Name SANs.
    pub emails: Vec<String>,
    /// Make it expired (valid 2000–2001).
    pub expired: bool,
}

impl ClientSpec {
    /// A certificate whose subject is just `CN=<cn>`.
    #[must_use]
    pub fn common_name(cn: &str) -> Self {
        Self {
            subject: vec![(DnType::CommonName, cn.to_owned())],
            ..Self::default()
        }
    }

    fn params(&self) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (ty, value) in &self.subject {
            params.distinguished_name.push(ty.clone(), value.clone());
        }
        let ia5 = |s: &String| s.clone().try_into().ok();
        params.subject_alt_names = self
            .dns
            .iter()
            .filter_map(|d| ia5(d).map(SanType::DnsName))
            .chain(self.uris.iter().filter_map(|u| ia5(u).map(SanType::URI)))
            .chain(
                self.emails
                    .iter()
                    .filter_map(|e| ia5(e).map(SanType::Rfc822Name)),
            )
            .chain(self.ips.iter().map(|ip| SanType::IpAddress(*ip)))
            .collect();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if self.expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        params
    }
}

/// A test certificate authority.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, DER.
    pub der: CertificateDer<'static>,
    /// The CA certificate, PEM.
    pub pem: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

#[allow(
    clippy::expect_used,
    reason = "test PKI: rcgen fails only on invalid parameters, which are fixed here"
)]
impl TestCa {
    /// A new CA named `CN=<name>`.
    #[must_use]
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("CA certificate");
        Self {
            der: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A client certificate issued by this CA.
    #[must_use]
    pub fn client(&self, spec: &ClientSpec) -> TestIdentity {
        let key = KeyPair::generate().expect("client key");
        let cert = spec
            .params()
            .signed_by(&key, &self.issuer)
            .expect("client certificate");
        TestIdentity {
            der: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            chain_pem: Some(self.pem.clone()),
        }
    }

    /// A server certificate for `localhost` and `127.0.0.1`.
    #[must_use]
    pub fn server(&self) -> TestIdentity {
        let key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        TestIdentity {
            der: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            chain_pem: Some(self.pem.clone()),
        }
    }
}

/// A self-signed client certificate (for `self_signed_tls_client_auth`).
///
/// # Panics
/// Never with rcgen's defaults.
#[must_use]
#[allow(clippy::expect_used, reason = "test PKI: rcgen's defaults are valid")]
pub fn self_signed(spec: &ClientSpec) -> TestIdentity {
    let key = KeyPair::generate().expect("key");
    let cert = spec
        .params()
        .self_signed(&key)
        .expect("self-signed certificate");
    TestIdentity {
        der: cert.der().clone(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        chain_pem: None,
    }
}
