//! Who a client certificate says it is, and whether that is the registered client (RFC 8705
//! §2): chain validation against trust anchors, subject DN and SAN matching for
//! `tls_client_auth`, and registered certificates or keys for `self_signed_tls_client_auth`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr as _;
use std::sync::Arc;

use base64::Engine as _;
use keybound_core::{CertThumbprint, JwkThumbprint, PublicJwk};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde_json::{Value, json};
use x509_cert::Certificate;
use x509_cert::der::asn1::{
    Ia5StringRef, PrintableStringRef, TeletexStringRef, UintRef, Utf8StringRef,
};
use x509_cert::der::{Decode as _, Encode as _, Reader as _, SliceReader, Tag, Tagged as _};
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::name::Name;

use crate::TlsError;

/// The client certificate of a request: the end-entity certificate and the intermediates the
/// client (or the trusted proxy) sent, in TLS order. Its [`CertThumbprint`] is what a
/// certificate-bound token's `cnf["x5t#S256"]` must equal.
#[derive(Clone)]
pub struct ClientCertificate {
    leaf: CertificateDer<'static>,
    intermediates: Arc<[CertificateDer<'static>]>,
    thumbprint: CertThumbprint,
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("x5t#S256", &self.thumbprint.as_str())
            .field("intermediates", &self.intermediates.len())
            .finish()
    }
}

impl ClientCertificate {
    /// A certificate and the intermediates that came with it.
    #[must_use]
    pub fn new(leaf: CertificateDer<'static>, intermediates: Vec<CertificateDer<'static>>) -> Self {
        let thumbprint = CertThumbprint::of_der(leaf.as_ref());
        Self {
            leaf,
            intermediates: intermediates.into(),
            thumbprint,
        }
    }

    /// The end-entity certificate, DER.
    #[must_use]
    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.leaf
    }

    /// The intermediates, in TLS order (the leaf excluded).
    #[must_use]
    pub fn intermediates(&self) -> &[CertificateDer<'static>] {
        &self.intermediates
    }

    /// `x5t#S256` of the end-entity certificate.
    #[must_use]
    pub fn thumbprint(&self) -> &CertThumbprint {
        &self.thumbprint
    }
}

/// The CAs whose certificates `tls_client_auth` accepts (RFC 8705 §2.1). Keep the set small:
/// a certificate with the registered subject from another trusted CA is an impersonation
/// (§7.4), so a client can be pinned to its own CA.
#[derive(Clone)]
pub struct TrustAnchors {
    verifier: Arc<dyn ClientCertVerifier>,
    count: usize,
}

impl fmt::Debug for TrustAnchors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustAnchors")
            .field("anchors", &self.count)
            .finish()
    }
}

impl TrustAnchors {
    /// Trust anchors from PEM text holding one or more CA certificates.
    ///
    /// # Errors
    /// [`TlsError::Pem`] or [`TlsError::Certificate`] when the text holds no usable CA.
    pub fn from_pem(pem: &[u8]) -> Result<Self, TlsError> {
        Self::from_der(crate::listener::certificates_from_pem(pem)?)
    }

    /// Trust anchors from DER CA certificates.
    ///
    /// # Errors
    /// [`TlsError::Certificate`] when a certificate cannot be a trust anchor, or none is given.
    pub fn from_der(cas: Vec<CertificateDer<'static>>) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        let count = cas.len();
        for ca in cas {
            roots
                .add(ca)
                .map_err(|e| TlsError::Certificate(format!("not a usable CA certificate: {e}")))?;
        }
        if count == 0 {
            return Err(TlsError::Certificate("no CA certificate given".into()));
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), crate::provider())
            .build()
            .map_err(|e| TlsError::Certificate(e.to_string()))?;
        Ok(Self { verifier, count })
    }

    /// Checks that `certificate` chains to one of these anchors and is valid at `now`
    /// (signatures, validity period, key usage, critical extensions: rustls-webpki).
    ///
    /// # Errors
    /// [`TlsError::Untrusted`] with webpki's reason.
    pub fn verify(&self, certificate: &ClientCertificate, now: UnixTime) -> Result<(), TlsError> {
        self.verifier
            .verify_client_cert(certificate.leaf(), certificate.intermediates(), now)
            .map(|_| ())
            .map_err(|e| TlsError::Untrusted(e.to_string()))
    }

    /// The rustls verifier for a listener that checks chains at the handshake.
    pub(crate) fn client_verifier(&self) -> Arc<dyn ClientCertVerifier> {
        self.verifier.clone()
    }
}

