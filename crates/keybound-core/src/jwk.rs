//! Public JSON Web Keys (RFC 7517/7518/8037) and RFC 7638 thumbprints.
//!
//! A key is parsed from the JSON members *as received* and the thumbprint is hashed from those
//! strings. Non-canonical encodings (short or padded EC coordinates, RSA integers with leading
//! zero bytes, base64 padding) are refused, so the received strings are the canonical ones and a
//! key has exactly one thumbprint (standards §5 #39, and the leading-zero vector of §4 V12).

use std::fmt;

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use crate::alg::{Algorithm, KeyKind};
use crate::b64;

/// Longest member string accepted in a JWK (an 8192-bit RSA modulus is 1366 characters).
pub const MAX_JWK_MEMBER_LEN: usize = 1400;
/// Most members accepted in one JWK object.
pub const MAX_JWK_MEMBERS: usize = 32;
/// Smallest RSA modulus accepted, in bits (RFC 7518 §3.3, FAPI 2.0 §5.4).
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits.
pub const MAX_RSA_BITS: usize = 8192;

/// Members that only a private (or symmetric) key has. RFC 9449 §4.3 rule 7.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a JWK was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwkError {
    /// The JWK is not a JSON object, or is not valid JSON.
    #[error("the JWK is not a JSON object")]
    NotAnObject,
    /// A private or symmetric member (`d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`, `k`) is present.
    #[error("the JWK contains the private member `{0}`")]
    PrivateMember(&'static str),
    /// `kty` is missing, not a string, or not `EC`, `OKP` or `RSA` (`oct` is refused here too).
    #[error("unsupported or missing key type")]
    UnsupportedKeyType,
    /// `crv` is missing or names a curve keybound does not support (P-521, X25519, Ed448, ...).
    #[error("unsupported or missing curve")]
    UnsupportedCurve,
    /// A required member is missing or is not a string.
    #[error("missing or non-string member `{0}`")]
    MissingMember(&'static str),
    /// A member is longer than [`MAX_JWK_MEMBER_LEN`] or the object has too many members.
    #[error("the JWK is too large")]
    TooLarge,
    /// A key member is not canonical unpadded base64url of the right length.
    #[error("member `{0}` is not a canonical encoding")]
    NonCanonical(&'static str),
    /// The EC point is not on the curve, or the key is otherwise unusable.
    #[error("the key material is invalid")]
    InvalidKey,
    /// The RSA modulus is shorter than [`MIN_RSA_BITS`] or longer than [`MAX_RSA_BITS`].
    #[error("RSA modulus of {0} bits is outside 2048..=8192")]
    RsaKeySize(usize),
    /// The JWK's own `alg` member does not fit its key type and curve.
    #[error("the JWK's `alg` does not match its key type")]
    AlgorithmMismatch,
    /// The JWK's `use` member says it is not a signing key.
    #[error("the JWK is not a signature key")]
    NotForSignatures,
}

/// An RFC 7638 JWK SHA-256 thumbprint: 43 characters of unpadded base64url.
///
/// Equality is constant-time.
///
/// ```
/// use keybound_core::JwkThumbprint;
/// let t = JwkThumbprint::parse("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I").unwrap();
/// assert_eq!(t.as_str().len(), 43);
/// assert!(JwkThumbprint::parse("too-short").is_none());
/// ```
#[derive(Clone, Eq)]
pub struct JwkThumbprint(String);

impl JwkThumbprint {
    /// Accepts `text` if it is the unpadded base64url form of 32 bytes (e.g. a `cnf.jkt` or a
    /// `dpop_jkt` parameter).
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let bytes = (text.len() == 43 && b64::is_alphabet(text))
            .then(|| b64::decode(text).ok())
            .flatten()?;
        (bytes.len() == 32).then(|| Self(text.to_owned()))
    }

    /// The thumbprint of `canonical_json` (the RFC 7638 hash input).
    pub(crate) fn of_canonical(canonical_json: &[u8]) -> Self {
        Self(b64::encode(
            digest::digest(&digest::SHA256, canonical_json).as_ref(),
        ))
    }

    /// The base64url text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::hash::Hash for JwkThumbprint {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl PartialEq for JwkThumbprint {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl fmt::Debug for JwkThumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JwkThumbprint({})", self.0)
    }
}

