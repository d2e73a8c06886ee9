//! Compact JWS (RFC 7515 §7.1): parse without trusting the header, sign, verify.
//!
//! Parsing checks only shape: three base64url parts, a header and a payload that are JSON
//! objects without duplicate members, and a size limit. Which key and algorithm may verify is
//! the caller's decision ([`crate::dpop`] takes the key from `jwk`, [`crate::access_token`] from
//! the AS's key set by `kid`), never the header's alone.

use serde_json::{Map, Value};

use crate::alg::Algorithm;
use crate::b64;
use crate::json::{self, StrictJsonError};
use crate::keys::{KeyError, SigningKey};

/// Why a compact JWS could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwsError {
    /// Longer than the caller's limit.
    #[error("the JWS is longer than {0} bytes")]
    TooLarge(usize),
    /// Not exactly three `.`-separated parts (a JWE has five; JSON serialization has none).
    #[error("not a compact JWS with three parts")]
    NotCompact,
    /// A part is not canonical unpadded base64url.
    #[error("a part is not base64url")]
    Base64,
    /// The header or payload is not a JSON object, or repeats a member name.
    #[error("the header or payload is not a strict JSON object")]
    Json,
    /// The signature part is empty (as with `alg: none`).
    #[error("the signature is empty")]
    EmptySignature,
}

/// A compact JWS whose signature has not been checked.
#[derive(Debug)]
pub struct UntrustedJws<'a> {
    signing_input: &'a str,
    header: Map<String, Value>,
    payload: Map<String, Value>,
    signature: Vec<u8>,
}

impl<'a> UntrustedJws<'a> {
    /// Splits and decodes `token`, refusing anything longer than `max_len` bytes.
    ///
    /// # Errors
    /// A [`JwsError`] for any shape problem.
    pub fn parse(token: &'a str, max_len: usize) -> Result<Self, JwsError> {
        if token.len() > max_len {
            return Err(JwsError::TooLarge(max_len));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwsError::NotCompact);
        };
        let decode = |part: &str| b64::decode(part).map_err(|_| JwsError::Base64);
        let object = |bytes: Vec<u8>| {
            json::parse_object(&bytes).map_err(|e: StrictJsonError| {
                let _ = e;
                JwsError::Json
            })
        };
        let header = object(decode(h)?)?;
        let payload = object(decode(p)?)?;
        if s.is_empty() {
            return Err(JwsError::EmptySignature);
        }
        let signature = decode(s)?;
        let signing_input = &token[..h.len() + 1 + p.len()];
        Ok(Self {
            signing_input,
            header,
            payload,
            signature,
        })
    }

    /// The JOSE header (untrusted until verified).
    #[must_use]
    pub fn header(&self) -> &Map<String, Value> {
        &self.header
    }

    /// The payload claims (untrusted until verified).
    #[must_use]
    pub fn payload(&self) -> &Map<String, Value> {
        &self.payload
    }

    /// Consumes the JWS and returns its payload.
    #[must_use]
    pub fn into_payload(self) -> Map<String, Value> {
        self.payload
    }

    /// Verifies the signature with `key` under `alg`.
    #[must_use]
    pub fn verify_with(&self, key: &crate::PublicJwk, alg: Algorithm) -> bool {
        key.verify(alg, self.signing_input.as_bytes(), &self.signature)
    }
}

/// Signs a JOSE header and a payload (both JSON texts, written exactly as given) into a compact
/// JWS. The caller is responsible for the header's `alg` naming `key`'s algorithm.
///
/// ```
/// use aws_lc_rs::rand::SystemRandom;
/// use keybound_core::{Algorithm, SigningKey};
/// use keybound_core::jws::{sign_compact, UntrustedJws};
/// let (key, _) = SigningKey::generate(Algorithm::EdDsa, &SystemRandom::new()).unwrap();
/// let jws = sign_compact(r#"{"alg":"EdDSA"}"#, r#"{"sub":"a"}"#, &key).unwrap();
/// let parsed = UntrustedJws::parse(&jws, 8192).unwrap();
/// assert!(parsed.verify_with(key.public_jwk(), Algorithm::EdDsa));
/// ```
///
/// # Errors
/// [`KeyError::Crypto`] if signing fails.
pub fn sign_compact(
    header_json: &str,
    payload_json: &str,
    key: &SigningKey,
) -> Result<String, KeyError> {
    let mut out = b64::encode(header_json.as_bytes());
    out.push('.');
    out.push_str(&b64::encode(payload_json.as_bytes()));
    let signature = key.sign(out.as_bytes())?;
    out.push('.');
    out.push_str(&b64::encode(&signature));
    Ok(out)
}

/// `typ` comparison per RFC 7515 §4.1.9: case-insensitive, optional `application/` prefix.
pub(crate) fn typ_matches(typ: &str, expected: &str) -> bool {
    let bare = match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => typ,
    };
    bare.eq_ignore_ascii_case(expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_other_than_three_parts_are_rejected() {
        assert_eq!(
            UntrustedJws::parse("a.b", 100).unwrap_err(),
            JwsError::NotCompact
        );
        assert_eq!(
            UntrustedJws::parse("a.b.c.d.e", 100).unwrap_err(),
            JwsError::NotCompact
        );
        assert_eq!(
            UntrustedJws::parse(r#"{"payload":"x"}"#, 100).unwrap_err(),
            JwsError::NotCompact
        );
        assert_eq!(
            UntrustedJws::parse("e30.e30.", 100).unwrap_err(),
            JwsError::EmptySignature
        );
        assert_eq!(
            UntrustedJws::parse("e30.e30.AA", 5).unwrap_err(),
            JwsError::TooLarge(5)
        );
        assert_eq!(
            UntrustedJws::parse("e30=.e30.AA", 100).unwrap_err(),
            JwsError::Base64
        );
        assert_eq!(
            UntrustedJws::parse("W10.e30.AA", 100).unwrap_err(),
            JwsError::Json
        );
    }

    #[test]
    fn typ_is_a_media_type() {
        assert!(typ_matches("dpop+jwt", "dpop+jwt"));
        assert!(typ_matches("application/dpop+jwt", "dpop+jwt"));
        assert!(typ_matches("DPOP+JWT", "dpop+jwt"));
        assert!(!typ_matches("dpop+jwt+wrongyousee", "dpop+jwt"));
        assert!(!typ_matches("JWT", "dpop+jwt"));
        assert!(!typ_matches("text/dpop+jwt", "dpop+jwt"));
    }
}