/// The one subject value a `tls_client_auth` client registered (RFC 8705 §2.1.2).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExpectedSubject {
    /// `tls_client_auth_subject_dn`, compared by the distinguished-name matching rule.
    SubjectDn(NormalizedDn),
    /// `tls_client_auth_san_dns`, compared case-insensitively (no wildcard expansion).
    SanDns(String),
    /// `tls_client_auth_san_uri`, compared exactly.
    SanUri(String),
    /// `tls_client_auth_san_ip`, compared as binary addresses (`::1` equals `0:0:0:0:0:0:0:1`).
    SanIp(IpAddr),
    /// `tls_client_auth_san_email`, compared exactly.
    SanEmail(String),
}

impl ExpectedSubject {
    /// `tls_client_auth_subject_dn`: an RFC 4514 string.
    ///
    /// # Errors
    /// [`TlsError::Certificate`] if the text is not a distinguished name.
    pub fn subject_dn(text: &str) -> Result<Self, TlsError> {
        let name = Name::from_str(&tidy_dn_text(text))
            .map_err(|e| TlsError::Certificate(format!("not an RFC 4514 name: {e}")))?;
        Ok(Self::SubjectDn(NormalizedDn::of(&name)?))
    }

    /// `tls_client_auth_san_ip`: IPv4 dotted or IPv6 text.
    ///
    /// # Errors
    /// [`TlsError::Certificate`] if the text is not an IP address.
    pub fn san_ip(text: &str) -> Result<Self, TlsError> {
        text.parse()
            .map(Self::SanIp)
            .map_err(|_| TlsError::Certificate(format!("not an IP address: {text}")))
    }

    /// Whether the end-entity certificate carries this subject value.
    #[must_use]
    pub fn matches(&self, certificate: &ClientCertificate) -> bool {
        let Ok(cert) = Certificate::from_der(certificate.leaf().as_ref()) else {
            return false;
        };
        let tbs = cert.tbs_certificate();
        if let Self::SubjectDn(expected) = self {
            return NormalizedDn::of(tbs.subject()).is_ok_and(|dn| &dn == expected);
        }
        let Ok(Some((_, SubjectAltName(names)))) = tbs.get_extension::<SubjectAltName>() else {
            return false;
        };
        names.iter().any(|name| match (self, name) {
            (Self::SanDns(want), GeneralName::DnsName(have)) => {
                have.as_str().eq_ignore_ascii_case(want)
            }
            (Self::SanUri(want), GeneralName::UniformResourceIdentifier(have)) => {
                have.as_str() == want
            }
            (Self::SanEmail(want), GeneralName::Rfc822Name(have)) => have.as_str() == want,
            (Self::SanIp(want), GeneralName::IpAddress(have)) => {
                let have = have.as_bytes();
                match want {
                    IpAddr::V4(v4) => have == v4.octets(),
                    IpAddr::V6(v6) => have == v6.octets(),
                }
            }
            _ => false,
        })
    }
}

/// A distinguished name reduced for RFC 4517 `distinguishedNameMatch`: the same RDNs in the
/// same order, each a set of attribute values; string values compared case-insensitively with
/// insignificant spaces removed, other values by their DER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NormalizedDn(Vec<Vec<(String, String)>>);