impl fmt::Display for JwkThumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for JwkThumbprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for JwkThumbprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&text).ok_or_else(|| serde::de::Error::custom("not a JWK SHA-256 thumbprint"))
    }
}

/// A validated public key, with the member strings it arrived with.
#[derive(Clone)]
pub struct PublicJwk {
    kind: KeyKind,
    /// `x` (EC, OKP) or `n` (RSA), as received.
    first: String,
    /// `y` (EC) or `e` (RSA), as received; empty for OKP.
    second: String,
    kid: Option<String>,
    alg: Option<Algorithm>,
    verifier: Verifier,
    thumbprint: JwkThumbprint,
}

#[derive(Clone)]
enum Verifier {
    /// EC and Ed25519 keys, parsed once (this also checks the point is on the curve).
    Parsed(ParsedPublicKey),
    /// RSA modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

impl fmt::Debug for PublicJwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicJwk")
            .field("kind", &self.kind)
            .field("kid", &self.kid)
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl PublicJwk {
    /// Parses a public JWK from JSON text.
    ///
    /// ```
    /// use keybound_core::PublicJwk;
    /// let jwk = PublicJwk::from_json(br#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#).unwrap();
    /// assert_eq!(jwk.thumbprint().as_str(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    /// ```
    ///
    /// # Errors
    /// Any [`JwkError`]: private members, unknown `kty`/`crv`, non-canonical or oversized
    /// members, weak RSA keys, points not on the curve, an `alg` that does not fit.
    pub fn from_json(json: &[u8]) -> Result<Self, JwkError> {
        let map = crate::json::parse_object(json).map_err(|_| JwkError::NotAnObject)?;
        Self::from_map(&map)
    }

    /// Parses the public half of a JWK that may be a private key (e.g. a key file): the private
    /// members are dropped before validation. Never use this on keys received from peers, where
    /// private members must be refused ([`PublicJwk::from_json`]).
    ///
    /// ```
    /// use keybound_core::PublicJwk;
    /// let private = br#"{"kty":"OKP","crv":"Ed25519","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
    /// assert!(PublicJwk::from_json(private).is_err());
    /// let public = PublicJwk::public_half_of(private).unwrap();
    /// assert_eq!(public.thumbprint().as_str(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    /// ```
    ///
    /// # Errors
    /// As [`PublicJwk::from_json`], except for private members.
    pub fn public_half_of(json: &[u8]) -> Result<Self, JwkError> {
        let mut map = crate::json::parse_object(json).map_err(|_| JwkError::NotAnObject)?;
        for member in PRIVATE_MEMBERS {
            map.remove(member);
        }
        if map.get("kty").and_then(Value::as_str) == Some("oct") {
            return Err(JwkError::UnsupportedKeyType);
        }
        Self::from_map(&map)
    }

    /// Parses a public JWK from an already-parsed JSON object (e.g. a JWS header's `jwk`).
    ///
    /// # Errors
    /// As [`PublicJwk::from_json`].
    pub fn from_map(map: &Map<String, Value>) -> Result<Self, JwkError> {
        if map.len() > MAX_JWK_MEMBERS {
            return Err(JwkError::TooLarge);
        }
        if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| map.contains_key(**m)) {
            return Err(JwkError::PrivateMember(member));
        }
        if map
            .values()
            .any(|v| v.as_str().is_some_and(|s| s.len() > MAX_JWK_MEMBER_LEN))
        {
            return Err(JwkError::TooLarge);
        }
        match map.get("use").map(Value::as_str) {
            None | Some(Some("sig")) => {}
            Some(_) => return Err(JwkError::NotForSignatures),
        }
        let kty = map.get("kty").and_then(Value::as_str);
        let (kind, first, second, verifier) = match kty {
            Some("EC") => parse_ec(map)?,
            Some("OKP") => parse_okp(map)?,
            Some("RSA") => parse_rsa(map)?,
            _ => return Err(JwkError::UnsupportedKeyType),
        };
        let alg = match map.get("alg") {
            None => None,
            Some(Value::String(name)) => {
                let alg = Algorithm::from_name(name).ok_or(JwkError::AlgorithmMismatch)?;
                if alg.key_kind() != kind {
                    return Err(JwkError::AlgorithmMismatch);
                }
                Some(alg)
            }
            Some(_) => return Err(JwkError::AlgorithmMismatch),
        };
        let kid = match map.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(JwkError::MissingMember("kid")),
        };
        let thumbprint =
            JwkThumbprint::of_canonical(canonical_json(kind, &first, &second).as_bytes());
        Ok(Self {
            kind,
            first,
            second,
            kid,
            alg,
            verifier,
            thumbprint,
        })
    }

    /// Builds the public JWK of raw key material (used for keys this process holds).
    pub(crate) fn from_raw(kind: KeyKind, first: &[u8], second: &[u8]) -> Result<Self, JwkError> {
        let mut map = Map::new();
        match kind {
            KeyKind::P256 | KeyKind::P384 => {
                map.insert("kty".into(), "EC".into());
                let crv = if kind == KeyKind::P256 {
                    "P-256"
                } else {
                    "P-384"
                };
                map.insert("crv".into(), crv.into());
                map.insert("x".into(), b64::encode(first).into());
                map.insert("y".into(), b64::encode(second).into());
            }
            KeyKind::Ed25519 => {
                map.insert("kty".into(), "OKP".into());
                map.insert("crv".into(), "Ed25519".into());
                map.insert("x".into(), b64::encode(first).into());
            }
            KeyKind::Rsa => {
                map.insert("kty".into(), "RSA".into());
                map.insert("n".into(), b64::encode(first).into());
                map.insert("e".into(), b64::encode(second).into());
            }
        }
        Self::from_map(&map)
    }

    /// The key's family and curve.
    #[must_use]
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The `kid` member, if the key had one.
    #[must_use]
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The `alg` member, if the key had one.
    #[must_use]
    pub fn alg(&self) -> Option<Algorithm> {
        self.alg
    }

    /// The RFC 7638 SHA-256 thumbprint, computed from the member strings as received.
    #[must_use]
    pub fn thumbprint(&self) -> &JwkThumbprint {
        &self.thumbprint
    }

    /// The public members as a JSON object in the order keybound writes them
    /// (`kty`, `crv`, `x`, `y` / `kty`, `crv`, `x` / `kty`, `n`, `e`), without `kid` or `alg`.
    #[must_use]
    pub fn to_json(&self) -> String {
        let s = |v: &str| Value::from(v).to_string();
        match self.kind {
            KeyKind::P256 | KeyKind::P384 => format!(
                r#"{{"kty":"EC","crv":"{}","x":{},"y":{}}}"#,
                curve_name(self.kind),
                s(&self.first),
                s(&self.second)
            ),
            KeyKind::Ed25519 => {
                format!(r#"{{"kty":"OKP","crv":"Ed25519","x":{}}}"#, s(&self.first))
            }
            KeyKind::Rsa => format!(
                r#"{{"kty":"RSA","n":{},"e":{}}}"#,
                s(&self.first),
                s(&self.second)
            ),
        }
    }

    /// Checks that `alg` is consistent with this key (kty/crv, and the JWK's own `alg`).
    ///
    /// # Errors
    /// [`JwkError::AlgorithmMismatch`].
    pub fn check_algorithm(&self, alg: Algorithm) -> Result<(), JwkError> {
        if alg.key_kind() != self.kind || self.alg.is_some_and(|own| own != alg) {
            return Err(JwkError::AlgorithmMismatch);
        }
        Ok(())
    }

    /// Verifies `signature` over `message` with this key under `alg`.
    /// Returns `false` for a wrong signature or an algorithm that does not fit the key.
    #[must_use]
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        if self.check_algorithm(alg).is_err() {
            return false;
        }
        match (&self.verifier, alg) {
            (Verifier::Parsed(key), _) => key.verify_sig(message, signature).is_ok(),
            (Verifier::Rsa { n, e }, Algorithm::Ps256) => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PSS_2048_8192_SHA256, message, signature)
                .is_ok(),
            (Verifier::Rsa { n, e }, Algorithm::Rs256) => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
            (Verifier::Rsa { .. }, _) => false,
        }
    }
}

