//! Minting proofs (the client side of RFC 9449 §4).

use aws_lc_rs::rand::SecureRandom;
use serde::Serialize;

use crate::UnixTime;
use crate::ath::AccessTokenHash;
use crate::b64;
use crate::jws::sign_compact;
use crate::keys::{KeyError, SigningKey};

/// Builds a DPoP proof for one request.
///
/// ```
/// use aws_lc_rs::rand::SystemRandom;
/// use keybound_core::{Algorithm, SigningKey, UnixTime};
/// use keybound_core::dpop::ProofBuilder;
///
/// let rng = SystemRandom::new();
/// let (key, _pkcs8) = SigningKey::generate(Algorithm::Es256, &rng).unwrap();
/// let proof = ProofBuilder::new("POST", "https://as.example/token?x=1", UnixTime::from_secs(1_700_000_000))
///     .sign(&key, &rng)
///     .unwrap();
/// assert_eq!(proof.split('.').count(), 3);
/// ```
#[derive(Debug)]
pub struct ProofBuilder<'a> {
    htm: &'a str,
    htu: &'a str,
    iat: UnixTime,
    jti: Option<&'a str>,
    access_token: Option<&'a str>,
    nonce: Option<&'a str>,
}

#[derive(Serialize)]
struct Claims<'a> {
    jti: &'a str,
    htm: &'a str,
    htu: &'a str,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
}

impl<'a> ProofBuilder<'a> {
    /// A proof for `method` on `url` created at `iat`. Query and fragment are removed from `url`.
    #[must_use]
    pub fn new(method: &'a str, url: &'a str, iat: UnixTime) -> Self {
        let end = url.find(['?', '#']).unwrap_or(url.len());
        Self {
            htm: method,
            htu: &url[..end],
            iat,
            jti: None,
            access_token: None,
            nonce: None,
        }
    }

    /// Uses `jti` instead of 128 fresh random bits (for reproducing published vectors).
    #[must_use]
    pub fn jti(mut self, jti: &'a str) -> Self {
        self.jti = Some(jti);
        self
    }

    /// Binds the proof to the access token it accompanies (adds `ath`).
    #[must_use]
    pub fn access_token(mut self, token: &'a str) -> Self {
        self.access_token = Some(token);
        self
    }

    /// Includes a server-provided nonce.
    #[must_use]
    pub fn nonce(mut self, nonce: &'a str) -> Self {
        self.nonce = Some(nonce);
        self
    }

    /// Signs the proof with `key`; `rng` supplies the `jti` when none was set.
    ///
    /// # Errors
    /// [`KeyError::Crypto`] if randomness or signing fails.
    pub fn sign(self, key: &SigningKey, rng: &dyn SecureRandom) -> Result<String, KeyError> {
        let random_jti;
        let jti = match self.jti {
            Some(jti) => jti,
            None => {
                let mut bytes = [0u8; 16];
                rng.fill(&mut bytes).map_err(|_| KeyError::Crypto)?;
                random_jti = b64::encode(&bytes);
                &random_jti
            }
        };
        let claims = Claims {
            jti,
            htm: self.htm,
            htu: self.htu,
            iat: self.iat.as_secs(),
            ath: self
                .access_token
                .map(|t| AccessTokenHash::of(t).as_str().to_owned()),
            nonce: self.nonce,
        };
        let header = format!(
            r#"{{"typ":"{}","alg":"{}","jwk":{}}}"#,
            super::PROOF_TYP,
            key.algorithm().name(),
            key.public_jwk().to_json()
        );
        let payload = serde_json::to_string(&claims).map_err(|_| KeyError::Crypto)?;
        sign_compact(&header, &payload, key)
    }
}