impl NormalizedDn {
    fn of(name: &Name) -> Result<Self, TlsError> {
        let mut rdns = Vec::new();
        for rdn in name.iter_rdn() {
            let mut avas = Vec::new();
            for ava in rdn.iter() {
                let value = string_value(&ava.value).map_or_else(
                    || {
                        ava.value
                            .to_der()
                            .map(|der| format!("#{}", hex(&der)))
                            .map_err(|e| TlsError::Certificate(e.to_string()))
                    },
                    |text| Ok(normalize_string(text)),
                )?;
                avas.push((ava.oid.to_string(), value));
            }
            avas.sort();
            rdns.push(avas);
        }
        Ok(Self(rdns))
    }
}

fn string_value(value: &x509_cert::der::Any) -> Option<&str> {
    match value.tag() {
        Tag::PrintableString => PrintableStringRef::try_from(value).ok().map(|s| s.as_str()),
        Tag::Utf8String => Utf8StringRef::try_from(value).ok().map(|s| s.as_str()),
        Tag::Ia5String => Ia5StringRef::try_from(value).ok().map(|s| s.as_str()),
        Tag::TeletexString => TeletexStringRef::try_from(value).ok().map(|s| s.as_str()),
        _ => None,
    }
}

/// Registered DNs are written by people: attribute types in any case (RFC 4514 §3: they are
/// case-insensitive) and spaces around the `,` and `+` separators, as RFC 2253 tools print them.
/// Both are normalised before the strict parser sees the text; escaped characters are kept.
fn tidy_dn_text(text: &str) -> String {
    let mut parts: Vec<(String, char)> = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                current.push(c);
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            ',' | '+' => parts.push((std::mem::take(&mut current), c)),
            _ => current.push(c),
        }
    }
    parts.push((current, ' '));
    let mut out = String::with_capacity(text.len());
    for (ava, separator) in parts {
        let ava = ava.trim_start();
        // Keep a trailing escaped space (`\ `) but drop unescaped trailing spaces.
        let ava = if ava.ends_with("\\ ") {
            ava
        } else {
            ava.trim_end()
        };
        match ava.split_once('=') {
            Some((ty, value)) => {
                // The RFC 4514 §3 names in any case; other names and dotted OIDs as written.
                let ty = ty.trim();
                let upper = ty.to_ascii_uppercase();
                let known = ["CN", "L", "ST", "O", "OU", "C", "STREET", "DC", "UID"];
                out.push_str(if known.contains(&upper.as_str()) {
                    &upper
                } else {
                    ty
                });
                out.push('=');
                out.push_str(value.trim_start());
            }
            None => out.push_str(ava),
        }
        if separator != ' ' {
            out.push(separator);
        }
    }
    out
}