fn curve_name(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::P256 => "P-256",
        KeyKind::P384 => "P-384",
        KeyKind::Ed25519 => "Ed25519",
        KeyKind::Rsa => "",
    }
}

/// The RFC 7638 hash input: required members only, lexicographic order, no whitespace.
/// The member values are base64url (already checked), so they need no JSON escaping.
fn canonical_json(kind: KeyKind, first: &str, second: &str) -> String {
    match kind {
        KeyKind::P256 | KeyKind::P384 => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{first}","y":"{second}"}}"#,
            curve_name(kind)
        ),
        KeyKind::Ed25519 => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{first}"}}"#),
        KeyKind::Rsa => format!(r#"{{"e":"{second}","kty":"RSA","n":"{first}"}}"#),
    }
}

fn member<'a>(map: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, JwkError> {
    map.get(name)
        .and_then(Value::as_str)
        .ok_or(JwkError::MissingMember(name))
}

/// Decodes a canonical base64url member; `len` is the exact decoded length, if fixed.
fn decode_member(text: &str, name: &'static str, len: Option<usize>) -> Result<Vec<u8>, JwkError> {
    let bytes = b64::decode(text).map_err(|_| JwkError::NonCanonical(name))?;
    match len {
        Some(len) if bytes.len() != len => Err(JwkError::NonCanonical(name)),
        _ => Ok(bytes),
    }
}

