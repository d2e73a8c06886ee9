//! Private signing keys held by this process (a client's DPoP key, the AS's token key).
//!
//! A [`SigningKey`] has no `Clone` and its `Debug` shows only the public thumbprint.

use std::fmt;

use aws_lc_rs::rand::SecureRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::alg::{Algorithm, KeyKind};
use crate::b64;
use crate::jwk::{JwkError, PublicJwk};

/// Why a private key could not be created, loaded or used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The PKCS#8 document or private JWK is malformed or does not match the algorithm.
    #[error("the private key is malformed or does not match the algorithm")]
    Rejected,
    /// The public half failed JWK validation.
    #[error("the public key is invalid: {0}")]
    Public(#[from] JwkError),
    /// The cryptographic library failed (key generation or signing).
    #[error("the cryptographic operation failed")]
    Crypto,
}

enum Inner {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

/// A private key with the algorithm it signs under and its public JWK.
pub struct SigningKey {
    inner: Inner,
    alg: Algorithm,
    public: PublicJwk,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("thumbprint", self.public.thumbprint())
            .finish_non_exhaustive()
    }
}

fn ecdsa_signing(alg: Algorithm) -> Option<&'static signature::EcdsaSigningAlgorithm> {
    match alg {
        Algorithm::Es256 => Some(&signature::ECDSA_P256_SHA256_FIXED_SIGNING),
        Algorithm::Es384 => Some(&signature::ECDSA_P384_SHA384_FIXED_SIGNING),
        _ => None,
    }
}

