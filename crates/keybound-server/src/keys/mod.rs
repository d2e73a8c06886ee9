//! The AS's signing keys. The JWKS publishes three: the current key, the next one (so resource
//! servers already know it when it becomes current) and the previous one (so tokens it signed
//! stay verifiable until they expire). A rotation drops previous, makes current previous and
//! next current, and generates a new next key.
//!
//! Two homes for them:
//! - one machine: files in `<data_dir>/keys/` (0600, folder 0700), with [`load_or_create`] and
//!   [`rotate`];
//! - replicas: a [`SigningKeyStore`](keybound_store::SigningKeyStore) (PostgreSQL), each
//!   private key sealed with AES-256-GCM under [`KeyEncryptionKeys`], with
//!   [`load_or_create_in`], [`rotate_in`] and [`reload_from`]: every replica publishes the same
//!   JWKS and one rotation reaches them all.

mod database;
mod files;
mod sealed;

use std::path::PathBuf;
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use keybound_core::{AccessTokenSigner, Algorithm, KeySet, SigningKey};
use keybound_store::StoreError;
use serde_json::{Value, json};

pub use database::{load_or_create_in, reload_from, rotate_in};
pub use files::{load_or_create, rotate};
pub use sealed::KeyEncryptionKeys;

/// Why the signing keys could not be loaded, stored or rotated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Reading or writing the key directory failed.
    #[error("key directory {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key file exists but is not a key of the algorithm in its name.
    #[error("key file {0} is not a valid key")]
    Invalid(PathBuf),
    /// A key file is readable by others than its owner.
    #[error("key file {0} must have permissions 0600 (chmod 600)")]
    Permissions(PathBuf),
    /// The key store could not answer.
    #[error("signing key store: {0}")]
    Store(#[from] StoreError),
    /// A stored key could not be opened with any of the key-encryption keys, or is not the key
    /// its `kid` names.
    #[error(
        "the stored signing key {kid} cannot be opened: wrong KEYBOUND_KEY_ENCRYPTION_KEY, or the row was altered"
    )]
    Sealed {
        /// The key's `kid`.
        kid: String,
    },
    /// A key-encryption key is not 32 bytes of base64url.
    #[error("KEYBOUND_KEY_ENCRYPTION_KEY: {0}")]
    EncryptionKey(&'static str),
    /// Generating a key or a nonce failed.
    #[error("key generation failed")]
    Generation,
}

const SLOTS: [&str; 3] = ["current", "next", "previous"];

/// The loaded key ring.
#[derive(Debug)]
pub struct KeyRing {
    signer: AccessTokenSigner,
    jwks: Value,
    keys: Arc<KeySet>,
    generation: Option<u64>,
}

impl KeyRing {
    /// Signs access tokens with the current key.
    #[must_use]
    pub fn signer(&self) -> &AccessTokenSigner {
        &self.signer
    }

    /// The JWKS document (current, next, previous).
    #[must_use]
    pub fn jwks(&self) -> &Value {
        &self.jwks
    }

    /// The published keys, for verifying this AS's own tokens (introspection, revocation).
    #[must_use]
    pub fn key_set(&self) -> &Arc<KeySet> {
        &self.keys
    }

    /// The stored ring's generation (rotations counted by the key store); `None` for keys
    /// from files or memory.
    #[must_use]
    pub fn generation(&self) -> Option<u64> {
        self.generation
    }

    /// A ring of fresh keys held only in memory (tests and throwaway servers).
    ///
    /// # Errors
    /// [`KeyError::Generation`] if key generation fails.
    pub fn ephemeral(alg: Algorithm) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let mut signers = Vec::new();
        for _ in SLOTS {
            let (key, _) = SigningKey::generate(alg, &rng).map_err(|_| KeyError::Generation)?;
            signers.push(named(key));
        }
        Ok(assemble(signers, None))
    }
}

/// A signer whose `kid` is the key's RFC 7638 thumbprint.
fn named(key: SigningKey) -> AccessTokenSigner {
    let kid = key.public_jwk().thumbprint().as_str().to_owned();
    AccessTokenSigner::new(key, kid)
}

/// The ring from its signers in [`SLOTS`] order.
fn assemble(mut signers: Vec<AccessTokenSigner>, generation: Option<u64>) -> KeyRing {
    let entries: Vec<Value> = signers.iter().map(AccessTokenSigner::jwks_entry).collect();
    let jwks = json!({ "keys": entries });
    let keys = KeySet::from_jwks_json(jwks.to_string().as_bytes()).unwrap_or_default();
    let signer = signers.remove(0);
    KeyRing {
        signer,
        jwks,
        keys: Arc::new(keys),
        generation,
    }
}
