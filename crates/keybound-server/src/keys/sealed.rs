//! Signing keys at rest in a shared database: AES-256-GCM under a key-encryption key that
//! lives only in the replicas' environment, so a database dump or backup holds no usable key.
//!
//! Format: `0x01 || nonce (12 bytes, random) || ciphertext || tag (16 bytes)`, with the
//! algorithm and the `kid` as associated data: a sealed key moved to another row, or relabelled
//! with another algorithm, does not open.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keybound_core::Algorithm;
use zeroize::Zeroizing;

use super::KeyError;

const VERSION: u8 = 1;
/// How many key-encryption keys one list may name (current plus old ones still being retired).
const MAX_KEYS: usize = 4;

/// The key-encryption keys: the first seals, every one is tried when opening, so that the
/// variable can become `new,old` while keys sealed under `old` are rotated out.
pub struct KeyEncryptionKeys {
    keys: Vec<LessSafeKey>,
}

impl fmt::Debug for KeyEncryptionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEncryptionKeys")
            .field("count", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl KeyEncryptionKeys {
    /// Parses `current[,older...]`: each 32 random bytes in base64url, as
    /// `KEYBOUND_KEY_ENCRYPTION_KEY` holds them.
    ///
    /// # Errors
    /// [`KeyError::EncryptionKey`] if the list is empty, too long, or a key is not 32 bytes of
    /// base64url.
    pub fn from_base64url_list(text: &str) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if keys.len() == MAX_KEYS {
                return Err(KeyError::EncryptionKey("at most 4 keys, comma-separated"));
            }
            let bytes = Zeroizing::new(
                URL_SAFE_NO_PAD
                    .decode(part)
                    .map_err(|_| KeyError::EncryptionKey("not base64url (no padding)"))?,
            );
            let key = UnboundKey::new(&AES_256_GCM, &bytes)
                .map_err(|_| KeyError::EncryptionKey("each key must be 32 bytes"))?;
            keys.push(LessSafeKey::new(key));
        }
        if keys.is_empty() {
            return Err(KeyError::EncryptionKey("empty"));
        }
        Ok(Self { keys })
    }

    /// Encrypts a PKCS#8 signing key under the first key-encryption key.
    pub(super) fn seal(
        &self,
        alg: Algorithm,
        kid: &str,
        pkcs8: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| KeyError::Generation)?;
        let mut body = pkcs8.to_vec();
        self.keys[0]
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated_data(alg, kid)),
                &mut body,
            )
            .map_err(|_| KeyError::Generation)?;
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + body.len());
        sealed.push(VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&body);
        Ok(sealed)
    }

    /// Decrypts a sealed signing key with whichever key-encryption key sealed it.
    pub(super) fn open(
        &self,
        alg: Algorithm,
        kid: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let fail = || KeyError::Sealed {
            kid: kid.to_owned(),
        };
        let (&version, rest) = sealed.split_first().ok_or_else(fail)?;
        if version != VERSION || rest.len() < NONCE_LEN {
            return Err(fail());
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| fail())?;
        for key in &self.keys {
            let mut in_out = Zeroizing::new(body.to_vec());
            if let Ok(plain) = key.open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated_data(alg, kid)),
                &mut in_out,
            ) {
                return Ok(Zeroizing::new(plain.to_vec()));
            }
        }
        Err(fail())
    }
}

fn associated_data(alg: Algorithm, kid: &str) -> Vec<u8> {
    format!("keybound signing key\0{}\0{kid}", alg.name()).into_bytes()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    const B: &str = "HxwdHh8QERITFBUWFxgZGhsAAQIDBAUGBwgJCgsMDQ4";

    #[test]
    fn sealed_keys_open_only_with_the_same_kid_alg_and_key() {
        let keys = KeyEncryptionKeys::from_base64url_list(A).unwrap();
        let sealed = keys.seal(Algorithm::Es256, "kid-1", b"private").unwrap();
        assert!(
            !sealed.windows(7).any(|w| w == b"private"),
            "not in the clear"
        );
        assert_eq!(
            &*keys.open(Algorithm::Es256, "kid-1", &sealed).unwrap(),
            b"private"
        );
        assert!(
            keys.open(Algorithm::Es256, "kid-2", &sealed).is_err(),
            "moved row"
        );
        assert!(
            keys.open(Algorithm::EdDsa, "kid-1", &sealed).is_err(),
            "relabelled"
        );
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(
            keys.open(Algorithm::Es256, "kid-1", &flipped).is_err(),
            "altered"
        );
        let other = KeyEncryptionKeys::from_base64url_list(B).unwrap();
        assert!(matches!(
            other.open(Algorithm::Es256, "kid-1", &sealed),
            Err(KeyError::Sealed { .. })
        ));
    }

    #[test]
    fn a_retired_key_encryption_key_still_opens_what_it_sealed() {
        let old = KeyEncryptionKeys::from_base64url_list(A).unwrap();
        let sealed = old.seal(Algorithm::Es256, "k", b"secret").unwrap();
        let both = KeyEncryptionKeys::from_base64url_list(&format!("{B}, {A}")).unwrap();
        assert_eq!(
            &*both.open(Algorithm::Es256, "k", &sealed).unwrap(),
            b"secret"
        );
        let resealed = both.seal(Algorithm::Es256, "k", b"secret").unwrap();
        assert!(
            old.open(Algorithm::Es256, "k", &resealed).is_err(),
            "sealed under the new"
        );
    }

    #[test]
    fn malformed_key_encryption_keys_are_refused_with_the_reason() {
        for (text, reason) in [
            ("", "empty"),
            (" , ", "empty"),
            ("not base64!", "not base64url (no padding)"),
            ("AAEC", "each key must be 32 bytes"),
        ] {
            match KeyEncryptionKeys::from_base64url_list(text) {
                Err(KeyError::EncryptionKey(r)) => assert_eq!(r, reason, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        let five = [A; 5].join(",");
        assert!(KeyEncryptionKeys::from_base64url_list(&five).is_err());
        let debug = format!("{:?}", KeyEncryptionKeys::from_base64url_list(A).unwrap());
        assert!(!debug.contains(A) && debug.contains("count: 1"), "{debug}");
    }
}