impl SigningKey {
    /// Generates a new key for `alg` and returns it with its PKCS#8 (v1) document.
    ///
    /// `rng` is the caller's randomness source; aws-lc-rs draws from its own OS-seeded DRBG,
    /// so pass `aws_lc_rs::rand::SystemRandom::new()`. RSA keys are 2048 bits.
    ///
    /// # Errors
    /// [`KeyError::Crypto`] if the library fails.
    pub fn generate(
        alg: Algorithm,
        rng: &dyn SecureRandom,
    ) -> Result<(Self, Zeroizing<Vec<u8>>), KeyError> {
        let pkcs8 = match alg {
            Algorithm::Es256 | Algorithm::Es384 => {
                let sa = ecdsa_signing(alg).ok_or(KeyError::Crypto)?;
                EcdsaKeyPair::generate_pkcs8(sa, rng).map_err(|_| KeyError::Crypto)?
            }
            Algorithm::EdDsa => {
                Ed25519KeyPair::generate_pkcs8v1(rng).map_err(|_| KeyError::Crypto)?
            }
            Algorithm::Ps256 | Algorithm::Rs256 => {
                use aws_lc_rs::encoding::AsDer as _;
                let kp = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Crypto)?;
                let der: aws_lc_rs::encoding::Pkcs8V1Der<'_> =
                    kp.as_der().map_err(|_| KeyError::Crypto)?;
                let bytes = Zeroizing::new(der.as_ref().to_vec());
                let key = Self::from_pkcs8(alg, &bytes)?;
                return Ok((key, bytes));
            }
        };
        let bytes = Zeroizing::new(pkcs8.as_ref().to_vec());
        Ok((Self::from_pkcs8(alg, &bytes)?, bytes))
    }

    /// Loads a PKCS#8 private key for `alg`.
    ///
    /// # Errors
    /// [`KeyError::Rejected`] if the document is malformed or is not a key for `alg`.
    pub fn from_pkcs8(alg: Algorithm, pkcs8: &[u8]) -> Result<Self, KeyError> {
        let inner = match alg {
            Algorithm::Es256 | Algorithm::Es384 => {
                let sa = ecdsa_signing(alg).ok_or(KeyError::Rejected)?;
                Inner::Ecdsa(EcdsaKeyPair::from_pkcs8(sa, pkcs8).map_err(|_| KeyError::Rejected)?)
            }
            Algorithm::EdDsa => Inner::Ed25519(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
                    .map_err(|_| KeyError::Rejected)?,
            ),
            Algorithm::Ps256 | Algorithm::Rs256 => {
                Inner::Rsa(RsaKeyPair::from_pkcs8(pkcs8).map_err(|_| KeyError::Rejected)?)
            }
        };
        Self::assemble(inner, alg)
    }

    /// Loads a private JWK (EC with `d`, or OKP Ed25519 with `d`), e.g. a published test key.
    ///
    /// # Errors
    /// [`KeyError::Rejected`] for anything else or a `d` that does not match the public part.
    pub fn from_private_jwk(alg: Algorithm, json: &[u8]) -> Result<Self, KeyError> {
        let map = crate::json::parse_object(json).map_err(|_| KeyError::Rejected)?;
        let get = |name: &str| -> Result<Zeroizing<Vec<u8>>, KeyError> {
            let text = map
                .get(name)
                .and_then(Value::as_str)
                .ok_or(KeyError::Rejected)?;
            b64::decode(text)
                .map(Zeroizing::new)
                .map_err(|_| KeyError::Rejected)
        };
        let d = get("d")?;
        let inner = match alg {
            Algorithm::Es256 | Algorithm::Es384 => {
                let sa = ecdsa_signing(alg).ok_or(KeyError::Rejected)?;
                let mut point = vec![0x04];
                point.extend_from_slice(&get("x")?);
                point.extend_from_slice(&get("y")?);
                Inner::Ecdsa(
                    EcdsaKeyPair::from_private_key_and_public_key(sa, &d, &point)
                        .map_err(|_| KeyError::Rejected)?,
                )
            }
            Algorithm::EdDsa => Inner::Ed25519(
                Ed25519KeyPair::from_seed_and_public_key(&d, &get("x")?)
                    .map_err(|_| KeyError::Rejected)?,
            ),
            Algorithm::Ps256 | Algorithm::Rs256 => return Err(KeyError::Rejected),
        };
        Self::assemble(inner, alg)
    }

    fn assemble(inner: Inner, alg: Algorithm) -> Result<Self, KeyError> {
        let public = match &inner {
            Inner::Ecdsa(kp) => {
                let point = kp.public_key().as_ref();
                let half = (point.len() - 1) / 2;
                let kind = if half == 32 {
                    KeyKind::P256
                } else {
                    KeyKind::P384
                };
                PublicJwk::from_raw(kind, &point[1..=half], &point[1 + half..])?
            }
            Inner::Ed25519(kp) => {
                PublicJwk::from_raw(KeyKind::Ed25519, kp.public_key().as_ref(), &[])?
            }
            Inner::Rsa(kp) => {
                let pk = kp.public_key();
                let n = pk.modulus().big_endian_without_leading_zero().to_vec();
                let e = pk.exponent().big_endian_without_leading_zero().to_vec();
                PublicJwk::from_raw(KeyKind::Rsa, &n, &e)?
            }
        };
        public.check_algorithm(alg)?;
        Ok(Self { inner, alg, public })
    }

    /// The algorithm this key signs under.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The public half, as a JWK.
    #[must_use]
    pub fn public_jwk(&self) -> &PublicJwk {
        &self.public
    }

    /// Signs `message` (a JWS signing input) and returns the raw JWS signature bytes.
    ///
    /// # Errors
    /// [`KeyError::Crypto`] if the library fails.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        match &self.inner {
            Inner::Ecdsa(kp) => kp
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Crypto),
            Inner::Ed25519(kp) => Ok(kp.sign(message).as_ref().to_vec()),
            Inner::Rsa(kp) => {
                let padding: &'static dyn signature::RsaEncoding = match self.alg {
                    Algorithm::Rs256 => &signature::RSA_PKCS1_SHA256,
                    _ => &signature::RSA_PSS_SHA256,
                };
                let mut sig = vec![0; kp.public_modulus_len()];
                kp.sign(padding, &rng, message, &mut sig)
                    .map_err(|_| KeyError::Crypto)?;
                Ok(sig)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = r#"{"kty":"OKP","crv":"Ed25519","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;

    #[test]
    fn debug_output_shows_no_key_material() {
        let key = SigningKey::from_private_jwk(Algorithm::EdDsa, ED25519.as_bytes()).unwrap();
        let text = format!("{key:?}");
        assert!(!text.contains("nWGxne"), "{text}");
        assert!(
            text.contains("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"),
            "{text}"
        );
    }

    #[test]
    fn pkcs8_round_trip_for_every_algorithm() {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        for alg in Algorithm::ALL {
            let (key, pkcs8) = SigningKey::generate(alg, &rng).unwrap();
            let again = SigningKey::from_pkcs8(alg, &pkcs8).unwrap();
            assert_eq!(
                key.public_jwk().thumbprint(),
                again.public_jwk().thumbprint(),
                "{alg}"
            );
            let sig = again.sign(b"msg").unwrap();
            assert!(key.public_jwk().verify(alg, b"msg", &sig), "{alg}");
        }
    }

    #[test]
    fn a_private_jwk_whose_d_does_not_match_is_refused() {
        let wrong = ED25519.replace("nWGxne", "AAAAAA");
        assert_eq!(
            SigningKey::from_private_jwk(Algorithm::EdDsa, wrong.as_bytes()).unwrap_err(),
            KeyError::Rejected
        );
        assert_eq!(
            SigningKey::from_pkcs8(Algorithm::Es256, b"junk").unwrap_err(),
            KeyError::Rejected
        );
    }
}