/// caseIgnoreMatch after RFC 4518 insignificant-space handling.
fn normalize_string(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// What a `self_signed_tls_client_auth` client registered in its JWKS (RFC 8705 §2.2): whole
/// certificates (`x5c[0]`, compared as full DER through their thumbprints) or bare public keys.
#[derive(Clone, Debug, Default)]
pub struct RegisteredCertificates {
    certificates: Vec<CertThumbprint>,
    keys: Vec<JwkThumbprint>,
}

impl RegisteredCertificates {
    /// Reads a JWKS. A JWK with `x5c` registers its first certificate, and its key members must
    /// be that certificate's key (RFC 7517 §4.7); a JWK without `x5c` registers its key.
    ///
    /// # Errors
    /// [`TlsError::Certificate`] for a malformed JWKS, a bad `x5c` or a JWK that disagrees with
    /// its certificate.
    pub fn from_jwks_json(jwks: &[u8]) -> Result<Self, TlsError> {
        let bad = |why: String| TlsError::Certificate(why);
        let value: Value =
            serde_json::from_slice(jwks).map_err(|e| bad(format!("not a JWKS: {e}")))?;
        let keys = value
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("a JWKS needs a \"keys\" array".into()))?;
        let mut out = Self::default();
        for key in keys {
            let map = key
                .as_object()
                .ok_or_else(|| bad("a JWK must be an object".into()))?;
            let jwk = PublicJwk::from_map(map).map_err(|e| bad(format!("bad JWK: {e}")))?;
            match map.get("x5c").and_then(Value::as_array) {
                Some(chain) => {
                    let first = chain
                        .first()
                        .and_then(Value::as_str)
                        .ok_or_else(|| bad("x5c must hold base64 certificates".into()))?;
                    let der = base64::engine::general_purpose::STANDARD
                        .decode(first)
                        .map_err(|_| bad("x5c[0] is not standard base64".into()))?;
                    let from_cert = public_jwk_of_certificate(&der)?;
                    if from_cert.thumbprint() != jwk.thumbprint() {
                        return Err(bad("a JWK's key differs from its x5c certificate".into()));
                    }
                    out.certificates.push(CertThumbprint::of_der(&der));
                }
                None => out.keys.push(jwk.thumbprint().clone()),
            }
        }
        if out.certificates.is_empty() && out.keys.is_empty() {
            return Err(bad("the JWKS registers no certificate or key".into()));
        }
        Ok(out)
    }

    /// Whether the presented certificate is registered (or carries a registered key).
    #[must_use]
    pub fn matches(&self, certificate: &ClientCertificate) -> bool {
        let by_cert = self
            .certificates
            .iter()
            .fold(false, |found, c| found | (c == certificate.thumbprint()));
        if by_cert || self.keys.is_empty() {
            return by_cert;
        }
        public_jwk_of_certificate(certificate.leaf().as_ref())
            .is_ok_and(|jwk| self.keys.iter().any(|k| k == jwk.thumbprint()))
    }
}

const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const P256: &str = "1.2.840.10045.3.1.7";
const P384: &str = "1.3.132.0.34";
const ED25519: &str = "1.3.101.112";
const RSA: &str = "1.2.840.113549.1.1.1";

/// The certificate's public key as a JWK (EC P-256/P-384, Ed25519, RSA).
///
/// # Errors
/// [`TlsError::Certificate`] if the certificate does not parse or holds another kind of key.
pub fn public_jwk_of_certificate(der: &[u8]) -> Result<PublicJwk, TlsError> {
    let bad = |why: &str| TlsError::Certificate(why.to_owned());
    let cert = Certificate::from_der(der).map_err(|_| bad("not a DER certificate"))?;
    let spki = cert.tbs_certificate().subject_public_key_info();
    let key = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| bad("unaligned public key"))?;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwk = match spki.algorithm.oid.to_string().as_str() {
        EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<x509_cert::der::asn1::ObjectIdentifier>().ok())
                .map(|oid| oid.to_string());
            let (crv, len) = match curve.as_deref() {
                Some(P256) => ("P-256", 32),
                Some(P384) => ("P-384", 48),
                _ => return Err(bad("unsupported EC curve")),
            };
            if key.len() != 1 + 2 * len || key[0] != 4 {
                return Err(bad("not an uncompressed EC point"));
            }
            json!({"kty": "EC", "crv": crv, "x": b64(&key[1..=len]), "y": b64(&key[1 + len..])})
        }
        ED25519 => json!({"kty": "OKP", "crv": "Ed25519", "x": b64(key)}),
        RSA => {
            let mut reader = SliceReader::new(key).map_err(|_| bad("bad RSA key"))?;
            let (n, e) = reader
                .sequence(|r| Ok((UintRef::decode(r)?, UintRef::decode(r)?)))
                .map_err(|_: x509_cert::der::Error| bad("bad RSA key"))?;
            json!({"kty": "RSA", "n": b64(n.as_bytes()), "e": b64(e.as_bytes())})
        }
        _ => return Err(bad("unsupported public key algorithm")),
    };
    PublicJwk::from_json(jwk.to_string().as_bytes())
        .map_err(|e| TlsError::Certificate(format!("unusable public key: {e}")))
}
