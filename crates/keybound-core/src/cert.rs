//! RFC 8705 certificate thumbprints and the RFC 9440 `Client-Cert` / `Client-Cert-Chain`
//! header codec (RFC 8941 byte sequences).

use std::fmt;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use subtle::ConstantTimeEq;

use crate::b64;

/// Largest certificate accepted in a forwarded header, in bytes of header text.
pub const MAX_CERT_HEADER_LEN: usize = 16 * 1024;
/// Most certificates accepted in a `Client-Cert-Chain` header.
pub const MAX_CHAIN_LEN: usize = 8;

/// `x5t#S256`: base64url(SHA-256(DER of the end-entity certificate)), 43 characters.
/// Equality is constant-time.
///
/// ```
/// use keybound_core::CertThumbprint;
/// let t = CertThumbprint::of_der(b"not really a certificate");
/// assert_eq!(t.as_str().len(), 43);
/// assert_eq!(CertThumbprint::parse(t.as_str()), Some(t));
/// ```
#[derive(Clone, Eq)]
pub struct CertThumbprint(String);

impl CertThumbprint {
    /// Hashes a DER certificate (the whole leaf, not its key and not the chain).
    #[must_use]
    pub fn of_der(der: &[u8]) -> Self {
        Self(b64::encode(digest::digest(&digest::SHA256, der).as_ref()))
    }

    /// Accepts a received `x5t#S256` value if it is the unpadded base64url of 32 bytes.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let ok = text.len() == 43
            && b64::is_alphabet(text)
            && b64::decode(text).is_ok_and(|b| b.len() == 32);
        ok.then(|| Self(text.to_owned()))
    }

    /// The base64url text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::hash::Hash for CertThumbprint {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl PartialEq for CertThumbprint {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl fmt::Debug for CertThumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertThumbprint({})", self.0)
    }
}

impl serde::Serialize for CertThumbprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for CertThumbprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&text).ok_or_else(|| serde::de::Error::custom("not an x5t#S256 thumbprint"))
    }
}

/// Why a `Client-Cert` or `Client-Cert-Chain` header value was refused (fail closed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertHeaderError {
    /// Not an RFC 8941 byte sequence (`:base64:`), or parameters/inner lists were present.
    #[error("not a structured-field byte sequence")]
    Syntax,
    /// The base64 inside is invalid or empty.
    #[error("invalid base64 in the byte sequence")]
    Base64,
    /// The header is longer than allowed, or the chain has too many members.
    #[error("the header is too large")]
    TooLarge,
}

/// Standard base64 with padding optional on input, as RFC 8941 §4.2.7 asks of parsers.
const SF_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn decode_item(item: &str) -> Result<Vec<u8>, CertHeaderError> {
    let inner = item
        .strip_prefix(':')
        .and_then(|s| s.strip_suffix(':'))
        .ok_or(CertHeaderError::Syntax)?;
    if inner.is_empty() || inner.contains(':') {
        return Err(if inner.is_empty() {
            CertHeaderError::Base64
        } else {
            CertHeaderError::Syntax
        });
    }
    SF_BASE64.decode(inner).map_err(|_| CertHeaderError::Base64)
}

/// Encodes a DER certificate as a `Client-Cert` header value: `:` base64 `:`.
///
/// ```
/// use keybound_core::cert::{decode_client_cert, encode_client_cert};
/// let value = encode_client_cert(&[1, 2, 3]);
/// assert_eq!(value, ":AQID:");
/// assert_eq!(decode_client_cert(&value).unwrap(), vec![1, 2, 3]);
/// ```
#[must_use]
pub fn encode_client_cert(der: &[u8]) -> String {
    format!(":{}:", SF_BASE64.encode(der))
}

/// Decodes a `Client-Cert` value to the leaf certificate's DER.
///
/// # Errors
/// [`CertHeaderError`] for anything that is not exactly one byte sequence.
pub fn decode_client_cert(value: &str) -> Result<Vec<u8>, CertHeaderError> {
    if value.len() > MAX_CERT_HEADER_LEN {
        return Err(CertHeaderError::TooLarge);
    }
    decode_item(value.trim_matches([' ', '\t']))
}

/// Encodes a chain (intermediates first, the leaf excluded) as a `Client-Cert-Chain` value.
#[must_use]
pub fn encode_client_cert_chain<'a>(chain: impl IntoIterator<Item = &'a [u8]>) -> String {
    chain
        .into_iter()
        .map(encode_client_cert)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decodes a `Client-Cert-Chain` value (an RFC 8941 list of byte sequences) to DER certificates.
///
/// # Errors
/// [`CertHeaderError`] for any malformed member, parameters, or too many members.
pub fn decode_client_cert_chain(value: &str) -> Result<Vec<Vec<u8>>, CertHeaderError> {
    if value.len() > MAX_CERT_HEADER_LEN * MAX_CHAIN_LEN {
        return Err(CertHeaderError::TooLarge);
    }
    let members: Vec<&str> = value
        .split(',')
        .map(|m| m.trim_matches([' ', '\t']))
        .collect();
    if members.len() > MAX_CHAIN_LEN {
        return Err(CertHeaderError::TooLarge);
    }
    members.into_iter().map(decode_item).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_values_fail_closed() {
        assert_eq!(decode_client_cert("AQID"), Err(CertHeaderError::Syntax));
        assert_eq!(decode_client_cert("::"), Err(CertHeaderError::Base64));
        assert_eq!(
            decode_client_cert(":AQID:;a=1"),
            Err(CertHeaderError::Syntax)
        );
        assert_eq!(
            decode_client_cert(":AQID:, :AQID:"),
            Err(CertHeaderError::Syntax)
        );
        assert_eq!(decode_client_cert(":AQ*D:"), Err(CertHeaderError::Base64));
        assert_eq!(
            decode_client_cert(&"A".repeat(MAX_CERT_HEADER_LEN + 1)),
            Err(CertHeaderError::TooLarge)
        );
    }

    #[test]
    fn chain_round_trips() {
        let a: &[u8] = &[1, 2, 3];
        let b: &[u8] = &[4, 5];
        let v = encode_client_cert_chain([a, b]);
        assert_eq!(v, ":AQID:, :BAU=:");
        assert_eq!(
            decode_client_cert_chain(&v).unwrap(),
            vec![a.to_vec(), b.to_vec()]
        );
        assert_eq!(
            decode_client_cert_chain(":AQID:,"),
            Err(CertHeaderError::Syntax)
        );
    }
}