type Parsed = (KeyKind, String, String, Verifier);

fn parse_ec(map: &Map<String, Value>) -> Result<Parsed, JwkError> {
    let (kind, len, alg): (_, _, &'static signature::EcdsaVerificationAlgorithm) =
        match map.get("crv").and_then(Value::as_str) {
            Some("P-256") => (KeyKind::P256, 32, &signature::ECDSA_P256_SHA256_FIXED),
            Some("P-384") => (KeyKind::P384, 48, &signature::ECDSA_P384_SHA384_FIXED),
            _ => return Err(JwkError::UnsupportedCurve),
        };
    let (x, y) = (member(map, "x")?, member(map, "y")?);
    let mut point = Vec::with_capacity(1 + 2 * len);
    point.push(0x04);
    point.extend(decode_member(x, "x", Some(len))?);
    point.extend(decode_member(y, "y", Some(len))?);
    let key = ParsedPublicKey::new(alg, point).map_err(|_| JwkError::InvalidKey)?;
    Ok((kind, x.to_owned(), y.to_owned(), Verifier::Parsed(key)))
}

fn parse_okp(map: &Map<String, Value>) -> Result<Parsed, JwkError> {
    if map.get("crv").and_then(Value::as_str) != Some("Ed25519") {
        return Err(JwkError::UnsupportedCurve);
    }
    let x = member(map, "x")?;
    let raw = decode_member(x, "x", Some(32))?;
    let key = ParsedPublicKey::new(&signature::ED25519, raw).map_err(|_| JwkError::InvalidKey)?;
    Ok((
        KeyKind::Ed25519,
        x.to_owned(),
        String::new(),
        Verifier::Parsed(key),
    ))
}

fn parse_rsa(map: &Map<String, Value>) -> Result<Parsed, JwkError> {
    let (n_text, e_text) = (member(map, "n")?, member(map, "e")?);
    let n = decode_member(n_text, "n", None)?;
    let e = decode_member(e_text, "e", None)?;
    // Base64urlUInt is minimal (RFC 7518 §2): no leading zero octet.
    if n.first().is_none_or(|b| *b == 0) {
        return Err(JwkError::NonCanonical("n"));
    }
    if e.first().is_none_or(|b| *b == 0) || e.len() > 4 {
        return Err(JwkError::NonCanonical("e"));
    }
    let bits = n.len() * 8 - n[0].leading_zeros() as usize;
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(JwkError::RsaKeySize(bits));
    }
    if e.last().is_none_or(|b| b & 1 == 0) || e == [1] {
        return Err(JwkError::InvalidKey);
    }
    Ok((
        KeyKind::Rsa,
        n_text.to_owned(),
        e_text.to_owned(),
        Verifier::Rsa { n, e },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
    const EC: &str = r#"{"kty":"EC","x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs","y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA","crv":"P-256"}"#;

    fn with(base: &str, key: &str, value: Value) -> Vec<u8> {
        let mut map: Map<String, Value> = serde_json::from_str(base).unwrap();
        map.insert(key.into(), value);
        serde_json::to_vec(&map).unwrap()
    }

    #[test]
    fn private_members_are_rejected() {
        for m in PRIVATE_MEMBERS {
            assert_eq!(
                PublicJwk::from_json(&with(EC, m, "AAAA".into())).unwrap_err(),
                JwkError::PrivateMember(m),
                "{m}"
            );
        }
    }

    #[test]
    fn unknown_key_types_and_curves_are_rejected() {
        assert_eq!(
            PublicJwk::from_json(&with(EC, "kty", "oct".into())).unwrap_err(),
            JwkError::UnsupportedKeyType
        );
        assert_eq!(
            PublicJwk::from_json(&with(EC, "crv", "P-521".into())).unwrap_err(),
            JwkError::UnsupportedCurve
        );
        assert_eq!(
            PublicJwk::from_json(&with(ED, "crv", "X25519".into())).unwrap_err(),
            JwkError::UnsupportedCurve
        );
    }

    #[test]
    fn alg_member_must_fit_the_key() {
        assert_eq!(
            PublicJwk::from_json(&with(EC, "alg", "PS256".into())).unwrap_err(),
            JwkError::AlgorithmMismatch
        );
        assert_eq!(
            PublicJwk::from_json(&with(EC, "alg", "HS256".into())).unwrap_err(),
            JwkError::AlgorithmMismatch
        );
        assert!(PublicJwk::from_json(&with(EC, "alg", "ES256".into())).is_ok());
    }

    #[test]
    fn non_canonical_coordinates_are_rejected() {
        // 31-byte coordinate (leading zero dropped), and base64 padding.
        let short = b64::encode(&[7u8; 31]);
        assert_eq!(
            PublicJwk::from_json(&with(EC, "x", short.into())).unwrap_err(),
            JwkError::NonCanonical("x")
        );
        let padded = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
        assert_eq!(
            PublicJwk::from_json(&with(ED, "x", padded.into())).unwrap_err(),
            JwkError::NonCanonical("x")
        );
    }

    #[test]
    fn point_not_on_curve_is_rejected() {
        let y = b64::encode(&[1u8; 32]);
        assert_eq!(
            PublicJwk::from_json(&with(EC, "y", y.into())).unwrap_err(),
            JwkError::InvalidKey
        );
    }

    #[test]
    fn weak_and_non_minimal_rsa_keys_are_rejected() {
        let mut n = vec![0xC5u8; 128]; // 1024 bits
        let rsa = |n: &[u8]| {
            format!(r#"{{"kty":"RSA","e":"AQAB","n":"{}"}}"#, b64::encode(n)).into_bytes()
        };
        assert_eq!(
            PublicJwk::from_json(&rsa(&n)).unwrap_err(),
            JwkError::RsaKeySize(1024)
        );
        n = vec![0xC5u8; 256];
        n.insert(0, 0);
        assert_eq!(
            PublicJwk::from_json(&rsa(&n)).unwrap_err(),
            JwkError::NonCanonical("n")
        );
    }

    #[test]
    fn oversized_members_are_rejected() {
        let long = "A".repeat(MAX_JWK_MEMBER_LEN + 1);
        assert_eq!(
            PublicJwk::from_json(&with(EC, "kid", long.into())).unwrap_err(),
            JwkError::TooLarge
        );
    }

    #[test]
    fn encryption_keys_are_not_signature_keys() {
        assert_eq!(
            PublicJwk::from_json(&with(EC, "use", "enc".into())).unwrap_err(),
            JwkError::NotForSignatures
        );
    }

    #[test]
    fn to_json_round_trips() {
        let jwk = PublicJwk::from_json(EC.as_bytes()).unwrap();
        let again = PublicJwk::from_json(jwk.to_json().as_bytes()).unwrap();
        assert_eq!(jwk.thumbprint(), again.thumbprint());
    }
}
